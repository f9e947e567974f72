// Internal: the steps of loading a plugin, which lint runs one by one.
#pragma once

#include <pyoco/plugins/elf.hpp>

#include <pyoco/plugins/loader.hpp>

#include <string>
#include <vector>

namespace pyoco::plugins {

// Throws LoadError(Platform) when the manifest or the library's ELF header
// names another OS/arch than this process.
void check_platform(const Manifest& manifest, const LibraryFile& file);

// Loads the library, checks the descriptor and calls register_tasks, without
// comparing the registered tasks to the manifest. Throws LoadError.
LoadedPlugin register_plugin(const Manifest& manifest);

struct TaskMismatch {
  std::vector<std::string> undeclared;    // registered, not in plugin.toml
  std::vector<std::string> unregistered;  // in plugin.toml, never registered
};
TaskMismatch compare_tasks(const Manifest& manifest, const std::vector<TaskDefinition>& registered);

}  // namespace pyoco::plugins
