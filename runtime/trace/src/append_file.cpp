#include <fcntl.h>
#include <unistd.h>

#include <pyoco/trace/append_file.hpp>

#include <cerrno>
#include <streambuf>
#include <string>

namespace pyoco::trace {

namespace {

// Collects what it is given; sync() writes it all at once.
class AppendFileBuffer final : public std::streambuf {
 public:
  explicit AppendFileBuffer(int fd) : fd_(fd) {}
  ~AppendFileBuffer() override {
    sync();
    ::close(fd_);
  }

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) pending_ += traits_type::to_char_type(c);
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    pending_.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int sync() override {
    // One write; a short one (a full disk, a signal) goes on where it ended.
    std::size_t done = 0;
    while (done < pending_.size()) {
      const ssize_t n = ::write(fd_, pending_.data() + done, pending_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (error_ == 0) error_ = n < 0 ? errno : EIO;  // wrote nothing, said nothing
        pending_.clear();
        return -1;
      }
      done += static_cast<std::size_t>(n);
    }
    pending_.clear();
    return 0;
  }

 private:
  int fd_;
  std::string pending_;
  int error_ = 0;  // the first failed write's errno

 public:
  int error() const { return error_; }
};

class AppendFile final : public std::ostream {
 public:
  explicit AppendFile(int fd) : std::ostream(nullptr), buffer_(fd) { rdbuf(&buffer_); }
  ~AppendFile() override { flush(); }
  int error() const { return buffer_.error(); }

 private:
  AppendFileBuffer buffer_;
};

}  // namespace

int first_write_error(const std::ostream& file) {
  const auto* f = dynamic_cast<const AppendFile*>(&file);
  return f != nullptr ? f->error() : 0;
}

std::shared_ptr<std::ostream> open_append_file(const std::filesystem::path& path) {
  // O_NONBLOCK: a FIFO that no process reads fails at once (ENXIO), where
  // a blocking open waited for a reader for ever. Writes then block again.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0666);
  if (fd < 0) return nullptr;
  if (const int flags = ::fcntl(fd, F_GETFL); flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return std::make_shared<AppendFile>(fd);
}

}  // namespace pyoco::trace
