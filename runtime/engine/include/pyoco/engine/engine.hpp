// The engine: created once and reused. Each run's state machine lives on a
// strand of the engine's control thread; task bodies run on a pool of `jobs`
// worker threads. Control never waits for a body: deadlines and cancels act
// on time however busy the pool is (docs/architecture.md, "The run model").
//
//   pyoco::Engine engine;                     // jobs = hardware threads
//   pyoco::Run run = engine.start(flow, params);
//   run.wait();
//   run.status();                             // COMPLETED, FAILED, CANCELLED
//   run.tasks();                              // per-task records
#pragma once

#include <pyoco/core/artifact.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/states.hpp>
#include <pyoco/engine/flow.hpp>
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/trace/event.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pyoco {

using core::ArtifactRecord;

struct TaskRecord {
  std::string node;  // display name; loop iterations carry [i]
  std::string task;  // "<plugin>/<task>", or the kind of a control node
  core::TaskState state = core::TaskState::Pending;
  std::chrono::system_clock::time_point started, ended;  // zero when it never ran
  double duration_ms = 0;
  std::uint32_t attempts = 0;
  std::string error;
  std::string output_summary;  // JSON, cut at 200 characters
  std::vector<ArtifactRecord> artifacts;
  // The task's last heartbeat (ABI 1.1): progress 0..1, negative when it
  // gave none or never sent one; its message and time.
  double progress = -1;
  std::string heartbeat;
  std::chrono::system_clock::time_point heartbeat_at;
};

// What one run may grow to, so that a loop of a billion iterations (or
// loops inside loops over a long list) fails its loop node instead of
// filling memory and the run history.
struct RunLimits {
  // Task records of the whole run: every node, loop iteration and switch
  // case that starts. An iteration or case that would pass it fails its
  // loop or switch node; a flow of more nodes than this is refused by
  // Engine::start (std::invalid_argument). `pyoco run` reads PYOCO_MAX_TASKS.
  std::size_t max_tasks = 500'000;
};

// What a run needs besides its flow. The engine reads no environment
// variables: whatever a run may see of the process comes in here.
struct RunOptions {
  core::Value params;                              // merged over the flow's defaults
  std::shared_ptr<trace::EventListener> listener;  // null: no events
  // Where the run's artifacts go; null: a LocalArtifactStore in
  // .pyoco/artifacts (relative to the working directory).
  std::shared_ptr<core::ArtifactStore> artifacts;
  std::map<std::string, TaskFn> local_tasks;  // in-process tasks by `use`
  // The run's id; empty: a new random UUID. 1-128 characters of
  // [A-Za-z0-9._-], so it is safe in paths, URLs and NATS subjects.
  std::string run_id;
  // What `$env.NAME` reads; empty: nothing. process_environment() gives
  // this process's, as `pyoco run` passes it.
  std::map<std::string, std::string, std::less<>> env;
  RunLimits limits;
  // Asked once, by Engine::start on its caller's thread, after the flow's
  // plugins are loaded and before any task is handed to a worker: true
  // starts the run cancelled (RunStart, then its end CANCELLED, nothing
  // run). For a cancel requested while the plugins loaded: a cancel() after
  // start() returns may come after a short run has ended.
  std::function<bool()> cancelled_at_start;
  // Asked on the run's strand before each task or control node starts (a
  // retry too); it must not block. False holds the node, asked again every
  // 50 ms until true or the run is cancelled: for a caller that may have
  // lost the run to another process (a cluster worker past its lease).
  std::function<bool()> may_start;
};

// This process's environment variables, for RunOptions::env.
std::map<std::string, std::string, std::less<>> process_environment();

// Throws std::invalid_argument, saying why, for a run id Engine::start
// would refuse (1-128 of A-Z a-z 0-9 . _ -, not "." or "..").
void check_run_id(const std::string& id);

class RunState;

// A handle on a run; copies share it.
class Run {
 public:
  const std::string& id() const;
  const std::string& flow_name() const;
  core::RunStatus status() const;
  // A snapshot of every task's record, in the order they became known.
  std::vector<TaskRecord> tasks() const;
  // Nothing more starts: pending tasks, and running ones, become CANCELLED at
  // once and the run ends CANCELLED without waiting for bodies. A running
  // body sees is_cancelled(); whatever it returns later is ignored.
  void cancel();
  void wait() const;
  bool wait_for(std::chrono::milliseconds timeout) const;
  // A finished node's output (top level), or null.
  core::Value output(std::string_view node) const;
  // The run's params after outputs: were applied.
  core::Value params() const;
  // The plugins its tasks came from, name -> version, as bound at start:
  // a run keeps them whatever set_plugin_search_path does later.
  const std::map<std::string, std::string>& plugins() const;

 private:
  friend class Engine;
  explicit Run(std::shared_ptr<RunState> s) : state_(std::move(s)) {}
  std::shared_ptr<RunState> state_;
};

struct EngineOptions {
  unsigned jobs = 0;  // 0: hardware threads
  // Where plugin tasks are looked up; empty: the install's plugin directory
  // only (`pyoco run` adds --plugin-path and PYOCO_PLUGIN_PATH in front).
  std::vector<std::filesystem::path> plugin_search_path;
};

class Engine {
 public:
  explicit Engine(EngineOptions options = {});
  // Cancels runs still going and returns within about a second: a worker
  // thread still inside a task body then is detached; it exits when the body
  // returns (the body's result is dropped). Plugins stay loaded, so its code
  // stays valid; the process may also simply exit.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Binds every task (loading the plugins it needs) and starts the run.
  // Throws core::FlowError or plugins::LoadError when the flow cannot run
  // (a task no plugin provides, a plugin older than the flow's `plugins:`),
  // std::invalid_argument for a run id that is not allowed, params that
  // are not an object, or a flow of more nodes than RunLimits::max_tasks.
  Run start(const Flow& flow, core::Value params = {}, RunOptions options = {});
  Run start(std::shared_ptr<const core::CompiledFlow> flow, RunOptions options);

  // The plugins new runs bind against: the catalog of the search path as
  // last set. A snapshot: it stays valid while held, whatever is set later.
  std::shared_ptr<const plugins::Catalog> catalog() const;
  // Replaces the search path (and catalog) new runs bind against; runs
  // already started keep the tasks they bound (plugins are never unloaded,
  // so two versions of a plugin from two directories coexist). Thread-safe.
  void set_plugin_search_path(std::vector<std::filesystem::path> search_path);
  unsigned jobs() const;
  // Of those jobs, the threads still inside a task body whose run gave it
  // up (the run cancelled or stopped, the task past its deadline: a body
  // that did not return when told to stop). No other body can have them
  // until it returns; at jobs(), nothing new runs here (a cluster worker
  // then takes no run). Any thread.
  unsigned abandoned_bodies() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A fresh random (v4) UUID.
std::string new_run_id();

}  // namespace pyoco
