// One run of a flow file on this machine, wired as `pyoco run` wires it:
// its events go through a trace::EventQueue to the console trace, a trace
// file and the run history; its artifacts to a LocalArtifactStore; a cancel
// requested through the history (`pyoco runs cancel`) cancels it.
//
//   pyoco::runner::RunSetup setup;
//   setup.history = pyoco::runner::open_run_history();
//   setup.console = std::shared_ptr<std::ostream>(&std::cout, [](std::ostream*) {});
//   pyoco::runner::LocalRun local(pyoco::runner::load_flow("flow.yaml"), std::move(setup));
//   pyoco::Run run = local.start(engine);
//   local.wait();     // the run has ended; its trace is printed
//   local.finish();   // and its history written
//
// The engine is needed only until start() returns. What the program reads
// from its environment (PYOCO_ARTIFACT_DIR, PYOCO_CUTE, PYOCO_MAX_LOG_BYTES
// ...) it resolves itself and gives here.
#pragma once

#include <pyoco/engine/engine.hpp>
#include <pyoco/runner/loaded_flow.hpp>
#include <pyoco/store/history.hpp>
#include <pyoco/trace/event_queue.hpp>
#include <pyoco/trace/sinks.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace pyoco::runner {

struct RunSetup {
  // The run's id; empty: a new UUID. One the history already has is refused.
  std::string run_id;
  // What `$env.NAME` reads (pyoco::process_environment() for this process's).
  std::map<std::string, std::string, std::less<>> env;
  // The root of the run's LocalArtifactStore, made absolute so that the
  // paths in task records and the history mean the same from any directory.
  std::filesystem::path artifact_dir = ".pyoco/artifacts";
  // The trace on a console; null: none.
  std::shared_ptr<std::ostream> console;
  trace::TraceFormat console_format = trace::TraceFormat::Plain;
  // Also append the trace to this file; empty: none.
  std::filesystem::path trace_file;
  trace::TraceFormat trace_file_format = trace::TraceFormat::Plain;
  // Where the run is recorded (open_run_history()); null: nowhere.
  std::shared_ptr<store::StateStore> history;
  store::HistoryOptions history_options;
  // How big the run may grow (limits_from_env() gives PYOCO_MAX_TASKS's).
  RunLimits limits;
  // Anyone else who wants the run's events, called after the trace and the
  // history, on the queue's thread.
  std::vector<std::shared_ptr<trace::EventListener>> listeners;
};

// The run's limits and the history's from the environment: PYOCO_MAX_TASKS,
// PYOCO_MAX_LOG_BYTES, PYOCO_MAX_RUN_LOG_BYTES, PYOCO_MAX_OUTPUT_BYTES,
// PYOCO_MAX_RUN_OUTPUT_BYTES, PYOCO_MAX_RUN_HISTORY, each a whole number,
// unset or empty for the default. Throws SetupError naming
// the variable when one is not.
void limits_from_env(RunLimits& run, store::HistoryOptions& history);

class LocalRun {
 public:
  // Wires the run; starts nothing. Throws SetupError when the trace file
  // cannot be opened for appending or the history has a run `run_id` already
  // (a given id is claimed in the history here), std::invalid_argument for
  // a run id no run may have (check_run_id).
  LocalRun(LoadedFlow flow, RunSetup setup);
  // finish(), if it was not called; a run still going is cancelled first
  // (as std::jthread asks its thread to stop), so that its end is recorded.
  ~LocalRun();
  LocalRun(const LocalRun&) = delete;
  LocalRun& operator=(const LocalRun&) = delete;

  // The run's id, known from construction (given, or made then).
  const std::string& run_id() const { return run_id_; }

  // Starts the run, once. Throws what Engine::start throws: core::FlowError,
  // plugins::LoadError, std::invalid_argument for a run id it does not allow.
  // A cancel requested through the history before (`pyoco runs cancel` of
  // the run id claimed while its plugins loaded) cancels it as it starts.
  Run start(Engine& engine);

  // Any thread, before start() returns: whether a cancel of the run id
  // claimed for this run has been requested through the history (false
  // without a claim, or when the history cannot be read). Never waits for
  // state.db (a signal watcher calls it): busy, it says false, and start()
  // looks again, waiting its turn. Once it has said so, start() cancels the
  // run at once, without looking again.
  bool cancel_requested_before_start();
  // Any thread, before start() returns: the run starts cancelled (a first
  // Ctrl+C while the plugins load), nothing of it run.
  void cancel_at_start() { cancel_at_start_.store(true); }

  // Returns once the run has ended and everything it said has been handed
  // to the trace, the history and the listeners.
  void wait();

  // Both may be called from any thread until finish().
  // For a program that signals: looks for a cancel request in the history
  // now rather than at its next poll (`pyoco run` does on SIGURG).
  void check_cancel_requests();
  // For a program that leaves without waiting for the run (a second
  // Ctrl+C, a task's exit()): records its end at once, in a write of the
  // run's record of its own (HistoryWriter::abandon): the run's own end if
  // it has ended, else `end` with `reason`. What the history has not written yet is
  // skipped if it cannot be folded quickly. Waits at most `patience`;
  // returns the status recorded, or nothing (no history, no run, or not
  // written in time). Does not cancel the run. The history writes nothing
  // more afterwards.
  static constexpr std::chrono::seconds kAbandonPatience{1};
  std::optional<core::RunStatus> abandon(core::RunStatus end, const std::string& reason,
                                         std::chrono::milliseconds patience = kAbandonPatience);

  // Hands on the last events, writes the history and closes it. Returns
  // empty, or what went wrong writing the history: "this run is not in the
  // history: <error>" when no write of its record succeeded, else "the run
  // history may be incomplete: <error>". Waits for the run's end first.
  // While the store refuses the last write (a state.db another process
  // holds, a full disk) it tries again for up to `patience`; `on_retry`
  // hears why, once, so a program can say what it waits for. Call it once
  // nothing calls the two above any more.
  static constexpr std::chrono::seconds kHistoryPatience{60};
  // Any thread, at any time (a signal's handler thread while start() runs):
  // frees the run id claimed for this run if nothing is recorded under it
  // yet, for a process about to leave before its run started. Touches only
  // the claim (set once, by the constructor) and the store, which locks.
  void release_claim() const;
  std::string finish(std::chrono::milliseconds patience = kHistoryPatience,
                     const std::function<void(const std::string&)>& on_retry = {});

  // After finish(): why the trace file (RunSetup::trace_file) was not
  // written whole (a full disk, say), or empty.
  const std::string& trace_file_error() const { return trace_file_error_; }

 private:
  // cancel_requested_before_start(), or waiting for state.db's lock (start()).
  bool cancel_requested_in_history(bool wait);
  void refuse_used_artifact_dir(const RunSetup& setup);

  LoadedFlow flow_;
  RunOptions options_;
  std::shared_ptr<trace::EventQueue> events_;
  // Held while abandon() uses history_, and while finish() closes it.
  mutable std::mutex history_mutex_;
  std::unique_ptr<store::HistoryWriter> history_;
  // Where the run id was claimed: given back when no run starts under it.
  std::shared_ptr<store::StateStore> claimed_in_;
  std::string claimed_id_;
  std::string run_id_;  // set once, by the constructor
  std::optional<Run> run_;
  std::atomic<bool> cancel_at_start_{false};
  bool finished_ = false;
  std::shared_ptr<std::ostream> trace_file_;
  std::filesystem::path trace_path_;
  std::string trace_file_error_;
};

}  // namespace pyoco::runner
