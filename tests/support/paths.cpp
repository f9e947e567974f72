#include "process.hpp"

namespace pyoco::testing {

std::filesystem::path pyoco_exe() {
  return PYOCO_TEST_EXE;
}
std::filesystem::path source_dir() {
  return PYOCO_TEST_SOURCE_DIR;
}
std::filesystem::path binary_dir() {
  return PYOCO_TEST_BINARY_DIR;
}

}  // namespace pyoco::testing
