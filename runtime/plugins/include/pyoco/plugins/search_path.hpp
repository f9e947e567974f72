// Where pyoco looks for plugins.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

namespace pyoco::plugins {

// The plugin directory of the installation `program` belongs to:
// <program's dir>/../lib/pyoco/plugins. The build tree has the same shape.
std::filesystem::path install_plugin_dir_for(const std::filesystem::path& program);

// install_plugin_dir_for(the running executable).
std::filesystem::path install_plugin_dir();

// The search path, first match wins: `explicit_dirs` (--plugin-path, in
// order), then the entries of `env_path` (PYOCO_PLUGIN_PATH, colon-separated,
// empty entries skipped), then `install_dir`.
std::vector<std::filesystem::path> plugin_search_path(
    const std::vector<std::filesystem::path>& explicit_dirs, std::string_view env_path,
    const std::filesystem::path& install_dir);

}  // namespace pyoco::plugins
