// Measuring whole processes and this one: wall time and peak RSS of a
// child (fork/exec, then wait4's ru_maxrss), and this process's RSS from
// /proc/self/status.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace pyoco::bench {

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal
  double wall_ms = 0;  // fork to reap
  std::uint64_t max_rss_kib = 0;
};

struct ProcessSpec {
  std::vector<std::string> argv;           // argv[0] is the executable's path
  std::map<std::string, std::string> env;  // set over this process's environment
  std::filesystem::path cwd;               // empty: this process's
  std::filesystem::path stdout_path = "/dev/null";
  std::filesystem::path stderr_path = "/dev/null";
};

// Runs the process to its end. Throws std::runtime_error when it cannot start.
ProcessResult run_process(const ProcessSpec& spec);

// Runs `f` on a thread with a `stack_bytes` stack and rethrows what it threw.
void run_with_stack(std::size_t stack_bytes, const std::function<void()>& f);

// This process's resident set and its peak so far, in bytes (VmRSS, VmHWM).
std::uint64_t current_rss_bytes();
std::uint64_t peak_rss_bytes();

}  // namespace pyoco::bench
