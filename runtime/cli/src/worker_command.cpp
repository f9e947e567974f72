// `pyoco worker`: pulls runs for its tags from NATS and runs them.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/worker/worker.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app.hpp"
#include "command.hpp"
#include "exit_guard.hpp"
#include "handoff.hpp"
#include "nats_flags.hpp"
#include "plugin_path.hpp"
#include "worker_flags.hpp"

namespace pyoco::cli {

namespace {

struct WorkerArgs {
  NatsFlags nats;
  std::vector<std::string> tags{"default"};
  std::size_t slots = 1;
  unsigned jobs = 0;
  std::string worker_id;
  std::string flows;
  bool flows_only = false;
  double drain_timeout = 30;
  double progress_interval = 5;
  PluginPathOption path;
  std::string plugins_dir;
  std::string artifact_dir;
  double plugin_sync_interval = 30;
  bool no_plugin_sync = false;
};

// The worker's state home: $PYOCO_HOME, else $XDG_STATE_HOME/pyoco, else
// ~/.local/state/pyoco.
std::filesystem::path state_home() {
  if (const char* h = std::getenv("PYOCO_HOME"); h != nullptr && *h != '\0') return h;
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x != '\0') {
    return std::filesystem::path(x) / "pyoco";
  }
  const char* u = std::getenv("HOME");
  return std::filesystem::path(u != nullptr ? u : ".") / ".local" / "state" / "pyoco";
}

// Where the worker keeps the plugins it takes from the repository, when
// --plugins-dir does not say: <state home>/worker-plugins/<worker id>.
std::filesystem::path default_plugins_dir(std::string worker_id) {
  if (worker_id.empty()) worker_id = worker::default_worker_id();
  return state_home() / "worker-plugins" / worker_id;
}

// Where runs' artifacts (std/write_file) go: --artifact-dir, else
// PYOCO_ARTIFACT_DIR (as for `pyoco run`), else
// <state home>/worker-artifacts/<worker id>; absolute, so that a task's
// working directory does not move it.
std::filesystem::path artifact_dir(const WorkerArgs& a) {
  std::filesystem::path dir;
  if (!a.artifact_dir.empty()) {
    dir = a.artifact_dir;
  } else if (const char* e = std::getenv("PYOCO_ARTIFACT_DIR"); e != nullptr && *e != '\0') {
    dir = e;
  } else {
    dir = state_home() / "worker-artifacts" /
          (a.worker_id.empty() ? worker::default_worker_id() : a.worker_id);
  }
  return std::filesystem::absolute(dir).lexically_normal();
}

int run_worker(WorkerArgs& a) {
  try {
    cluster::configure_process_log_from_env();
  } catch (const std::invalid_argument& e) {
    std::cerr << "pyoco worker: " << e.what() << '\n';
    return kExitUsage;
  }
  if (a.worker_id.empty()) {
    if (const std::string why = default_worker_id_problem(); !why.empty()) {
      std::cerr << "pyoco worker: " << why << '\n';
      return kExitUsage;
    }
  }
  try {
    // Every setting is read first, into options; then the PYOCO_* variables
    // leave the environment, before NATS or the engine starts a thread, so
    // that no process a task starts inherits the NATS credentials. Nothing
    // reads them again: a reconnect uses the options.
    const cluster::ConnectOptions connect = a.nats.connect_options("pyoco worker");
    EngineOptions eo;
    eo.jobs = a.jobs;
    eo.plugin_search_path = a.path.search_path();
    worker::WorkerOptions wo;
    wo.worker_id = a.worker_id;
    wo.tags = a.tags;
    wo.slots = a.slots;
    wo.flows_dir = a.flows;
    wo.accept_sent_flows = !a.flows_only;
    wo.artifact_dir = artifact_dir(a);
    wo.env = worker::run_environment();
    wo.progress_interval =
        std::chrono::milliseconds(static_cast<std::int64_t>(a.progress_interval * 1000));
    if (!a.no_plugin_sync) {
      wo.plugins_dir = a.plugins_dir.empty() ? default_plugins_dir(a.worker_id)
                                             : std::filesystem::path(a.plugins_dir);
      wo.plugin_search_path = eo.plugin_search_path;
      // Lint is `pyoco plugins lint`, in the local half beside this one.
      wo.lint_command = {sibling_program("pyoco"), "plugins", "lint"};
      if (std::error_code ec; !std::filesystem::exists(wo.lint_command.front(), ec)) {
        std::cerr << "pyoco worker: warning: no " << wo.lint_command.front()
                  << " to lint pushed plugins with; every pushed plugin will be refused until "
                     "pyoco is installed beside pyoco-cluster (or give --no-plugin-sync)\n";
      }
      wo.plugin_sync_interval =
          std::chrono::milliseconds(static_cast<std::int64_t>(a.plugin_sync_interval * 1000));
    }
    worker::remove_settings_from_environment();
    // From here a SIGTERM drains, even one that comes before the worker is up.
    StopSignal stop;
    wo.on_id_lost = [&stop](const std::string&) { stop.request(); };
    // A wait for a held --worker-id ends at once, too.
    wo.stop_requested = [&stop] { return stop.requested(); };

    cluster::Connection nats(connect);
    Engine engine(eo);
    worker::Worker w(nats, engine, wo);
    // A plugin's exit() while runs go (in a task, or while it loads): their
    // runs fail for good, saying why, rather than each delivered again to
    // the next worker to end it too. Armed before the first run is pulled.
    ExitGuard exit_guard([&w](const std::string& how) {
      const std::string loading = plugins::plugin_being_loaded();
      const std::string what = (loading.empty() ? "a plugin" : "plugin " + loading) + " called " +
                               how + (loading.empty() ? "" : " while it loaded") + " in worker " +
                               w.worker_id();
      std::cerr << "pyoco worker: " << what
                << "; failing the runs it held (a plugin must not end the process: return an "
                   "error instead)\n";
      try {
        w.fail_running(what + ", ending it: the run cannot go on");
      } catch (...) {
        // Whatever it could not write is delivered again, as after a crash.
      }
      std::_Exit(kExitFailed);
    });
    w.start();
    say("pyoco worker ", w.worker_id(), ": pulling ", a.slots, " run", a.slots == 1 ? "" : "s",
        " at a time from ", nats.connected_url());
    // SIGINT/SIGTERM drain: no new runs, running ones may end within --drain-timeout.
    stop.wait();
    if (auto why = w.id_lost()) {
      // Its runs are handed back at once: another worker answers to its id.
      say("pyoco worker: ", *why);
      w.drain(std::chrono::milliseconds(0));
      return kExitWorkerIdLost;
    }
    say("pyoco worker: draining (up to ", a.drain_timeout, " s)");
    w.drain(std::chrono::milliseconds(static_cast<std::int64_t>(a.drain_timeout * 1000)));
    if (auto why = w.id_lost()) {
      say("pyoco worker: ", *why);  // found by its last record: not written
      return kExitWorkerIdLost;
    }
    return kExitOk;
  } catch (const cluster::WorkerIdWaitStopped& e) {
    // Stopped before it started: as an interrupted command, not a clean drain.
    say("pyoco worker: ", e.what());
    return kExitCancelled;
  } catch (const std::exception& e) {
    // NATS away or refusing, --plugins-dir unusable or another worker's.
    std::cerr << "pyoco worker: " << e.what() << '\n';
    return kExitUsage;
  }
}

}  // namespace

