// `pyoco run`, `pyoco check` and `pyoco graph`: a flow file from the
// command line to the engine, the checker or a picture.
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/runner/interrupts.hpp>
#include <pyoco/runner/json_views.hpp>
#include <pyoco/runner/loaded_flow.hpp>
#include <pyoco/runner/local_run.hpp>
#include <pyoco/runner/run_history.hpp>
#include <pyoco/store/crash_note.hpp>
#include <pyoco/store/history.hpp>
#include <pyoco/trace/sinks.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/json.hpp>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include "app.hpp"
#include "command.hpp"
#include "exit_guard.hpp"
#include "plugin_path.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// ---- shared by the three commands -------------------------------------------

struct FlowOptions {
  std::string file;
  std::vector<std::string> params;  // k=v
  std::string params_file;
  std::vector<std::string> secrets;  // k=v or k (from the environment)
  PluginPathOption path;

  void attach(CLI::App* cmd, bool with_params) {
    auto* positional = cmd->add_option("flow", file, "The flow file (flow.yaml or flow.toml)");
    // pyoco's spelling, so that scripts written for it run unchanged.
    auto* config = cmd->add_option("--config", file, "The flow file, as pyoco's --config FILE")
                       ->type_name("FILE");
    positional->excludes(config);
    config->excludes(positional);
    cmd->final_callback([positional, config] {
      if (positional->count() + config->count() == 0) {
        throw CLI::RequiredError("flow (the flow file, or --config FILE)");
      }
    });
    if (with_params) {
      cmd->add_option("-p,--param", params,
                      "A run param KEY=VALUE (repeatable); VALUE is JSON when it parses as JSON, "
                      "else a string")
          ->type_name("KEY=VALUE")
          // One value per occurrence: `--plugin-path dir flow.yaml` must not
          // take flow.yaml as a second directory.
          ->allow_extra_args(false);
      cmd->add_option("--params-file", params_file, "Params from a JSON or YAML object file")
          ->type_name("FILE");
      cmd->add_option("--secret", secrets,
                      "A secret param KEY=VALUE, or KEY to take it from the environment variable "
                      "KEY (repeatable); VALUE is a string, shown as *** in the trace and history")
          ->type_name("KEY[=VALUE]")
          ->allow_extra_args(false);
    }
    path.attach(cmd);
  }
};

// A setting the runner refused (a user's mistake: one line, exit 2), named
// by its flag.
const char* flag(runner::SetupError::Setting setting) {
  switch (setting) {
    case runner::SetupError::Setting::Param:
      return "--param";
    case runner::SetupError::Setting::ParamsFile:
      return "--params-file";
    case runner::SetupError::Setting::Secret:
      return "--secret";
    case runner::SetupError::Setting::TraceFile:
      return "--trace-file";
    case runner::SetupError::Setting::RunId:
      return "--run-id";
    case runner::SetupError::Setting::Environment:
      return "";  // the detail names the variable
  }
  return "";
}

runner::LoadedFlow load(const FlowOptions& o) {
  // `-` is a file name to the reader ("no such file"): say what it meant.
  if (o.file == "-") {
    throw core::FlowError({.file = "-"},
                          "a flow from standard input is not supported: save it to a file and "
                          "give its path");
  }
  if (o.params_file == "-") {
    throw runner::SetupError(runner::SetupError::Setting::ParamsFile,
                             "-: params from standard input are not supported: save them to a "
                             "file and give its path");
  }
  return runner::load_flow(o.file,
                           {.file = o.params_file, .assignments = o.params, .secrets = o.secrets});
}

using core::printable;

// File names, keys, values and ids come from outside: their control
// characters are written escaped (as the trace does), so that a newline or
// an escape sequence in them cannot forge a line or clear the terminal.
void print_diagnostic(std::ostream& out, const core::Diagnostic& d) {
  out << printable(d.where.to_string()) << ": "
      << (d.severity == core::Diagnostic::Severity::Error ? "error: " : "warning: ")
      << printable(d.message) << '\n';
}

