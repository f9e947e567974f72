// libFuzzer target: the ELF reader (plugins/elf.hpp and elf_dynamic.hpp),
// which reads a plugin's library before anything loads it: the header
// check of inspect_library_file, the dynamic section and symbols of
// read_elf_dynamic, and the ld.so.cache reader. Both take a path, so the
// input is handed over as a file: a memfd, named /proc/self/fd/N, which
// never touches the disk. Any input must be read or refused (a problem,
// nullopt, an empty list); a crash, a sanitizer report, a hang or a blown
// memory limit is a bug.
#include <pyoco/plugins/elf.hpp>
#include <pyoco/plugins/elf_dynamic.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

// The one file every input is written to.
struct InputFile {
  int fd;
  std::string path;
};

const InputFile& input_file() {
  static const InputFile file = [] {
    const int fd = ::memfd_create("pyoco-fuzz-elf", MFD_CLOEXEC);
    if (fd < 0) std::abort();
    return InputFile{fd, "/proc/self/fd/" + std::to_string(fd)};
  }();
  return file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& [fd, path] = input_file();
  if (::ftruncate(fd, 0) != 0) std::abort();
  std::size_t written = 0;
  while (written < size) {
    const ssize_t n = ::pwrite(fd, data + written, size - written, static_cast<off_t>(written));
    if (n <= 0) std::abort();
    written += static_cast<std::size_t>(n);
  }
  pyoco::plugins::inspect_library_file(path);
  pyoco::plugins::read_elf_dynamic(path);
  pyoco::plugins::read_ld_so_cache(path);
  return 0;
}
