// A child process a test can signal while it runs: output goes to files
// the test can watch (wait_for_output) without a pipe to drain.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace pyoco::testing {

class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
               const std::filesystem::path& cwd);
  ~ChildProcess();  // kills the child if it still runs

  void send_signal(int sig) const;
  int pid() const { return pid_; }
  // Waits until stdout contains `text`; false at the deadline.
  bool wait_for_output(const std::string& text,
                       std::chrono::milliseconds deadline = std::chrono::seconds(20)) const;
  // Waits for exit; returns the exit code, or -1 (killed at the deadline) or
  // 128+signal when a signal ended it.
  int wait(std::chrono::milliseconds deadline = std::chrono::seconds(30));

  std::string out() const;
  std::string err() const;

 private:
  TempDir dir_;
  int pid_ = -1;
  bool exited_ = false;
};

// Every live process below `pid` (children, grandchildren...), from /proc.
std::vector<int> descendants_of(int pid);
// True when `pid` no longer runs: gone, or a zombie nobody reaped yet.
bool process_gone(int pid);
// Its command name (/proc/<pid>/comm), empty once it is gone.
std::string process_name(int pid);
// True while `sig` sent to `pid` waits to be handled (from /proc: a signal
// the process has taken is no longer pending). Two signals of one kind sent
// before the first is taken count as one.
bool signal_pending(int pid, int sig);

}  // namespace pyoco::testing
