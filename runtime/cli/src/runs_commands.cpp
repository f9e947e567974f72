// `pyoco runs list | show | logs | cancel | artifacts`: the local run
// history, read from $PYOCO_HOME/state.db (see docs/history.md).
#include <pyoco/core/node_name.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/core/value.hpp>
#include <pyoco/runner/json_views.hpp>
#include <pyoco/runner/run_history.hpp>
#include <pyoco/store/history.hpp>
#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <ctime>
#include <fstream>
#include <iostream>
#include <thread>

#include "app.hpp"
#include "command.hpp"
#include "table.hpp"

namespace pyoco::cli {

namespace json = boost::json;
using store::Clock;

namespace {

// How a run is named in what pyoco prints: a generated UUID by its first
// eight characters (plenty to tell runs apart, and `runs show` takes any
// prefix); an id a user chose (--run-id nightly-2026-12-01) whole, since
// its first eight may be shared by every run of its kind.
std::string shown_id(const std::string& id) {
  const bool uuid = id.size() == 36 && id[8] == '-' && id[13] == '-' && id[18] == '-' &&
                    id[23] == '-' && std::all_of(id.begin(), id.end(), [](char c) {
                      return c == '-' || std::isxdigit(static_cast<unsigned char>(c)) != 0;
                    });
  return uuid ? id.substr(0, 8) : id;
}

// {"std":"0.1.0","hello":"0.1.0"} as "hello 0.1.0, std 0.1.0"; "-" for none.
std::string plugins_text(const std::string& json_text) {
  boost::system::error_code ec;
  const boost::json::value v = core::parse_json(json_text, ec);
  std::string out;
  if (!ec && v.is_object()) {
    for (const auto& [name, version] : v.as_object()) {
      out += (out.empty() ? "" : ", ") + core::printable(name) + " " +
             core::printable(version.is_string() ? std::string_view(version.as_string()) : "?");
    }
  }
  return out.empty() ? "-" : out;
}

bool unset(Clock::time_point t) { return t == Clock::time_point{}; }

// Local wall-clock time, to the second: "2026-11-23 03:17:42".
std::string local_time(Clock::time_point t, bool millis = false) {
  if (unset(t)) return "-";
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(us.count() / 1000000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  std::string s = buf;
  if (millis) {
    char ms[8];
    std::snprintf(ms, sizeof ms, ".%03lld", static_cast<long long>(us.count() / 1000 % 1000));
    s += ms;
  }
  return s;
}

std::string human_duration(double ms) {
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%.2f ms", ms);
  } else if (ms < 60000) {
    std::snprintf(buf, sizeof buf, "%.2f s", ms / 1000);
  } else {
    const auto s = static_cast<long long>(std::llround(ms / 1000));
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  }
  return buf;
}

std::string run_duration(const store::RunRecord& r) {
  if (unset(r.ended)) {
    return core::is_terminal(r.status) ? "-" : "running";
  }
  return human_duration(r.duration_ms);
}

std::string human_size(std::uint64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024 * 1024));
  }
  return buf;
}

// Durations as plain decimals (0.237, not boost::json's
// 2.37172E-1): core's writer prints the shortest form.
void print_json(const json::value& v) {
  std::cout << core::to_json_text(core::from_json(v)) << '\n';
}

// A user's mistake or an unusable history: one line, exit 2.
struct RunsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class F>
int guarded(const char* command, F&& body) {
  try {
    return body();
  } catch (const store::StoreError& e) {
    std::cerr << "pyoco runs " << command << ": " << core::printable(e.what()) << '\n';
  } catch (const RunsError& e) {
    std::cerr << "pyoco runs " << command << ": " << core::printable(e.what()) << '\n';
  }
  return kExitUsage;
}

// ---- list ---------------------------------------------------------------------

struct ListOptions {
  std::string status;
  std::string flow;
  std::size_t limit = 20;
  bool json = false;
};

