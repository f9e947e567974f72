#include "tasks.hpp"

void register_tasks(pyoco::Registry& registry) {
  pyoco_std::register_basic_tasks(registry);
  pyoco_std::register_shell_task(registry);
  pyoco_std::register_file_tasks(registry);
  pyoco_std::register_http_task(registry);
}
PYOCO_PLUGIN(register_tasks)
