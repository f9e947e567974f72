// The catalog: every plugin on the search path, found by its manifest, and
// every task by its "<plugin>/<task>" name. Building it runs no plugin code.
#pragma once

#include <pyoco/plugins/manifest.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pyoco::plugins {

struct PluginEntry {
  Manifest manifest;
  // Set when a plugin of the same name came earlier on the search path:
  // that one wins, this one is listed but never loaded.
  std::optional<std::filesystem::path> shadowed_by;
};

struct TaskRef {
  const PluginEntry* plugin;
  const TaskManifest* task;
};

class Catalog {
 public:
  // Looks in each directory of `search_path`, in order: a directory holding
  // plugin.toml is a plugin; otherwise each of its subdirectories holding
  // one is. Missing directories are skipped; unreadable manifests are kept
  // as problems, not thrown.
  static Catalog discover(const std::vector<std::filesystem::path>& search_path);

  const std::vector<std::filesystem::path>& search_path() const { return search_path_; }
  // In search order, shadowed plugins included.
  const std::vector<PluginEntry>& plugins() const { return plugins_; }
  const std::vector<ManifestError>& problems() const { return problems_; }

  // The winning plugin of that name, or null.
  const PluginEntry* find_plugin(std::string_view name) const;
  // "<plugin>/<task>", or null when either part is unknown.
  std::optional<TaskRef> find_task(std::string_view qualified_name) const;

  Catalog(Catalog&&) = default;
  Catalog& operator=(Catalog&&) = default;

 private:
  Catalog() = default;
  void index();

  std::vector<std::filesystem::path> search_path_;
  std::vector<PluginEntry> plugins_;
  std::vector<ManifestError> problems_;
  std::unordered_map<std::string_view, std::size_t> by_name_;  // winners only
};

// Why no plugin provides `qualified_name` ("<plugin>/<task>"), as
// "; ..." to follow "which no plugin on the search path provides", when the
// catalog knows more: a shadowed plugin of that name that has the task, or
// a manifest in a directory of that name that was skipped or is refused.
// Empty when it knows nothing more.
std::string why_task_missing(const Catalog& catalog, std::string_view qualified_name);

// What is wrong with a flow's need of plugin `name` at `min_version` or
// newer (its `plugins:` entry), in one line; empty when the catalog meets it.
std::string unmet_requirement(const Catalog& catalog, const std::string& name,
                              const std::string& min_version);

}  // namespace pyoco::plugins