// The nodes in an order they can run, with what each waits for.
void print_plan(std::ostream& out, const core::FlowGraph& g, const std::string& indent) {
  std::vector<std::uint32_t> order;
  std::vector<std::size_t> waiting(g.nodes.size());
  for (std::uint32_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& r : g.nodes[i].requirements) waiting[i] += r.nodes.size();
  }
  std::vector<std::uint32_t> ready = g.roots();
  while (!ready.empty()) {
    const std::uint32_t n = ready.front();
    ready.erase(ready.begin());
    order.push_back(n);
    for (std::uint32_t s : g.nodes[n].successors) {
      std::size_t count = 0;
      for (const auto& r : g.nodes[s].requirements) {
        count += static_cast<std::size_t>(std::count(r.nodes.begin(), r.nodes.end(), n));
      }
      waiting[s] -= count;
      if (waiting[s] == 0) ready.push_back(s);
    }
  }
  std::size_t step = 0;
  for (std::uint32_t n : order) {
    const core::GraphNode& node = g.nodes[n];
    if (!node.visible()) continue;
    std::string what = node.kind == core::GraphNode::Kind::Task ? node.task->use : "";
    std::string after;
    for (const auto& r : node.requirements) {
      std::string names;
      for (std::uint32_t p : r.nodes) names += (names.empty() ? "" : ", ") + g.nodes[p].name;
      after += (after.empty() ? "" : "; ") + (r.any ? "any of " + names : names);
    }
    out << indent << ++step << ". " << printable(node.name)
        << (what.empty() ? "" : "  " + printable(what))
        << (after.empty() ? "" : "  (after " + after + ")");
    if (node.kind == core::GraphNode::Kind::Task) {
      const auto& t = *node.task;
      if (t.retries > 0) out << "  retries=" << t.retries;
      if (t.timeout_sec > 0) out << "  timeout=" << t.timeout_sec << "s";
      if (t.fail_policy == core::FailPolicy::Isolate) out << "  fail_policy=isolate";
    }
    out << '\n';
    for (std::size_t c = 0; c < node.children.size(); ++c) {
      if (node.kind == core::GraphNode::Kind::Switch) {
        const auto& sc = node.switch_term->cases[c];
        out << indent << "   case " << (sc.is_default ? "default" : core::to_json_text(sc.match))
            << ":\n";
      } else {
        out << indent << "   each iteration:\n";
      }
      print_plan(out, *node.children[c], indent + "      ");
    }
  }
}

// ---- run ----------------------------------------------------------------------

struct RunOptionsCli {
  FlowOptions flow;
  unsigned jobs = 0;
  bool non_cute = false;
  bool cute = false;
  std::string trace_format;
  std::string trace_file;
  std::string artifact_dir;
  std::string run_id;
  bool dry_run = false;
};

trace::TraceFormat console_format(const RunOptionsCli& o) {
  if (o.trace_format == "json") return trace::TraceFormat::Json;
  if (o.trace_format == "plain" || o.non_cute) return trace::TraceFormat::Plain;
  if (o.trace_format == "cute" || o.cute) return trace::TraceFormat::Cute;
  const char* env = std::getenv("PYOCO_CUTE");
  if (env != nullptr && std::string(env) == "0") return trace::TraceFormat::Plain;
  return isatty(STDOUT_FILENO) ? trace::TraceFormat::Cute : trace::TraceFormat::Plain;
}

// --artifact-dir, else PYOCO_ARTIFACT_DIR, else .pyoco/artifacts.
fs::path artifact_dir(const RunOptionsCli& o) {
  if (!o.artifact_dir.empty()) return o.artifact_dir;
  const char* env = std::getenv("PYOCO_ARTIFACT_DIR");
  return env != nullptr ? fs::path(env) : fs::path(".pyoco/artifacts");
}

// A fault in a plugin's code is named: while the run's plugins load (static
// constructors, register_tasks), with its library, and nothing ran (it was a
// bare exit 139); while the run goes, with the task whose code this thread
// was running, on stderr and in a note the history reads when it finds the
// run interrupted (store/crash_note.hpp): the history is a moment behind
// the run, and named the tasks last recorded running, not the one that
// crashed. Then the fault goes on to the handler that was there before (the
// default, or a sanitizer's). Only write(2), open(2), mkdir(2),
// sigaction(2) and _exit(2) in the handler.
constexpr int kFaults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
struct sigaction g_before_fault[std::size(kFaults)];
// The note's directory and file for the run going on, set before it starts.
char g_crash_dir[4096] = "";
char g_crash_note[4096] = "";

