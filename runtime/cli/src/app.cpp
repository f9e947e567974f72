#include "app.hpp"

#include <pyoco/core/text.hpp>
#include <pyoco/runner/interrupts.hpp>

#include <pyoco/version.h>
#include <pyoco/plugins/host_abi.hpp>

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <mutex>
#include <new>
#include <string>

namespace pyoco::cli {
namespace {

std::string version_text() {
  return std::string("pyoco ") + PYOCO_VERSION_STRING + "\nplugin ABI " +
         plugins::to_string(plugins::host_abi_version());
}

constexpr const char* kFooter = R"(
Examples:
  pyoco run examples/hello/flow.yaml       run a flow and watch its trace
  pyoco check flow.yaml                    validate a flow without running it
  pyoco plugins list                       show the plugins pyoco can find
  pyoco plugins new acme                   start a plugin of your own
  pyoco server --with-nats --with-worker   cluster mode on one machine

Exit codes: 0 ok, 1 run failed, 2 usage or flow error, 3 a worker's id taken
over, 127 no pyoco-cluster for a cluster command, 130 cancelled.
`pyoco COMMAND --help` tells more about each command.)";

// The most deeply selected subcommand.
CLI::App* selected_leaf(CLI::App& app) {
  CLI::App* current = &app;
  for (;;) {
    std::vector<CLI::App*> chosen = current->get_subcommands();
    if (chosen.empty()) return current;
    current = chosen.front();
  }
}

}  // namespace

int stdout_error() {
  std::cout.flush();
  errno = 0;
  const bool flush_failed = std::fflush(stdout) != 0;
  int err = flush_failed ? errno : 0;
  if (!flush_failed && !std::ferror(stdout) && !std::cout.bad()) return 0;
  if (err == 0) {
    // A write failed before the end (a line of the trace is flushed as it
    // is written), and errno has moved on since: a pipe whose reader left
    // says so to poll(); a write of nothing gives the error again on
    // /dev/full (on a full disk it succeeds: then no reason is given).
    pollfd p{STDOUT_FILENO, POLLOUT, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0) {
      err = EPIPE;
    } else if (::write(STDOUT_FILENO, "", 0) < 0) {
      err = errno;
    }
  }
  return err != 0 ? err : -1;
}

namespace {

// What coreutils' close_stdout does, once for every command: what a command
// printed reached standard output, or the command fails (1) saying so. A
// full disk (/dev/full) was an exit 0 with nothing written. EPIPE is quiet:
// `pyoco runs logs | head -1` is normal use. 0 when all was written.
int check_stdout(const std::string& command) {
  const int err = stdout_error();
  if (err == 0 || err == EPIPE) return 0;
  std::cerr << command << ": cannot write to standard output"
            << (err > 0 ? std::string(": ") + std::strerror(err) : std::string()) << '\n';
  return 1;
}

// "pyoco runs" and its words, for messages.
std::string command_path(const CLI::App* leaf) {
  std::string path;
  for (const CLI::App* a = leaf; a != nullptr; a = a->get_parent()) {
    path = a->get_name() + (path.empty() ? "" : " " + path);
  }
  return path;
}

// A word where a command group expects a command (`pyoco runs watch`):
// says so, with the nearest command and the list, rather than CLI11's
// "The following arguments were not expected: X watch". False when the
// extras were something else (printed by CLI11 then).
bool not_a_command(CLI::App& app) {
  CLI::App* leaf = selected_leaf(app);
  const std::vector<std::string> extras = leaf->remaining();
  const auto commands = leaf->get_subcommands(
      [](const CLI::App* c) { return !c->get_name().empty() && !c->get_group().empty(); });
  if (commands.empty() || extras.empty() || extras.front().starts_with("-")) return false;
  std::vector<std::string> names;
  for (const CLI::App* c : commands) names.push_back(c->get_name());
  const std::string nearest = core::nearest_name(extras.front(), names);
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  const std::string path = command_path(leaf);
  std::cerr << path << ": '" << core::printable(extras.front()) << "' is not a command"
            << (nearest.empty() ? "" : " (did you mean '" + nearest + "'?)")
            << "; the commands are " << list << " (`" << path << " --help` tells more)\n";
  return true;
}

// Out of memory where no one catches it (a thread of the engine): one
// line and exit 1 rather than "terminate called ..." and an abort (134).
// The process ends at once; a run it was running is recorded FAILED
// (interrupted) by the next pyoco that opens the history, as for any
// process that died. Set before the command runs: the handler allocates
// nothing (write(2) and _exit(2) only).
std::string g_out_of_memory_line;  // "pyoco run: out of memory ...\n"
std::terminate_handler g_terminate_before = nullptr;

[[noreturn]] void on_terminate() {
  if (const std::exception_ptr e = std::current_exception(); e && !g_out_of_memory_line.empty()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::bad_alloc&) {
      [[maybe_unused]] const auto n =
          ::write(STDERR_FILENO, g_out_of_memory_line.data(), g_out_of_memory_line.size());
      ::_exit(kExitFailed);
    } catch (...) {
    }
  }
  if (g_terminate_before != nullptr) g_terminate_before();
  std::abort();
}

}  // namespace

