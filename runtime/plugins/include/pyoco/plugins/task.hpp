// A task as the host holds it after its plugin registered it, and one call
// of it. Everything here is host-side C++; only this library talks abi.h.
#pragma once

#include <pyoco/abi.h>
#include <pyoco/core/value.hpp>
#include <pyoco/plugins/manifest.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
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
  // Writes an artifact and returns its path; throws std::runtime_error.
  virtual std::string save_artifact(const CallInfo& call, std::string_view name,
                                    std::string_view bytes, std::string_view media_type) = 0;
  virtual core::Value scratch_get(std::string_view key) = 0;
  virtual void scratch_set(std::string_view key, core::Value value) = 0;
};

// The host side of one `pyoco_context`: everything a single call sees.
struct CallContext {
  CallInfo info;
  core::Value params;
  const std::atomic<bool>* cancelled = nullptr;  // run cancelled or deadline passed
  RunServices* services = nullptr;

  // Filled during the call.
  core::ArenaPtr arena;
  std::string error;
  std::string last_artifact_path;     // backs the path handed to the plugin
  std::vector<core::Value> borrowed;  // scratch values handed out, alive for the call
};

struct TaskCallResult {
  bool ok = false;
  core::Value output;
  std::string error;
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

  std::string qualified_name() const { return plugin + "/" + name; }

  // Callbacks (plugin-owned code and data).
  void* user_data = nullptr;
  pyoco_task_create_fn create = nullptr;
  pyoco_task_run_fn run = nullptr;
  pyoco_task_destroy_fn destroy = nullptr;
  pyoco_task_release_fn release = nullptr;
};

// A task's per-node state: created on the first call, destroyed with the
// node (end of run). Calls on one instance never overlap.
class TaskInstance {
 public:
  explicit TaskInstance(const TaskDefinition& def) : def_(&def) {}
  ~TaskInstance();
  TaskInstance(const TaskInstance&) = delete;
  TaskInstance& operator=(const TaskInstance&) = delete;

  // Runs the task with `inputs` (an object). Never throws for a task's own
  // failure: the result says ok=false with the task's message.
  TaskCallResult call(CallContext& ctx, const core::Value& inputs);

  const TaskDefinition& definition() const { return *def_; }

 private:
  const TaskDefinition* def_;
  void* state_ = nullptr;
  bool created_ = false;
};

}  // namespace pyoco::plugins
