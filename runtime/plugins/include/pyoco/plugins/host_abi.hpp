// The plugin ABI version this runtime speaks.
#pragma once

#include <cstdint>
#include <string>

namespace pyoco::plugins {

struct AbiVersion {
  std::uint32_t major;
  std::uint32_t minor;
};

AbiVersion host_abi_version();
std::string to_string(AbiVersion v);  // "1.0"

}  // namespace pyoco::plugins