const char* fault_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "a segmentation fault (SIGSEGV)";
    case SIGBUS:
      return "a bus error (SIGBUS)";
    case SIGILL:
      return "an illegal instruction (SIGILL)";
    case SIGFPE:
      return "an arithmetic fault (SIGFPE)";
    case SIGABRT:
      return "abort() (SIGABRT)";
    default:
      return "a fault";
  }
}

// The action `sig` had before FaultsNamed (async-signal-safe).
void restore_previous_action(int sig) {
  for (std::size_t i = 0; i < std::size(kFaults); ++i) {
    if (kFaults[i] == sig) sigaction(sig, &g_before_fault[i], nullptr);
  }
}

extern "C" void on_fault(int sig, siginfo_t* info, void*) {
  const int saved_errno = errno;
  // Sent by another process (kill), not a fault of this process's code
  // (abort() and raise() send it to themselves): nobody crashed it; the
  // signal's previous action is taken, once restored.
  if (info != nullptr && info->si_code <= 0 && info->si_pid != ::getpid()) {
    restore_previous_action(sig);
    ::raise(sig);
    errno = saved_errno;
    return;
  }
  auto put_to = [](int fd, std::string_view text) {
    [[maybe_unused]] const auto n = ::write(fd, text.data(), text.size());
  };
  auto put = [&](std::string_view text) { put_to(STDERR_FILENO, text); };
  if (const char* library = plugins::library_being_loaded()) {
    put("pyoco run: ");
    put(library);
    put(" crashed while loading (a fault in its code run at load or in register_tasks); nothing "
        "ran (run `pyoco plugins lint` on its plugin)\n");
    ::_exit(kExitUsage);
  }
  if (const plugins::CallInfo* call = plugins::call_on_this_thread()) {
    put("pyoco run: task ");
    put(call->node_name);
    put(" (");
    put(call->task_name);
    put(") crashed the process: ");
    put(fault_name(sig));
    put(" in its plugin code\n");
    if (g_crash_note[0] != '\0') {
      ::mkdir(g_crash_dir, 0700);
      const int fd = ::open(g_crash_note, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) {
        for (std::string_view line :
             {call->node_name, call->task_name, std::string_view(fault_name(sig))}) {
          put_to(fd, line);
          put_to(fd, "\n");
        }
        ::close(fd);
      }
    }
  }
  restore_previous_action(sig);
  errno = saved_errno;
  // Returned, the fault happens again there (SIGABRT: abort raises it again).
}

// Names the library or the task of a fault while it lives (see above).
struct FaultsNamed {
  FaultsNamed() {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    // SA_ONSTACK: on a thread with an alternate stack (a sanitizer's), a
    // stack overflow still reaches a handler.
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (std::size_t i = 0; i < std::size(kFaults); ++i) {
      sigaction(kFaults[i], &sa, &g_before_fault[i]);
    }
  }
  ~FaultsNamed() {
    for (std::size_t i = 0; i < std::size(kFaults); ++i) {
      sigaction(kFaults[i], &g_before_fault[i], nullptr);
    }
    g_crash_note[0] = '\0';
  }
  // Where the note of run `run_id` goes, if `dir` is known.
  static void note_in(const fs::path& dir, const std::string& run_id) {
    const std::string d = dir.string(), f = store::crash_note_file(dir, run_id).string();
    if (dir.empty() || f.size() >= sizeof g_crash_note) return;
    std::error_code ignored;
    fs::remove(store::crash_note_file(dir, run_id), ignored);  // a stale one (a reused --run-id)
    std::memcpy(g_crash_dir, d.c_str(), d.size() + 1);
    std::memcpy(g_crash_note, f.c_str(), f.size() + 1);
  }
};

