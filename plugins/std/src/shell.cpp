// shell: runs a command, captures its exit code and output, and stops it
// when the run is cancelled or the task's deadline passes. The command is
// waited for on the plugin's reactor thread, not on a host worker.
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reactor.hpp"
#include "shell_guard_bytes.hpp"
#include "tasks.hpp"

extern char** environ;

namespace pyoco_std {
namespace {

using pyoco::Context;
using pyoco::Inputs;
using pyoco::Io;
using pyoco::Value;

// strerror(e), and for a process out of descriptors what to do about it:
// each running command holds a few (its pipes), so many at once can run out.
std::string error_text(int e) {
  std::string text = std::strerror(e);
  if (e == EMFILE || e == ENFILE) {
    text +=
        " (each running command holds a few: run fewer at once, a lower foreach parallel=, or "
        "raise the limit, `ulimit -n`)";
  }
  return text;
}

class Pipe {
 public:
  Pipe() {
    if (pipe2(fd_, O_CLOEXEC) != 0) throw pyoco::Error(std::string("pipe: ") + error_text(errno));
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  int read_end() const { return fd_[0]; }
  int write_end() const { return fd_[1]; }
  int release_read() { return std::exchange(fd_[0], -1); }
  int release_write() { return std::exchange(fd_[1], -1); }
  void close_read() { close_fd(fd_[0]); }
  void close_write() { close_fd(fd_[1]); }

 private:
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fd_[2] = {-1, -1};
};

constexpr const char* kChdir = "chdir";
constexpr const char* kExec = "exec";
constexpr const char* kFork = "fork";
constexpr const char* kGuard = "guard";

// The guard (src/shell_guard.c): the process between the host and each
// command, and the leader of the command's process group. It kills the
// group when the host dies (by any means, SIGKILL too: a worker or a
// `pyoco run` killed so leaves nothing of the command running on, whose
// effects would otherwise happen twice when the run is tried again
// elsewhere), ends as the command did, and lets a cancel's SIGTERM reach
// the command alone. A program of its own, exec'ed: a fork of the host
// that never exec'ed held a copy-on-write snapshot of the host's memory (a
// worker's whole heap) for the command's whole life.
//
// Its bytes are built into this library (kShellGuard): a std plugin is its
// library and manifest alone wherever it goes (the plugin repository packs
// no more for cluster workers). They are exec'ed from a sealed memfd; where
// that cannot be (no memfd, vm.memfd_noexec=2, a policy refusing the exec),
// from the copy installed beside this library.
constexpr const char* kGuardName = "pyoco-shell-guard";

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  // Linux 6.3: executable, whatever vm.memfd_noexec says
#endif

// What to do when neither copy of the guard starts.
constexpr const char* kGuardRemedy =
    "; reinstall pyoco (or the std plugin: pyoco-shell-guard belongs beside libpyoco_std.so), or "
    "let this host execute memfds (vm.memfd_noexec below 2)";

struct GuardProgram {
  int memfd = -1;           // the built-in copy, sealed; -1 when there is none
  std::string memfd_error;  // why there is none
  std::string path;         // the copy beside this library, when there is one
  std::string path_error;   // why there is none ("<path> is missing")

