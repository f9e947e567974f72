// Run events: the one source for every view of a run (trace, store,
// metrics, the cluster's event stream). The engine publishes them, in one
// order per run (`seq`), from the run's strand; listeners render or record
// them. RunEvent is the engine's view (valid during on_event); Event owns
// its strings and can outlive the call, be queued and be sent as JSON.
#pragma once

#include <pyoco/core/artifact.hpp>
#include <pyoco/core/states.hpp>
#include <pyoco/core/value.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::trace {

enum class EventKind {
  RunStart,       // run_id, flow, flow_file, params (the merged params, JSON), plugins
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

// A node the run knows before it runs: its name, its task, its record's
// place, and the planned nodes it waits for (their names, comma-separated;
// what a dashboard draws the graph from).
struct PlannedNode {
  std::string_view node;
  std::string_view task;
  std::uint32_t record = 0;
  std::string_view after;
};

enum class LogLevel { Debug = 10, Info = 20, Warn = 30, Error = 40 };

// Views into the run's own strings: valid during on_event only. `time` is
// the moment the record says (a node's start or end), so a listener that
// folds events into records agrees with the engine's own.
struct RunEvent {
  EventKind kind;
  std::uint64_t seq = 0;  // 1, 2, 3...: this event's place in its run's one order
  std::chrono::system_clock::time_point time;
  std::string_view run_id;
  std::string_view flow;
  std::string_view node;
  std::string_view task;     // "<plugin>/<task>"
  std::uint32_t record = 0;  // node events: the node's place in the run's task records
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
  // NodeDone: the whole output. A listener that keeps it copies the Value
  // (one reference), never the tree; serialising it is the listener's cost.
  const core::Value* value = nullptr;
  std::span<const core::ArtifactRecord> artifacts;
  std::span<const PlannedNode> planned;  // NodesPlanned
  std::string_view flow_file;            // RunStart: the flow's file, when it has one
  std::string_view params;               // RunStart: the run's params, a JSON object
  // RunStart: the params as a value (null when not given), their bytes as
  // they are: a Redactor masks secrets in it before the JSON text makes
  // the text valid UTF-8 (a secret with an invalid byte no longer matched).
  const core::Value* params_value = nullptr;
  std::string_view plugins;  // RunStart: the plugins its tasks came from, {"name": "version"}
};

// An event that owns what it says: what queues, histories and the network
// keep. view() gives the RunEvent listeners take.
struct Event {
  struct Planned {
    std::string node, task;
    std::uint32_t record = 0;
    std::string after;
  };
  EventKind kind = EventKind::RunStart;
  std::uint64_t seq = 0;
  std::chrono::system_clock::time_point time;
  std::string run_id, flow, node, task;
  std::uint32_t record = 0, attempt = 0, max_attempts = 0;
  double duration_ms = 0, delay_ms = 0, progress = -1;
  std::string message;
  LogLevel level = LogLevel::Info;
  core::RunStatus status = core::RunStatus::Pending;
  core::TaskState task_state = core::TaskState::Pending;
  std::string output;
  core::Value value;  // NodeDone: the whole output (null when it had none)
  std::vector<core::ArtifactRecord> artifacts;
  std::vector<Planned> planned;
  std::string flow_file, params, plugins;
  core::Value params_value;  // RunStart, when given

  static Event from(const RunEvent& e);
  // Valid while this Event lives; `planned_views` holds the planned nodes' views.
  RunEvent view(std::vector<PlannedNode>& planned_views) const;
};

// "run_start", "node_done", ...: the names the JSON trace and to_json use.
const char* to_string(EventKind kind);

// Every field the event has, for machines (the cluster's event stream):
// {"seq":..,"kind":"node_done","ts":"2026-...Z","run_id":..,...}. Fields
// that do not apply to the kind are left out.
boost::json::object to_json(const Event& event);
// The event back from that JSON (what a trace printed from the cluster's
// event stream needs: kind, ids, node, attempt, duration, status, message,
// level); nullopt for an unknown kind.
std::optional<Event> event_from_json(const boost::json::object& json);

class EventListener {
 public:
  virtual ~EventListener() = default;
  // Called from the run's strand — on the engine's control thread or on a
  // worker running it — one event at a time per run, in `seq` order. Must be
  // quick and must not block: a listener that does I/O sits behind an
  // EventQueue.
  virtual void on_event(const RunEvent& event) = 0;
  // Several events of one or more runs, in order: how an EventQueue hands
  // on what gathered. The default calls on_event for each; a listener that
  // writes overrides it to write once per batch rather than once per event.
  virtual void on_events(std::span<const RunEvent> events) {
    for (const RunEvent& e : events) on_event(e);
  }
  // Log text this listener holds and has not handed on yet, in bytes (an
  // EventQueue's backlog; each line counts kLogLineOverhead more): a run
  // drops log lines its tasks write while this and its own queue hold too
  // much. Any thread. Default: none.
  virtual std::size_t backlog_bytes() const { return 0; }
  static constexpr std::size_t kLogLineOverhead = 128;
};

// How the engine and an EventQueue call a listener: what it throws is
// caught and said on stderr (the first few times), and those events are
// not heard by it; the run and the other listeners go on. A listener
// that throws used to end the process (std::terminate).
void notify(EventListener& listener, const RunEvent& event) noexcept;
void notify(EventListener& listener, std::span<const RunEvent> events) noexcept;

}  // namespace pyoco::trace
