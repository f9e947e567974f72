// What a run offers its calls from any thread: log lines and heartbeats
// (handed to the run's strand) and the run's scratch.
#include <pyoco/core/text.hpp>

#include <algorithm>
#include <mutex>
#include <thread>

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
// Log lines other threads queue for the strand, with those the run's
// listener still holds (an EventQueue's backlog), at most (4 MiB): past it
// a line waits for room, or is dropped when nothing moves for kLogStuck
// (reserve_log_bytes), and the strand says how many were. A task that
// logged megabyte lines in a loop held gigabytes (an outside tester).
constexpr std::size_t kLogBytesWaiting = std::size_t{4} << 20;
constexpr std::chrono::seconds kLogStuck{1};
// A heartbeat's message, at most (4 KiB, note included): one of 20 MB went
// whole into the trace, the history and `runs show --json`.
constexpr std::size_t kMaxHeartbeat = std::size_t{4} << 10;
// One heartbeat event a task in this long, at most: the latest, and the
// last one before the task ends (flush_heartbeat). Its record always holds
// the latest.
constexpr std::chrono::milliseconds kBeatEvery{50};

// `text` cut to fit `limit` with what says so, at a character's start.
// "... (cut: the line was N bytes, more than the 64 KiB a log line may hold)"
std::string cut_text(std::string_view text, std::size_t limit, std::string_view subject,
                     std::string_view holder) {
  const std::string note = " ... (cut: the " + std::string(subject) + " was " +
                           std::to_string(text.size()) + " bytes, more than the " +
                           std::to_string(limit >> 10) + " KiB " + std::string(holder) +
                           " may hold)";
  return std::string(core::utf8_prefix(text, limit - note.size())) + note;
}

}  // namespace

// Room for a line of `bytes` among the lines waiting (kLogBytesWaiting).
// A thread that may wait (a task's body, a thread of the plugin's: never
// the engine's control, which is what it would wait for) waits while what
// waits goes down: a task logging faster than the run's trace and history
// take it is slowed to their pace, and loses nothing. Only when nothing
// moved for kLogStuck (a sink stuck on its output, a listener that holds
// the run), or the run ended, is the line dropped, and the lines after it
// too, at once, until there is room again. Something moved when what waits
// went lower than this thread saw it, or another line got room meanwhile:
// with several threads logging, room freed goes to whichever asks first,
// and what waits may never go lower while the lines keep moving.
bool RunState::reserve_log_bytes(std::size_t bytes) {
  auto waiting = [this] { return log_bytes_waiting_.load() + listener_->backlog_bytes(); };
  auto fits = [&] {
    if (log_bytes_waiting_.fetch_add(bytes) + bytes + listener_->backlog_bytes() <=
        kLogBytesWaiting) {
      log_lines_given_room_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    log_bytes_waiting_.fetch_sub(bytes);
    return false;
  };
  if (fits()) {
    log_stuck_.store(false);
    return true;
  }
  if (log_stuck_.load() || Serial::inside_any() || !Executors::may_wait_for_control()) {
    return false;
  }
  std::size_t last = waiting();
  std::uint64_t given = log_lines_given_room_.load(std::memory_order_relaxed);
  auto moved_at = std::chrono::steady_clock::now();
  while (!core::is_terminal(status())) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    if (fits()) return true;
    const auto now = std::chrono::steady_clock::now();
    const std::size_t w = waiting();
    const std::uint64_t g = log_lines_given_room_.load(std::memory_order_relaxed);
    if (w < last || g != given) {
      last = std::min(last, w);
      given = g;
      moved_at = now;
    } else if (now - moved_at >= kLogStuck) {
      log_stuck_.store(true);
      return false;
    }
  }
  return false;
}

