// What a shared library file is built for, and whether it is whole, read
// from its ELF headers without loading it.
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

// What inspecting a library file found.
struct LibraryFile {
  std::optional<BinaryPlatform> platform;  // set when it is an ELF shared object
  // Empty when the file can be handed to the loader; else why not, to follow
  // the file's name: "is a FIFO, not a regular file", "is not an ELF shared
  // library", "is truncated or corrupt: ...". Mapping a truncated library
  // kills the process that touches the missing part (SIGBUS), so it is
  // refused here, before dlopen.
  std::string problem;
};

// Opens `library` without blocking (a FIFO or a device is refused, never
// waited on), reads its ELF header, program headers and section header
// table, and checks that every part they place in the file lies inside it.
LibraryFile inspect_library_file(const std::filesystem::path& library);

// Nullopt when the file is not an ELF shared object.
std::optional<BinaryPlatform> read_binary_platform(const std::filesystem::path& library);

}  // namespace pyoco::plugins
