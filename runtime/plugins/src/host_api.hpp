// Internal: the registry a plugin fills during register_tasks.
#pragma once

#include <pyoco/plugins/task.hpp>

#include <string>
#include <vector>

namespace pyoco::plugins {

struct RegistryState {
  std::string plugin_name;
  std::vector<TaskDefinition> tasks;
  std::string error;
};

}  // namespace pyoco::plugins