int run_flow(const RunOptionsCli& o) {
  // Ctrl+C and SIGTERM are watched from the start, not only once the run
  // has started: one that comes while the flow is read leaves at once, and
  // nothing runs; one while a plugin's library loads (its code may never
  // return) leaves at once, naming it; one between two loads cancels the run
  // as soon as it exists; while the run goes, the first cancels it and a
  // second leaves at once; after its end, while the history is written, the
  // first says so and a second leaves without it.
  // A reader that goes away (`pyoco run ... | head`) must not kill the run
  // half way (SIGPIPE): the trace stops, the run and its history go on.
  // The commands tasks start get SIGPIPE back (std/shell).
  std::signal(SIGPIPE, SIG_IGN);
  std::mutex state_mutex;
  std::optional<Run> started;
  std::optional<runner::LocalRun> local;  // outlives the watcher, which may use it
  runner::LocalRun* running = nullptr;    // `local`, once it is starting the run
  bool cancel_when_started = false, ended = false;
  // A first Ctrl+C after the run's end said a second leaves without the
  // history (the run may be over before `ended` is set).
  bool promised_to_leave = false;
  bool history_waits = false;  // the last history write is being tried again
  const auto exit_code = [](core::RunStatus status) {
    return status == core::RunStatus::Completed   ? kExitOk
           : status == core::RunStatus::Cancelled ? kExitCancelled
                                                  : kExitFailed;
  };
  // After the run's end: leave now, with the run's exit code, without the
  // rest of the history (under state_mutex). Unless the store refuses
  // writes already, the run's own record is written first (a second or so
  // at most): a writer far behind a busy run would leave it RUNNING, found
  // FAILED (interrupted) later, as a crash.
  const auto leave_without_history = [&](bool record_the_end) {
    std::cout << std::flush;
    const std::optional<core::RunStatus> recorded =
        record_the_end ? running->abandon(core::RunStatus::Cancelled,
                                          "interrupted twice: pyoco exited without waiting for it")
                       : std::nullopt;
    if (recorded) {
      std::cerr << "pyoco run: interrupted; the run is recorded " << core::to_string(*recorded)
                << ", leaving without writing the rest of its history\n";
    } else {
      std::cerr << "pyoco run: interrupted; leaving without writing the rest of the run history\n";
    }
    std::_Exit(exit_code(started->status()));
  };
  runner::InterruptWatcher interrupts({
      .cancel =
          [&] {
            std::lock_guard lock(state_mutex);
            if (running == nullptr) {
              std::cerr << "pyoco run: interrupted before the run started; nothing ran\n";
              std::_Exit(kExitCancelled);
            }
            if (ended && history_waits) {
              leave_without_history(false);  // as the wait's message says
            } else if (ended || (started && core::is_terminal(started->status()))) {
              // Over: its last events go to the trace and the history.
              promised_to_leave = true;
              std::cerr << "pyoco run: writing the run history; interrupt again to leave "
                           "without it\n";
            } else if (started) {
              started->cancel();
            } else if (const char* library = plugins::library_being_loaded()) {
              // Its code runs now (static constructors, register_tasks) and
              // may never return: waiting for it would lose this interrupt.
              // No run started: a --run-id claimed for it is free again (the
              // store frees only a claim nothing was recorded under, should
              // the load end meanwhile and the run begin).
              local->release_claim();
              std::cerr << "pyoco run: interrupted while loading plugin "
                        << plugins::plugin_being_loaded() << " (" << library << "); nothing ran\n";
              std::_Exit(kExitCancelled);
            } else {
              cancel_when_started = true;
              // Read by Engine::start once the plugins are loaded: a short
              // run cannot end before a cancel() after start() reaches it.
              if (running != nullptr) running->cancel_at_start();
              std::cerr << "pyoco run: loading the flow's plugins; the run is cancelled as soon "
                           "as it starts (interrupt again to leave at once)\n";
            }
          },
      .exit_now =
          [&] {
            std::lock_guard lock(state_mutex);
            std::cout << std::flush;
            // Over (its end known, its history being written): as the first
            // Ctrl+C said, leave without the history, with the run's exit code.
            if (ended || promised_to_leave) {
              // What its abandoned tasks left behind goes too, as it would
              // have after the run's end (stop_descendants).
              if (!ended && started->status() != core::RunStatus::Completed) {
                runner::signal_descendants(SIGKILL);
              }
              leave_without_history(!history_waits);
            }
            // Stop every process a task started, record the run, leave. What
            // ran so far is in the trace and the history.
            runner::signal_descendants(SIGKILL);
            std::cerr << "pyoco run: interrupted again; killed what the tasks started and "
                         "exiting without waiting for them\n";
            // Recorded as it is known to the history: CANCELLED, or its own
            // end if it had one; the exit code says the same.
            std::optional<core::RunStatus> recorded;
            if (started) {
              // The first Ctrl+C's cancel ends the run within moments (it
              // waits for no body): a second one right behind it would
              // otherwise record the run as abandoned, not as cancelled.
              started->wait_for(std::chrono::milliseconds(250));
              recorded = running->abandon(core::RunStatus::Cancelled,
                                          "interrupted twice: pyoco exited without waiting for it");
            } else if (running != nullptr) {
              // Never started (its plugins still loading): a --run-id claimed
              // for it is free again, as after a first Ctrl+C inside a load.
              running->release_claim();
            }
            // Not recorded in time (state.db held): a run already over
            // still leaves with its own exit code.
            if (!recorded && started && core::is_terminal(started->status())) {
              recorded = started->status();
            }
            std::_Exit(recorded ? exit_code(*recorded) : kExitCancelled);
          },
      .check_now =
          [&] {
            runner::LocalRun* loading = nullptr;
            {
              std::lock_guard lock(state_mutex);
              if (started && !ended) {
                running->check_cancel_requests();
              } else if (running != nullptr && !started && !cancel_when_started) {
                loading = running;
              }
            }
            // Read outside the lock, never waiting for state.db: a Ctrl+C
            // while a plugin loads must not queue behind another process's
            // write. Busy, start() looks again.
            if (loading == nullptr || !loading->cancel_requested_before_start()) return;
            std::lock_guard lock(state_mutex);
            if (started || cancel_when_started) return;
            // As a first Ctrl+C between two loads; while one loads too:
            // the run must start to be recorded CANCELLED, as asked.
            cancel_when_started = true;
            std::cerr << "pyoco run: cancel requested (pyoco runs cancel) while the flow's "
                         "plugins load; the run is cancelled as soon as it starts\n";
          },
  });
  const runner::LoadedFlow flow = load(o.flow);
  EngineOptions eo;
  eo.jobs = o.jobs;
  eo.plugin_search_path = o.flow.path.search_path();
  // Optional so that it ends (see ~Engine) while Ctrl+C is still watched.
  std::optional<Engine> engine(std::in_place, eo);
  if (const auto errors = runner::check_before_run(flow, *engine->catalog()); !errors.empty()) {
    for (const auto& d : errors) print_diagnostic(std::cerr, d);
    std::cerr << "pyoco run: " << printable(o.flow.file)
              << " has errors; nothing ran (see `pyoco check`)\n";
    return kExitUsage;
  }
  if (o.dry_run) {
    std::cout << "plan for flow " << printable(flow.flow->spec->name) << ":\n";
    print_plan(std::cout, flow.flow->graph, "  ");
    return kExitOk;
  }

  runner::RunSetup setup;
  std::optional<fs::path> setup_notes_dir;  // where a crash leaves its note (FaultsNamed)
  setup.run_id = o.run_id;
  setup.env = process_environment();  // what $env.NAME reads
  setup.artifact_dir = artifact_dir(o);
  setup.console = std::shared_ptr<std::ostream>(&std::cout, [](std::ostream*) {});
  setup.console_format = console_format(o);
  // The trace appended to the flow (or params) file broke it for the next
  // run: the same file by device and inode, whatever the paths say.
  for (const auto& [what, input] : {std::pair<const char*, const std::string&>{"flow", o.flow.file},
                                    {"params", o.flow.params_file}}) {
    std::error_code ec;
    if (!o.trace_file.empty() && !input.empty() &&
        std::filesystem::equivalent(o.trace_file, input, ec)) {
      throw runner::SetupError(runner::SetupError::Setting::TraceFile,
                               o.trace_file + ": is the " + what + " file " + input +
                                   "; the trace would be appended to it");
    }
  }
  // Nor the run history's database, its WAL or shared-memory file: lines
  // appended to them corrupt every run recorded. By device and inode, or
  // by path for one SQLite has not made yet.
  if (!o.trace_file.empty()) {
    const fs::path db = store::default_store_file();
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      const fs::path file = db.string() + suffix;
      std::error_code ec, ec2;
      if (std::filesystem::equivalent(o.trace_file, file, ec) ||
          fs::weakly_canonical(fs::absolute(o.trace_file, ec2), ec2) ==
              fs::weakly_canonical(fs::absolute(file, ec2), ec2)) {
        throw runner::SetupError(runner::SetupError::Setting::TraceFile,
                                 o.trace_file + ": is " + file.string() +
                                     ", a file of the run history's database; the trace "
                                     "would be appended to it (choose another file)");
      }
    }
  }
  setup.trace_file = o.trace_file;
  setup.trace_file_format =
      o.trace_format == "json" ? trace::TraceFormat::Json : trace::TraceFormat::Plain;
  // The run history: fed by the same events as the trace. A history that
  // cannot be opened costs the record, not the run.
  std::string unrecorded;
  runner::limits_from_env(setup.limits, setup.history_options);  // SetupError: exit 2
  try {
    setup.history = runner::open_run_history(
        store::default_store_file(),
        [](const std::string& line) { std::cerr << "pyoco run: " << line << '\n'; });
    setup_notes_dir = setup.history->notes_dir();
  } catch (const store::StoreError& e) {
    unrecorded = e.what();
    if (e.transient() && unrecorded.find("locked") != std::string::npos) {
      unrecorded +=
          " (another process holds it: a pyoco stopped with Ctrl+Z, or a long sqlite3 "
          "session; `fuser " +
          store::default_store_file().string() + "` names it)";
    }
  }
  local.emplace(flow, std::move(setup));
  if (!unrecorded.empty()) {
    std::cerr << "pyoco run: warning: this run is not recorded in the history: "
              << printable(unrecorded) << '\n';
  }

  // Tasks' children, and the orphans they leave, stay ours to stop.
  runner::become_subreaper();

  ExitGuard exit_guard([&](const std::string& how) {
    // Nothing here waits for the run's control (it may be stuck): the
    // history shows which tasks were running, each with this reason.
    // A body abandoned at its cancel or deadline may exit after the run's
    // end: the run keeps that end, and pyoco its exit code.
    std::optional<core::RunStatus> ended;
    {
      std::lock_guard lock(state_mutex);
      if (started && core::is_terminal(started->status())) ended = started->status();
    }
    const std::string what =
        "a task called " + how +
        (ended ? " after the run ended " + std::string(core::to_string(*ended)) +
                     " (a body that had not stopped when told to)"
               : std::string(" while the run was going"));
    std::cout << std::flush;
    runner::signal_descendants(SIGKILL);  // as pyoco leaves them after a second Ctrl+C
    const std::optional<core::RunStatus> recorded =
        local->abandon(core::RunStatus::Failed, what + ": pyoco exited");
    runner::signal_descendants(SIGKILL);  // what tasks started meanwhile
    std::cerr << "pyoco run: " << what << "; "
              << (recorded ? "the run is recorded " + std::string(core::to_string(*recorded))
                           : std::string("the run may be missing from the history"))
              << " (a plugin must not end the process: return an error instead)\n";
    std::_Exit(ended ? exit_code(*ended) : kExitFailed);
  });

  {
    std::lock_guard lock(state_mutex);
    running = &*local;
  }
  // Not under the lock: starting loads the plugins, which may take a while.
  FaultsNamed named;
  if (setup_notes_dir) FaultsNamed::note_in(*setup_notes_dir, local->run_id());
  // An exit() there, too: it used to end pyoco with the plugin's code and
  // no word (documented: exit 2, as a crash).
  plugins::report_exits_while_loading("pyoco run", "nothing ran", kExitUsage);
  Run run = local->start(*engine);
  {
    std::lock_guard lock(state_mutex);
    started = run;
    if (cancel_when_started) started->cancel();
  }
  local->wait();   // the trace's last line before anything else is printed
  engine.reset();  // up to a second for bodies that ignore their cancel
  // A task that was abandoned (cancel, deadline) may have left a process
  // behind, even one a late body started during the reset: it goes with
  // the run, not with the shell that started pyoco.
  if (started->status() != core::RunStatus::Completed) {
    runner::stop_descendants(std::chrono::seconds(1));
  }
  {
    std::lock_guard lock(state_mutex);
    ended = true;
  }
  const auto say_history_waits = [&](const std::string& why) {
    std::lock_guard lock(state_mutex);
    history_waits = true;
    std::cerr << "pyoco run: the run history cannot be written yet (" << why
              << "); trying again for up to " << runner::LocalRun::kHistoryPatience.count()
              << " s (interrupt to leave without it)\n";
  };
  if (const std::string e = local->finish(runner::LocalRun::kHistoryPatience, say_history_waits);
      !e.empty()) {
    std::cerr << "pyoco run: warning: " << printable(e) << '\n';
  }
  const bool trace_lost = !local->trace_file_error().empty();
  if (trace_lost) {
    std::cerr << "pyoco run: --trace-file " << printable(local->trace_file_error()) << '\n';
  }
  switch (started->status()) {
    case core::RunStatus::Completed:
      // As a trace lost on standard output: the run is recorded, the exit
      // code says its trace is not whole.
      return trace_lost ? kExitFailed : kExitOk;
    case core::RunStatus::Cancelled:
      return kExitCancelled;
    default:
      return kExitFailed;
  }
}

