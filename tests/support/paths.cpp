#include "process.hpp"

#include <cstdlib>

#include "temp_dir.hpp"

namespace pyoco::testing {

namespace {
// Every pyoco a test starts records its runs in a history of the test's
// own, never in the user's ~/.local/state/pyoco.
struct IsolatedHistory {
  TempDir home;
  IsolatedHistory() { setenv("PYOCO_HOME", home.path().c_str(), 1); }
} const isolated_history;
}  // namespace

std::filesystem::path pyoco_exe() { return PYOCO_TEST_EXE; }
std::filesystem::path source_dir() { return PYOCO_TEST_SOURCE_DIR; }
std::filesystem::path binary_dir() { return PYOCO_TEST_BINARY_DIR; }
std::filesystem::path fixture_dir() { return PYOCO_TEST_FIXTURE_DIR; }

ProcessResult run_pyoco(std::vector<std::string> args, ProcessOptions options) {
  args.insert(args.begin(), pyoco_exe().string());
  if (options.env.count("PYOCO_PLUGIN_PATH") == 0) options.unset_env.push_back("PYOCO_PLUGIN_PATH");
  return run_process(args, options);
}

}  // namespace pyoco::testing
