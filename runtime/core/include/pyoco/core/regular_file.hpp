// Reading a file a user named, safely: only a regular file (a FIFO, a
// device or a socket would block or never end), opened without blocking,
// and never more than a stated size (a flow file is not a disk image).
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pyoco::core {

// The problem alone, without the file's name (callers say whose file it
// is): "no such file", "is a FIFO, not a regular file", "is 20.0 MiB, over
// the 16 MiB limit", "cannot read it: Permission denied".
class FileReadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The whole of `file`, at most `max_bytes` of it. Throws FileReadError.
std::string read_regular_file(const std::filesystem::path& file, std::uint64_t max_bytes);

// Opens `file` for reading without blocking and checks it is a regular
// file; returns the descriptor (the caller closes it) and its size. Throws
// FileReadError.
struct OpenedFile {
  int fd = -1;
  std::uint64_t size = 0;
};
OpenedFile open_regular_file(const std::filesystem::path& file);

// Writing a file so that a reader (or a crash) never meets half of it.
// The message names the file: "cannot write /x/plugin.toml: No space left
// on device".
class FileWriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes `bytes` to a temporary file beside `target`, flushes it to disk
// and renames it over `target`. Throws FileWriteError.
void replace_file(const std::filesystem::path& target, std::string_view bytes);

// "16 MiB", "512 KiB", "100 bytes": a size limit as messages name it.
std::string describe_size(std::uint64_t bytes);

}  // namespace pyoco::core
