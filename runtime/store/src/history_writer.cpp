// HistoryWriter: run events in, batched store writes out, on a thread of
// its own so that neither the scheduler's strand nor a task thread ever waits
// on the disk. The strand only copies an event into a queue.
#include <pyoco/core/value.hpp>
#include <pyoco/store/history.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>

namespace pyoco::store {

using trace::EventKind;

namespace {

// How much log a run and each of its tasks keep (HistoryOptions'
// max_run_log_bytes and max_log_bytes), line by line in the run's order.
// The fold keeps one per run; its recorder keeps another, to drop at once
// the lines the fold would (a task logging millions of lines held them all
// in the writer's queue): both see the same lines but those dropped, which
// change nothing, so both say the same.
class LogBudget {
 public:
  enum class Verdict {
    Keep,     // the line is kept
    RunCut,   // the run's first line past its budget: a marker instead
    TaskCut,  // the task's first line past its budget: a marker instead
    Drop,     // past a budget already
  };
  LogBudget(std::size_t task_limit, std::size_t run_limit)
      : task_limit_(task_limit), run_limit_(run_limit) {}
  Verdict take(std::string_view node, std::size_t bytes) {
    if (run_ == SIZE_MAX) return Verdict::Drop;
    if (run_ + bytes > run_limit_) {
      run_ = SIZE_MAX;
      return Verdict::RunCut;
    }
    auto it = task_.find(node);
    if (it == task_.end()) it = task_.emplace(std::string(node), 0).first;
    std::size_t& kept = it->second;
    if (kept == SIZE_MAX) return Verdict::Drop;
    if (kept + bytes > task_limit_) {
      kept = SIZE_MAX;
      return Verdict::TaskCut;
    }
    kept += bytes;
    run_ += bytes;
    return Verdict::Keep;
  }

 private:
  std::size_t task_limit_, run_limit_;
  std::map<std::string, std::size_t, std::less<>> task_;  // per node, kept so far; SIZE_MAX: cut
  std::size_t run_ = 0;                                   // all nodes; SIZE_MAX: cut
};

// One run's folded state, owned by the writer; events point at it.
struct RunSlot {
  explicit RunSlot(const HistoryOptions& o) : log_budget(o.max_log_bytes, o.max_run_log_bytes) {}
  std::string id;  // set, under the writer's mutex, when RunStart is queued
  ProcessIdentity process;
  RunRecord run;
  bool run_dirty = false;
  bool started = false;
  bool ended = false;
  bool new_run = false;  // written for the first time: trim the history after
  std::chrono::steady_clock::time_point alive_noted;  // note_alive()
  bool alive_dirty = false;  // run.duration_ms to write alone (the record is not dirty)
  // By the engine's record index (the task's seq); an empty node: not known yet.
  std::vector<TaskRecord> tasks;
  std::vector<std::uint32_t> dirty_pages;  // to write
  std::vector<bool> page_dirty;
  std::vector<LogEntry> logs;  // to write from logs_written on
  std::size_t logs_written = 0;
  bool logs_waiting() const { return logs_written < logs.size(); }
  LogBudget log_budget;
  std::uint64_t log_seq = 0;
  std::vector<OutputRecord> outputs;  // to write
  std::size_t run_output_bytes = 0;   // kept so far
  bool recorder_alive = true;
  // The run's end as its RunEnd was queued (under the writer's mutex), for
  // abandon(): the writer may be far from folding it.
  struct HeardEnd {
    core::RunStatus status;
    std::string message;
    Clock::time_point time;
  };
  std::optional<HeardEnd> heard_end;
};

// What RunStart says once per run.
struct RunStartInfo {
  std::string run_id, flow, flow_file, params, plugins;
};

// An event as the writer keeps it until it is folded: only what the fold
// reads, so a node event whose task is already known copies no string.
struct QueuedEvent {
  RunSlot* slot = nullptr;
  EventKind kind = EventKind::RunStart;
  bool abandon = false;  // synthetic: the process leaves without waiting
  trace::LogLevel level = trace::LogLevel::Info;
  core::RunStatus status = core::RunStatus::Pending;
  std::uint32_t record = 0, attempt = 0;
  Clock::time_point time;
  double duration_ms = 0, progress = -1;
  std::string message, output;
  core::Value value;       // NodeDone: the whole output
  std::string node, task;  // a task the writer meets for the first time; a log line's node
  std::vector<core::ArtifactRecord> artifacts;
  std::vector<trace::Event::Planned> planned;
  std::unique_ptr<RunStartInfo> start;
};

}  // namespace

// Events about one task record (their `record` names it).
bool is_node_event(EventKind kind) {
  return kind != EventKind::RunStart && kind != EventKind::NodesPlanned && kind != EventKind::Log &&
         kind != EventKind::RunCancelling && kind != EventKind::RunEnd;
}

// How far past the records seen so far an event's record may point.
constexpr std::size_t kMaxRecordJump = 65536;

// A queue this long is folded without waiting for the interval (and
// written at the interval): a busy run's events are folded while it runs,
// not all at its end.
constexpr std::size_t kFoldBatch = 4096;

// What the queue may hold, events and their text (16 MiB): past it a
// recorder waits for the writer to take the queue, and so the run's event
// queue waits, and then its tasks' log calls (docs/flows.md, Limits). Tasks
// logging faster than the history folds held gigabytes here.
constexpr std::size_t kMaxQueuedBytes = std::size_t{16} << 20;

// At most this many log lines go in one write. A write is one transaction,
// and abandon() (a second Ctrl+C) waits for the one under way: a backlog of
// a million lines held the writer for seconds, past its patience.
constexpr std::size_t kLogsPerWrite = 10000;

struct HistoryWriter::Impl {
  std::shared_ptr<StateStore> store;
  HistoryOptions options;

