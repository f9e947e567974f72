// Feeding the run history from run events, as the trace is fed.
//
//   auto store = pyoco::store::open_sqlite_store(pyoco::store::default_store_file());
//   pyoco::store::HistoryWriter history(store);
//   auto events = std::make_shared<pyoco::trace::EventQueue>();
//   events->add(history.recorder());
//   options.listener = events;
//   pyoco::Run run = engine.start(flow, std::move(options));
//   run.wait();
//   history.flush();
//
// A recorder only queues events. One writer thread per HistoryWriter folds
// them into run, task and log records and writes them in batches, so a run
// of 10,000 tasks never waits on the disk per task. What waits for the
// writer is bounded (16 MiB): past it a recorder waits for room, so give it
// to a run behind a trace::EventQueue (its own thread waits, and the run's
// log calls slow down), not as the run's listener itself (that would hold
// the run's strand).
#pragma once

#include <pyoco/store/state_store.hpp>
#include <pyoco/trace/event.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace pyoco::store {

struct HistoryOptions {
  // Each task's log lines are kept up to this many bytes; one marker line
  // says how much was dropped. `pyoco run` reads PYOCO_MAX_LOG_BYTES (and
  // the other variables below: runner::limits_from_env). Default 1 MiB.
  std::size_t max_log_bytes = 1 << 20;
  // And each run's, all its tasks together; one marker line says so.
  // PYOCO_MAX_RUN_LOG_BYTES, default 64 MiB.
  std::size_t max_run_log_bytes = 64 << 20;
  // Each task's whole output (as JSON) is kept up to this size
  // (PYOCO_MAX_OUTPUT_BYTES, default 1 MiB), and each run's outputs up to
  // PYOCO_MAX_RUN_OUTPUT_BYTES (default 64 MiB). Past them an output is not
  // kept; its size and the limit are. Task pages keep a 200-character
  // summary of every output regardless.
  std::size_t max_output_bytes = 1 << 20;
  std::size_t max_run_output_bytes = 64 << 20;
  // Runs kept; older ended runs are deleted whole as new ones start.
  // PYOCO_MAX_RUN_HISTORY, default 1000.
  std::size_t max_runs = 1000;
  // How often queued events are written, and cancel requests looked for.
  std::chrono::milliseconds flush_interval{100};
};

class HistoryWriter {
 public:
  explicit HistoryWriter(std::shared_ptr<StateStore> store, HistoryOptions options = {});
  ~HistoryWriter();  // writes what is queued, then stops
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;

  // A listener for one run's events.
  std::shared_ptr<trace::EventListener> recorder();

  // Returns once everything queued before the call is written, or the
  // store refused it once (last_error() says why).
  void flush();
  // The same, but while the store refuses the write (a state.db another
  // process holds past its wait, a full disk), tries again for up to
  // `patience`. True once everything is written. `on_retry` hears the
  // store's error once, at the first failed try, so a program can say why
  // it waits.
  bool flush(std::chrono::milliseconds patience,
             const std::function<void(const std::string&)>& on_retry = {});

  // Calls `on_request` once, on the writer thread, when another process asks
  // (through the store) to cancel run `run_id`.
  void watch_cancel(std::string run_id, std::function<void()> on_request);
  // Looks for cancel requests now rather than at the next poll (the CLI calls
  // it when `pyoco runs cancel` signals this process). Does not wait.
  void check_cancel_requests();

  // The process is leaving without waiting for run `run_id` (a second
  // Ctrl+C, a task that called exit()): records its end now, in a write of
  // its own, and writes nothing after it. The end is the run's own when its
  // RunEnd has been heard, else `end` (CANCELLED or FAILED) with `reason`
  // (its unfinished tasks CANCELLED with that reason). Events still queued
  // are folded for up to a quarter of `patience`, the rest skipped (a
  // writer far behind a busy run would take seconds): the reason then says
  // the run's tasks are recorded only in part.
  // Waits at most `patience` (the writer in a long write, another process
  // holding the store); returns the status written, or nothing when it was
  // not written by then (or the run is not this writer's).
  std::optional<core::RunStatus> abandon(
      const std::string& run_id, core::RunStatus end, const std::string& reason,
      std::chrono::milliseconds patience = std::chrono::seconds(10));

  // Why the history may be incomplete, or empty: an event that could not
  // be recorded (the first), else the last write's error if it failed (a
  // write that later succeeds writes everything it had left).
  std::string last_error() const;
  // Whether run `run_id`'s own record was written at least once: a run
  // whose every write failed (a state.db locked by another process for
  // longer than the store waits) is not in the history at all.
  bool recorded(const std::string& run_id) const;

 private:
  struct Impl;
  friend class RunRecorder;
  std::shared_ptr<Impl> impl_;  // shared with the recorders, which may outlive the writer
};

// Runs on this host left PENDING, RUNNING or CANCELLING by a process that no
// longer exists (a crash, kill -9) become FAILED with reason "interrupted";
// their running tasks FAILED, their pending ones CANCELLED. Returns the ids.
std::vector<std::string> recover_interrupted_runs(StateStore& store);

// This process, as the history records it.
struct ProcessIdentity {
  std::string host;
  std::int64_t pid = 0;
  std::int64_t start = 0;  // clock ticks since boot (/proc/<pid>/stat), 0 if unknown
};
ProcessIdentity this_process();
// Whether the process a run record names still runs (pid alive, and the
// same process: not a reused pid).
bool process_alive(std::int64_t pid, std::int64_t start);

}  // namespace pyoco::store
