#include <pyoco/plugins/elf.hpp>

#include <pyoco/core/regular_file.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace pyoco::plugins {

namespace {

// Reads integers of the file's byte order out of a buffer.
class Fields {
 public:
  Fields(const unsigned char* data, std::size_t size, bool little)
      : data_(data), size_(size), little_(little) {}
  std::uint64_t get(std::size_t at, std::size_t width) const {
    if (at + width > size_) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) {
      const std::uint64_t byte = data_[at + i];
      v |= little_ ? byte << (8 * i) : byte << (8 * (width - 1 - i));
    }
    return v;
  }

 private:
  const unsigned char* data_;
  std::size_t size_;
  bool little_;
};

std::string arch_name(std::uint16_t machine, int bits) {
  switch (machine) {
    case 62:
      return "x86_64";
    case 183:
      return "aarch64";
    case 3:
      return "x86";
    case 40:
      return "arm";
    case 243:
      return bits == 64 ? "riscv64" : "riscv32";
    default:
      return "elf-machine-" + std::to_string(machine);
  }
}

bool read_at(int fd, void* buf, std::size_t size, std::uint64_t offset) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n =
        ::pread(fd, static_cast<char*>(buf) + got, size - got, static_cast<off_t>(offset + got));
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// Whether [offset, offset + size) lies in a file of `file_size` bytes.
bool inside(std::uint64_t offset, std::uint64_t size, std::uint64_t file_size) {
  return offset <= file_size && size <= file_size - offset;
}

std::string truncated(const std::string& what, std::uint64_t end, std::uint64_t file_size) {
  return "is truncated or corrupt: " + what + " end" + (what.ends_with("s") ? "" : "s") +
         " at byte " + std::to_string(end) + " of a " + std::to_string(file_size) +
         "-byte file (rebuild or reinstall the plugin)";
}

LibraryFile inspect(int fd, std::uint64_t file_size) {
  LibraryFile out;
  unsigned char h[64] = {};
  if (file_size < 52 || !read_at(fd, h, std::min<std::uint64_t>(file_size, sizeof h), 0) ||
      std::memcmp(h,
                  "\x7f"
                  "ELF",
                  4) != 0 ||
      (h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2)) {
    out.problem = "is not an ELF shared library";
    return out;
  }
  const bool is64 = h[4] == 2;
  const Fields f(h, sizeof h, h[5] == 1);
  if (f.get(16, 2) != 3 /* ET_DYN */) {
    out.problem = "is not an ELF shared library";
    return out;
  }
  BinaryPlatform p;
  p.os = "linux";
  p.bits = is64 ? 64 : 32;
  p.arch = arch_name(static_cast<std::uint16_t>(f.get(18, 2)), p.bits);
  out.platform = p;

  if (is64 && file_size < 64) {
    out.problem = truncated("its ELF header", 64, file_size);
    return out;
  }
  const std::uint64_t phoff = is64 ? f.get(32, 8) : f.get(28, 4);
  const std::uint64_t shoff = is64 ? f.get(40, 8) : f.get(32, 4);
  const std::uint64_t phentsize = is64 ? f.get(54, 2) : f.get(42, 2);
  const std::uint64_t phnum = is64 ? f.get(56, 2) : f.get(44, 2);
  const std::uint64_t shentsize = is64 ? f.get(58, 2) : f.get(46, 2);
  const std::uint64_t shnum = is64 ? f.get(60, 2) : f.get(48, 2);

  const std::uint64_t phsize = phentsize * phnum;
  if (phnum == 0 || phentsize < (is64 ? 56u : 32u) || !inside(phoff, phsize, file_size)) {
    out.problem = phnum == 0 || phentsize < (is64 ? 56u : 32u)
                      ? "is truncated or corrupt: its program header table is malformed"
                      : truncated("its program headers", phoff + phsize, file_size);
    return out;
  }
  std::vector<unsigned char> ph(static_cast<std::size_t>(phsize));
  if (!read_at(fd, ph.data(), ph.size(), phoff)) {
    out.problem = "is truncated or corrupt: its program headers cannot be read";
    return out;
  }
  const Fields pf(ph.data(), ph.size(), h[5] == 1);
  for (std::uint64_t i = 0; i < phnum; ++i) {
    const std::size_t at = static_cast<std::size_t>(i * phentsize);
    const std::uint64_t type = pf.get(at, 4);
    if (type != 1 /* PT_LOAD */ && type != 2 /* PT_DYNAMIC */) continue;
    const std::uint64_t offset = is64 ? pf.get(at + 8, 8) : pf.get(at + 4, 4);
    const std::uint64_t filesz = is64 ? pf.get(at + 32, 8) : pf.get(at + 16, 4);
    if (!inside(offset, filesz, file_size)) {
      out.problem = truncated(std::string(type == 1 ? "a loadable segment" : "its dynamic section"),
                              offset + filesz, file_size);
      return out;
    }
  }
  // Stripping can drop the section headers (shnum 0); when present, a cut
  // file loses them first, as they come last.
  if (shnum != 0 && !inside(shoff, shentsize * shnum, file_size)) {
    out.problem = truncated("its section headers", shoff + shentsize * shnum, file_size);
  }
  return out;
}

}  // namespace

LibraryFile inspect_library_file(const std::filesystem::path& library) {
  core::OpenedFile file;
  try {
    file = core::open_regular_file(library);
  } catch (const core::FileReadError& e) {
    LibraryFile out;
    out.problem = e.what();
    return out;
  }
  LibraryFile out = inspect(file.fd, file.size);
  ::close(file.fd);
  return out;
}

std::optional<BinaryPlatform> read_binary_platform(const std::filesystem::path& library) {
  return inspect_library_file(library).platform;
}

}  // namespace pyoco::plugins
