#include <pyoco/plugins/search_path.hpp>

#include <boost/dll/runtime_symbol_info.hpp>

namespace pyoco::plugins {

std::filesystem::path install_plugin_dir_for(const std::filesystem::path& program) {
  return (program.parent_path() / PYOCO_PLUGIN_DIR_FROM_BIN).lexically_normal();
}

std::filesystem::path install_plugin_dir() {
  // /proc/self/exe, resolved: a symlink to the binary still finds its install.
  return install_plugin_dir_for(boost::dll::program_location().string());
}

std::vector<std::filesystem::path> plugin_search_path(
    const std::vector<std::filesystem::path>& explicit_dirs, std::string_view env_path,
    const std::filesystem::path& install_dir) {
  std::vector<std::filesystem::path> path = explicit_dirs;
  while (!env_path.empty()) {
    const std::size_t colon = env_path.find(':');
    const std::string_view entry = env_path.substr(0, colon);
    if (!entry.empty()) path.emplace_back(entry);
    if (colon == std::string_view::npos) break;
    env_path.remove_prefix(colon + 1);
  }
  path.push_back(install_dir);
  return path;
}

}  // namespace pyoco::plugins
