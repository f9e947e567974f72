// Artifacts as files. A put writes a temporary file beside the target and
// renames it over, so a reader (or a crash) never meets half an artifact.
#include <pyoco/core/regular_file.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/plugins/package.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pyoco {

namespace fs = std::filesystem;

using plugins::sha256_hex;

namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  throw core::ArtifactError(what + " " + path.string() + ": " + std::strerror(err));
}

}  // namespace

LocalArtifactStore::LocalArtifactStore(fs::path root) : root_(std::move(root)) {}

fs::path LocalArtifactStore::file(std::string_view run_id, std::string_view name) const {
  core::check_artifact_name(name);
  if (run_id.empty() || run_id.find('/') != std::string_view::npos || run_id == "." ||
      run_id == "..") {
    throw core::ArtifactError("'" + std::string(run_id) + "' is not a run id");
  }
  return root_ / fs::path(run_id) / fs::path(name);
}

namespace {

// A directory descriptor, closed on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// The directory of `name`'s parent under <root>/<run_id>, opened one
// component at a time with O_NOFOLLOW: a symbolic link anywhere under the
// root (the run's directory, or a directory in it) is refused, never
// followed. A symlinked subdirectory already in the run's directory wrote
// artifacts wherever it pointed. `create`: make what is missing. Sets
// `leaf` to the name's last component; nullopt when a directory is missing
// and `create` is false.
std::optional<Fd> open_parent(const fs::path& root, std::string_view run_id, std::string_view name,
                              bool create, std::string& leaf) {
  if (create) {
    std::error_code ec;
    fs::create_directories(root, ec);  // the root itself may be a link: the user chose it
    if (ec) fail("cannot create directory", root, ec.value());
  }
  Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.fd < 0) {
    if (!create && errno == ENOENT) return std::nullopt;
    fail("cannot open directory", root, errno);
  }
  std::vector<std::string> parts{std::string(run_id)};
  const fs::path rel(name);
  for (const fs::path& p : rel) parts.push_back(p.string());
  leaf = parts.back();
  parts.pop_back();
  fs::path walked = root;
  for (const std::string& part : parts) {
    walked /= part;
    if (create && ::mkdirat(dir.fd, part.c_str(), 0777) != 0 && errno != EEXIST) {
      fail("cannot create directory", walked, errno);
    }
    Fd next(::openat(dir.fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.fd < 0) {
      const int err = errno;
      struct stat st {};
      if (::fstatat(dir.fd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        throw core::ArtifactError(walked.string() +
                                  " is a symbolic link: artifacts are kept and read only inside "
                                  "the run's own directory");
      }
      if (!create && err == ENOENT) return std::nullopt;
      fail("cannot open directory", walked, err);
    }
    dir = std::move(next);
  }
  return dir;
}

}  // namespace

core::ArtifactRecord LocalArtifactStore::put(std::string_view run_id, std::string_view name,
                                             std::string_view bytes, std::string_view media_type) {
  const fs::path target = file(run_id, name);
  std::string leaf;
  const Fd dir = *open_parent(root_, run_id, name, true, leaf);
  struct stat st {};
  if (::fstatat(dir.fd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
    throw core::ArtifactError("artifact name '" + std::string(name) +
                              "' is a directory of this run's artifacts already");
  }
  // A temporary file beside the target, renamed over it: rename replaces a
  // link at the target itself, never what it points to. Its name does not
  // hold the target's: a name of 255 bytes, the most a file's may have,
  // left no room for a prefix.
  static std::atomic<std::uint64_t> counter{0};
  const std::string temp =
      ".pyoco-tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const fs::path temp_path = target.parent_path() / temp;
  const int fd =
      ::openat(dir.fd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", temp_path, errno);
  std::size_t done = 0;
  int err = 0;
  while (done < bytes.size() && err == 0) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
    } else {
      done += static_cast<std::size_t>(n);
    }
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::renameat(dir.fd, temp.c_str(), dir.fd, leaf.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlinkat(dir.fd, temp.c_str(), 0);
    fail("cannot save", target, err);
  }
  core::ArtifactRecord r;
  r.name = std::string(name);
  r.path = target.string();
  r.size = bytes.size();
  r.sha256 = sha256_hex(bytes);
  r.media_type = media_type.empty() ? core::guess_media_type(name) : std::string(media_type);
  return r;
}

std::optional<std::string> LocalArtifactStore::get(std::string_view run_id,
                                                   std::string_view name) const {
  const fs::path path = file(run_id, name);
  std::string leaf;
  const std::optional<Fd> dir = open_parent(root_, run_id, name, false, leaf);
  if (!dir) return std::nullopt;
  // Only a regular file of the run's own: no link, FIFO or device.
  Fd in(::openat(dir->fd, leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (in.fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ELOOP) {
      throw core::ArtifactError(
          path.string() +
          " is a symbolic link: artifacts are read only from the run's own directory");
    }
    fail("cannot read", path, errno);
  }
  struct stat st {};
  if (::fstat(in.fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::string data;
  char chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(in.fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read", path, errno);
    if (n == 0) break;
    data.append(chunk, static_cast<std::size_t>(n));
  }
  return data;
}

}  // namespace pyoco