  std::mutex mutex;  // guards everything below up to the thread
  std::condition_variable wake, written;
  std::condition_variable room;  // the writer took the queue (kMaxQueuedBytes)
  std::vector<QueuedEvent> queue;
  std::size_t queued_bytes = 0;  // of queue: its events and their text
  std::vector<std::unique_ptr<RunSlot>> slots;
  std::map<std::string, std::function<void()>, std::less<>> cancel_watches;  // by run id
  std::uint64_t requested = 0, done = 0;                                     // flush generations
  bool stopping = false;
  // A run started since the writer last looked. Its first write goes at
  // once, not at the interval: a run killed in its first moments, or waiting
  // behind other processes' writes, is still in the history (and found
  // interrupted later) rather than missing.
  bool run_started = false;
  std::set<std::string, std::less<>> recorded;  // runs whose record a write stored
  std::string fold_error;                       // the first event that could not be recorded
  std::string write_error;             // the last write's, while it failed; empty once one succeeds
  bool write_error_transient = false;  // and whether trying again may help
  // abandon(): the run whose end to write at once, and how that went.
  struct Abandon {
    std::string run_id;
    core::RunStatus end;  // when the run's own is not known
    std::string reason;
    std::optional<core::RunStatus> written;  // the status its record was written with
    bool done = false;                       // and the writer writes nothing more
  };
  std::optional<Abandon> abandoning;
  std::atomic<bool> abandon_asked{false};  // read while folding, without the lock
  // Until when (steady clock ticks) events are still folded once abandon()
  // has asked: a writer far behind a busy run would take seconds.
  std::atomic<std::chrono::steady_clock::rep> fold_until{0};
  bool sealed = false;             // the writer thread's: abandoned, done
  bool writing_abandoned = false;  // the writer thread's: in write_abandoned()
  // The writer thread's: runs some of whose events fold_all skipped once
  // abandon() asked (write_abandoned says their tasks are in part).
  std::set<const RunSlot*> skipped;
  std::thread thread;

  void queued() {  // under `mutex`, after the queue's last event was added
    const QueuedEvent& e = queue.back();
    queued_bytes += sizeof(QueuedEvent) + e.message.size() + e.output.size() + e.node.size() +
                    e.task.size() + e.planned.size() * (sizeof(trace::Event::Planned) + 32) +
                    e.artifacts.size() * sizeof(core::ArtifactRecord);
    if (queued_bytes >= kMaxQueuedBytes) wake.notify_one();
    if (e.kind == EventKind::RunStart) {
      e.slot->id = e.start->run_id;
      run_started = true;
      wake.notify_one();
    } else if (e.kind == EventKind::RunEnd) {
      e.slot->heard_end = RunSlot::HeardEnd{e.status, e.message, e.time};
    }
    if (queue.size() == kFoldBatch) wake.notify_one();
  }
  // Under `mutex`: the queue into `into` (empty), and room for recorders.
  void take_queue(std::vector<QueuedEvent>& into) {
    into.swap(queue);
    queued_bytes = 0;
    room.notify_all();
  }
  // Under `lock` (of `mutex`): until the queue has room, or nothing more will
  // be written (the writer stops, or abandon() skips what comes).
  void wait_for_room(std::unique_lock<std::mutex>& lock) {
    room.wait(lock, [&] {
      return queued_bytes < kMaxQueuedBytes || stopping ||
             abandon_asked.load(std::memory_order_acquire);
    });
  }
  RunSlot* find(std::string_view run_id) {  // under `mutex`
    for (auto& s : slots) {
      if (s->id == run_id) return s.get();
    }
    return nullptr;
  }

