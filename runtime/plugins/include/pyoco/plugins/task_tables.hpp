// The [[tasks]] tables of plugin.toml have one source: what the library
// registers. `pyoco plugins manifest` (run by pyoco_add_plugin after each
// link) writes them from the library; lint (PL028, PL029, PL034) and the
// loader compare a manifest against its library and refuse any difference.
#pragma once

#include <pyoco/plugins/manifest.hpp>
#include <pyoco/plugins/task.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace pyoco::plugins {

// How a manifest's [[tasks]] differ from what its library registers.
struct TaskMismatch {
  std::vector<std::string> undeclared;    // registered, not in plugin.toml
  std::vector<std::string> unregistered;  // in plugin.toml, never registered
  // One line per task declared and registered but described differently,
  // e.g. "task 'greet': input 'who' type: "string" in plugin.toml, "int" in
  // the library".
  std::vector<std::string> differing;

  bool empty() const { return undeclared.empty() && unregistered.empty() && differing.empty(); }
};

TaskMismatch compare_tasks(const Manifest& manifest, const std::vector<TaskDefinition>& registered);

// TOML [[tasks]] tables describing `tasks`, in registration order. Throws
// std::invalid_argument for text that is not UTF-8 (TOML cannot hold it).
std::string task_tables(const std::vector<TaskDefinition>& tasks);

// The plugin.toml a build installs: `source` (a manifest without [[tasks]])
// followed by the [[tasks]] tables of what `library` registers. Loads the
// library into this process, as a run would: give it a child process.
// Throws ManifestError (the source manifest, or a [[tasks]] table in it)
// and LoadError (the library).
std::string built_manifest(const std::filesystem::path& source,
                           const std::filesystem::path& library);

}  // namespace pyoco::plugins
