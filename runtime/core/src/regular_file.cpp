#include <pyoco/core/regular_file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pyoco::core {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "is a directory, not a file";
  if (S_ISFIFO(mode)) return "is a FIFO, not a regular file";
  if (S_ISCHR(mode)) return "is a character device, not a regular file";
  if (S_ISBLK(mode)) return "is a block device, not a regular file";
  if (S_ISSOCK(mode)) return "is a socket, not a regular file";
  return "is not a regular file";
}

}  // namespace

std::string describe_size(std::uint64_t bytes) {
  char buf[64];
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) {
    std::snprintf(buf, sizeof buf, "%llu MiB", static_cast<unsigned long long>(bytes >> 20));
  } else if (bytes >= (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1u << 20));
  } else if (bytes >= 1024 && bytes % 1024 == 0) {
    std::snprintf(buf, sizeof buf, "%llu KiB", static_cast<unsigned long long>(bytes >> 10));
  } else {
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

OpenedFile open_regular_file(const std::filesystem::path& file) {
  // O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of
  // waiting for a writer; the kind is checked before anything is read.
  const int fd = ::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) throw FileReadError("no such file");
    throw FileReadError(std::string("cannot open it: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw FileReadError(std::string("cannot read it: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FileReadError(kind_of(st.st_mode));
  }
  return OpenedFile{fd, static_cast<std::uint64_t>(st.st_size)};
}

std::string read_regular_file(const std::filesystem::path& file, std::uint64_t max_bytes) {
  const OpenedFile f = open_regular_file(file);
  auto too_big = [&](std::uint64_t size) {
    ::close(f.fd);
    throw FileReadError("is " + std::to_string(size) + " bytes, over the " +
                        describe_size(max_bytes) + " limit");
  };
  if (f.size > max_bytes) too_big(f.size);
  std::string out;
  out.resize(static_cast<std::size_t>(f.size));
  std::size_t got = 0;
  for (;;) {
    if (got == out.size()) {
      // It may have grown since fstat: read on, within the limit.
      if (out.size() >= max_bytes + 1) too_big(out.size());
      out.resize(
          std::min<std::uint64_t>(std::max<std::size_t>(out.size() * 2, 4096), max_bytes + 1));
    }
    const ssize_t n = ::read(f.fd, out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(f.fd);
      throw FileReadError(std::string("cannot read it: ") + std::strerror(e));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(f.fd);
  if (got > max_bytes) {
    throw FileReadError("is more than " + std::to_string(max_bytes) + " bytes, over the " +
                        describe_size(max_bytes) + " limit");
  }
  out.resize(got);
  return out;
}

namespace {

[[noreturn]] void write_failed(const char* what, const std::filesystem::path& path, int err) {
  throw FileWriteError(std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

// All of `bytes` to a new file, flushed to disk.
void write_new_file(const std::filesystem::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) write_failed("cannot create", path, errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(path.c_str());
      write_failed("cannot write", path, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    write_failed("cannot write", path, err);
  }
}

}  // namespace

void replace_file(const std::filesystem::path& target, std::string_view bytes) {
  static std::atomic<std::uint64_t> counter{0};
  const std::filesystem::path temp =
      target.parent_path() / ("." + target.filename().string() + ".tmp-" +
                              std::to_string(::getpid()) + "-" + std::to_string(counter++));
  write_new_file(temp, bytes);
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    write_failed("cannot save", target, err);
  }
}

}  // namespace pyoco::core
