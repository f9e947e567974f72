// What a shared library file is built for, read from its ELF header without
// loading it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace pyoco::plugins {

struct BinaryPlatform {
  std::string os;    // "linux" for ELF (the only format this runtime loads)
  std::string arch;  // "x86_64", "aarch64", ... or "elf-machine-<n>"
  int bits = 0;      // 32 or 64
};

// Nullopt when the file is not an ELF shared object.
std::optional<BinaryPlatform> read_binary_platform(const std::filesystem::path& library);

}  // namespace pyoco::plugins
