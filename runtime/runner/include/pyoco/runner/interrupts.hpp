// What a program that runs flows (`pyoco run`) does on SIGINT, SIGTERM,
// SIGHUP and SIGURG, off the signal handler: the handler only writes the signal's
// number to a pipe, and a thread of its own acts on it, so a cancel reaches
// the engine at once instead of at the next poll. Linux only (/proc, prctl).
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace pyoco::runner {

struct InterruptActions {
  std::function<void()> cancel;     // first SIGINT, SIGTERM or SIGHUP (unless ignored: nohup)
  std::function<void()> exit_now;   // the second one; must not return
  std::function<void()> check_now;  // SIGURG: `pyoco runs cancel` asked something
};

// One at a time: signal handlers belong to the whole process.
class InterruptWatcher {
 public:
  explicit InterruptWatcher(InterruptActions actions);
  ~InterruptWatcher();  // restores the handlers it found and stops the thread
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

 private:
  void loop();
  InterruptActions actions_;
  std::thread thread_;
};

// The processes that tasks of this process started (children, and orphans
// of theirs, which are re-parented here: see become_subreaper).
void become_subreaper();
// Sends `signal` to every descendant of this process and to the process
// groups they lead; returns how many processes were signalled.
int signal_descendants(int signal);
// SIGTERM to every descendant, up to `grace` for them to go, then SIGKILL.
void stop_descendants(std::chrono::milliseconds grace);

}  // namespace pyoco::runner