void RunState::emit_log(const plugins::CallInfo& call, plugins::LogLevel level,
                        std::string_view message) {
  if (listener_ == nullptr) return;
  std::string cut;
  if (message.size() > kMaxLogLine)
    message = cut = cut_text(message, kMaxLogLine, "line", "a log line");
  auto emit_now = [this, call](plugins::LogLevel lvl, std::string_view text) {
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
    e.level = static_cast<trace::LogLevel>(static_cast<int>(lvl));
    e.message = text;
    publish(e);
  };
  if (serial_.running_in_this_thread()) {
    emit_now(level, message);
    return;
  }
  // Each line counts what holding it costs besides its text too.
  const std::size_t bytes = message.size() + trace::EventListener::kLogLineOverhead;
  if (!reserve_log_bytes(bytes)) {
    log_lines_dropped_.fetch_add(1);
    log_bytes_dropped_.fetch_add(message.size());
    // Said where the first line went missing, behind the lines queued
    // before it; it counts what was dropped until it runs.
    if (!log_drop_said_.exchange(true)) {
      const bool queued = on_strand([this, emit_now] {
        log_drop_said_.store(false);
        const std::uint64_t lines = log_lines_dropped_.exchange(0);
        const std::uint64_t dropped = log_bytes_dropped_.exchange(0);
        if (lines == 0) return;  // counted by an earlier note
        emit_now(plugins::LogLevel::Warn,
                 "pyoco: " + std::to_string(lines) + " log line" + (lines == 1 ? "" : "s") + " (" +
                     std::to_string(dropped) +
                     " bytes) dropped: the run's tasks logged faster than it could record (4 "
                     "MiB of lines were waiting)");
      });
      if (!queued) log_drop_said_.store(false);
    }
    return;
  }
  const bool queued = on_strand(
      [this, emit_now, level, bytes, text = cut.empty() ? std::string(message) : std::move(cut)] {
        emit_now(level, text);
        log_bytes_waiting_.fetch_sub(bytes);
      });
  if (!queued) log_bytes_waiting_.fetch_sub(bytes);  // the engine is gone: nothing runs it
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

void RunState::emit_heartbeat(Attempt& a, const plugins::CallInfo& call, double progress,
                              std::string_view message) {
  // 0..1, or unknown: a plugin's 1/0 (inf) or 0/0 (NaN) must not reach the
  // trace and the history as numbers JSON cannot hold.
  if (!(progress >= 0)) {
    progress = -1;
  } else if (progress > 1) {
    progress = 1;
  }
  Attempt::Beats& b = a.beats();
  {
    std::lock_guard<std::mutex> lock(b.mutex);
    b.progress = progress;
    if (message.size() > kMaxHeartbeat) {
      b.message = cut_text(message, kMaxHeartbeat, "message", "a heartbeat's message");
    } else {
      b.message.assign(message);
    }
    if (b.queued) return;  // the handler on its way takes this one
    b.queued = true;
  }
  on_strand([this, a = a.shared_from_this(), call] { take_heartbeat(*a, call); });
}

void RunState::take_heartbeat(Attempt& a, const plugins::CallInfo& call) {
  Attempt::Beats& b = a.beats();
  double progress = -1;
  std::string text;
  {
    std::lock_guard<std::mutex> lock(b.mutex);
    progress = b.progress;
    text.swap(b.message);
    b.queued = false;
  }
  // The run is done with this attempt (a body abandoned at its deadline
  // beating on, a callback after the end): its record is the retry's now.
  if (a.over || core::is_terminal(status())) return;
  const RunClock::Reading now = clock_.now();
  Record::Extra& r = records_[a.record].more();
  r.progress = progress;
  r.heartbeat = std::move(text);
  r.heartbeat_at = now.wall;
  if (listener_ == nullptr) return;
  if (b.published != std::chrono::steady_clock::time_point{} &&
      now.steady - b.published < kBeatEvery) {
    b.unpublished = true;
    if (!b.trailing_armed) {
      b.trailing_armed = true;
      if (!b.trailing) b.trailing = std::make_unique<asio::steady_timer>(control());
      b.trailing->expires_at(b.published + kBeatEvery);
      b.trailing->async_wait(
          [self = shared_from_this(), a = a.shared_from_this()](boost::system::error_code) {
            self->on_strand_here([run = self.get(), a] {
              if (Attempt::Beats* beats = a->beats_if_any()) beats->trailing_armed = false;
              run->flush_heartbeat(*a);
            });
          });
    }
    return;
  }
  b.published = now.steady;
  b.unpublished = false;
  publish_heartbeat(call, a.record);
}

void RunState::end_heartbeats(Attempt& a) {
  flush_heartbeat(a);
  a.over = true;
  // Its handler, holding the run, runs now (cancelled) rather than at a
  // time an engine shutting down would never reach: the run and its
  // engine would hold each other for good.
  if (Attempt::Beats* b = a.beats_if_any(); b != nullptr && b->trailing) b->trailing->cancel();
}

void RunState::flush_heartbeat(Attempt& a) {
  if (listener_ == nullptr || a.over || core::is_terminal(status())) return;
  Attempt::Beats* b = a.beats_if_any();
  if (b == nullptr || !b->unpublished) return;
  b->unpublished = false;
  b->published = clock_.now().steady;
  publish_heartbeat(a.ctx.info, a.record);
}

void RunState::publish_heartbeat(const plugins::CallInfo& call, std::size_t record) {
  const Record::Extra& r = records_[record].more();
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
  e.progress = r.progress;
  e.message = r.heartbeat;
  publish(e);
}

}  // namespace pyoco
