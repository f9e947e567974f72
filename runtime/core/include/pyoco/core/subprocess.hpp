// Runs a program as a child process: captures stdout/stderr, with a
// deadline after which the child (and its process group) is killed.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pyoco::core {

struct ProcessOptions {
  std::optional<std::filesystem::path> cwd;
  std::map<std::string, std::string> env;  // added to (or replacing in) the current environment
  std::vector<std::string> unset_env;      // removed from the environment
  std::string stdin_data;  // written to the child's stdin, which is then closed (keep it small)
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
};

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// A program that runs beside this one (`pyoco server --with-nats` starts
// nats-server): its stdout and stderr go to `log` (appended), stdin is
// /dev/null, `options.cwd`/`env` apply (its timeout does not).
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::filesystem::path& log,
                    const ProcessOptions& options = {});
  ~BackgroundProcess();  // stop()
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  int pid() const { return pid_; }
  // Whether it still runs (false once it exited; its status is reaped).
  bool running();
  // SIGTERM, up to `grace` for it to exit, then SIGKILL; reaps it.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

 private:
  int pid_ = -1;
};

}  // namespace pyoco::core