  void loop();
  void fold(QueuedEvent& e);
  // Folds `batch`; once abandon() has asked and its time to fold is out,
  // skips events instead (adding their runs to `skipped`), but a RunStart.
  void fold_all(std::vector<QueuedEvent>& batch, std::set<const RunSlot*>& skipped);
  // abandon()'s end, on the writer thread, after what is queued is folded
  // as far as time allows.
  void write_abandoned(std::set<const RunSlot*>& skipped);
  // Everything dirty; or, `runs_only`, the runs' own records alone (a run
  // that just started: its tasks follow at the interval).
  // False when the store refused the batch (kept dirty for the next try).
  bool write_dirty(bool runs_only = false);
  void poll_cancel();
  // Each running run's duration so far, written about once a second: what a
  // run whose process dies (kill -9) is found to have run, at least.
  void note_alive();
  TaskRecord& task(RunSlot& s, std::uint32_t record, std::string& node, std::string& name);
  void mark(RunSlot& s, std::uint32_t record);
  void keep_output(RunSlot& s, std::uint32_t record, const std::string& node,
                   const core::Value& value);
};

// The listener a run holds. It only copies and queues.
// It keeps the writer's state alive: the engine may drop a run (and this
// listener) on one of its threads after the HistoryWriter is gone.
class RunRecorder final : public trace::EventListener {
 public:
  RunRecorder(std::shared_ptr<HistoryWriter::Impl> w, RunSlot* slot)
      : owner_(std::move(w)), writer_(*owner_), slot_(slot) {}
  ~RunRecorder() override {
    std::lock_guard lock(writer_.mutex);
    slot_->recorder_alive = false;
  }

  void on_event(const trace::RunEvent& e) override { on_events(std::span(&e, 1)); }

  // Copied straight into the writer's queue (under its lock: a few hundred
  // nanoseconds an event), never through a vector of our own. Waits while
  // the queue is full (kMaxQueuedBytes): the run's event queue (its thread
  // calls this) then holds the events, and its bound slows the tasks' logs.
  void on_events(std::span<const trace::RunEvent> events) override {
    std::unique_lock lock(writer_.mutex);
    for (const trace::RunEvent& e : events) {
      if (!usable(e)) continue;
      if (e.kind == EventKind::Log &&
          log_budget_.take(e.node, e.message.size()) == LogBudget::Verdict::Drop) {
        continue;  // the fold would drop it too
      }
      if (writer_.queued_bytes >= kMaxQueuedBytes) writer_.wait_for_room(lock);
      QueuedEvent& q = writer_.queue.emplace_back();
      try {
        compact(e, q);
      } catch (...) {
        writer_.queue.pop_back();  // never a half-filled event for the fold
        throw;
      }
      writer_.queued();
    }
  }

 private:
  void compact(const trace::RunEvent& e, QueuedEvent& q) {
    q.slot = slot_;
    q.kind = e.kind;
    q.time = e.time;
    q.record = e.record;
    q.attempt = e.attempt;
    q.duration_ms = e.duration_ms;
    q.progress = e.progress;
    q.level = e.level;
    q.status = e.status;
    q.message = e.message;
    switch (e.kind) {
      case EventKind::RunStart:
        q.start = std::make_unique<RunStartInfo>(
            RunStartInfo{std::string(e.run_id), std::string(e.flow), std::string(e.flow_file),
                         std::string(e.params), std::string(e.plugins)});
        break;
      case EventKind::NodesPlanned:
        q.planned.reserve(e.planned.size());
        for (const trace::PlannedNode& p : e.planned) {
          if (!plausible(p.record)) continue;
          q.planned.push_back({std::string(p.node), std::string(p.task), p.record, {}});
          announce(p.record);
        }
        break;
      case EventKind::Log:
        q.node = e.node;
        break;
      case EventKind::RunCancelling:
      case EventKind::RunEnd:
        break;
      case EventKind::NodeStart:
      case EventKind::NodeDone:
      case EventKind::NodeError:
      case EventKind::NodeRetry:
      case EventKind::NodeSkipped:
      case EventKind::NodeCancelled:
      case EventKind::Heartbeat:  // the kinds is_node_event() names
        if (announce(e.record)) {
          q.node = e.node;
          q.task = e.task;
        }
        q.output = e.output;
        if (e.value != nullptr) q.value = *e.value;
        q.artifacts.assign(e.artifacts.begin(), e.artifacts.end());
        break;
    }
  }

  // Whether the writer has not heard of this task yet; events of one run
  // come one at a time, so this needs no lock.
  bool announce(std::uint32_t record) {
    if (std::size_t{record} >= announced_.size()) announced_.resize(std::size_t{record} + 1);
    if (announced_[record]) return false;
    announced_[record] = true;
    return true;
  }

  // The engine numbers a run's records densely, so a record far past every
  // one seen is not a task of this run (a buggy or hostile event source):
  // it would cost a table that large. Such events are dropped.
  bool plausible(std::uint32_t record) const {
    return std::size_t{record} <= announced_.size() + kMaxRecordJump;
  }
  bool usable(const trace::RunEvent& e) const {
    return !is_node_event(e.kind) || plausible(e.record);
  }

