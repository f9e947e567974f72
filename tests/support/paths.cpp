#include "process.hpp"

namespace pyoco::testing {

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
