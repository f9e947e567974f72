// ExitGuard: a plugin's exit() while runs go is reported, not obeyed.
#pragma once

#include <pyoco/plugins/loader.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>

namespace pyoco::cli {

// A task that calls exit() or quick_exit() while runs go — on a worker
// thread or a thread of its own. pyoco itself never does then (it leaves
// with _Exit, or returns from main once the guard is gone), so such an exit
// is a plugin's. Left alone, the process would end with the plugin's status
// (exit(0): a silent success) and its runs would be lost: `pyoco run`'s
// missing from the history, a worker's delivered again to the next worker,
// which the same task ends too. Instead the report records them FAILED,
// saying so, and ends the process.
class ExitGuard {
 public:
  // Called once, on the first exiting thread, with "exit(N)" or
  // "quick_exit()"; it must end the process (_Exit).
  using Report = std::function<void(const std::string& how)>;

  explicit ExitGuard(Report report) : report_(std::move(report)) {
    g_guard.store(this);
    g_pid.store(::getpid());
    g_state.store(kArmed);
    register_handlers();
    // Again after each plugin library loads, so that it runs before the
    // library's exit handlers (static destructors), which exit() runs
    // before those registered earlier.
    plugins::after_each_load(&register_handlers);
  }
  ~ExitGuard() {
    plugins::after_each_load(nullptr);
    int armed = kArmed;
    // A report under way uses its caller's locals, and ends the process.
    if (!g_state.compare_exchange_strong(armed, kOff) && armed == kReporting) wait_forever();
    g_guard.store(nullptr);
  }
  ExitGuard(const ExitGuard&) = delete;
  ExitGuard& operator=(const ExitGuard&) = delete;

 private:
  static constexpr int kOff = 0, kArmed = 1, kReporting = 2;
  static inline std::atomic<int> g_state{kOff};
  static inline std::atomic<ExitGuard*> g_guard{nullptr};
  static inline std::atomic<pid_t> g_pid{0};

  [[noreturn]] static void wait_forever() {
    for (;;) ::pause();
  }
  static void on_exiting(const std::string& how) {
    // A child a task forked (and exits in, as after a failed exec) is not
    // pyoco: its exit is its own.
    if (::getpid() != g_pid.load()) return;
    // Spare entries for threads that exit after this one (glibc runs
    // handlers registered during exit too).
    if (g_state.load() != kOff) register_handlers();
    int armed = kArmed;
    if (g_state.compare_exchange_strong(armed, kReporting)) g_guard.load()->report_(how);
    // Another thread's report is under way: this exit must not end the
    // process first (with its own status), nor run what exit() runs next.
    if (armed == kReporting) wait_forever();
  }
  static void on_exit_handler(int status, void*) {
    on_exiting("exit(" + std::to_string(status) + ")");
  }
  static void on_quick_exit_handler() { on_exiting("quick_exit()"); }
  // Four each: glibc hands each registered handler to one exiting thread
  // only, so another thread that calls exit() meanwhile reaches the next
  // entry, which waits for the first's report to end the process.
  static void register_handlers() {
    for (int i = 0; i < 4; ++i) {
      ::on_exit(on_exit_handler, nullptr);
      std::at_quick_exit(on_quick_exit_handler);
    }
  }

  Report report_;
};

}  // namespace pyoco::cli