  // Why no command can start (neither copy is there), or empty.
  std::string unusable() const {
    if (memfd >= 0 || !path.empty()) return {};
    return "std/shell runs every command behind its guard program, and has neither the copy "
           "built into its library (" +
           memfd_error + ") nor the one beside it (" + path_error + ")" + kGuardRemedy;
  }
};

// The built-in guard in a memfd, written and sealed (nothing can change it
// afterwards), close-on-exec; or -1 and `error`.
int guard_memfd(std::string& error) {
  int fd = memfd_create(kGuardName, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = memfd_create(kGuardName, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    error = std::string("memfd_create: ") + error_text(errno);
    return -1;
  }
  auto fail = [&](const char* what) {
    error = std::string(what) + ": " + error_text(errno);
    ::close(fd);
    return -1;
  };
  std::size_t done = 0;
  while (done < kShellGuardSize) {
    const ssize_t n = write(fd, kShellGuard + done, kShellGuardSize - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("writing a memfd");
    done += static_cast<std::size_t>(n);
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail("sealing a memfd");
  }
  return fd;
}

// The guard beside this plugin's library, or why there is none.
void guard_file(GuardProgram& g) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&register_shell_task), &info) == 0 ||
      info.dli_fname == nullptr) {
    g.path_error = "dladdr cannot tell where its library is";
    return;
  }
  std::error_code ec;
  const std::filesystem::path library = std::filesystem::absolute(info.dli_fname, ec);
  const std::string path =
      ((ec ? std::filesystem::path(info.dli_fname) : library).parent_path() / kGuardName).string();
  struct stat st {};
  std::string wrong;
  if (stat(path.c_str(), &st) != 0) {
    wrong = errno == ENOENT ? "is missing"
                            : std::string("cannot be looked at (") + std::strerror(errno) + ")";
  } else if (!S_ISREG(st.st_mode)) {
    wrong = "is not a file";
  } else if (access(path.c_str(), X_OK) != 0) {
    wrong = "is not executable";
  }
  if (wrong.empty()) {
    g.path = path;
  } else {
    g.path_error = path + " " + wrong;
  }
}

// Both, made and looked for once, and again while neither is there (a
// memfd refused for a moment: EMFILE, ENOMEM, must not fail every later
// command); the memfd is kept for the process's life. A copy: cheap, the
// strings are empty when a copy is there.
GuardProgram guard_program() {
  static std::mutex mutex;
  static GuardProgram found;
  static bool looked = false;
  std::lock_guard lock(mutex);
  if (!looked || !found.unusable().empty()) {
    GuardProgram g;
    g.memfd = guard_memfd(g.memfd_error);
    guard_file(g);
    found = std::move(g);
    looked = true;
  }
  return found;
}

// Why spawn() failed: `what` (kChdir, kExec, kFork or kGuard) and its
// errno, reported through the pipe by the guard, or by the child before the
// guard's exec. For kGuard, `error` is the exec of the guard beside the
// library (0: not tried) and `memfd_error` the exec of the built-in one (0:
// not tried).
struct SpawnFailure {
  const char* what = nullptr;
  int error = 0;
  int memfd_error = 0;
};

// Starts `args` (a PATH search for a bare name, in `env`'s PATH) with
// `env`, in `cwd` when given, its stdin, stdout and stderr on the pipes'
// ends, behind the guard program (above: the built-in copy, else the file
// beside this library), which it execs as
//   pyoco-shell-guard <host-pid> <cwd, or empty> -- <args...>
// with `env`, every signal blocked, in a new process group, and fds 0-2 the
// command's, 3 the report pipe, 4 and 5 the host's read ends of stdout and
// stderr. Closes the command's ends of the pipes here. The guard's pid (the
// group's id), or -1 and `failed`.
pid_t spawn(const GuardProgram& guard, const std::vector<char*>& args,
            const std::vector<char*>& env, const std::string& cwd, Pipe& in, Pipe& out, Pipe& err,
            SpawnFailure& failed) {
  Pipe report;  // the errno of what failed; closed by the command's exec
  std::string host = std::to_string(getpid());
  // argv[0] is the guard's name (ps shows it), whichever copy runs.
  std::string dir = cwd, separator = "--", program = kGuardName;
  std::vector<char*> guard_args = {program.data(), host.data(), dir.data(), separator.data()};
  guard_args.insert(guard_args.end(), args.begin(), args.end());  // args ends with nullptr
  // The guard's descriptors 0 to 5, in order.
  const std::array<int, 6> fds = {in.read_end(),      out.write_end(), err.write_end(),
                                  report.write_end(), out.read_end(),  err.read_end()};
  // No signal is handled between vfork and exec: the child would run the
  // host's handlers (pyoco's writes a byte to its own interrupt pipe, read
  // by the parent as a second Ctrl+C). The child puts handled signals (and
  // SIGPIPE) back to their defaults, and execs the guard with every signal
  // blocked (the guard gives the command a clean mask).
  sigset_t all, mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &mask);
  // vfork: no copy of the host's page tables (the child makes only system
  // calls, and writes only to its own locals, before exec).
  const pid_t pid = vfork();
  if (pid == 0) {
    int report_fd = report.write_end();
    // A tag and an errno; for 'g' (the guard's exec), a second errno.
    auto fail = [&](char tag, int memfd_errno = 0) {
      const int e = errno;
      char message[1 + 2 * sizeof e];
      message[0] = tag;
      std::memcpy(message + 1, &e, sizeof e);
      std::memcpy(message + 1 + sizeof e, &memfd_errno, sizeof e);
      [[maybe_unused]] const ssize_t n =
          write(report_fd, message, tag == 'g' ? sizeof message : 1 + sizeof e);
      _exit(127);
    };
    setpgid(0, 0);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction sa {};
      if (sigaction(sig, nullptr, &sa) != 0) continue;
      const bool handled =
          (sa.sa_flags & SA_SIGINFO) != 0 || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
      // SIGPIPE too, as Python's subprocess does: the host ignores it (a
      // `pyoco run | head` must not kill the run), a command expects to
      // die of it (`yes | head -1` ends).
      if (!handled && sig != SIGPIPE) continue;
      sigaction(sig, &dfl, nullptr);
    }
    // Each descriptor first above 9 (so none is overwritten before it is
    // copied; close-on-exec), then onto its number (inherited). The memfd
    // too (it may be one of 0 to 5 here), not inherited: the kernel has
    // opened the guard when the exec closes it.
    int high[6];
    for (int i = 0; i < 6; ++i) {
      if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10)) < 0) fail('x');
      if (i == 3) report_fd = high[3];
    }
    const int memfd = guard.memfd < 0 ? -1 : fcntl(guard.memfd, F_DUPFD_CLOEXEC, 10);
    const int memfd_errno = guard.memfd >= 0 && memfd < 0 ? errno : 0;
    for (int i = 0; i < 6; ++i) {
      if (dup2(high[i], i) < 0) fail('x');
    }
    int tried = memfd_errno;
    if (memfd >= 0) {
      fexecve(memfd, guard_args.data(), env.data());
      tried = errno;
    }
    errno = 0;
    if (!guard.path.empty()) execve(guard.path.c_str(), guard_args.data(), env.data());
    fail('g', tried);
  }
  pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  if (pid < 0) {
    failed.error = errno;
    failed.what = kFork;
    return -1;
  }
  // The guard waits for every write end of stdout and stderr to close
  // before it ends: the host's go now.
  in.close_read();
  out.close_write();
  err.close_write();
  report.close_write();
  char message[1 + 2 * sizeof(int)];
  std::size_t got = 0;
  auto read_to = [&](std::size_t size) {
    while (got < size) {
      const ssize_t n = read(report.read_end(), message + got, size - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    return got == size;
  };
  if (read_to(1 + sizeof(int))) {
    const char tag = message[0];
    if (tag == 'g' && read_to(sizeof message)) {
      std::memcpy(&failed.memfd_error, message + 1 + sizeof(int), sizeof(int));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::memcpy(&failed.error, message + 1, sizeof(int));
    failed.what = tag == 'c' ? kChdir : tag == 'f' ? kFork : tag == 'g' ? kGuard : kExec;
    return -1;
  }
  return pid;
}

// "signal 11 (SIGSEGV)", or without the name where the C library has none.
std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return "signal " + std::to_string(sig) +
         (abbrev == nullptr ? std::string() : " (SIG" + std::string(abbrev) + ")");
}

// How long a cancelled command has between SIGTERM and SIGKILL.
constexpr std::chrono::seconds kTermGrace{2};

namespace asio = boost::asio;

// The end of what a command printed on one stream: what a cancel or a
// deadline logs of it, so that a command stopped while it hangs leaves
// more than "timed out" (its output is lost with the call).
class OutputTail {
 public:
  // At most this much of the stream's end, and of that the last kLines lines.
  static constexpr std::size_t kBytes = 4096;
  static constexpr std::size_t kLines = 20;

  void keep(const char* data, std::size_t n) {
    bytes_.append(data, n);
    if (bytes_.size() <= kBytes) return;
    const std::size_t drop = bytes_.size() - kBytes;
    starts_line_ = bytes_[drop - 1] == '\n';
    bytes_.erase(0, drop);
  }

  // Its last lines, empty ones left out. A line the kept bytes cut is
  // marked "..." (from a whole UTF-8 character on), where the host masks
  // what it left of a secret.
  std::vector<std::string> last_lines() const {
    std::vector<std::string> lines;
    std::string_view rest = bytes_;
    bool cut = !starts_line_;
    while (!rest.empty()) {
      const std::size_t end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
      std::string_view mark;
      if (std::exchange(cut, false)) {
        while (!line.empty() && (static_cast<unsigned char>(line.front()) & 0xC0) == 0x80) {
          line.remove_prefix(1);
        }
        mark = "...";
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!line.empty()) lines.push_back(std::string(mark) + std::string(line));
    }
    if (lines.size() > kLines) lines.erase(lines.begin(), lines.end() - kLines);
    return lines;
  }

 private:
  std::string bytes_;
  bool starts_line_ = true;  // the kept bytes begin a line (what was dropped ended one)
};

// One running command, waited on by the reactor: its output pipes, its
// stdin, and its exit (through a pidfd). Everything but cancel() and
// log_what_it_printed() runs on the reactor thread.
class Command : public std::enable_shared_from_this<Command> {
 public:
  Command(pid_t pid, int out_fd, int err_fd, int in_fd, std::string stdin_data, bool check,
          pyoco::Completion done)
      : pid_(pid),
        fds_{out_fd, err_fd},
        pipes_{asio::posix::stream_descriptor(reactor(), out_fd),
               asio::posix::stream_descriptor(reactor(), err_fd)},
        in_(reactor()),
        exit_(reactor()),
        timer_(reactor()),
        stdin_(std::move(stdin_data)),
        check_(check),
        done_(std::move(done)) {
    if (in_fd >= 0) in_.assign(in_fd);
    // Read by hand (below), never waiting: by the reactor, and by an
    // on-cancel callback on a host thread.
    for (int fd : fds_) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  void begin() {
    asio::post(reactor(), [self = shared_from_this()] {
      for (int i = 0; i < 2; ++i) self->read(i);
      self->write_stdin();
      self->wait_for_exit();
    });
  }

  // Any thread: SIGTERM to the command's process group now, SIGKILL if it
  // is still there after the grace period (it may ignore SIGTERM).
  void cancel() {
    asio::post(reactor(), [self = shared_from_this()] {
      if (self->finished_ || self->call_ended_) return;
      self->cancelled_ = true;
      self->stop();
    });
  }

  // Any thread (an on-cancel callback, which must not block): what the
  // command has printed so far, logged on `ctx` before the command is
  // stopped (the call has not ended, and a line logged once the run has
  // ended would be dropped). What is still in the pipes is read here
  // first, without waiting (the pipes are non-blocking, and a pipe holds
  // 64 KiB): all the command wrote before the cancel is there.
  void log_what_it_printed(const pyoco::Context& ctx) {
    std::array<std::vector<std::string>, 2> lines;
    {
      std::lock_guard lock(tails_mutex_);
      for (int i = 0; i < 2; ++i) {
        std::array<char, 16384> chunk;
        // Bounded: a command that goes on writing (`yes`) is not followed.
        for (std::size_t got = 0; fds_[i] >= 0 && got < (256u << 10);) {
          const ssize_t n = ::read(fds_[i], chunk.data(), chunk.size());
          if (n <= 0) break;
          tails_[i].keep(chunk.data(), static_cast<std::size_t>(n));
          got += static_cast<std::size_t>(n);
        }
        lines[i] = tails_[i].last_lines();
      }
    }
    if (lines[0].empty() && lines[1].empty()) return;
    const auto deadline = ctx.deadline();
    const bool timed_out = deadline && std::chrono::steady_clock::now() >= *deadline;
    ctx.warn(std::string("stopping the command (") + (timed_out ? "timed out" : "cancelled") +
             "); the last it printed:");
    for (int i = 0; i < 2; ++i) {
      for (const std::string& line : lines[i]) ctx.info((i == 0 ? "stdout: " : "stderr: ") + line);
    }
  }

 private:
  // Reactor thread: SIGTERM to the group (the guard lets it reach the
  // command alone), SIGKILL after the grace. Once.
  void stop() {
    if (stopping_) return;
    stopping_ = true;
    kill(-pid_, SIGTERM);
    kill_timer_ = std::make_unique<asio::steady_timer>(reactor(), kTermGrace);
    kill_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && !self->finished_) kill(-self->pid_, SIGKILL);
    });
  }

  // Waits for the pipe to be readable, then reads it.
  void read(int i) {
    pipes_[i].async_wait(asio::posix::stream_descriptor::wait_read,
                         [self = shared_from_this(), i](boost::system::error_code ec) {
                           if (ec) return self->close_pipe(i);
                           self->drain(i);
                         });
  }

  // Reads the pipe until it is empty, and only then waits again (Asio's
  // epoll wait is edge-triggered: it reports data that comes after, not
  // data left unread). A command that writes without end is read 1 MiB at
  // a time, between the reactor's other work. Each read is under the
  // tails' lock, as an on-cancel callback's: neither misses what the other
  // read, and the callback never reads a descriptor closed and reused.
  void drain(int i) {
    for (int reads = 0; reads < 16; ++reads) {
      ssize_t n = 0;
      int error = 0;
      {
        std::lock_guard lock(tails_mutex_);
        n = ::read(fds_[i], buffers_[i].data(), buffers_[i].size());
        error = errno;
        if (n > 0) tails_[i].keep(buffers_[i].data(), static_cast<std::size_t>(n));
      }
      if (n > 0) {
        take(i, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && error == EINTR) continue;
      if (n < 0 && error == EAGAIN) return read(i);
      return close_pipe(i);  // its end, or an error
    }
    asio::post(reactor(), [self = shared_from_this(), i] { self->drain(i); });
  }

  void close_pipe(int i) {
    {
      std::lock_guard lock(tails_mutex_);
      pipes_[i].close();
      fds_[i] = -1;
    }
    --open_pipes_;
    finish_if_done();
  }

  // What a read brought. Past the cap the task fails at once and the
  // command is stopped (an endless `yes` never ends by itself); the pipe is
  // still read until it closes (the command must not block on it while it
  // has its grace), but what it brings is dropped.
  void take(int i, std::size_t n) {
    if (over_[0] || over_[1]) return;
    std::string& into = captured_[i];
    if (into.size() + n <= kMaxCaptured) {
      into.append(buffers_[i].data(), n);
      return;
    }
    over_[i] = true;
    for (std::string& c : captured_) std::string().swap(c);
    if (cancelled_ || call_ended_) return;  // the call's fate is decided already
    call_ended_ = true;
    done_.fail_permanently(std::string("the command's ") + (i == 0 ? "stdout" : "stderr") +
                           " passed " + std::to_string(kMaxCaptured >> 20) +
                           " MiB (an output is kept in memory), and the command was stopped; "
                           "write large output to a file");
    stop();
  }

  void write_stdin() {
    if (!in_.is_open()) return;
    asio::async_write(in_, asio::buffer(stdin_),
                      [self = shared_from_this()](boost::system::error_code, std::size_t) {
                        self->in_.close();  // all written, or the command stopped reading
                      });
  }

  void wait_for_exit() {
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      exit_.assign(pidfd);
      exit_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self = shared_from_this()](boost::system::error_code ec) {
                         if (!ec) return self->reap();
                         self->exit_.close();  // epoll refused it: look every 10 ms
                         self->poll_exit();
                       });
      return;
    }
    poll_exit();  // kernels before 5.3 have no pidfd
  }

  void poll_exit() {
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code) {
      if (waitpid(self->pid_, &self->status_, WNOHANG) == self->pid_) {
        self->exited_ = true;
        return self->finish_if_done();
      }
      self->poll_exit();
    });
  }

  // Never waits: a pidfd's wake-up can be another descriptor's. Asio
  // closes a descriptor without removing it from epoll (close() removes
  // it), but a command forked meanwhile on another thread holds a copy
  // until its exec, so a closed pidfd's events (its process reaped) can
  // still arrive, at the registration Asio has reused for this one. A
  // blocking waitpid here then held the reactor while this command filled
  // its stdout pipe, which only the reactor reads: parallel shell tasks
  // hung for ever. A wake-up that finds the command still running opens a
  // new pidfd, which epoll checks when it is added.
  void reap() {
    pid_t got;
    while ((got = waitpid(pid_, &status_, WNOHANG)) < 0 && errno == EINTR) {
    }
    exit_.close();
    if (got == 0) return wait_for_exit();
    exited_ = true;
    finish_if_done();
  }

  // Both pipes at their end and the command reaped: the call ends.
  void finish_if_done() {
    if (finished_ || !exited_ || open_pipes_ > 0) return;
    finished_ = true;
    if (kill_timer_) kill_timer_->cancel();
    if (call_ended_) return;  // failed at the cap, when the command was stopped
    if (cancelled_) {
      done_.cancelled("cancelled: the command was terminated");
      return;
    }
    const int code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    if (code != 0 && check_) {
      // The last 400 bytes of stderr, from a whole character on; a cut is
      // marked "...", where the host masks what it left of a secret.
      std::string_view err = captured_[1];
      while (!err.empty() && err.back() == '\n') err.remove_suffix(1);
      std::string tail(err);
      if (err.size() > 400) {
        std::size_t from = err.size() - 400;
        while (from < err.size() && (static_cast<unsigned char>(err[from]) & 0xC0) == 0x80) ++from;
        tail = "..." + std::string(err.substr(from));
      }
      done_.fail((WIFSIGNALED(status_) ? "command was killed by " + signal_name(WTERMSIG(status_))
                                       : "command exited " + std::to_string(code)) +
                 (tail.empty() ? "" : ": " + tail));
      return;
    }
    done_.ok_with([&] {
      return Value{{"exit_code", code}, {"stdout", captured_[0]}, {"stderr", captured_[1]}};
    });
  }

  pid_t pid_;
  int fds_[2];  // the pipes' descriptors, -1 once closed (under tails_mutex_)
  std::array<asio::posix::stream_descriptor, 2> pipes_;
  asio::posix::stream_descriptor in_, exit_;
  asio::steady_timer timer_;
  std::unique_ptr<asio::steady_timer> kill_timer_;
  std::array<std::array<char, 65536>, 2> buffers_;
  // What a node's output may hold of each stream.
  static constexpr std::size_t kMaxCaptured = 16u << 20;
  std::string captured_[2];
  bool over_[2] = {false, false};
  // The end of each stream, apart from captured_ (which the reactor may be
  // reallocating), for an on-cancel callback on another thread; the lock
  // also covers reading and closing fds_.
  std::mutex tails_mutex_;
  std::array<OutputTail, 2> tails_;
  std::string stdin_;
  int open_pipes_ = 2;
  int status_ = 0;
  bool exited_ = false, cancelled_ = false, finished_ = false;
  bool stopping_ = false;    // SIGTERM sent (a cancel, or the cap passed)
  bool call_ended_ = false;  // the call was ended before the command was (at the cap)
  bool check_;
  pyoco::Completion done_;
};

