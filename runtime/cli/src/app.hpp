// What the two command-line programs share: `pyoco` (the local product) and
// `pyoco-cluster` (the cluster mode's commands, which `pyoco` hands off to;
// handoff.hpp). Both present themselves as `pyoco`.
#pragma once

#include <pyoco/runner/interrupts.hpp>

#include <CLI/CLI.hpp>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <sstream>

#include "command.hpp"

namespace pyoco::cli {

// Flushes standard output: 0 when everything printed reached it, else the
// error (EPIPE for a reader that left; -1 when no reason is known). Every
// command's output is checked so at its end (app.cpp); a command whose
// output must not be lost (a key shown once) asks itself.
int stdout_error();

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
// A worker (`pyoco worker`, `pyoco server --with-worker`) whose id another
// worker took over while it was silent: it stopped.
inline constexpr int kExitWorkerIdLost = 3;
inline constexpr int kExitCancelled = 130;
// A cluster command asked of a `pyoco` without its `pyoco-cluster` (the
// shell's "command not found").
inline constexpr int kExitNotFound = 127;

inline constexpr const char* kAppDescription =
    "pyoco: a small, fast workflow engine whose tasks come from plugins";

// SIGINT and SIGTERM caught from construction on (a second one exits at
// once, 130): a long-running command (server, worker) makes one before it
// starts what a signal must not cut short — one that came while it started
// (a service manager stopping it at once) then drains and stops it as
// cleanly — and waits on it before it drains and stops.
class StopSignal {
 public:
  StopSignal();
  // Blocks until a SIGINT or SIGTERM came, or request() was called (at
  // once if one already was).
  void wait();
  // Stops as a signal would: for a reason of the command's own (a worker
  // that lost its id).
  void request();
  // Whether one came (or request() was called), without waiting: for what
  // blocks before wait() is reached (a worker waiting for its id).
  bool requested();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  runner::InterruptWatcher interrupts_;
};

// Writes one line to stderr in a single write. A server's or a worker's
// threads log there too; a line written in several pieces can be cut by one
// of theirs, and scripts read a URL off the end of some of these lines.
template <class... Parts>
void say(const Parts&... parts) {
  std::ostringstream line;
  (line << ... << parts);
  line << '\n';
  std::cerr << line.str() << std::flush;
}

// The app as both programs start it: --version, at most one command.
void set_up_app(CLI::App& app);

// A command group: at most one of its commands; named alone, it teaches.
CLI::App* add_group(CLI::App& app, const std::string& name, const std::string& description);

// Adds the footer (last: CLI11 copies it into commands added after it),
// parses argv and runs the chosen command's action.
int parse_and_run(CLI::App& app, const CommandTable& table, int argc, char** argv);

}  // namespace pyoco::cli
