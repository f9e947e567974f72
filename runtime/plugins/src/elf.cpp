#include <pyoco/plugins/elf.hpp>

#include <pyoco/core/regular_file.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
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

  // The loader reads entries of exactly its own size (glibc refuses others).
  const std::uint64_t entry = is64 ? 56u : 32u;
  const std::uint64_t phsize = phentsize * phnum;
  if (phnum == 0 || phentsize != entry || !inside(phoff, phsize, file_size)) {
    out.problem = phnum == 0 || phentsize != entry
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
  struct Segment {
    std::uint64_t index, type, offset, vaddr, filesz, memsz, align;
  };
  std::vector<Segment> segments;
  for (std::uint64_t i = 0; i < phnum; ++i) {
    const std::size_t at = static_cast<std::size_t>(i * phentsize);
    const std::uint64_t type = pf.get(at, 4);
    // What the loader maps or reads at load: PT_LOAD, PT_DYNAMIC, PT_TLS
    // (its initial image is copied per thread), PT_GNU_EH_FRAME (read when
    // an exception is thrown) and PT_GNU_RELRO (made read-only).
    constexpr std::uint64_t kLoad = 1, kDynamic = 2, kTls = 7, kEhFrame = 0x6474e550,
                            kRelro = 0x6474e552;
    if (type != kLoad && type != kDynamic && type != kTls && type != kEhFrame && type != kRelro) {
      continue;
    }
    Segment s{i + 1, type, 0, 0, 0, 0, 0};
    s.offset = is64 ? pf.get(at + 8, 8) : pf.get(at + 4, 4);
    s.vaddr = is64 ? pf.get(at + 16, 8) : pf.get(at + 8, 4);
    s.filesz = is64 ? pf.get(at + 32, 8) : pf.get(at + 16, 4);
    s.memsz = is64 ? pf.get(at + 40, 8) : pf.get(at + 20, 4);
    s.align = is64 ? pf.get(at + 48, 8) : pf.get(at + 28, 4);
    if ((type == kLoad || type == kDynamic) && !inside(s.offset, s.filesz, file_size)) {
      out.problem =
          truncated(std::string(type == kLoad ? "a loadable segment" : "its dynamic section"),
                    s.offset + s.filesz, file_size);
      return out;
    }
    segments.push_back(s);
  }
  // What the ELF specification requires of the segments the loader maps: a
  // library that breaks it is mapped over memory it does not own, and the
  // process dies later, far from the load (issue: a one-byte p_filesz).
  auto damaged = [&](const Segment& s, const std::string& why) {
    return "is truncated or corrupt: its program header " + std::to_string(s.index) + " of " +
           std::to_string(phnum) + " is damaged: " + why + " (rebuild or reinstall the plugin)";
  };
  auto hex = [](std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return std::string(buf);
  };
  const std::uint64_t address_limit = is64 ? ~std::uint64_t{0} : 0xffffffffu;
  const Segment* previous = nullptr;
  for (const Segment& s : segments) {
    if (s.memsz > address_limit - s.vaddr) {
      out.problem = damaged(s, "its segment ends past the end of the address space");
      return out;
    }
    if (s.type != 1) continue;
    if (s.filesz > s.memsz) {
      out.problem = damaged(s, "its loadable segment's file size (" + std::to_string(s.filesz) +
                                   " bytes) is larger than its memory size (" +
                                   std::to_string(s.memsz) + " bytes)");
      return out;
    }
    if ((s.align & (s.align - 1)) != 0) {
      out.problem =
          damaged(s, "its loadable segment's alignment " + hex(s.align) + " is not a power of two");
      return out;
    }
    if (s.align > 1 && s.offset % s.align != s.vaddr % s.align) {
      out.problem =
          damaged(s, "its loadable segment's file offset " + hex(s.offset) + " and address " +
                         hex(s.vaddr) + " differ modulo its alignment " + hex(s.align));
      return out;
    }
    if (previous != nullptr && s.vaddr < previous->vaddr + previous->memsz) {
      out.problem = damaged(s, "its loadable segment at address " + hex(s.vaddr) +
                                   (s.vaddr < previous->vaddr ? " comes before" : " overlaps") +
                                   " the one of program header " + std::to_string(previous->index) +
                                   " (" + hex(previous->vaddr) + " to " +
                                   hex(previous->vaddr + previous->memsz) + ")");
      return out;
    }
    previous = &s;
  }
  if (previous == nullptr) {
    out.problem = "is truncated or corrupt: it has no loadable segment";
    return out;
  }
  // The other regions lie in the memory of one loadable segment (to its
  // end rounded up to a page: linkers may round PT_GNU_RELRO so).
  auto region = [](const Segment& s) {
    switch (s.type) {
      case 2:
        return "dynamic section";
      case 7:
        return "thread-local storage";
      case 0x6474e550:
        return "exception frame index";
      default:
        return "read-only-after-relocation region";
    }
  };
  for (const Segment& s : segments) {
    if (s.type == 1) continue;
    if (s.type == 7 && s.filesz > s.memsz) {
      out.problem = damaged(
          s, std::string("its ") + region(s) + "'s initial image (" + std::to_string(s.filesz) +
                 " bytes) is larger than its memory size (" + std::to_string(s.memsz) + " bytes)");
      return out;
    }
    // Its zero-filled part needs no room in a segment (below), so only a
    // bound keeps a damaged size from an allocation the loader cannot make
    // (it exits the process: "cannot allocate memory for thread-local data").
    constexpr std::uint64_t kMaxThreadLocal = std::uint64_t{64} << 20;
    if (s.type == 7 && s.memsz > kMaxThreadLocal) {
      out.problem = damaged(s, std::string("its ") + region(s) + " (" + std::to_string(s.memsz) +
                                   " bytes a thread) is over 64 MiB");
      return out;
    }
    const bool loaded = std::any_of(segments.begin(), segments.end(), [&](const Segment& l) {
      if (l.type != 1) return false;
      const std::uint64_t page = std::max<std::uint64_t>(l.align, 4096);
      const std::uint64_t end = l.vaddr + l.memsz;
      const std::uint64_t rounded =
          end > address_limit - (page - 1) ? address_limit : (end + page - 1) & ~(page - 1);
      // Thread-local storage: only its initial image is in the segment; its
      // zero-filled rest (.tbss) takes no address space there, and the next
      // sections may start where it does (a large thread_local passes the
      // segment's end).
      const std::uint64_t size = s.type == 7 ? s.filesz : s.memsz;
      return s.vaddr >= l.vaddr && s.vaddr <= rounded && size <= rounded - s.vaddr;
    });
    if (!loaded) {
      out.problem = damaged(s, std::string("its ") + region(s) + " at address " + hex(s.vaddr) +
                                   " (" + std::to_string(s.type == 7 ? s.filesz : s.memsz) +
                                   " bytes) lies in no loadable segment");
      return out;
    }
  }
  // Stripping can drop the section headers (shnum 0); when present, a cut
  // file loses them first, as they come last.
  if (shnum != 0 && !inside(shoff, shentsize * shnum, file_size)) {
    out.problem = truncated("its section headers", shoff + shentsize * shnum, file_size);
    return out;
  }
  if (shnum == 0 || shentsize != (is64 ? 64u : 40u)) return out;
  // The sections the linker placed in memory must lie in the segments that
  // map them: a program header whose type was damaged drops its segment
  // (PT_TLS: the library's thread-locals are then never set up, and the
  // process dies when a task touches one, after loading).
  std::vector<unsigned char> sh(static_cast<std::size_t>(shentsize * shnum));
  if (!read_at(fd, sh.data(), sh.size(), shoff)) {
    out.problem = "is truncated or corrupt: its section headers cannot be read";
    return out;
  }
  const Fields sf(sh.data(), sh.size(), h[5] == 1);
  for (std::uint64_t i = 1; i < shnum; ++i) {
    const std::size_t at = static_cast<std::size_t>(i * shentsize);
    const std::uint64_t type = sf.get(at + 4, 4);
    const std::uint64_t flags = is64 ? sf.get(at + 8, 8) : sf.get(at + 8, 4);
    const std::uint64_t addr = is64 ? sf.get(at + 16, 8) : sf.get(at + 12, 4);
    const std::uint64_t offset = is64 ? sf.get(at + 24, 8) : sf.get(at + 16, 4);
    const std::uint64_t size = is64 ? sf.get(at + 32, 8) : sf.get(at + 20, 4);
    constexpr std::uint64_t kAlloc = 0x2, kThreadLocal = 0x400, kNoBits = 8;
    if ((flags & kAlloc) == 0 || size == 0) continue;
    const bool tls = (flags & kThreadLocal) != 0;
    // Its bytes come from the file (all but .bss and .tbss): from where the
    // section header says, and none of them past the segment's file size
    // (the loader zeroes what lies past it).
    const bool from_file = type != kNoBits;
    const bool mapped = std::any_of(segments.begin(), segments.end(), [&](const Segment& l) {
      if (l.type != (tls ? 7u : 1u)) return false;
      const std::uint64_t span = from_file ? l.filesz : l.memsz;
      return addr >= l.vaddr && size <= span && addr - l.vaddr <= span - size &&
             (!from_file || offset - l.offset == addr - l.vaddr);
    });
    if (!mapped) {
      out.problem = "is truncated or corrupt: its section " + std::to_string(i) + " (" +
                    std::to_string(size) + " bytes at address " + hex(addr) + ") lies in no " +
                    (tls ? "thread-local" : "loadable") + " segment" +
                    (from_file ? " that maps it from the file" : "") +
                    ": a program header is damaged (rebuild or reinstall the plugin)";
      return out;
    }
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