// The history, saying so when another process holds it (its runs left by
// dead processes are ended on opening, a write that waits for the lock).
std::shared_ptr<store::StateStore> open_history() {
  return runner::open_run_history(store::default_store_file(), [](const std::string& line) {
    std::cerr << "pyoco runs: " << core::printable(line) << '\n';
  });
}

int list_runs(const ListOptions& o) {
  auto history = open_history();
  store::RunFilter filter;
  filter.flow = o.flow;
  filter.limit = o.limit;
  if (!o.status.empty()) {
    std::string upper = o.status;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    filter.status = core::run_status_from(upper);
    if (!filter.status) {
      throw RunsError("--status " + o.status +
                      ": expected PENDING, RUNNING, CANCELLING, COMPLETED, FAILED or CANCELLED");
    }
  }
  const auto runs = history->runs(filter);
  if (o.json) {
    json::array out;
    for (const auto& r : runs) out.push_back(runner::to_json(r));
    print_json(out);
    return kExitOk;
  }
  if (runs.empty()) {
    const bool filtered = filter.status || !filter.flow.empty();
    std::cout << (filtered ? "no runs match in " : "no runs recorded yet in ")
              << store::default_store_file().string()
              << (filtered ? "\n" : " (`pyoco run FLOW` records one)\n");
    return kExitOk;
  }
  Table table({"ID", "FLOW", "STATUS", "STARTED", "DURATION"});
  for (const auto& r : runs) {
    table.add({shown_id(r.id), r.flow, core::to_string(r.status), local_time(r.started),
               run_duration(r)});
  }
  table.print(std::cout);
  return kExitOk;
}

// ---- show ---------------------------------------------------------------------

// `runs show` and `runs artifacts`: a run id and the output form.
struct RunIdOptions {
  std::string id;
  bool json = false;
};

int show_run(const RunIdOptions& o) {
  auto history = open_history();
  const store::RunRecord r = store::resolve_run(*history, o.id);
  const auto tasks = history->tasks(r.id);
  if (o.json) {
    runner::write_json(std::cout, r, tasks, history->outputs(r.id));
    std::cout << '\n';
    return kExitOk;
  }
  using core::printable;
  std::cout << "run       " << printable(r.id) << '\n'
            << "flow      " << printable(r.flow)
            << (r.flow_file.empty() ? "" : "  (" + printable(r.flow_file) + ")") << '\n'
            << "status    " << core::to_string(r.status)
            << (r.reason.empty() ? "" : "  (" + printable(r.reason) + ")") << '\n'
            << "started   " << local_time(r.started, true) << '\n'
            << "ended     " << local_time(r.ended, true) << '\n'
            << "duration  " << run_duration(r) << '\n'
            << "process   pid " << r.pid << " on " << printable(r.host) << '\n'
            << "params    " << printable(r.params) << '\n'
            << "plugins   " << plugins_text(r.plugins) << "\n\n";
  if (tasks.empty()) {
    std::cout << "no tasks recorded\n";
    return kExitOk;
  }
  Table table({"NODE", "TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR"});
  for (const auto& t : tasks) {
    const bool ran = !unset(t.started);
    std::string state = core::to_string(t.state);
    // A running task's last heartbeat: "RUNNING 45% copying" (ABI 1.1).
    if (t.state == core::TaskState::Running && !unset(t.heartbeat_at)) {
      if (t.progress >= 0) state += " " + std::to_string(std::lround(t.progress * 100)) + "%";
      if (!t.heartbeat.empty()) state += " " + t.heartbeat;
    }
    table.add({t.node, t.task, state, std::to_string(t.attempts),
               ran && !unset(t.ended) ? human_duration(t.duration_ms) : "-", t.error});
  }
  table.print(std::cout);
  return kExitOk;
}

// ---- output -------------------------------------------------------------------

struct OutputOptions {
  std::string id;
  std::string node;
};

