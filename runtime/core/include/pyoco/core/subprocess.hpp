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

}  // namespace pyoco::core
