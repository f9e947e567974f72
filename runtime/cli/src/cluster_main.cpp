// `pyoco-cluster`: the cluster mode's commands, which `pyoco` hands off to
// (handoff.hpp). It presents itself as `pyoco`: users type `pyoco server`.
#include "app.hpp"
#include "command.hpp"
#include "handoff.hpp"

int main(int argc, char** argv) {
  using namespace pyoco::cli;
  CLI::App app{kAppDescription, "pyoco"};
  set_up_app(app);
  CommandTable table;
  add_plugin_distribution_commands(add_group(app, "plugins", kPluginsDescription), table);
  add_cluster_commands(add_group(app, "cluster", description_of("", "cluster")), table);
  add_server_command(app, table);
  add_worker_command(app, table);
  add_client_commands(add_group(app, "client", description_of("", "client")), table);
  add_keys_commands(add_group(app, "keys", description_of("", "keys")), table);
  return parse_and_run(app, table, argc, argv);
}