// ---- check --------------------------------------------------------------------

struct CheckOptions {
  FlowOptions flow;
  bool dry_run = false;
  bool json = false;
};

int check(const CheckOptions& o) {
  std::vector<core::Diagnostic> diagnostics;
  std::shared_ptr<const core::CompiledFlow> flow;
  try {
    const runner::LoadedFlow loaded = load(o.flow);
    flow = loaded.flow;
    diagnostics = runner::check(loaded, o.flow.path.catalog());
  } catch (const core::FlowError& e) {
    diagnostics.push_back({core::Diagnostic::Severity::Error, e.where(), e.problem()});
  }
  std::size_t errors = 0, warnings = 0;
  for (const auto& d : diagnostics) {
    (d.severity == core::Diagnostic::Severity::Error ? errors : warnings) += 1;
  }
  if (o.json) {
    json::array ds;
    for (const auto& d : diagnostics) ds.push_back(runner::to_json(d));
    json::object out{{"file", o.flow.file},
                     {"flow", flow ? json::value(flow->spec->name) : nullptr},
                     {"ok", errors == 0},
                     // pyoco's own key, for scripts written against it
                     {"status", errors > 0 ? "error" : (warnings > 0 ? "warning" : "ok")},
                     {"errors", errors},
                     {"warnings", warnings},
                     {"diagnostics", std::move(ds)}};
    if (o.dry_run && flow && errors == 0) {
      std::ostringstream plan;
      print_plan(plan, flow->graph, "");
      out["plan"] = plan.str();
    }
    std::cout << core::valid_utf8(json::serialize(out)) << '\n';
    return errors == 0 ? kExitOk : (o.dry_run ? kExitUsage : kExitFailed);
  }
  for (const auto& d : diagnostics) print_diagnostic(errors > 0 ? std::cerr : std::cout, d);
  if (errors == 0) {
    std::cout << printable(o.flow.file) << ": ok"
              << (warnings > 0 ? " (" + std::to_string(warnings) +
                                     (warnings == 1 ? " warning)" : " warnings)")
                               : "")
              << '\n';
    if (o.dry_run && flow) {
      std::cout << "plan for flow " << printable(flow->spec->name) << ":\n";
      print_plan(std::cout, flow->graph, "  ");
    }
    return kExitOk;
  }
  std::cerr << printable(o.flow.file) << ": " << errors << (errors == 1 ? " error" : " errors")
            << '\n';
  // As pyoco: a dry run that finds errors exits 2 (the run could not start).
  return o.dry_run ? kExitUsage : kExitFailed;
}

