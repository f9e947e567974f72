#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/runner/local_run.hpp>
#include <pyoco/trace/append_file.hpp>
#include <pyoco/trace/redaction.hpp>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace pyoco::runner {

namespace {

void size_from_env(const char* name, std::size_t& value, std::size_t min = 0) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return;
  std::size_t n = 0;
  const char* end = v + std::strlen(v);
  const auto [p, ec] = std::from_chars(v, end, n);
  if (ec == std::errc::result_out_of_range) {
    throw SetupError(SetupError::Setting::Environment,
                     std::string(name) + "=" + v + ": too large; at most " +
                         std::to_string(std::numeric_limits<std::size_t>::max()));
  }
  if (ec != std::errc() || p != end) {
    throw SetupError(SetupError::Setting::Environment,
                     std::string(name) + "=" + v + ": expected a whole number (digits only)");
  }
  if (n < min) {
    throw SetupError(SetupError::Setting::Environment,
                     std::string(name) + "=" + v + ": must be at least " + std::to_string(min));
  }
  value = n;
}

}  // namespace

void limits_from_env(RunLimits& run, store::HistoryOptions& history) {
  size_from_env("PYOCO_MAX_TASKS", run.max_tasks, 1);
  size_from_env("PYOCO_MAX_LOG_BYTES", history.max_log_bytes);
  size_from_env("PYOCO_MAX_RUN_LOG_BYTES", history.max_run_log_bytes);
  size_from_env("PYOCO_MAX_OUTPUT_BYTES", history.max_output_bytes);
  size_from_env("PYOCO_MAX_RUN_OUTPUT_BYTES", history.max_run_output_bytes);
  // 0 would delete every run, this one included, as it is recorded.
  size_from_env("PYOCO_MAX_RUN_HISTORY", history.max_runs, 1);
}

// Two runs of one --run-id and --artifact-dir (each with a history of its
// own, so that neither knew the other) wrote over each other's artifacts.
void LocalRun::refuse_used_artifact_dir(const RunSetup& setup) {
  if (setup.run_id.empty()) return;  // a new UUID: no run had it
  const std::filesystem::path mine =
      std::filesystem::absolute(setup.artifact_dir).lexically_normal() / setup.run_id;
  std::error_code ec;
  if (std::filesystem::is_directory(mine, ec) && !std::filesystem::is_empty(mine, ec)) {
    if (claimed_in_) {
      try {
        claimed_in_->unclaim(claimed_id_);
      } catch (const store::StoreError&) {
      }
      claimed_in_.reset();
    }
    throw SetupError(SetupError::Setting::RunId,
                     setup.run_id + ": artifacts of a run with this id are already there: " +
                         mine.string() + "; choose another id, or another --artifact-dir");
  }
}

LocalRun::LocalRun(LoadedFlow flow, RunSetup setup)
    : flow_(std::move(flow)), events_(std::make_shared<trace::EventQueue>()) {
  // The engine's control thread only queues events; the console, a trace
  // file and the history hear them from the queue's thread.
  // Every listener hears the run through one Redactor when it has secrets.
  std::vector<std::shared_ptr<trace::EventListener>> listeners;
  if (setup.console)
    listeners.push_back(trace::make_trace_sink(setup.console_format, setup.console));
  if (!setup.trace_file.empty()) {
    // Lines written whole, also when other runs append to the same file.
    std::shared_ptr<std::ostream> file = trace::open_append_file(setup.trace_file);
    if (!file) {
      throw SetupError(
          SetupError::Setting::TraceFile,
          setup.trace_file.string() + ": cannot open for writing (" +
              (errno == ENXIO ? std::string("a FIFO that no process reads; start its reader first")
                              : std::string(std::strerror(errno))) +
              ")");
    }
    listeners.push_back(trace::make_trace_sink(setup.trace_file_format, file));
    trace_file_ = file;
    trace_path_ = setup.trace_file;
  }

  options_.params = flow_.params;
  options_.listener = events_;
  // Known before the run starts: abandon() may be called while start()
  // still runs (a task that ends the process as soon as it begins).
  options_.run_id = run_id_ = setup.run_id.empty() ? new_run_id() : setup.run_id;
  options_.env = std::move(setup.env);
  options_.limits = setup.limits;
  options_.artifacts = std::make_shared<LocalArtifactStore>(
      std::filesystem::absolute(setup.artifact_dir).lexically_normal());

  if (setup.history) {
    // Every run is claimed before it starts, its own new id too: the
    // history's first write comes from its writer's thread, and a process
    // that crashed in its first milliseconds (a task that aborts at once)
    // left no trace of the run; a claim is found interrupted by the next
    // command, as a run killed later is.
    const bool given = !setup.run_id.empty();
    if (given) check_run_id(setup.run_id);  // never a claim for an id no run may have
    {
      // Claimed at once, not looked up: two processes given one id at the
      // same moment both found it free and both ran under it.
      bool known = false;
      try {
        const store::ProcessIdentity me = store::this_process();
        store::RunRecord claim;
        claim.id = run_id_;
        claim.flow = flow_.flow->spec->name;
        claim.params = "{}";
        claim.started = std::chrono::system_clock::now();
        claim.host = me.host;
        claim.pid = me.pid;
        claim.pid_start = me.start;
        // A new id waits for no other process's lock: a busy history must
        // not hold a run's start up to its 10 s timeout.
        known = given ? !setup.history->claim(claim) : !setup.history->claim_without_waiting(claim);
        if (!known) claimed_in_ = setup.history, claimed_id_ = run_id_;
      } catch (const store::StoreError& e) {
        // A damaged or read-only history will not take this run either: it
        // has nothing to collide with. One locked (or a full disk) may take
        // another run under a given id meanwhile and this one's writes
        // after: that id cannot be promised, so nothing runs. A new id is
        // nobody else's: the run goes on, recorded by the writer later.
        if (given && e.transient()) {
          throw SetupError(SetupError::Setting::RunId,
                           setup.run_id + ": cannot claim this run id in the history (" + e.what() +
                               "); nothing ran: try again once the history is free, or run "
                               "without --run-id");
        }
      }
      if (known) {
        throw SetupError(SetupError::Setting::RunId,
                         run_id_ + ": the history already has a run with this id; choose another");
      }
    }
    history_ =
        std::make_unique<store::HistoryWriter>(std::move(setup.history), setup.history_options);
    listeners.push_back(history_->recorder());
  }
  refuse_used_artifact_dir(setup);
  for (auto& listener : setup.listeners) listeners.push_back(std::move(listener));
  if (flow_.secrets.empty()) {
    for (auto& listener : listeners) events_->add(std::move(listener));
  } else {
    events_->add(
        trace::redacting(std::make_shared<trace::Redactor>(flow_.secrets), std::move(listeners)));
  }
}