// One task's whole output as JSON, or every kept output by node.
int run_output(const OutputOptions& o) {
  auto history = open_history();
  const store::RunRecord r = store::resolve_run(*history, o.id);
  const auto outputs = history->outputs(r.id);
  const std::string run = shown_id(r.id);
  if (o.node.empty()) {
    json::object all;
    for (const auto& out : outputs) {
      if (out.dropped.empty()) all[out.node] = runner::output_json(out);
    }
    print_json(all);
    return kExitOk;
  }
  // A node inside a loop body or a switch case, named without its
  // iteration (`bump` for bump[0], bump[1] ...): its last run, as pyoco's
  // results.<node> is after the loop.
  const auto tasks = history->tasks(r.id);
  std::string node = o.node;
  const bool exact =
      std::any_of(tasks.begin(), tasks.end(), [&](const TaskRecord& t) { return t.node == node; });
  if (!exact && node.find('[') == std::string::npos) {
    // The one that ended last, as the engine reads it after a parallel foreach.
    const TaskRecord* last = nullptr;
    for (const TaskRecord& t : tasks) {
      if (core::is_iteration_of(t.node, o.node) && t.state == core::TaskState::Succeeded &&
          (last == nullptr || t.ended >= last->ended)) {
        last = &t;
      }
    }
    if (last != nullptr) {
      node = last->node;
    } else if (std::any_of(tasks.begin(), tasks.end(), [&](const TaskRecord& t) {
                 return core::is_iteration_of(t.node, o.node);
               })) {
      throw RunsError("no run of " + core::printable(o.node) + " in run " + run +
                      " succeeded (see `pyoco runs show " + run + "`)");
    }
  }
  for (const auto& out : outputs) {
    if (out.node != node) continue;
    if (!out.dropped.empty()) {
      // Past the task's own limit an output is measured no further.
      const bool own = out.dropped.starts_with("PYOCO_MAX_OUTPUT_BYTES=");
      const bool deep = !out.dropped.starts_with("PYOCO_");
      std::cerr << "pyoco runs output: the output of " << core::printable(o.node)
                << " was not kept: "
                << (deep  ? "it is " + out.dropped
                    : own ? "more than " + out.dropped + " bytes as JSON"
                          : std::to_string(out.bytes) + " bytes, past " + out.dropped +
                                " with the run's other outputs")
                << '\n';
      return kExitFailed;
    }
    print_json(runner::output_json(out));
    return kExitOk;
  }
  const auto t =
      std::find_if(tasks.begin(), tasks.end(), [&](const TaskRecord& t) { return t.node == node; });
  if (t == tasks.end()) {
    throw RunsError("run " + run + " has no task " + core::printable(o.node) +
                    " (see `pyoco runs show " + run + "`)");
  }
  if (t->state == core::TaskState::Succeeded) {
    // It returned null, or it ran before the history kept whole outputs
    // (then its summary is all there is, whole only if it is JSON).
    boost::system::error_code ec;
    const std::string& summary = t->output_summary.empty() ? "null" : t->output_summary;
    const json::value v = core::parse_json(summary, ec);
    if (!ec) {
      print_json(v);
      return kExitOk;
    }
    std::cerr << "pyoco runs output: " << core::printable(o.node)
              << " ran before pyoco kept whole outputs; its summary: " << core::printable(summary)
              << '\n';
    return kExitFailed;
  }
  std::cerr << "pyoco runs output: " << core::printable(o.node) << " has no output: it is "
            << core::to_string(t->state) << '\n';
  return kExitFailed;
}

// ---- logs ---------------------------------------------------------------------

struct LogsOptions {
  std::string id;
  std::string task;
  std::size_t tail = 0;
  bool follow = false;
};

