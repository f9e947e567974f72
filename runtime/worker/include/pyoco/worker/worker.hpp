// A worker of cluster mode: pulls runs for its tags from NATS, runs up to
// `slots` of them at once on one Engine, and keeps each run's record as the
// run protocol says (docs/cluster.md): claim by CAS, progress acks and
// snapshot merges on time whatever the tasks do, the terminal write before
// the ack, a cancel acted on at once. Its NATS calls run on threads of its
// own, never on an engine strand.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/engine/engine.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::worker {

// A worker's id when none is given: this host's name ("worker" without one).
std::string default_worker_id();

// Why `id` cannot name a worker, or "" when it can: 1 to 128 letters,
// digits, '-', '_' and '.' (not first, last or twice in a row). It is the key of the worker's
// record in NATS and names its directories (plugins, artifacts).
std::string worker_id_problem(std::string_view id);

struct WorkerOptions {
  std::string worker_id;  // empty: the host name
  std::vector<std::string> tags{"default"};
  std::size_t slots = 1;            // runs at once
  std::filesystem::path flows_dir;  // where a run submitted by flow name is found
  // False: a flow sent whole (POST /runs/yaml) is refused, failing its run:
  // only the flows of `flows_dir` run here, not whatever a caller writes.
  bool accept_sent_flows = true;
  // Where runs' artifacts go (<dir>/<run id>/<name>); empty: the engine's
  // default, .pyoco/artifacts of the working directory.
  std::filesystem::path artifact_dir;
  std::chrono::milliseconds progress_interval{std::chrono::seconds(5)};  // InProgress, merges
  std::chrono::milliseconds fetch_expiry{std::chrono::seconds(5)};       // one long poll
  // What `$env.NAME` reads in runs: run_environment(), not the whole of
  // the process's, which holds this worker's own secrets.
  std::map<std::string, std::string, std::less<>> env;

  // Plugins from the cluster's repository (docs/cluster.md, "Plugins from
  // the repository") are kept here, this worker's alone; empty: none, the
  // engine's plugins only.
  std::filesystem::path plugins_dir;
  // The worker's own search path (--plugin-path, PYOCO_PLUGIN_PATH, the
  // install's), after the repository's plugins: what the engine was made with.
  std::vector<std::filesystem::path> plugin_search_path;
  // At most this long between two looks at the repository (a push or yank
  // is seen at once through a watch; this is for when the watch is away).
  std::chrono::milliseconds plugin_sync_interval{std::chrono::seconds(30)};
  // How a package is linted before use: `pyoco plugins lint`, to which its
  // directory and --json are appended. Empty: this process's own binary.
  std::vector<std::string> lint_command;

  // Called once, from a worker thread, when a beat finds this worker's id
  // taken over by another instance (it was silent past the 15 s a claim
  // waits: stopped, frozen, cut off), with a line saying so. The worker has
  // stopped taking runs; its owner should drain(0) it and end the process
  // (the `pyoco worker` and `pyoco server` commands exit 3).
  std::function<void(const std::string&)> on_id_lost;
  // Asked, a few times a second, while start() waits for its worker id to
  // be free (a holder's record watched for up to 30 min): true (a Ctrl+C,
  // a SIGTERM) ends the wait, and start() throws
  // cluster::WorkerIdWaitStopped naming the holder. Empty: never.
  std::function<bool()> stop_requested;
};

// The environment runs may read: this process's without the PYOCO_*
// settings (NATS credentials, the auth pepper, webhook secrets), which a
// caller could otherwise read back through a run's output.
std::map<std::string, std::string, std::less<>> run_environment();

// Removes every PYOCO_* variable from this process's environment, and
// blanks what /proc/<pid>/environ showed of them, so that no process
// started here (a std/shell task's, any plugin's) inherits or reads the
// settings: run_environment() hides them from `$env`, this from children,
// which get `environ` whole. All PYOCO_* go, not a list of the secret ones:
// a secret setting added later is hidden without anyone remembering to, and
// no task is documented to read one. Call it once every setting has been
// read (after it, none can be) and before any thread starts (NATS, the
// engine, HTTP): unsetenv is not thread-safe.
void remove_settings_from_environment();

class Worker {
 public:
  // The resources must exist (`pyoco cluster init`); throws cluster::NatsError.
  Worker(cluster::Connection& nats, Engine& engine, WorkerOptions options);
  ~Worker();  // drain(0): stops at once, cancelling what runs (its jobs are redelivered)
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  // Stops fetching, lets running runs end for up to `grace`, then cancels
  // the rest without acking them (NATS redelivers them to another worker).
  void drain(std::chrono::milliseconds grace);

  // The process is ending under its runs (a plugin called exit()): each
  // run it holds is recorded FAILED with `reason` and its job acked,
  // not left to NATS to deliver again to the next worker, which the same
  // plugin would end too. Nothing more is claimed. For an exit handler: it
  // waits for NATS (its request timeouts), never for the engine.
  void fail_running(const std::string& reason);

  std::size_t running() const;
  const std::string& worker_id() const;
  // Why this worker stopped, when another instance took its id over.
  std::optional<std::string> id_lost() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace pyoco::worker