  std::shared_ptr<HistoryWriter::Impl> owner_;
  HistoryWriter::Impl& writer_;
  RunSlot* slot_;
  std::vector<bool> announced_;
  LogBudget log_budget_{writer_.options.max_log_bytes, writer_.options.max_run_log_bytes};
};

HistoryWriter::HistoryWriter(std::shared_ptr<StateStore> store, HistoryOptions options)
    : impl_(std::make_shared<Impl>()) {
  impl_->store = std::move(store);
  impl_->options = options;
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

HistoryWriter::~HistoryWriter() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    impl_->room.notify_all();  // a recorder waiting for room: nothing more will come of it
  }
  impl_->wake.notify_one();
  impl_->thread.join();
}

std::shared_ptr<trace::EventListener> HistoryWriter::recorder() {
  auto slot = std::make_unique<RunSlot>(impl_->options);
  slot->process = this_process();
  RunSlot* raw = slot.get();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->slots.push_back(std::move(slot));
  }
  return std::make_shared<RunRecorder>(impl_, raw);
}

void HistoryWriter::flush() {
  std::unique_lock lock(impl_->mutex);
  const std::uint64_t mine = ++impl_->requested;
  impl_->wake.notify_one();
  impl_->written.wait(lock, [&] { return impl_->done >= mine; });
}

void HistoryWriter::check_cancel_requests() {
  std::lock_guard lock(impl_->mutex);
  ++impl_->requested;
  impl_->wake.notify_one();
}

void HistoryWriter::watch_cancel(std::string run_id, std::function<void()> on_request) {
  std::lock_guard lock(impl_->mutex);
  impl_->cancel_watches[std::move(run_id)] = std::move(on_request);
}

std::optional<core::RunStatus> HistoryWriter::abandon(const std::string& run_id,
                                                      core::RunStatus end,
                                                      const std::string& reason,
                                                      std::chrono::milliseconds patience) {
  if (end != core::RunStatus::Cancelled && end != core::RunStatus::Failed) {
    throw std::invalid_argument(
        "HistoryWriter::abandon: the end of a run left behind is "
        "CANCELLED or FAILED");
  }
  const auto until = std::chrono::steady_clock::now() + patience;
  std::unique_lock lock(impl_->mutex);
  if (!impl_->abandoning) {
    impl_->abandoning.emplace(Impl::Abandon{run_id, end, reason, std::nullopt, false});
    // Up to a quarter of its time to fold what is queued: what is left
    // is for the writes.
    impl_->fold_until.store(
        (std::chrono::steady_clock::now() + patience / 4).time_since_epoch().count());
    impl_->abandon_asked.store(true, std::memory_order_release);
    impl_->room.notify_all();  // what comes now is skipped: no recorder waits for it
    impl_->wake.notify_one();
  }
  impl_->written.wait_until(lock, until, [&] { return impl_->abandoning->done; });
  if (impl_->abandoning->run_id != run_id) return std::nullopt;
  return impl_->abandoning->written;
}

bool HistoryWriter::flush(std::chrono::milliseconds patience,
                          const std::function<void(const std::string&)>& on_retry) {
  const auto until = std::chrono::steady_clock::now() + patience;
  for (bool told = false;; told = true) {
    const auto tried = std::chrono::steady_clock::now();
    flush();  // one try: everything dirty, or the store's error
    std::string failed;
    bool transient = false;
    {
      std::lock_guard lock(impl_->mutex);
      failed = impl_->write_error;
      transient = impl_->write_error_transient;
    }
    if (failed.empty()) return true;
    const auto now = std::chrono::steady_clock::now();
    // A damaged or read-only file stays so: waiting would only delay the
    // warning (a minute after every run).
    if (now >= until || !transient) return false;
    if (!told && on_retry) on_retry(failed);
    // A locked state.db has waited its turn in the store already; a full
    // disk fails at once, and is tried again each second.
    const auto next = tried + std::chrono::seconds(1);
    if (now < next) std::this_thread::sleep_for(std::min(next, until) - now);
  }
}

std::string HistoryWriter::last_error() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->fold_error.empty() ? impl_->write_error : impl_->fold_error;
}

bool HistoryWriter::recorded(const std::string& run_id) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->recorded.contains(run_id);
}

