// What a run offers its calls from any thread: log lines and heartbeats
// (handed to the run's strand) and the run's scratch.
#include <pyoco/core/text.hpp>

#include <mutex>

#include "object_value.hpp"
#include "run_state.hpp"

namespace pyoco {

// Log lines come from task threads; they join the run's other events on its
// strand, so every view sees one order. A line written after its task was
// abandoned (deadline, cancel) is still recorded while the run lasts; one
// written after the run's end is dropped.
namespace {

// The most of one log line a run carries, note included (64 KiB): a task
// logging lines of megabytes made every copy and every sink pay for them
// (gigabytes held, other tasks' deadlines late). Cut here, a line is kept
// whole by the history (1 MiB of log a task) and by the cluster's events.
constexpr std::size_t kMaxLogLine = std::size_t{64} << 10;

// The line cut to fit kMaxLogLine with what says so, at a character's start.
std::string cut_log_line(std::string_view message) {
  const std::string note = " ... (cut: the line was " + std::to_string(message.size()) +
                           " bytes, more than the 64 KiB a log line may hold)";
  return std::string(core::utf8_prefix(message, kMaxLogLine - note.size())) + note;
}

}  // namespace

void RunState::emit_log(const plugins::CallInfo& call, plugins::LogLevel level,
                        std::string_view message) {
  if (listener_ == nullptr) return;
  std::string cut;
  if (message.size() > kMaxLogLine) message = cut = cut_log_line(message);
  auto emit_now = [this, call, level](std::string_view text) {
    if (core::is_terminal(status())) return;
    trace::RunEvent e{};
    e.kind = trace::EventKind::Log;
    e.time = clock_.wall();
    e.run_id = id_;
    e.flow = flow_name();
    e.node = call.node_name;
    e.task = call.task_name;
    e.attempt = call.attempt;
    e.status = status();
    e.level = static_cast<trace::LogLevel>(static_cast<int>(level));
    e.message = text;
    publish(e);
  };
  if (serial_.running_in_this_thread()) {
    emit_now(message);
  } else {
    on_strand(
        [emit_now, text = cut.empty() ? std::string(message) : std::move(cut)] { emit_now(text); });
  }
}

core::Value RunState::scratch_get(std::string_view key) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  return it == scratch_.end() ? core::Value() : it->second;
}

std::optional<core::Value> RunState::scratch_find(std::string_view key) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  if (it == scratch_.end() || it->second.node() == nullptr) return std::nullopt;
  return it->second;
}

core::Value RunState::scratch_object() {
  std::vector<std::pair<std::string, core::Value>> members;
  {
    std::lock_guard<std::mutex> lock(scratch_mutex_);
    for (const auto& [k, v] : scratch_) {
      if (v.node() != nullptr) members.emplace_back(k, v);
    }
  }
  return make_object(members);
}

void RunState::scratch_modify(std::string_view key,
                              const std::function<core::Value(core::Value)>& change) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  if (it == scratch_.end()) it = scratch_.emplace(std::string(key), core::Value()).first;
  it->second = change(it->second);
}

void RunState::scratch_set(std::string_view key, core::Value value) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  scratch_[std::string(key)] = std::move(value);
}

pyoco_status RunState::scratch_update(std::string_view key, const core::Value& expected,
                                      const core::Value& desired, core::Value& current) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  const bool unset = it == scratch_.end() || it->second.node() == nullptr;
  const bool matches = expected.node() == nullptr ? unset : !unset && it->second == expected;
  if (!matches) {
    current = unset ? core::Value() : it->second;
    return PYOCO_ERR_CONFLICT;
  }
  if (it == scratch_.end()) {
    it = scratch_.emplace(std::string(key), desired).first;
  } else {
    it->second = desired;
  }
  current = desired;
  return PYOCO_OK;
}

void RunState::emit_heartbeat(const plugins::CallInfo& call, std::size_t record, double progress,
                              std::string_view message) {
  // 0..1, or unknown: a plugin's 1/0 (inf) or 0/0 (NaN) must not reach the
  // trace and the history as numbers JSON cannot hold.
  if (!(progress >= 0)) {
    progress = -1;
  } else if (progress > 1) {
    progress = 1;
  }
  on_strand([this, call, record, progress, text = std::string(message)] {
    if (core::is_terminal(status())) return;
    Record::Extra& r = records_[record].more();
    r.progress = progress;
    r.heartbeat = text;
    r.heartbeat_at = clock_.wall();
    if (listener_ == nullptr) return;
    trace::RunEvent e{};
    e.kind = trace::EventKind::Heartbeat;
    e.time = r.heartbeat_at;
    e.run_id = id_;
    e.flow = flow_name();
    e.node = call.node_name;
    e.task = call.task_name;
    e.record = static_cast<std::uint32_t>(record);
    e.attempt = call.attempt;
    e.status = status();
    e.progress = progress;
    e.message = text;
    publish(e);
  });
}

}  // namespace pyoco
