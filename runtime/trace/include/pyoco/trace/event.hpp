// Run events: the one source for every view of a run (trace, store,
// metrics). The engine publishes them; listeners render or record them.
#pragma once

#include <pyoco/core/artifact.hpp>
#include <pyoco/core/states.hpp>

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

namespace pyoco::trace {

enum class EventKind {
  RunStart,       // run_id, flow
  NodeStart,      // node, attempt
  NodeDone,       // node, attempt, duration_ms, output, artifacts
  NodeError,      // node, attempt, duration_ms, message (the final failure), artifacts
  NodeRetry,      // node, attempt (the next one), max_attempts, delay_ms, message
  NodeSkipped,    // node, message (why)
  NodeCancelled,  // node, attempt, duration_ms (when it had started), message (why)
  Log,            // node, level, message (from ctx.log)
  RunCancelling,  // flow
  RunEnd,         // flow, status, message (failed nodes when FAILED)
  NodesPlanned,   // planned: nodes the run now knows and has not started (the
                  // graph at run start, a loop iteration's or a case's body
                  // as it starts); no trace line shows it
  Heartbeat,      // node, attempt, progress (0..1, negative: unknown), message
                  // (ABI 1.1 context_heartbeat); only the JSON trace shows it
};

// A node the run knows before it runs: its name, its task, its record's place.
struct PlannedNode {
  std::string_view node;
  std::string_view task;
  std::uint32_t seq = 0;
};

enum class LogLevel { Debug = 10, Info = 20, Warn = 30, Error = 40 };

// Views into the run's own strings: valid during on_event only. `time` is
// the moment the record says (a node's start or end), so a listener that
// folds events into records agrees with the engine's own.
struct RunEvent {
  EventKind kind;
  std::chrono::system_clock::time_point time;
  std::string_view run_id;
  std::string_view flow;
  std::string_view node;
  std::string_view task;  // "<plugin>/<task>"
  std::uint32_t seq = 0;  // node events: the node's place in the run's task records
  std::uint32_t attempt = 0;
  std::uint32_t max_attempts = 0;
  double duration_ms = 0;
  double delay_ms = 0;
  double progress = -1;  // Heartbeat
  std::string_view message;
  LogLevel level = LogLevel::Info;
  core::RunStatus status = core::RunStatus::Pending;
  core::TaskState task_state = core::TaskState::Pending;
  // Node end events: the output summary (JSON, cut at 200 characters) and
  // what the task saved.
  std::string_view output;
  std::span<const core::ArtifactRecord> artifacts;
  std::span<const PlannedNode> planned;  // NodesPlanned
};

class EventListener {
 public:
  virtual ~EventListener() = default;
  // Called from the run's strand, and from task threads for Log events.
  // Must be thread-safe and quick.
  virtual void on_event(const RunEvent& event) = 0;
};

}  // namespace pyoco::trace