void HistoryWriter::Impl::loop() {
  std::vector<QueuedEvent> batch;
  auto next_write = std::chrono::steady_clock::now() + options.flush_interval;
  std::chrono::steady_clock::time_point retry_after{};
  constexpr auto kAfterFailure = std::chrono::seconds(10);
  for (;;) {
    std::uint64_t generation = 0;
    bool last = false, asked = false, first_write = false;
    {
      std::unique_lock lock(mutex);
      wake.wait_until(lock, next_write, [&] {
        return stopping || requested > done || queue.size() >= kFoldBatch ||
               queued_bytes >= kMaxQueuedBytes || run_started || (abandoning && !sealed);
      });
      take_queue(batch);
      first_write = std::exchange(run_started, false);
      generation = requested;
      last = stopping;
      asked = requested > done;
    }
    if (sealed) {  // abandoned: what comes now is never written
      batch.clear();
      std::lock_guard lock(mutex);
      done = std::max(done, generation);
      written.notify_all();
      if (last) return;
      continue;
    }
    fold_all(batch, skipped);
    batch.clear();
    if (abandon_asked.load(std::memory_order_acquire)) {
      write_abandoned(skipped);
      std::lock_guard lock(mutex);
      done = std::max(done, generation);
      written.notify_all();
      if (last) return;
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (!last && !asked && now < next_write) {
      if (first_write && !write_dirty(true)) retry_after = now + kAfterFailure;
      continue;
    }
    next_write = now + options.flush_interval;
    // After a write failed (state.db locked: each try waits 10 s), the
    // interval's writes pause, and so does the last one (it follows a
    // flush that just failed); a flush still tries.
    note_alive();
    if ((asked || now >= retry_after) && !write_dirty()) {
      retry_after = std::chrono::steady_clock::now() + kAfterFailure;
    }
    if (!abandon_asked.load(std::memory_order_acquire)) poll_cancel();  // may wait for the store
    {
      std::lock_guard lock(mutex);
      done = std::max(done, generation);
      // A run whose end is written (or that never started) and whose
      // recorder is gone is forgotten.
      // (One that never started is never written: its dirty state is moot.)
      std::erase_if(slots, [&](const std::unique_ptr<RunSlot>& s) {
        const bool written =
            !s->run_dirty && s->dirty_pages.empty() && !s->logs_waiting() && s->outputs.empty();
        return (!s->started || (s->ended && written)) && !s->recorder_alive &&
               std::none_of(queue.begin(), queue.end(),
                            [&](const QueuedEvent& q) { return q.slot == s.get(); });
      });
      if (last && queue.empty()) {
        written.notify_all();
        return;
      }
    }
    written.notify_all();
  }
}

namespace {

// A task's error when its end was never written (its run's end was).
constexpr std::string_view kNotRecorded =
    "not recorded: pyoco was interrupted twice while writing its history";

// A run's reason once pyoco left before its history was all written.
std::string recorded_in_part(const std::string& reason, bool abandoned) {
  constexpr const char* kInPart = "its tasks are recorded only in part";
  if (abandoned) return reason + "; " + kInPart;
  return (reason.empty() ? "" : reason + "; ") +
         "interrupted twice while its history was written: " + kInPart;
}

}  // namespace

void HistoryWriter::Impl::fold_all(std::vector<QueuedEvent>& batch,
                                   std::set<const RunSlot*>& skipped) {
  for (auto& e : batch) {
    // Acquire: fold_until is stored before abandon_asked is set.
    if (abandon_asked.load(std::memory_order_acquire) && e.kind != EventKind::RunStart &&
        std::chrono::steady_clock::now().time_since_epoch().count() >
            fold_until.load(std::memory_order_relaxed)) {
      skipped.insert(e.slot);
      continue;
    }
    try {
      fold(e);
    } catch (const std::exception& ex) {  // out of memory: the event is lost, not the process
      std::lock_guard lock(mutex);
      if (fold_error.empty()) fold_error = std::string("cannot record an event: ") + ex.what();
    }
  }
}

void HistoryWriter::Impl::write_abandoned(std::set<const RunSlot*>& skipped) {
  // What was queued by now, folded as far as time allows; what comes later
  // is after the end recorded here.
  writing_abandoned = true;
  std::vector<QueuedEvent> rest;
  {
    std::lock_guard lock(mutex);
    take_queue(rest);
  }
  fold_all(rest, skipped);
  rest.clear();
  std::string id, reason;
  core::RunStatus given_end = core::RunStatus::Cancelled;
  RunSlot* s = nullptr;
  std::optional<RunSlot::HeardEnd> heard;
  bool recorded_whole = false;
  {
    std::lock_guard lock(mutex);
    id = abandoning->run_id;
    reason = abandoning->reason;
    given_end = abandoning->end;
    s = find(id);
    if (s != nullptr) heard = s->heard_end;
    recorded_whole = s == nullptr && recorded.contains(id);
  }
  std::optional<core::RunStatus> status;
  if (s != nullptr && s->started) {
    const bool in_part = skipped.contains(s);
    bool abandoned = false;
    if (!s->ended) {
      // Its own end when it has one (queued, not folded), else the one given.
      QueuedEvent end;
      end.slot = s;
      end.kind = EventKind::RunEnd;
      if (heard) {
        end.status = heard->status;
        end.message = heard->message;
        end.time = heard->time;
      } else {
        end.status = given_end;
        end.message = reason;
        end.time = Clock::now();
        end.abandon = abandoned = true;
      }
      fold(end);
    }
    if (in_part && !abandoned) {
      // Its end was heard, some of its tasks' were skipped: none stays
      // RUNNING or PENDING forever under an ended run.
      for (std::uint32_t i = 0; i < s->tasks.size(); ++i) {
        TaskRecord& t = s->tasks[i];
        if (t.node.empty() || core::is_terminal(t.state)) continue;
        t.state = core::TaskState::Cancelled;
        t.error = std::string(kNotRecorded);
        if (t.started != Clock::time_point{}) {
          t.ended = s->run.ended;
          t.duration_ms = std::chrono::duration<double, std::milli>(t.ended - t.started).count();
        }
        mark(*s, i);
      }
    }
    // The run's record alone first, a small write: its end is what counts.
    // Its tasks folded so far follow, if the caller waits that long.
    const bool tasks_dirty = !s->dirty_pages.empty() || s->logs_waiting() || !s->outputs.empty();
    const std::string whole = s->run.reason;
    if (in_part || tasks_dirty) {
      s->run.reason = recorded_in_part(whole, abandoned);
      s->run_dirty = true;
    }
    if (write_dirty(true)) {
      status = s->run.status;
      {
        std::lock_guard lock(mutex);
        abandoning->written = status;
      }
      if (tasks_dirty) {
        if (!in_part) {
          s->run.reason = whole;
          s->run_dirty = true;
        }
        write_dirty();
      }
    }
  }
  if (s == nullptr && recorded_whole) {
    // Written whole already, its slot forgotten: its status is the store's.
    try {
      if (const auto stored = store->run(id)) status = stored->status;
    } catch (const std::exception&) {
      // unknown: said as not written
    }
  }
  sealed = true;
  std::lock_guard lock(mutex);
  abandoning->written = status;
  abandoning->done = true;
}

TaskRecord& HistoryWriter::Impl::task(RunSlot& s, std::uint32_t record, std::string& node,
                                      std::string& name) {
  if (record >= s.tasks.size()) s.tasks.resize(record + 1);
  TaskRecord& t = s.tasks[record];
  if (t.node.empty() && !node.empty()) {
    t.node = std::move(node);
    t.task = std::move(name);
  }
  mark(s, record);
  return t;
}

void HistoryWriter::Impl::mark(RunSlot& s, std::uint32_t record) {
  const std::uint32_t page = record / kTasksPerPage;
  if (page >= s.page_dirty.size()) s.page_dirty.resize(page + 1);
  if (!s.page_dirty[page]) {
    s.page_dirty[page] = true;
    s.dirty_pages.push_back(page);
  }
}

// Mirrors how the engine keeps its TaskRecords (run.cpp), from events alone.
void HistoryWriter::Impl::fold(QueuedEvent& e) {
  RunSlot& s = *e.slot;
  RunRecord& run = s.run;
  switch (e.kind) {
    case EventKind::RunStart:
      run.id = std::move(e.start->run_id);
      run.flow = std::move(e.start->flow);
      run.flow_file = std::move(e.start->flow_file);
      if (!run.flow_file.empty()) {  // stored absolute: it means the same from any directory
        std::error_code ec;
        const auto abs = std::filesystem::absolute(run.flow_file, ec);
        if (!ec) run.flow_file = abs.lexically_normal().string();
      }
      run.params = e.start->params.empty() ? "{}" : std::move(e.start->params);
      // Params are kept to the size of an output: a 16 MiB params file
      // times the runs kept would be gigabytes.
      if (run.params.size() > options.max_output_bytes) {
        run.params = "{\"params_not_kept\": \"the params were " +
                     std::to_string(run.params.size()) +
                     " bytes as JSON, more than PYOCO_MAX_OUTPUT_BYTES=" +
                     std::to_string(options.max_output_bytes) + "\"}";
      }
      run.plugins = e.start->plugins.empty() ? "{}" : std::move(e.start->plugins);
      run.status = core::RunStatus::Running;
      run.started = e.time;
      run.host = s.process.host;
      run.pid = s.process.pid;
      run.pid_start = s.process.start;
      s.started = true;
      s.new_run = true;
      s.run_dirty = true;
      return;
    case EventKind::NodeStart: {
      TaskRecord& t = task(s, e.record, e.node, e.task);
      t.state = core::TaskState::Running;
      t.started = e.time;
      t.attempts = e.attempt;
      return;
    }
    case EventKind::NodeRetry: {  // names the attempt about to run; the engine counts started ones
      TaskRecord& t = task(s, e.record, e.node, e.task);
      t.attempts = e.attempt > 0 ? e.attempt - 1 : 0;
      t.error = std::move(e.message);  // the failed attempt's, while it waits
      return;
    }
    case EventKind::NodeDone:
    case EventKind::NodeError:
    case EventKind::NodeSkipped:
    case EventKind::NodeCancelled: {
      TaskRecord& t = task(s, e.record, e.node, e.task);
      t.state = e.kind == EventKind::NodeDone      ? core::TaskState::Succeeded
                : e.kind == EventKind::NodeError   ? core::TaskState::Failed
                : e.kind == EventKind::NodeSkipped ? core::TaskState::Skipped
                                                   : core::TaskState::Cancelled;
      t.attempts = e.attempt;
      if (e.kind == EventKind::NodeDone) {
        t.error.clear();  // an earlier attempt's, if it was retried
      } else if (!e.message.empty() || t.state == core::TaskState::Skipped) {
        t.error = e.message;
      }
      if (t.started != Clock::time_point{}) {
        t.ended = e.time;
        t.duration_ms = e.duration_ms;
      }
      t.output_summary = std::move(e.output);
      t.artifacts = std::move(e.artifacts);
      if (!e.value.is_null()) keep_output(s, e.record, t.node, e.value);
      return;
    }
    case EventKind::Log:
      switch (s.log_budget.take(e.node, e.message.size())) {
        case LogBudget::Verdict::Keep:
          s.logs.push_back(
              LogEntry{++s.log_seq, e.time, std::move(e.node), e.level, std::move(e.message)});
          return;
        case LogBudget::Verdict::RunCut:
          s.logs.push_back(LogEntry{++s.log_seq, e.time, e.node, trace::LogLevel::Warn,
                                    "[log truncated: this run's lines past "
                                    "PYOCO_MAX_RUN_LOG_BYTES=" +
                                        std::to_string(options.max_run_log_bytes) +
                                        " bytes are not kept]"});
          return;
        case LogBudget::Verdict::TaskCut:
          s.logs.push_back(LogEntry{++s.log_seq, e.time, e.node, trace::LogLevel::Warn,
                                    "[log truncated: this task's lines past PYOCO_MAX_LOG_BYTES=" +
                                        std::to_string(options.max_log_bytes) +
                                        " bytes are not kept]"});
          return;
        case LogBudget::Verdict::Drop:
          return;
      }
      return;
    case EventKind::NodesPlanned:
      for (auto& p : e.planned) task(s, p.record, p.node, p.task);  // PENDING
      return;
    case EventKind::Heartbeat: {
      TaskRecord& t = task(s, e.record, e.node, e.task);
      t.progress = e.progress;
      t.heartbeat = e.message;
      t.heartbeat_at = e.time;
      return;
    }
    case EventKind::RunCancelling:
      if (!s.ended) {
        run.status = core::RunStatus::Cancelling;
        s.run_dirty = true;
      }
      return;
    case EventKind::RunEnd:
      if (s.ended || !s.started) return;
      run.status = e.status;
      // FAILED: the engine names the failed nodes; say so in words.
      run.reason = e.status == core::RunStatus::Failed && !e.message.empty() && !e.abandon
                       ? "failed: " + e.message
                       : e.message;
      run.ended = e.time;
      run.duration_ms = std::chrono::duration<double, std::milli>(run.ended - run.started).count();
      if (e.abandon) {
        for (std::uint32_t i = 0; i < s.tasks.size(); ++i) {
          TaskRecord& t = s.tasks[i];
          if (t.node.empty() || core::is_terminal(t.state)) continue;
          t.state = core::TaskState::Cancelled;
          t.error = e.message;
          if (t.started != Clock::time_point{}) {
            t.ended = e.time;
            t.duration_ms = std::chrono::duration<double, std::milli>(t.ended - t.started).count();
          }
          mark(s, i);
        }
      }
      s.ended = true;
      s.run_dirty = true;
      return;
  }
}

// The whole output, within the per-task and per-run limits; past them, a
// record of its size and of the limit that kept it out.
void HistoryWriter::Impl::keep_output(RunSlot& s, std::uint32_t record, const std::string& node,
                                      const core::Value& value) {
  OutputRecord o;
  o.seq = record;
  o.node = node;
  // Measured no further than the limit: an output past it may be enormous
  // as JSON (a list repeating one 16 MiB string a million times shares
  // that string in memory), and is not kept anyway.
  o.json = core::to_json_text(value, options.max_output_bytes + 1);
  o.bytes = o.json.size();
  if (core::deeper_than(value)) {
    // No reader of the history would take it back.
    o.dropped = std::string(core::kTooDeepText);
  } else if (o.bytes > options.max_output_bytes) {
    o.dropped = "PYOCO_MAX_OUTPUT_BYTES=" + std::to_string(options.max_output_bytes);
  } else if (s.run_output_bytes + o.bytes > options.max_run_output_bytes) {
    o.dropped = "PYOCO_MAX_RUN_OUTPUT_BYTES=" + std::to_string(options.max_run_output_bytes);
  }
  if (o.dropped.empty()) {
    s.run_output_bytes += o.bytes;
  } else {
    o.json.clear();
  }
  s.outputs.push_back(std::move(o));
}

bool HistoryWriter::Impl::write_dirty(bool runs_only) {
  for (;;) {
    Batch batch;
    std::vector<RunSlot*> touched;
    std::vector<std::size_t> logs_taken;  // per touched slot
    bool trim = false;
    {
      // Slots are only added under the lock; the writer alone changes their contents.
      std::lock_guard lock(mutex);
      for (auto& s : slots) {
        if (!s->started || (!s->run_dirty && !s->alive_dirty && s->dirty_pages.empty() &&
                            !s->logs_waiting() && s->outputs.empty())) {
          continue;
        }
        touched.push_back(s.get());
      }
    }
    std::size_t log_room = kLogsPerWrite;
    for (RunSlot* s : touched) {
      if (s->run_dirty) {
        batch.runs.push_back(s->run);
      } else if (s->alive_dirty && !runs_only) {
        batch.alive.emplace_back(s->run.id, s->run.duration_ms);
      }
      logs_taken.push_back(0);
      if (runs_only) continue;
      if (!s->dirty_pages.empty()) {
        TaskPages pages;
        pages.run_id = s->run.id;
        pages.tasks = s->tasks;
        pages.pages = s->dirty_pages;
        std::sort(pages.pages.begin(), pages.pages.end());
        // A run's first write owns its table: pages of an older run that had
        // this id (an embedder reusing one) do not mix in.
        pages.whole = s->new_run;
        batch.tasks.push_back(std::move(pages));
      }
      const std::size_t n = std::min(log_room, s->logs.size() - s->logs_written);
      for (std::size_t i = 0; i < n; ++i) {
        batch.logs.emplace_back(s->run.id, s->logs[s->logs_written + i]);
      }
      logs_taken.back() = n;
      log_room -= n;
      for (const OutputRecord& o : s->outputs) batch.outputs.emplace_back(s->run.id, o);
      trim = trim || s->new_run;
    }
    if (batch.empty()) {
      std::lock_guard lock(mutex);
      if (!runs_only) write_error.clear();  // nothing left to write
      return true;
    }
    try {
      store->write(batch);
      if (trim) store->trim(options.max_runs);
    } catch (const std::exception& ex) {
      // Kept dirty: the next cycle tries again.
      const auto* store_error = dynamic_cast<const StoreError*>(&ex);
      std::lock_guard lock(mutex);
      write_error = ex.what();
      write_error_transient = store_error != nullptr && store_error->transient();
      if (store_error != nullptr && store_error->gone())
        recorded.clear();  // written to a lost file
      return false;
    }
    {
      std::lock_guard lock(mutex);
      for (const RunRecord& r : batch.runs) recorded.insert(r.id);
    }
    bool logs_left = false;
    for (std::size_t k = 0; k < touched.size(); ++k) {
      RunSlot* s = touched[k];
      s->run_dirty = false;
      if (runs_only) continue;
      s->alive_dirty = false;
      s->new_run = false;
      for (std::uint32_t p : s->dirty_pages) s->page_dirty[p] = false;
      s->dirty_pages.clear();
      s->outputs.clear();
      s->logs_written += logs_taken[k];
      if (!s->logs_waiting()) {
        s->logs.clear();
        s->logs_written = 0;
      }
      logs_left = logs_left || s->logs_waiting();
    }
    // More lines in the next write; abandon() is not kept waiting for them.
    if (runs_only || !logs_left) {
      if (!runs_only) {
        std::lock_guard lock(mutex);
        write_error.clear();  // everything dirty is written
      }
      return true;
    }
    if (abandon_asked.load(std::memory_order_acquire) && !writing_abandoned) return true;
    if (!writing_abandoned) {
      // What came meanwhile is folded between two writes: the recorders,
      // and the tasks' log calls behind them, do not wait for the whole
      // backlog (its lines past the budgets are dropped as they fold).
      std::vector<QueuedEvent> more;
      {
        std::lock_guard lock(mutex);
        take_queue(more);
      }
      fold_all(more, skipped);
    }
  }
}

void HistoryWriter::Impl::note_alive() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex);  // slots are added under it; their contents are this thread's
  for (auto& s : slots) {
    if (!s->started || s->ended || now - s->alive_noted < std::chrono::seconds(1)) continue;
    s->alive_noted = now;
    s->run.duration_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - s->run.started).count();
    s->alive_dirty = true;
  }
}

void HistoryWriter::Impl::poll_cancel() {
  std::vector<std::string> watched;
  {
    std::lock_guard lock(mutex);
    for (auto it = cancel_watches.begin(); it != cancel_watches.end();) {
      const RunSlot* s = find(it->first);
      if (s != nullptr && s->ended) {
        it = cancel_watches.erase(it);  // over: nothing left to cancel
        continue;
      }
      if (s != nullptr && s->started) watched.push_back(it->first);
      ++it;
    }
  }
  for (const std::string& id : watched) {
    try {
      const auto r = store->run(id);
      if (!r || !r->cancel_requested) continue;
    } catch (const std::exception&) {
      continue;  // a busy store: look again next cycle
    }
    std::function<void()> fire;
    {
      std::lock_guard lock(mutex);
      auto it = cancel_watches.find(id);
      if (it == cancel_watches.end()) continue;
      fire = std::move(it->second);
      cancel_watches.erase(it);
    }
    fire();
  }
}

}  // namespace pyoco::store