LocalRun::~LocalRun() {
  if (finished_) return;
  // Its history writer goes with this object: a run left going would be
  // recorded as interrupted although it went on.
  if (run_ && !core::is_terminal(run_->status())) run_->cancel();
  finish(std::chrono::milliseconds(0));  // one try: a destructor does not linger
}

Run LocalRun::start(Engine& engine) {
  if (run_) throw std::logic_error("LocalRun::start: the run has started already");
  // A cancel requested through the history while the plugins loaded, as a
  // first Ctrl+C then: the writer looks only for runs it has heard start,
  // and a short run could end before a cancel() after start. Read once they
  // are loaded; here the read may wait its turn for state.db.
  options_.cancelled_at_start = [this] { return cancel_requested_in_history(/*wait=*/true); };
  run_ = engine.start(flow_.flow, std::move(options_));
  if (history_) {
    // A cancel requested through the history, as a first Ctrl+C.
    history_->watch_cancel(run_->id(), [run = *run_]() mutable { run.cancel(); });
  }
  return *run_;
}

bool LocalRun::cancel_requested_before_start() {
  return cancel_requested_in_history(/*wait=*/false);
}

bool LocalRun::cancel_requested_in_history(bool wait) {
  if (cancel_at_start_.load()) return true;
  if (!claimed_in_) return false;
  try {
    const auto claim =
        wait ? claimed_in_->run(claimed_id_) : claimed_in_->run_without_waiting(claimed_id_);
    // A Ctrl+C while the read waited (cancel_at_start) counts too.
    if (!claim || !claim->cancel_requested) return cancel_at_start_.load();
  } catch (const store::StoreError&) {
    // Busy: start() looks again, and the writer's poll once the run goes.
    return cancel_at_start_.load();
  }
  cancel_at_start_.store(true);
  return true;
}

void LocalRun::wait() {
  if (run_) run_->wait();
  events_->flush();
}

void LocalRun::check_cancel_requests() {
  if (history_) history_->check_cancel_requests();
}

std::optional<core::RunStatus> LocalRun::abandon(core::RunStatus end, const std::string& reason,
                                                 std::chrono::milliseconds patience) {
  std::lock_guard lock(history_mutex_);
  if (!history_) return std::nullopt;
  // What the run said so far reaches the history's writer first (its start,
  // in a run that ends the moment it begins): it records only runs it heard.
  const auto handing_on = patience / 4;
  events_->flush_for(handing_on);
  return history_->abandon(run_id_, end, reason, patience - handing_on);
}

void LocalRun::release_claim() const {
  if (!claimed_in_) return;
  try {
    claimed_in_->unclaim(claimed_id_);  // only a claim nothing was recorded under
  } catch (const store::StoreError&) {
    // the next process recovers it as interrupted
  }
}

std::string LocalRun::finish(std::chrono::milliseconds patience,
                             const std::function<void(const std::string&)>& on_retry) {
  finished_ = true;
  if (run_) run_->wait();  // what the history records is the run's end
  events_->flush();
  if (trace_file_ && !trace_file_->flush()) {
    const int why = trace::first_write_error(*trace_file_);
    trace_file_error_ = trace_path_.string() + ": the trace was not written whole (a write failed" +
                        (why != 0 ? std::string(": ") + std::strerror(why) : std::string()) + ")";
  }
  if (!history_) return {};
  // Nothing started under the id (start() threw: a plugin that does not
  // load): it is free again, not a run recorded as interrupted.
  if (!run_) release_claim();
  history_->flush(patience, on_retry);
  std::string error = history_->last_error();
  if (!error.empty()) {
    error = (run_ && !history_->recorded(run_->id()) ? "this run is not in the history: "
                                                     : "the run history may be incomplete: ") +
            error;
  }
  std::lock_guard lock(history_mutex_);
  history_.reset();
  return error;
}

}  // namespace pyoco::runner
