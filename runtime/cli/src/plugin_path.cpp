#include "plugin_path.hpp"

#include <pyoco/core/text.hpp>
#include <pyoco/plugins/search_path.hpp>

#include <cstdlib>
#include <iostream>
#include <system_error>

namespace pyoco::cli {

void PluginPathOption::attach(CLI::App* command) {
  command
      ->add_option("--plugin-path", dirs_,
                   "Look for plugins in DIR first (repeatable; before PYOCO_PLUGIN_PATH and "
                   "the install's lib/pyoco/plugins)")
      ->type_name("DIR")
      // One value per occurrence: `--plugin-path dir flow.yaml` must not
      // take flow.yaml as a second directory.
      ->allow_extra_args(false);
}

std::vector<std::filesystem::path> PluginPathOption::search_path() const {
  std::vector<std::filesystem::path> dirs(dirs_.begin(), dirs_.end());
  // A mistyped directory would otherwise just find nothing: say so, once, and go on.
  if (!warned_) {
    warned_ = true;
    for (const auto& dir : dirs) {
      std::error_code ec;
      const auto status = std::filesystem::status(dir, ec);
      if (std::filesystem::is_directory(status)) continue;
      // A symlink loop, a directory it may not search: said as it is, not
      // as a missing directory.
      const std::string why = std::filesystem::exists(status) ? "not a directory"
                              : ec && ec != std::errc::no_such_file_or_directory
                                  ? ec.message()
                                  : "no such directory";
      std::cerr << "pyoco: warning: --plugin-path " << core::printable(dir.string()) << ": " << why
                << " (ignored)\n";
    }
  }
  const char* env = std::getenv("PYOCO_PLUGIN_PATH");
  return plugins::plugin_search_path(dirs, env == nullptr ? "" : env,
                                     plugins::install_plugin_dir());
}

plugins::Catalog PluginPathOption::configured_catalog() const {
  const char* env = std::getenv("PYOCO_PLUGIN_PATH");
  return plugins::Catalog::discover(
      plugins::plugin_search_path({}, env == nullptr ? "" : env, plugins::install_plugin_dir()));
}

std::string describe_search_path(const std::vector<std::filesystem::path>& path) {
  std::string out = "looked in:";
  for (const auto& dir : path) {
    out += "\n  " + dir.string();
    std::error_code ec;
    if (std::filesystem::exists(dir, ec)) continue;
    out += ec && ec != std::errc::no_such_file_or_directory ? "  (" + ec.message() + ")"
                                                            : "  (does not exist)";
  }
  return out;
}

}  // namespace pyoco::cli
