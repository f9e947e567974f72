#include <pyoco/abi.h>
#include <pyoco/plugins/host_abi.hpp>

namespace pyoco::plugins {

AbiVersion host_abi_version() { return {PYOCO_ABI_VERSION_MAJOR, PYOCO_ABI_VERSION_MINOR}; }

std::string to_string(AbiVersion v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

}  // namespace pyoco::plugins
