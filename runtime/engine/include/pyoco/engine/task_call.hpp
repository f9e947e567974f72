// What an in-process C++ task (registered with Flow::task(name, fn)) sees.
// Plugin tasks see the same through the SDK's pyoco::Context.
#pragma once

#include <pyoco/core/value.hpp>
#include <pyoco/plugins/task.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace pyoco {

class TaskCall {
 public:
  explicit TaskCall(plugins::Call& call) : call_(call) {}

  // Counted handles, safe to keep after the call.
  core::Value params() const {
    const core::ValueNode* n = call_.params.node();
    return n == nullptr ? core::Value() : core::Value(core::ArenaPtr(n->owner), n);
  }
  core::Value param(std::string_view key) const { return params().find(key); }
  void log(std::string_view message, plugins::LogLevel level = plugins::LogLevel::Info);
  // True once the run is cancelled or this task's deadline passed.
  bool is_cancelled() const;
  // Says how far the task is (0..1; negative: unknown): the JSON trace, the
  // task's record and the history show it.
  void heartbeat(double progress, std::string_view message = {});
  // Saves an artifact of the run in the run's ArtifactStore (RunOptions::
  // artifacts) and says what was stored; a name saved again is replaced.
  // Throws core::ArtifactError for a name no store allows.
  core::ArtifactRecord save_artifact(std::string_view name, std::string_view bytes,
                                     std::string_view media_type = "application/octet-stream");
  core::ArtifactRecord save_artifact(std::string_view name, const core::Value& value);
  // The bytes of an artifact this run saved; nullopt when it has none.
  std::optional<std::string> load_artifact(std::string_view name);
  core::Value scratch(std::string_view key) const;
  void set_scratch(std::string_view key, const core::Value& value);

  std::string_view run_id() const { return call_.info.run_id; }
  std::string_view node() const { return call_.info.node_name; }
  std::uint32_t attempt() const { return call_.info.attempt; }

  // Where to build result values: they live as long as the result does.
  core::Arena& arena() { return call_.values(); }
  core::Value wrap(const core::ValueNode* node) const {
    return node == nullptr ? core::Value() : core::Value(core::ArenaPtr(node->owner), node);
  }

 private:
  plugins::Call& call_;
};

// An in-process task: inputs in, output out; throw to fail.
using TaskFn = std::function<core::Value(TaskCall& call, const core::Value& inputs)>;

}  // namespace pyoco
