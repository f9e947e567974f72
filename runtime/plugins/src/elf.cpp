#include <pyoco/plugins/elf.hpp>

#include <cstdint>
#include <fstream>

namespace pyoco::plugins {

std::optional<BinaryPlatform> read_binary_platform(const std::filesystem::path& library) {
  std::ifstream in(library, std::ios::binary);
  unsigned char h[20] = {};
  if (!in.read(reinterpret_cast<char*>(h), sizeof h)) return std::nullopt;
  if (h[0] != 0x7f || h[1] != 'E' || h[2] != 'L' || h[3] != 'F') return std::nullopt;
  BinaryPlatform p;
  p.os = "linux";
  p.bits = h[4] == 2 ? 64 : 32;
  const bool little = h[5] == 1;
  const std::uint16_t type =
      little ? std::uint16_t(h[16] | h[17] << 8) : std::uint16_t(h[16] << 8 | h[17]);
  if (type != 3 /* ET_DYN */) return std::nullopt;
  const std::uint16_t machine =
      little ? std::uint16_t(h[18] | h[19] << 8) : std::uint16_t(h[18] << 8 | h[19]);
  switch (machine) {
    case 62:
      p.arch = "x86_64";
      break;
    case 183:
      p.arch = "aarch64";
      break;
    case 3:
      p.arch = "x86";
      break;
    case 40:
      p.arch = "arm";
      break;
    case 243:
      p.arch = p.bits == 64 ? "riscv64" : "riscv32";
      break;
    default:
      p.arch = "elf-machine-" + std::to_string(machine);
  }
  return p;
}

}  // namespace pyoco::plugins
