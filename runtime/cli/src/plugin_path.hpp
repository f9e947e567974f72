// The --plugin-path option every command that needs plugins shares.
#pragma once

#include <pyoco/plugins/catalog.hpp>

#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace pyoco::cli {

class PluginPathOption {
 public:
  void attach(CLI::App* command);
  // --plugin-path dirs, then PYOCO_PLUGIN_PATH, then the install's plugins.
  // The first call warns on stderr about a --plugin-path that is no directory.
  std::vector<std::filesystem::path> search_path() const;
  plugins::Catalog catalog() const { return plugins::Catalog::discover(search_path()); }
  // The search path without the --plugin-path dirs: what `pyoco run` uses
  // when given none (PYOCO_PLUGIN_PATH, then the install's plugins).
  plugins::Catalog configured_catalog() const;

 private:
  std::vector<std::string> dirs_;
  mutable bool warned_ = false;  // about --plugin-path dirs that do not exist
};

// "Looked in: ..." lines for messages about a plugin that was not found.
std::string describe_search_path(const std::vector<std::filesystem::path>& path);

}  // namespace pyoco::cli
