// libFuzzer target: a flow.yaml, read and checked as `pyoco check` does
// (core/flow_file.hpp, then the graph DSL, the DAG, check and export).
// Any input must be read or refused with a FlowError; another exception,
// a crash, a sanitizer report, a hang or a blown memory limit is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "flow_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  pyoco::fuzz::check_flow_text(std::string_view(reinterpret_cast<const char*>(data), size),
                               "fuzz/flow.yaml");
  return 0;
}
