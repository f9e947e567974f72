// Internal: the steps of loading a plugin, which lint runs one by one.
#pragma once

#include <pyoco/plugins/elf.hpp>

#include <pyoco/plugins/loader.hpp>
#include <pyoco/plugins/task_tables.hpp>

#include <string>
#include <vector>

namespace pyoco::plugins {

// Throws LoadError(Platform) when the manifest or the library's ELF header
// names another OS/arch than this process.
void check_platform(const Manifest& manifest, const LibraryFile& file);

// Loads the library, checks the descriptor and calls register_tasks, without
// comparing the registered tasks to the manifest. Throws LoadError.
LoadedPlugin register_plugin(const Manifest& manifest);

}  // namespace pyoco::plugins