struct Shell : pyoco::AsyncTask {
  static constexpr const char* name = "shell";
  static constexpr const char* summary = "Runs a command and captures exit code, stdout, stderr";
  static constexpr const char* usage =
      "build: {use: \"std/shell\", inputs: {command: \"make -j2\", cwd: \"src\"}}";
  static inline const std::vector<std::string> tags = {"process"};
  static inline const std::vector<Io> inputs = {
      {"command", "string", false, "run with /bin/sh -c (give this or argv, not both)"},
      {"argv", "array", false, "program and arguments, run without a shell"},
      {"cwd", "string", false, "working directory"},
      {"env", "object", false, "variables added to the environment"},
      {"stdin", "string", false, "written to the command's standard input"},
      {"check", "bool", false, "fail the task on a non-zero exit (default true)"}};
  static inline const std::vector<Io> outputs = {
      {"exit_code", "int", false, "the command's exit status; 128+N when signal N killed it"},
      {"stdout", "string", false,
       "what it printed: at most 16 MiB; past that the task fails at once and the command is "
       "stopped. Cancelled or timed out, the task logs the last 20 lines (4 KiB) it printed"},
      {"stderr", "string", false,
       "what it printed on stderr: as stdout (16 MiB at most; its last lines logged on a cancel "
       "or timeout)"}};