void add_worker_command(CLI::App& app, CommandTable& table) {
  CLI::App* cmd = app.add_subcommand("worker", description_of("", "worker"));
  auto a = std::make_shared<WorkerArgs>();
  a->nats.add_to(cmd);
  cmd->add_option("--tags", a->tags, "Pull runs of these tags (default: default)")
      ->delimiter(',')
      ->type_name("TAG[,TAG]");
  cmd->add_option("--slots", a->slots, "Runs at once (default 1)")->check(CLI::Range(1, 1024));
  cmd->add_option("-j,--jobs", a->jobs, "Task bodies at once, all runs together (default: cores)")
      ->check(jobs_option());
  cmd->add_option("--worker-id", a->worker_id,
                  "This worker's name: 1 to 128 letters, digits, '-', '_' and '.' (default: the "
                  "host name)")
      ->check(worker_id_option())
      ->type_name("ID");
  cmd->add_option("--flows", a->flows, "Where runs submitted by flow name are found (NAME.yaml)")
      ->check(flows_option())
      ->type_name("DIR");
  cmd->add_flag("--flows-only", a->flows_only,
                "Run only the flows of --flows: a flow sent whole (client submit-yaml) fails "
                "instead of running whatever tasks its sender chose");
  cmd->add_option("--drain-timeout", a->drain_timeout,
                  "On SIGTERM, seconds running runs may take to end before they are stopped "
                  "here and handed back to another worker, not cancelled (default 30; 0 to 3600)")
      ->check(seconds_between(0, 3600));
  cmd->add_option("--progress-interval", a->progress_interval,
                  "Seconds between a run's progress acks and record updates (default 5; well "
                  "under the consumer's 30 s AckWait)")
      ->check(seconds_between(0.05, 600));
  a->path.attach(cmd);
  cmd->add_option("--plugins-dir", a->plugins_dir,
                  "Where plugins taken from the cluster's repository are kept (default "
                  "$PYOCO_HOME/worker-plugins/<worker id>); they come before --plugin-path")
      ->type_name("DIR");
  cmd->add_option("--artifact-dir", a->artifact_dir,
                  "Where runs' artifacts (std/write_file) are kept, <DIR>/<run id>/<name> "
                  "(default $PYOCO_ARTIFACT_DIR, else $PYOCO_HOME/worker-artifacts/<worker id>)")
      ->type_name("DIR");
  cmd->add_option("--plugin-sync-interval", a->plugin_sync_interval,
                  "Most seconds between two looks at the plugin repository (default 30; a push "
                  "or yank is seen at once)")
      ->check(seconds_between(0.05, 3600));
  cmd->add_flag("--no-plugin-sync", a->no_plugin_sync,
                "Take no plugins from the cluster's repository: only --plugin-path and the "
                "install's");
  cmd->footer(
      "\nExit codes: 0 drained and stopped (SIGTERM, Ctrl+C); 1 a plugin called exit(): the "
      "runs it held are recorded FAILED; 2 usage, NATS unreachable at "
      "start, or its --worker-id or --plugins-dir a running worker's; 3 another worker took its "
      "--worker-id over while this one was silent (stopped, frozen, cut off): its runs were "
      "handed back; 130 stopped (SIGTERM, Ctrl+C) while it waited for its --worker-id to be "
      "free, before it started.");
  table.add(cmd, [a] { return run_worker(*a); });
}

}  // namespace pyoco::cli
