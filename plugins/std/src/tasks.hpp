// The std plugin's task groups, one file each.
#pragma once

#include <pyoco/sdk.hpp>

namespace pyoco_std {

void register_basic_tasks(pyoco::Registry& registry);  // echo, sleep, fail, json_get
void register_shell_task(pyoco::Registry& registry);   // shell
void register_file_tasks(pyoco::Registry& registry);   // write_file, read_file
void register_http_task(pyoco::Registry& registry);    // http_get

}  // namespace pyoco_std
