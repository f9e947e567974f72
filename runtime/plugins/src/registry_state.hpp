// Internal: the registry a plugin fills during register_tasks.
#pragma once

#include <pyoco/plugins/task.hpp>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace pyoco::plugins {

struct RegistryState {
  std::string plugin_name;
  std::uint32_t abi_minor = 0;
  std::vector<TaskDefinition> tasks;
  std::unordered_set<std::string> names;  // of tasks: a duplicate found at once, not by a scan
  std::string error;                      // registry_set_error's, else the last refusal's
  std::string refused;                    // why the first task refused was (empty: none was)
};

}  // namespace pyoco::plugins
