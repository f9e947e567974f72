// Run history: what ran, how it ended, and what its tasks logged. Two
// implementations share this interface: in memory (embedding, tests) and
// SQLite (the CLI's default, shared by every local pyoco process).
//
// Writers hand whole batches to `write`, so a store never sees one call per
// event: HistoryWriter (history.hpp) folds run events into these records
// off the scheduler's strand and writes them in batches.
#pragma once

#include <pyoco/core/states.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/trace/event.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::store {

using Clock = std::chrono::system_clock;

struct RunRecord {
  std::string id;
  std::string flow;       // the flow's name
  std::string flow_file;  // absolute path, or empty for a flow built in C++
  std::string params;     // JSON object text, as merged for the run
  std::string plugins;    // JSON object text: the plugins its tasks came from, name -> version
  core::RunStatus status = core::RunStatus::Pending;
  // FAILED: "failed: <nodes>", or "interrupted" when its process died;
  // CANCELLED after a second Ctrl+C: why nobody waited for it.
  std::string reason;
  Clock::time_point started, ended;  // ended: zero until the run ends
  // While the run goes: how long it had run when last written (about each
  // second), so a run whose process died is known to have run that long.
  double duration_ms = 0;
  std::string host;
  std::int64_t pid = 0;
  std::int64_t pid_start = 0;     // the process's start time (clock ticks), 0 if unknown
  bool cancel_requested = false;  // read-only: set by request_cancel, ignored by write
};

// A run's tasks are kept in pages of this many, by seq (the task's place in
// the run's task table, the engine's record index): a page is written whole,
// so a run of 10,000 tasks costs the store ~80 writes, not 10,000.
inline constexpr std::uint32_t kTasksPerPage = 128;

// Some pages of one run's task table, each replacing what the store holds
// for that page. Views: valid during StateStore::write only.
struct TaskPages {
  std::string_view run_id;
  // The run's tasks by seq; a record with an empty node is not known yet and
  // is not stored.
  std::span<const TaskRecord> tasks;
  // Pages to write: page p holds tasks[p * kTasksPerPage, (p + 1) * kTasksPerPage).
  std::vector<std::uint32_t> pages;
  // `tasks` is the run's whole table: stored pages past its end are removed.
  bool whole = false;

  // Every page of `tasks`, as the run's whole table.
  static TaskPages all(std::string_view run_id, std::span<const TaskRecord> tasks);
};

struct LogEntry {
  std::uint64_t seq = 0;  // per run, from 1, in the order lines arrived
  Clock::time_point time;
  std::string node;
  trace::LogLevel level = trace::LogLevel::Info;
  std::string message;
};

// A task's whole output, kept apart from its page: written once, when the
// task succeeds, so a page rewritten while its other tasks run does not
// carry it each time.
struct OutputRecord {
  std::uint32_t seq = 0;    // the task's seq
  std::string node;         // and its node (display name: iterations carry [i])
  std::string json;         // the output as JSON; empty when it was not kept
  std::uint64_t bytes = 0;  // the JSON's size, kept or not
  std::string dropped;      // why it was not kept (a limit's name), else empty
};

// What one flush writes: upserts of runs, pages of tasks, appended log
// lines and outputs.
struct Batch {
  std::vector<RunRecord> runs;
  std::vector<TaskPages> tasks;
  std::vector<std::pair<std::string, LogEntry>> logs;         // run id, line
  std::vector<std::pair<std::string, OutputRecord>> outputs;  // run id, output
  // Run id, how long it has run: a running run's duration_ms alone, not its
  // whole record (whose params may be large), about once a second.
  std::vector<std::pair<std::string, double>> alive;
  bool empty() const {
    return runs.empty() && tasks.empty() && logs.empty() && outputs.empty() && alive.empty();
  }
};

struct RunFilter {
  std::optional<core::RunStatus> status;
  std::string flow;          // exact name; empty: any
  bool active_only = false;  // PENDING, RUNNING or CANCELLING
  std::size_t limit = 0;     // 0: no limit
};

struct LogFilter {
  std::string node;         // empty: every task
  bool iterations = false;  // with node: also its loop iterations' lines (node[0], node[1] ...)
  std::uint64_t after = 0;  // only lines with seq > after
  std::size_t tail = 0;     // 0: all; else only the last N that match
};