// ---- graph --------------------------------------------------------------------

struct GraphOptions {
  FlowOptions flow;
  std::string format = "dot";
};

int graph(const GraphOptions& o) {
  const auto flow = load(o.flow).flow;
  // A cycle's closing edge is left out of the graph check builds: drawn, it
  // would be a wrong picture (`a >> b >> a` as a -> b). Refused as `run`
  // refuses it, with check's messages. Errors that do not change the
  // picture (a task no plugin provides) are left to `pyoco check`.
  if (!flow->errors.empty()) {
    for (const auto& d : flow->errors) print_diagnostic(std::cerr, d);
    std::cerr << "pyoco graph: " << printable(o.flow.file)
              << " has errors; nothing drawn (see `pyoco check`)\n";
    return kExitUsage;
  }
  std::cout << (o.format == "mermaid" ? core::export_mermaid(*flow) : core::export_dot(*flow));
  return kExitOk;
}

// Runs a command body, turning a user's mistake into one line and exit 2.
// `flow_file`: the flow file the command was given.
template <class F>
int guarded(const char* command, const std::string& flow_file, F&& body) {
  try {
    return body();
  } catch (const core::FlowError& e) {
    // As `pyoco check` shows it, and, as for a flow that does not check,
    // that nothing ran (docs/flows.md "Running").
    print_diagnostic(std::cerr, {core::Diagnostic::Severity::Error, e.where(), e.problem()});
    if (std::string_view(command) == "run") {
      std::error_code ec;
      if (fs::is_regular_file(flow_file, ec)) {
        std::cerr << "pyoco run: " << printable(flow_file)
                  << " has errors; nothing ran (see `pyoco check`)\n";
      } else {  // no such file, a directory, a FIFO: the line above says so
        std::cerr << "pyoco run: nothing ran\n";
      }
    }
  } catch (const plugins::LoadError& e) {
    std::cerr << "pyoco " << command << ": " << printable(e.what()) << '\n';
  } catch (const runner::SetupError& e) {
    const std::string f = flag(e.setting());
    std::cerr << "pyoco " << command << ": " << (f.empty() ? "" : f + " ") << printable(e.detail())
              << '\n';
  } catch (const std::invalid_argument& e) {  // e.g. a run id the engine does not allow
    std::cerr << "pyoco " << command << ": " << printable(e.what()) << '\n';
  }
  return kExitUsage;
}

}  // namespace