  void start(Context& ctx, const Inputs& in, pyoco::Completion done) override {
    const GuardProgram guard = guard_program();
    if (const std::string why = guard.unusable(); !why.empty()) {
      throw pyoco::PermanentError(why);
    }
    std::vector<std::string> argv;
    if (!in["command"].is_null() && !in["argv"].is_null()) {
      throw pyoco::PermanentError(
          "give input 'command' (run with /bin/sh -c) or 'argv' (run without a shell), not "
          "both");
    }
    if (Value cmd = in["command"]; !cmd.is_null()) {
      argv = {"/bin/sh", "-c", cmd.as<std::string>()};
    } else if (Value a = in["argv"]; a.is_array() && a.size() > 0) {
      for (Value item : a.items()) argv.push_back(item.as<std::string>());
    } else {
      throw pyoco::Error("give input 'command' (a string) or 'argv' (a non-empty array)");
    }

    // A variable given in `env` replaces the inherited one: getenv() returns
    // the first match, so appending a duplicate would not override it.
    std::map<std::string, std::string> overrides;
    for (auto [key, value] : in["env"].members()) {
      // `A=B` would set another variable than the one named; a NUL would
      // cut the value short without a word.
      if (key.empty() || key.find('=') != std::string_view::npos ||
          key.find('\0') != std::string_view::npos) {
        throw pyoco::PermanentError("env: '" + std::string(key) +
                                    "' is not a variable name (no '=', no NUL, not empty)");
      }
      overrides[std::string(key)] = value.as<std::string>();
      if (overrides[std::string(key)].find('\0') != std::string::npos) {
        throw pyoco::PermanentError("env." + std::string(key) +
                                    ": holds a NUL byte, which no environment can carry");
      }
    }
    for (const std::string& a : argv) {
      if (a.find('\0') != std::string::npos) {
        throw pyoco::PermanentError(std::string(in["command"].is_null() ? "argv" : "command") +
                                    ": holds a NUL byte; the command would be cut short there");
      }
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      if (overrides.count(std::string(entry.substr(0, entry.find('=')))) == 0) {
        env_strings.emplace_back(entry);
      }
    }
    for (const auto& [key, value] : overrides) env_strings.push_back(key + "=" + value);

    Pipe out, err, input;
    std::vector<char*> args, env;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : env_strings) env.push_back(e.data());
    env.push_back(nullptr);
    const std::string cwd = in.get<std::string>("cwd", "");
    SpawnFailure failed;
    const pid_t pid = spawn(guard, args, env, cwd, input, out, err, failed);
    if (pid < 0) {
      if (failed.what == kGuard) {
        // Each copy, and why it did not start.
        const std::string built_in = guard.memfd < 0 ? guard.memfd_error
                                                     : std::string("exec from a memfd: ") +
                                                           std::strerror(failed.memfd_error);
        const std::string beside =
            guard.path.empty() ? guard.path_error : guard.path + ": " + std::strerror(failed.error);
        const std::string message =
            "cannot start the shell guard: neither the copy built into its library (" + built_in +
            ") nor the one beside it (" + beside + ") would start" + kGuardRemedy;
        const int last = guard.path.empty() ? failed.memfd_error : failed.error;
        if (last == ENOENT || last == EACCES || last == ENOEXEC || last == EPERM) {
          throw pyoco::PermanentError(message);
        }
        throw pyoco::Error(message);
      }
      if (failed.what == kChdir) {
        throw pyoco::Error("cwd: '" + cwd + "' is not a directory it can enter (" +
                           std::strerror(failed.error) + ")");
      }
      throw pyoco::Error("cannot start '" + argv[0] + "': " + error_text(failed.error));
    }

    std::string stdin_data = in.get<std::string>("stdin", "");
    if (stdin_data.empty()) input.close_write();
    const int in_fd = stdin_data.empty() ? -1 : input.release_write();
    auto command =
        std::make_shared<Command>(pid, out.release_read(), err.release_read(), in_fd,
                                  std::move(stdin_data), in.get<bool>("check", true), done);
    // On a cancel or at the deadline, what the command printed so far is
    // logged before it is stopped: the node's output is lost with the call.
    ctx.on_cancel([command, ctx] {
      command->log_what_it_printed(ctx);
      command->cancel();
    });
    command->begin();
  }
};

}  // namespace

void register_shell_task(pyoco::Registry& registry) { registry.add<Shell>(); }

}  // namespace pyoco_std
