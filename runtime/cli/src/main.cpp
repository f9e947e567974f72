// `pyoco`: the local product. The cluster mode's commands are named in its
// help and handed off to `pyoco-cluster` (handoff.hpp).
#include "app.hpp"
#include "command.hpp"
#include "handoff.hpp"

int main(int argc, char** argv) {
  using namespace pyoco::cli;
  if (const HandedOffCommand* c = find_cluster_command(argc, argv)) {
    return hand_off_to_cluster_binary(*c, argv);
  }

  CLI::App app{kAppDescription, "pyoco"};
  set_up_app(app);
  CommandTable table;
  add_flow_commands(app, table);
  add_tasks_command(app, table);
  CLI::App* plugins = add_group(app, "plugins", kPluginsDescription);
  add_plugins_commands(plugins, table);
  add_plugin_pack_command(plugins, table);
  list_cluster_commands(*plugins, "plugins");
  add_runs_commands(add_group(app, "runs", "Inspect and control local runs (the run history)"),
                    table);
  list_cluster_commands(app, "");
  return parse_and_run(app, table, argc, argv);
}
