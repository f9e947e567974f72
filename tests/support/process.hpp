// Runs a program as a child process for tests: captures stdout/stderr, with
// a deadline after which the child is killed.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pyoco::testing {

struct ProcessOptions {
  std::optional<std::filesystem::path> cwd;
  std::map<std::string, std::string> env;  // added to (or replacing in) the current environment
  std::vector<std::string> unset_env;      // removed from the environment
  std::string stdin_data;                  // written to the child's stdin, which is then closed
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

// Where the build put things (set by tests/CMakeLists.txt).
std::filesystem::path pyoco_exe();
std::filesystem::path source_dir();
std::filesystem::path binary_dir();

}  // namespace pyoco::testing
