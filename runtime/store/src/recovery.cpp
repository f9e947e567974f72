// Runs whose process died (crash, kill -9) are ended on the next start of
// any pyoco process, so nothing stays RUNNING forever.
#include <pyoco/store/crash_note.hpp>
#include <pyoco/store/history.hpp>

#include <algorithm>
#include <system_error>

namespace pyoco::store {

std::vector<std::string> recover_interrupted_runs(StateStore& store) {
  const ProcessIdentity me = this_process();
  std::vector<std::string> recovered;
  RunFilter active;
  active.active_only = true;
  for (RunRecord run : store.runs(active)) {
    // Another host's processes cannot be asked; leave its runs alone.
    if (run.host != me.host || process_alive(run.pid, run.pid_start)) continue;
    const std::string why =
        "interrupted: the pyoco process (pid " + std::to_string(run.pid) + ") ended while it ran";
    // What its fault handler said, if it crashed in a task's plugin code.
    const std::filesystem::path note_file = store.notes_dir().empty()
                                                ? std::filesystem::path{}
                                                : crash_note_file(store.notes_dir(), run.id);
    const std::optional<CrashNote> crash =
        note_file.empty() ? std::nullopt : read_crash_note(note_file);
    const std::string crashed = crash
                                    ? "crashed the pyoco process (pid " + std::to_string(run.pid) +
                                          "): " + crash->what + " in its plugin code"
                                    : std::string();
    // The last moment anything was heard of the run.
    Clock::time_point last = run.started;
    // Written back whole: the table read gives tasks in order, not their seqs.
    std::vector<TaskRecord> tasks;
    try {
      tasks = store.tasks(run.id);
    } catch (const StoreError&) {
      // A page damaged by hand: end the run anyway, without its tasks' states.
    }
    // While a run goes its writer keeps its duration so far (about each
    // second), and a long task's heartbeats come after its start: the run
    // lived at least as long as the latest of these.
    if (run.duration_ms > 0) {
      last = run.started + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double, std::milli>(run.duration_ms));
    }
    for (const TaskRecord& t : tasks) last = std::max({last, t.started, t.ended, t.heartbeat_at});
    LogFilter last_line;
    last_line.tail = 1;
    const auto logs = store.logs(run.id, last_line);
    if (!logs.empty()) last = std::max(last, logs.back().time);
    for (TaskRecord& t : tasks) {
      if (crash && t.node == crash->node && !core::is_terminal(t.state)) {
        // It ran when the process crashed, whatever its record had reached
        // (the history is a moment behind the run).
        t.state = core::TaskState::Failed;
        t.error = crashed;
        if (t.started == Clock::time_point{}) t.started = last;
        t.ended = std::max(last, t.started);
        t.duration_ms = std::chrono::duration<double, std::milli>(t.ended - t.started).count();
        t.attempts = std::max<std::uint32_t>(t.attempts, 1);
        continue;
      }
      if (core::is_terminal(t.state)) continue;
      if (t.state == core::TaskState::Running) {
        t.state = core::TaskState::Failed;
        t.ended = std::max(last, t.started);  // it ran until then, at least
        t.duration_ms = std::chrono::duration<double, std::milli>(t.ended - t.started).count();
      } else {
        t.state = core::TaskState::Cancelled;
      }
      t.error = why;
    }
    if (crash && std::none_of(tasks.begin(), tasks.end(), [&](const TaskRecord& t) {
          return t.node == crash->node && t.state == core::TaskState::Failed && t.error == crashed;
        })) {
      // It crashed before any of its run's tasks were written.
      TaskRecord& t = tasks.emplace_back();
      t.node = crash->node;
      t.task = crash->task;
      t.state = core::TaskState::Failed;
      t.error = crashed;
      t.started = t.ended = last;
      t.attempts = 1;
    }
    run.status = core::RunStatus::Failed;
    run.reason =
        crash ? "crashed: " + crash->what + " in task " + crash->node + " (" + crash->task + ")"
              : "interrupted";
    run.ended = last;
    run.duration_ms = std::chrono::duration<double, std::milli>(last - run.started).count();
    Batch batch;
    if (!tasks.empty()) batch.tasks.push_back(TaskPages::all(run.id, tasks));
    batch.runs.push_back(run);
    // Its process may have written its end (and exited) since the read
    // above: that end stands.
    if (store.write_if_active(batch)) recovered.push_back(run.id);
    if (!note_file.empty()) {  // read, or cut short: done with either way
      std::error_code ignored;
      std::filesystem::remove(note_file, ignored);
    }
  }
  return recovered;
}

RunRecord resolve_run(const StateStore& store, std::string_view id_or_prefix) {
  if (id_or_prefix.empty()) throw StoreError("no run id given");
  if (auto exact = store.run(id_or_prefix)) return *exact;
  const auto ids = store.ids_with_prefix(id_or_prefix, 6);
  if (ids.empty()) {
    throw StoreError("no run " + std::string(id_or_prefix) +
                     " in the history (see `pyoco runs list`)");
  }
  if (ids.size() > 1) {
    std::string list;
    for (std::size_t i = 0; i < ids.size() && i < 5; ++i) list += (i ? ", " : "") + ids[i];
    if (ids.size() > 5) list += ", ...";
    throw StoreError("run id prefix " + std::string(id_or_prefix) + " is ambiguous (" + list +
                     "); give more of the id");
  }
  return *store.run(ids.front());
}

}  // namespace pyoco::store