void add_flow_commands(CLI::App& app, CommandTable& table) {
  auto run = std::make_shared<RunOptionsCli>();
  CLI::App* run_cmd = app.add_subcommand("run", "Run a flow file and print its trace");
  run->flow.attach(run_cmd, true);
  run_cmd->add_option("-j,--jobs", run->jobs, "Tasks run at once (default: hardware threads)")
      ->check(jobs_option());
  run_cmd->add_flag("--non-cute", run->non_cute, "Plain trace lines (also PYOCO_CUTE=0)");
  run_cmd->add_flag("--cute", run->cute, "Cute trace lines even when stdout is not a terminal");
  run_cmd
      ->add_option("--trace-format", run->trace_format, "cute, plain or json (one object a line)")
      ->check(CLI::IsMember({"cute", "plain", "json"}));
  run_cmd
      ->add_option("--trace-file", run->trace_file,
                   "Also append the trace to FILE (plain, or json with --trace-format json)")
      ->type_name("FILE");
  run_cmd
      ->add_option("--artifact-dir", run->artifact_dir,
                   "Where artifacts go (default: PYOCO_ARTIFACT_DIR, else .pyoco/artifacts)")
      ->type_name("DIR");
  run_cmd
      ->add_option("--run-id", run->run_id,
                   "Name the run (1-128 of A-Z a-z 0-9 . _ -; default: a new UUID)")
      ->type_name("ID")
      ->check(CLI::Validator(
          [](std::string& id) -> std::string {
            return id.empty() ? "give a name, or leave --run-id out for a new UUID" : "";
          },
          "ID"));
  run_cmd->add_flag("--dry-run", run->dry_run, "Check the flow and print its plan; run nothing");
  run_cmd->footer(
      "\nExit codes: 0 COMPLETED, 1 FAILED, 2 usage or flow error, 130 cancelled.\n"
      "Ctrl+C once cancels (running tasks are told to stop); twice exits at once.");
  table.add(run_cmd,
            [run] { return guarded("run", run->flow.file, [&] { return run_flow(*run); }); });

  auto chk = std::make_shared<CheckOptions>();
  CLI::App* check_cmd = app.add_subcommand("check", "Validate a flow file without running it");
  chk->flow.attach(check_cmd, true);
  check_cmd->add_flag("--dry-run", chk->dry_run, "Also print the execution plan");
  check_cmd->add_flag("--json", chk->json, "Print JSON for machines");
  check_cmd->footer("\nExit codes: 0 no errors (warnings allowed), 1 errors, 2 usage.");
  table.add(check_cmd,
            [chk] { return guarded("check", chk->flow.file, [&] { return check(*chk); }); });

  auto gr = std::make_shared<GraphOptions>();
  CLI::App* graph_cmd =
      app.add_subcommand("graph", "Print a flow's DAG as Graphviz dot or Mermaid");
  gr->flow.attach(graph_cmd, false);
  graph_cmd->add_option("-f,--format", gr->format, "dot or mermaid")
      ->capture_default_str()
      ->check(CLI::IsMember({"dot", "mermaid"}));
  graph_cmd->footer(
      "\nExit codes: 0 drawn, 2 usage, or a flow that does not load or whose graph "
      "has a cycle (nothing drawn).");
  table.add(graph_cmd,
            [gr] { return guarded("graph", gr->flow.file, [&] { return graph(*gr); }); });
}

}  // namespace pyoco::cli
