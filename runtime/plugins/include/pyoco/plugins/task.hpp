// A task as the host holds it after its plugin registered it, and one call
// of it. Everything here is host-side C++; only this library talks abi.h.
#pragma once

#include <pyoco/abi.h>
#include <pyoco/core/artifact.hpp>
#include <pyoco/core/small_function.hpp>
#include <pyoco/core/value.hpp>
#include <pyoco/plugins/manifest.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::plugins {

enum class LogLevel { Debug = 10, Info = 20, Warn = 30, Error = 40 };

struct CallInfo {
  std::string_view run_id;
  std::string_view flow_name;
  std::string_view node_name;
  std::string_view task_name;
  std::uint32_t attempt = 1;
};

// What the engine provides to a call beyond its inputs. One per run.
class RunServices {
 public:
  virtual ~RunServices() = default;
  virtual void log(const CallInfo& call, LogLevel level, std::string_view message) = 0;
  // Saves an artifact of the run; throws std::runtime_error (core::ArtifactError
  // for a name the store refuses).
  virtual core::ArtifactRecord save_artifact(const CallInfo& call, std::string_view name,
                                             std::string_view bytes,
                                             std::string_view media_type) = 0;
  virtual core::Value scratch_get(std::string_view key) = 0;
  virtual void scratch_set(std::string_view key, core::Value value) = 0;

  // ABI 1.1. The defaults are what a host without them gives.
  // Compare-and-set: PYOCO_OK or PYOCO_ERR_CONFLICT; `current` gets the value now stored.
  virtual pyoco_status scratch_update(std::string_view key, const core::Value& expected,
                                      const core::Value& desired, core::Value& current) {
    (void)key, (void)expected, (void)desired, (void)current;
    return PYOCO_ERR_UNSUPPORTED;
  }
  // The attempt's deadline, CLOCK_MONOTONIC nanoseconds; 0 for none.
  virtual std::int64_t deadline_ns() { return 0; }
  // See host_api's context_on_cancel and host_timer; false: unsupported.
  virtual bool on_cancel(pyoco_callback_fn fn, void* user) {
    (void)fn, (void)user;
    return false;
  }
  virtual bool start_timer(std::uint64_t delay_ns, pyoco_callback_fn fn, void* user) {
    (void)delay_ns, (void)fn, (void)user;
    return false;
  }
  virtual void heartbeat(const CallInfo& call, double progress, std::string_view message) {
    (void)call, (void)progress, (void)message;
  }
  // An artifact of the run (ABI 1.1), nullopt when it has none by that name;
  // throws std::runtime_error.
  virtual std::optional<std::string> load_artifact(std::string_view name) {
    (void)name;
    throw std::runtime_error("this host cannot load artifacts");
  }
  // The call just completed (any thread), before its result is handed on.
  virtual void call_finished() {}
};

struct CallResult {
  bool ok = false;
  core::Value output;
  std::string error;
  bool permanent = false;  // PYOCO_ERR_PERMANENT: no retry can help
  bool cancelled = false;  // PYOCO_ERR_CANCELLED: the task stopped because it was asked to
};

// Where a call's result goes: called exactly once, from the thread that
// ends the call (a worker for `run`, any thread for an async call).
// By reference: the result is moved once, into wherever it is kept.
using CallDone = core::SmallFunction<void(CallResult&&)>;

// Whether a Call has ended (see Call::ended): an atomic flag that moves with
// its Call, which is moved only before its call begins (a Call returned by
// value from a helper).
class CallEnded {
 public:
  CallEnded() = default;
  CallEnded(CallEnded&& other) noexcept : ended_(other.load()) {}
  CallEnded& operator=(CallEnded&& other) noexcept {
    store(other.load());
    return *this;
  }
  bool load(std::memory_order order = std::memory_order_relaxed) const {
    return ended_.load(order);
  }
  void store(bool ended, std::memory_order order = std::memory_order_relaxed) {
    ended_.store(ended, order);
  }

 private:
  std::atomic<bool> ended_{false};
};

