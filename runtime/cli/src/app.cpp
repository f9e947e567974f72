#include "app.hpp"

#include <pyoco/runner/interrupts.hpp>

#include <pyoco/version.h>
#include <pyoco/plugins/host_abi.hpp>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <string>

#include "command.hpp"

namespace pyoco::cli {
namespace {

std::string version_text() {
  return std::string("pyoco ") + PYOCO_VERSION_STRING + "\nplugin ABI " +
         plugins::to_string(plugins::host_abi_version());
}

constexpr const char* kFooter = R"(
Examples:
  pyoco run examples/hello/flow.yaml       run a flow and watch its trace
  pyoco check flow.yaml                    validate a flow without running it
  pyoco plugins list                       show the plugins pyoco can find
  pyoco plugins new acme                   start a plugin of your own
  pyoco server --with-nats --with-worker   cluster mode on one machine

Exit codes: 0 ok, 1 run failed, 2 usage or flow error, 130 cancelled.
`pyoco COMMAND --help` tells more about each command.)";

// The most deeply selected subcommand.
CLI::App* selected_leaf(CLI::App& app) {
  CLI::App* current = &app;
  for (;;) {
    std::vector<CLI::App*> chosen = current->get_subcommands();
    if (chosen.empty()) return current;
    current = chosen.front();
  }
}

}  // namespace

void wait_for_stop_signal() {
  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
  runner::InterruptWatcher interrupts({.cancel =
                                           [&] {
                                             std::lock_guard lock(m);
                                             stop = true;
                                             cv.notify_all();
                                           },
                                       .exit_now = [] { std::_Exit(kExitCancelled); },
                                       .check_now = [] {}});
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return stop; });
}

int run(int argc, char** argv) {
  CLI::App app{"pyoco: a small, fast workflow engine whose tasks come from plugins", "pyoco"};
  app.set_version_flag("--version", version_text(), "Print the version and plugin ABI version");
  app.require_subcommand(0, 1);

  CommandTable table;
  add_flow_commands(app, table);
  add_tasks_command(app, table);

  CLI::App* plugins = app.add_subcommand("plugins", "See, check and create plugins");
  plugins->require_subcommand(0, 1);
  add_plugins_commands(plugins, table);
  add_plugin_distribution_commands(plugins, table);

  CLI::App* runs = app.add_subcommand("runs", "Inspect and control local runs (the run history)");
  runs->require_subcommand(0, 1);
  add_runs_commands(runs, table);

  CLI::App* cluster_cmd =
      app.add_subcommand("cluster", "Create and inspect the NATS resources of cluster mode");
  cluster_cmd->require_subcommand(0, 1);
  add_cluster_commands(cluster_cmd, table);

  add_server_command(app, table);
  add_worker_command(app, table);
  CLI::App* client =
      app.add_subcommand("client", "Submit, follow and cancel runs through a gateway");
  client->require_subcommand(0, 1);
  add_client_commands(client, table);
  CLI::App* keys =
      app.add_subcommand("keys", "Make, list, revoke and import the gateway's API keys");
  keys->require_subcommand(0, 1);
  add_keys_commands(keys, table);

  // Last: CLI11 copies a footer into subcommands added after it.
  app.footer(kFooter);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, version or the error
    return code == 0 ? kExitOk : kExitUsage;
  }

  CLI::App* leaf = selected_leaf(app);
  if (const std::function<int()>* action = table.find(leaf)) return (*action)();
  // A command group (or nothing) was named without a command: teach.
  std::cerr << leaf->help();
  return kExitUsage;
}

}  // namespace pyoco::cli
