#include "plugin_path.hpp"

#include <pyoco/plugins/search_path.hpp>

#include <cstdlib>

namespace pyoco::cli {

void PluginPathOption::attach(CLI::App* command) {
  command
      ->add_option("--plugin-path", dirs_,
                   "Look for plugins in DIR first (repeatable; before PYOCO_PLUGIN_PATH and "
                   "the install's lib/pyoco/plugins)")
      ->type_name("DIR");
}

std::vector<std::filesystem::path> PluginPathOption::search_path() const {
  std::vector<std::filesystem::path> dirs(dirs_.begin(), dirs_.end());
  const char* env = std::getenv("PYOCO_PLUGIN_PATH");
  return plugins::plugin_search_path(dirs, env == nullptr ? "" : env,
                                     plugins::install_plugin_dir());
}

std::string describe_search_path(const std::vector<std::filesystem::path>& path) {
  std::string out = "looked in:";
  for (const auto& dir : path) {
    out += "\n  " + dir.string();
    if (!std::filesystem::exists(dir)) out += "  (does not exist)";
  }
  return out;
}

}  // namespace pyoco::cli