int run_logs(const LogsOptions& o) {
  auto history = open_history();
  const store::RunRecord r = store::resolve_run(*history, o.id);
  // A node inside a loop body named without its iteration (`say` for
  // say[0], say[1] ...) is all its iterations, as `runs output` takes it.
  const bool iterations = !o.task.empty() && o.task.find('[') == std::string::npos;
  if (!o.task.empty()) {
    const auto tasks = history->tasks(r.id);
    const bool known = std::any_of(tasks.begin(), tasks.end(), [&](const TaskRecord& t) {
      return t.node == o.task || (iterations && core::is_iteration_of(t.node, o.task));
    });
    if (!known && core::is_terminal(r.status)) {
      throw RunsError("run " + shown_id(r.id) + " has no task " + o.task +
                      " (see `pyoco runs show " + shown_id(r.id) + "`)");
    }
  }
  store::LogFilter filter;
  filter.node = o.task;
  filter.iterations = iterations;
  filter.tail = o.tail;
  std::size_t printed = 0;
  auto print = [&](const std::vector<store::LogEntry>& lines) {
    for (const auto& l : lines) {
      std::cout << local_time(l.time, true) << ' ' << trace::to_string(l.level) << ' '
                << core::printable(l.node) << ": " << core::printable(l.message) << '\n';
      filter.after = l.seq;
      ++printed;
    }
    std::cout << std::flush;
  };
  print(history->logs(r.id, filter));
  filter.tail = 0;
  if (o.follow) {
    // Until the run ends; one last read catches lines written with the end.
    for (;;) {
      store::recover_interrupted_runs(*history);  // its process may die instead of ending it
      const auto now = history->run(r.id);
      const bool over = !now || core::is_terminal(now->status);
      print(history->logs(r.id, filter));
      if (over) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (printed == 0 && !o.follow) {
    std::cerr << "run " << shown_id(r.id) << ": no log lines"
              << (o.task.empty() ? "" : " from task " + o.task) << '\n';
  }
  return kExitOk;
}

// ---- cancel -------------------------------------------------------------------

struct CancelOptions {
  std::string id;
  bool wait = false;
  double timeout = 30;
};

// Why a run has not acted on a cancel in time, as far as this process can
// tell: the run ends CANCELLED without waiting for its task bodies, so its
// process is what did not act.
std::string why_not_ended(const store::RunRecord& r) {
  const std::string pid = std::to_string(r.pid);
  if (r.host != store::this_process().host) {
    return "its process (pid " + pid + " on " + core::printable(r.host) +
           ") is on another machine: it acts on the request when it next looks for one";
  }
  if (!store::process_alive(r.pid, r.pid_start)) {
    return "its process (pid " + pid +
           ") is gone: the next `pyoco` that opens the history "
           "records the run FAILED (interrupted)";
  }
  // The state, after the command name in parentheses: T stopped, t traced.
  std::ifstream stat("/proc/" + pid + "/stat");
  std::string line;
  std::getline(stat, line);
  const std::size_t close = line.rfind(')');
  if (close != std::string::npos && close + 2 < line.size() &&
      (line[close + 2] == 'T' || line[close + 2] == 't')) {
    return "its process (pid " + pid +
           ") is stopped (SIGSTOP, Ctrl+Z or a debugger): it acts on the request once it goes on "
           "(kill -CONT " +
           pid + ")";
  }
  return "its process (pid " + pid +
         ") has not acted on the request: it may be busy (loading plugins, writing the history) "
         "or hung; `kill -INT " +
         pid + "` twice ends it at once";
}

// How long `runs cancel --wait` waits, after the run's end, for its
// process to leave: a `pyoco run` takes up to a second for bodies deaf to
// the cancel and another to stop their commands.
constexpr std::chrono::seconds kLeaveWithin{5};

int cancel_run(const CancelOptions& o) {
  auto history = open_history();
  const store::RunRecord r = store::resolve_run(*history, o.id);
  if (core::is_terminal(r.status)) {
    std::cerr << "pyoco runs cancel: run " << r.id << " already ended " << core::to_string(r.status)
              << '\n';
    return kExitFailed;
  }
  history->request_cancel(r.id);
  // Wake the run's process so it acts now, not at its next poll; only when
  // the record names a live process on this host. SIGURG is ignored by
  // default, so a process that does not listen for it is not harmed.
  if (r.host == store::this_process().host && store::process_alive(r.pid, r.pid_start)) {
    kill(static_cast<pid_t>(r.pid), SIGURG);
  }
  std::cout << "cancel requested: run " << r.id << " (flow " << r.flow << ", pid " << r.pid << ")\n"
            << std::flush;
  if (!o.wait) return kExitOk;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(o.timeout));
  while (std::chrono::steady_clock::now() < deadline) {
    store::recover_interrupted_runs(*history);  // its process may die instead
    const auto now = history->run(r.id);
    if (now && core::is_terminal(now->status)) {
      // `pyoco run` stops what its tasks started after the run's end (a
      // body deaf to the cancel gets a second, then its commands are
      // killed): the end is told once that process has left, so that a
      // script that starts the job again does not meet the old commands.
      const bool here = r.host == store::this_process().host;
      const auto leave_by = std::min(deadline, std::chrono::steady_clock::now() + kLeaveWithin);
      while (here && store::process_alive(r.pid, r.pid_start) &&
             std::chrono::steady_clock::now() < leave_by) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      std::cout << "run " << r.id << " ended " << core::to_string(now->status);
      if (here && store::process_alive(r.pid, r.pid_start)) {
        std::cout << " (its process, pid " << r.pid
                  << ", goes on: a program that runs more than this run, or one still stopping "
                     "what the run's tasks started)";
      }
      std::cout << '\n';
      return now->status == core::RunStatus::Cancelled ? kExitOk : kExitFailed;
    }
    if (!now && r.status == core::RunStatus::Pending) {
      // Its process stopped before the run began (interrupted while it
      // loaded the flow's plugins, a plugin not found): a --run-id claimed
      // for a run that never started is freed.
      std::cout << "run " << r.id << " never started: its process stopped before the run "
                << "began, and the history keeps no record of it\n";
      return kExitOk;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cerr << "pyoco runs cancel: run " << core::printable(r.id) << " has not ended after "
            << o.timeout << " s; " << why_not_ended(r) << '\n';
  return kExitFailed;
}

// ---- artifacts ----------------------------------------------------------------

int list_artifacts(const RunIdOptions& o) {
  auto history = open_history();
  const store::RunRecord r = store::resolve_run(*history, o.id);
  const auto tasks = history->tasks(r.id);
  if (o.json) {
    print_json(runner::artifacts_json(tasks));
    return kExitOk;
  }
  Table table({"NODE", "NAME", "SIZE", "MEDIA TYPE", "SHA256", "PATH"});
  for (const auto& t : tasks) {
    for (const auto& a : t.artifacts) {
      table.add({t.node, a.name, human_size(a.size), a.media_type, a.sha256.substr(0, 12), a.path});
    }
  }
  if (table.size() == 0) {
    std::cout << "run " << shown_id(r.id) << " saved no artifacts\n";
    return kExitOk;
  }
  table.print(std::cout);
  return kExitOk;
}

}  // namespace

void add_runs_commands(CLI::App* runs, CommandTable& table) {
  auto list = std::make_shared<ListOptions>();
  CLI::App* list_cmd = runs->add_subcommand("list", "List recent runs, newest first");
  list_cmd->add_option("--status", list->status, "Only runs in this state (e.g. FAILED)");
  list_cmd->add_option("--flow", list->flow, "Only runs of this flow (its name)");
  list_cmd->add_option("-n,--limit", list->limit, "At most N runs")
      ->capture_default_str()
      ->check(whole_number_in(1, 1000000));
  list_cmd->add_flag("--json", list->json, "Print JSON for machines (full ids, UTC times)");
  table.add(list_cmd, [list] { return guarded("list", [&] { return list_runs(*list); }); });

  auto show = std::make_shared<RunIdOptions>();
  CLI::App* show_cmd = runs->add_subcommand("show", "Show one run and its tasks");
  show_cmd->add_option("id", show->id, "A run id, or a prefix only one run has")->required();
  show_cmd->add_flag("--json", show->json, "Print JSON for machines");
  table.add(show_cmd, [show] { return guarded("show", [&] { return show_run(*show); }); });

  auto logs = std::make_shared<LogsOptions>();
  auto output = std::make_shared<OutputOptions>();
  CLI::App* output_cmd =
      runs->add_subcommand("output", "Print a task's whole output as JSON (or all, by node)");
  output_cmd->add_option("id", output->id, "A run id, or a prefix only one run has")->required();
  output_cmd->add_option("node", output->node,
                         "A node as `runs show` names it (loop iterations: each[2]); none: an "
                         "object of every kept output by node");
  output_cmd->footer(
      "\nOutputs are kept whole up to PYOCO_MAX_OUTPUT_BYTES per task (default 1 MiB) and\n"
      "PYOCO_MAX_RUN_OUTPUT_BYTES per run (default 64 MiB).\n"
      "Exit codes: 0 printed, 1 the task has no output (it failed, or it was too big to\n"
      "keep), 2 no such run or task.");
  table.add(output_cmd,
            [output] { return guarded("output", [&] { return run_output(*output); }); });

  CLI::App* logs_cmd = runs->add_subcommand("logs", "Print the lines a run's tasks logged");
  logs_cmd->add_option("id", logs->id, "A run id, or a prefix only one run has")->required();
  logs_cmd
      ->add_option("--task", logs->task,
                   "Only this task (its node name; a loop body's node: all its iterations)")
      ->type_name("NODE");
  logs_cmd->add_option("--tail", logs->tail, "Only the last N lines")
      ->type_name("N")
      ->check(whole_number_in(1, 1000000));
  logs_cmd->add_flag("-f,--follow", logs->follow, "Keep printing new lines until the run ends");
  table.add(logs_cmd, [logs] { return guarded("logs", [&] { return run_logs(*logs); }); });

  auto cancel = std::make_shared<CancelOptions>();
  CLI::App* cancel_cmd =
      runs->add_subcommand("cancel", "Cancel a run that another local pyoco process runs");
  cancel_cmd->add_option("id", cancel->id, "A run id, or a prefix only one run has")->required();
  cancel_cmd->add_flag("--wait", cancel->wait, "Wait until the run has ended");
  cancel_cmd->add_option("--timeout", cancel->timeout, "With --wait: give up after SECONDS")
      ->type_name("SECONDS")
      ->capture_default_str()
      ->check(seconds_up_to(86400, "a day"));
  cancel_cmd->footer(
      "\nThe running process is woken and cancels at once, as Ctrl+C would: nothing more "
      "starts,\nrunning tasks are told to stop. Exit 0 requested (with --wait: ended CANCELLED), 1 "
      "the run\nhad already ended (or, with --wait, ended otherwise), 2 no such run.");
  table.add(cancel_cmd,
            [cancel] { return guarded("cancel", [&] { return cancel_run(*cancel); }); });

  auto artifacts = std::make_shared<RunIdOptions>();
  CLI::App* artifacts_cmd = runs->add_subcommand("artifacts", "List the files a run's tasks saved");
  artifacts_cmd->add_option("id", artifacts->id, "A run id, or a prefix only one run has")
      ->required();
  artifacts_cmd->add_flag("--json", artifacts->json, "Print JSON for machines");
  table.add(artifacts_cmd, [artifacts] {
    return guarded("artifacts", [&] { return list_artifacts(*artifacts); });
  });
  // Last: CLI11 copies a footer into subcommands added after it.
  runs->footer(
      "\nThe history lives in $PYOCO_HOME/state.db (default ~/.local/state/pyoco); an ID may be "
      "any\nunambiguous prefix of a run id. Runs whose process died are marked FAILED "
      "(interrupted).");
}

}  // namespace pyoco::cli