// One task call, host side: what its `pyoco_context*` (and, for an async
// call, its `pyoco_call*`) points at. One name in every layer: an attempt
// of a node (engine) makes one Call; a plugin sees it as pyoco::Context
// (SDK), an in-process task as pyoco::TaskCall; CallInfo is its facts.
struct Call {
  CallInfo info;
  core::Value params;
  const std::atomic<bool>* cancelled = nullptr;  // run cancelled or deadline passed
  RunServices* services = nullptr;

  // Filled during the call.
  CallDone done;                // an async call's result goes here (call_complete)
  std::uint64_t call_slot = 0;  // the async call's handle (see host_functions.cpp)
  core::ArenaPtr arena;         // made when the call first builds a value: see values()
  core::ArenaPtr late;          // values built after the call ended: see values()
  std::string error;
  std::uint32_t abi_minor = 0;        // of the task's plugin: what the host may answer
  std::string last_artifact_path;     // backs the name (or path, or reason) handed to the plugin
  std::vector<core::Value> borrowed;  // scratch values handed out, alive for the call
  // Set when the call has ended (finish_call), cleared when one begins. A
  // context function called after it, from anywhere but start() or a host
  // callback of the call, is a plugin's kept context: dropped with a warning.
  CallEnded ended;

  // The arena the call's values are built in; most calls of small tasks
  // build none, so it is made on first use. Once the call has ended its
  // arena is sealed (its output is being read elsewhere), but the rest of
  // start() and a callback the host runs for the call (a timer, a cancel
  // callback) may still build values until they return: those go to an
  // arena of their own, alive as long as this Call, never into the output.
  core::Arena& values() {
    if (!arena) arena = core::Arena::create();
    if (!arena->sealed()) return *arena;
    if (!late) late = core::Arena::create();
    return *late;
  }
};

// A registered task: its metadata (copied from the plugin) and callbacks.
class TaskDefinition {
 public:
  std::string plugin;  // plugin name
  std::string name;    // task name within the plugin
  std::string summary;
  std::string usage;
  std::vector<std::string> tags;
  std::vector<IoSpec> inputs;
  std::vector<IoSpec> outputs;

  std::uint32_t abi_minor = 0;  // the ABI minor its plugin was built against

  std::string qualified_name() const { return plugin + "/" + name; }

  // Callbacks (plugin-owned code and data).
  void* user_data = nullptr;
  pyoco_task_create_fn create = nullptr;
  pyoco_task_run_fn run = nullptr;
  pyoco_task_destroy_fn destroy = nullptr;
  pyoco_task_release_fn release = nullptr;
  pyoco_task_start_fn start = nullptr;  // ABI 1.1: async; preferred to `run`
};

// A task's per-node state: created on the first call, destroyed with the
// node (end of run). Calls on one instance never overlap.
class TaskInstance {
 public:
  explicit TaskInstance(const TaskDefinition& def) : def_(&def) {}
  ~TaskInstance();
  TaskInstance(const TaskInstance&) = delete;
  TaskInstance& operator=(const TaskInstance&) = delete;

  // Runs the task with `inputs` (an object) and waits for it. Never throws
  // for a task's own failure: the result says ok=false with the message.
  // An async task is waited for on this thread.
  CallResult call(Call& ctx, const core::Value& inputs);

  // Begins a call: a `run` task runs here and `done` is called before this
  // returns; an async task is started and `done` is called when it
  // completes, from whatever thread completes it. `ctx` must stay alive
  // until then.
  void begin(Call& ctx, const core::Value& inputs, CallDone done);

  const TaskDefinition& definition() const { return *def_; }

 private:
  const TaskDefinition* def_;
  void* state_ = nullptr;
  bool created_ = false;
};

// How many times a plugin completed a call that had already ended (each one
// refused and reported on stderr); for tests and diagnostics.
std::uint64_t refused_completions();
// How many context functions a plugin called after their call had ended
// (each one dropped; the first reported on stderr); for tests and diagnostics.
std::uint64_t calls_after_end();

// The task call whose plugin code this thread is running now (its create,
// run or start, or a callback the host makes for it), or null.
// Async-signal-safe: a program's fault handler may name the task that
// crashed it.
const CallInfo* call_on_this_thread() noexcept;

}  // namespace pyoco::plugins