// A store the user can fix by hand: unreadable file, newer schema, full disk.
class StoreError : public std::runtime_error {
 public:
  explicit StoreError(const std::string& what, bool transient = false)
      : std::runtime_error(what), transient_(transient) {}
  // The file was deleted or replaced while it was open: what was written
  // to it before is gone too.
  static StoreError file_gone(const std::string& what) {
    StoreError e(what);
    e.gone_ = true;
    return e;
  }
  // Whether trying again later may succeed: the file locked by another
  // process, a full disk. Not a damaged or read-only file.
  bool transient() const noexcept { return transient_; }
  // Whether what was written before is gone too: the file was deleted or
  // replaced while it was open.
  bool gone() const noexcept { return gone_; }

 private:
  bool transient_;
  bool gone_ = false;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // All of it or none of it. Run upserts keep cancel_requested as it is.
  virtual void write(const Batch& batch) = 0;
  // write(), only if every run of `batch` is still active (PENDING, RUNNING
  // or CANCELLING) in the store, checked in the same transaction: false,
  // writing nothing, when one has ended meanwhile. The end of a run found
  // abandoned (recovery) never overwrites the end its own process wrote
  // between the read that found it active and this write.
  virtual bool write_if_active(const Batch& batch) = 0;

  // Newest first.
  virtual std::vector<RunRecord> runs(const RunFilter& filter) const = 0;
  virtual std::optional<RunRecord> run(std::string_view id) const = 0;
  // run(), for a thread that must not wait (a signal watcher): throws a
  // transient StoreError at once where run() would wait, for the store's
  // connection (in use by another thread) or for another process's lock.
  virtual std::optional<RunRecord> run_without_waiting(std::string_view id) const {
    return run(id);
  }
  // Ids that start with `prefix`, at most `max` of them.
  virtual std::vector<std::string> ids_with_prefix(std::string_view prefix,
                                                   std::size_t max) const = 0;
  // Every known task, by seq.
  virtual std::vector<TaskRecord> tasks(std::string_view run_id) const = 0;
  virtual std::vector<LogEntry> logs(std::string_view run_id, const LogFilter& filter) const = 0;
  // The outputs of the run's tasks that succeeded with one, by seq.
  virtual std::vector<OutputRecord> outputs(std::string_view run_id) const = 0;

  // Writes `run` only if no run has its id, at once: false if one has (two
  // processes given the same run id: one of them gets it).
  virtual bool claim(const RunRecord& run) = 0;
  // claim(), never waiting for another process's lock: a transient
  // StoreError at once instead (a run of a new id goes on without it).
  virtual bool claim_without_waiting(const RunRecord& run) { return claim(run); }
  // Deletes a claim no run was started under (still PENDING, no tasks).
  virtual void unclaim(std::string_view run_id) = 0;

  // Asks the process running `run_id` to cancel it; false if no such run.
  virtual bool request_cancel(std::string_view run_id) = 0;

  // Deletes the oldest ended runs (with their tasks, logs and artifact
  // records) beyond the newest `keep`; runs still active are never deleted.
  // Returns how many were deleted.
  virtual std::size_t trim(std::size_t keep) = 0;

  // Where a process that dies leaves a note about its run for whoever
  // finds it interrupted (crash_note.hpp); empty: nowhere.
  virtual std::filesystem::path notes_dir() const { return {}; }
};

std::shared_ptr<StateStore> open_memory_store();

// Opens (creating it and its directory if need be) the SQLite history at
// `file`: WAL mode, schema migrated to the current version. Several
// processes share it: a write waits its turn for the lock up to
// `busy_timeout`, then fails (StoreError). `on_wait`, if set, is called
// once, on the waiting thread, when a wait for the lock first passes a
// second (to tell a user why nothing happens). Throws StoreError.
std::shared_ptr<StateStore> open_sqlite_store(
    const std::filesystem::path& file,
    std::chrono::milliseconds busy_timeout = std::chrono::seconds(10),
    std::function<void()> on_wait = {});

// $PYOCO_HOME/state.db; PYOCO_HOME defaults to $XDG_STATE_HOME/pyoco, else
// ~/.local/state/pyoco.
std::filesystem::path default_store_file();

// The one run `id_or_prefix` names: a whole id, or a prefix that only one
// run has. Throws StoreError naming the candidates when it is ambiguous, or
// saying nothing matched.
RunRecord resolve_run(const StateStore& store, std::string_view id_or_prefix);

}  // namespace pyoco::store