StopSignal::StopSignal()
    : interrupts_({.cancel =
                       [this] {
                         std::lock_guard lock(mutex_);
                         stop_ = true;
                         cv_.notify_all();
                       },
                   .exit_now = [] { std::_Exit(kExitCancelled); },
                   .check_now = [] {}}) {}

void StopSignal::wait() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return stop_; });
}

bool StopSignal::requested() {
  std::lock_guard lock(mutex_);
  return stop_;
}

void StopSignal::request() {
  std::lock_guard lock(mutex_);
  stop_ = true;
  cv_.notify_all();
}

void set_up_app(CLI::App& app) {
  app.set_version_flag("--version", version_text(), "Print the version and plugin ABI version");
  app.require_subcommand(0, 1);
}

CLI::App* add_group(CLI::App& app, const std::string& name, const std::string& description) {
  CLI::App* group = app.add_subcommand(name, description);
  group->require_subcommand(0, 1);
  return group;
}

int parse_and_run(CLI::App& app, const CommandTable& table, int argc, char** argv) {
  app.footer(kFooter);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    if (not_a_command(app)) return kExitUsage;
    app.exit(e);
    return kExitUsage;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, version or the error
    if (code == 0) return check_stdout("pyoco") == 0 ? kExitOk : kExitFailed;
    return kExitUsage;
  }

  CLI::App* leaf = selected_leaf(app);
  if (const std::function<int()>* action = table.find(leaf)) {
    // Commands answer what they expect with their own messages; what none
    // expected (a file system error on a path given, no thread to be had)
    // is one line naming the command, not an abort with a core dump.
    int code = kExitFailed;
    g_out_of_memory_line =
        command_path(leaf) +
        ": out of memory; exiting (a run it was running is recorded FAILED, interrupted)\n";
    if (std::get_terminate() != on_terminate) g_terminate_before = std::set_terminate(on_terminate);
    try {
      code = (*action)();
    } catch (const std::bad_alloc&) {
      std::cerr << g_out_of_memory_line << std::flush;
      std::_Exit(kExitFailed);  // the rest (the history's writer) may need memory too
    } catch (const std::exception& e) {
      std::cerr << command_path(leaf) << ": error: " << core::printable(e.what()) << '\n';
    }
    // A command that fails anyway keeps its exit code.
    if (check_stdout(command_path(leaf)) != 0 && code == kExitOk) code = kExitFailed;
    return code;
  }
  // A command group (or nothing) was named without a command: teach, with
  // its whole name ("Usage: pyoco runs ...", as `pyoco runs --help` says).
  std::cerr << (leaf->get_parent() == nullptr ? leaf->help()
                                              : leaf->help(command_path(leaf->get_parent())));
  return kExitUsage;
}

}  // namespace pyoco::cli
