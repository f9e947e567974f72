// shell: runs a command, captures its exit code and output, and stops it
// when the run is cancelled or the task's deadline passes. The command is
// waited for on the plugin's reactor thread, not on a host worker.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include "reactor.hpp"
#include "tasks.hpp"

extern char** environ;

namespace pyoco_std {
namespace {

using pyoco::Context;
using pyoco::Inputs;
using pyoco::Io;
using pyoco::Value;

class Pipe {
 public:
  Pipe() {
    if (pipe2(fd_, O_CLOEXEC) != 0)
      throw pyoco::Error(std::string("pipe: ") + std::strerror(errno));
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

// What the kernel sends the guard when the host dies (PR_SET_PDEATHSIG).
// Anyone may send it too (a command's `kill -USR1 0` reaches its whole
// group): the guard acts on it only when its parent has changed.
constexpr int kHostGone = SIGUSR1;

// Closes descriptors `first` to `last`; close_range, or one by one up to
// `limit` (the host's) on kernels before 5.9.
void close_fds(long first, long last, int limit) {
  if (first > last) return;
  const auto to = static_cast<unsigned>(std::min<long>(last, ~0u));
  if (syscall(SYS_close_range, static_cast<unsigned>(first), to, 0) == 0) return;
  for (long fd = first; fd <= last && fd < limit; ++fd) ::close(static_cast<int>(fd));
}

// Closes every descriptor but the two in `keep`.
void close_all_but(std::array<int, 2> keep, int limit) {
  if (keep[0] > keep[1]) std::swap(keep[0], keep[1]);
  close_fds(0, keep[0] - 1L, limit);
  close_fds(keep[0] + 1L, keep[1] - 1L, limit);
  close_fds(keep[1] + 1L, std::numeric_limits<long>::max(), limit);
}

// The guard: the process a command's task starts, between the host and the
// command, and the leader of the command's process group. It makes only
// system calls (it is a fork of a multithreaded host, without exec).
// - The host dies, by any means (SIGKILL too): the kernel sends the guard
//   kHostGone (PR_SET_PDEATHSIG), and the guard kills the whole group. A
//   PR_SET_PDEATHSIG on the command alone killed `sh` and left what it
//   started (its pipeline, `sleep 30`, a python loop) running on, beside
//   attempt 2 of the run in a cluster.
// - The command ends: the guard waits until nothing holds the command's
//   stdout and stderr any more (a background job of the command may still
//   write to them, and the task still waits for it: it is guarded as long),
//   then ends as the command did: the same exit code, or killed by the same
//   signal (without a core dump of its own).
// - A cancel's SIGTERM to the group: the guard blocks every signal (it
//   never takes one but kHostGone and SIGCHLD, through a signalfd), so the
//   command has its grace and its own end is relayed. SIGKILL ends all.
// `watch` are the host's read ends of the command's stdout and stderr; the
// guard closes every other descriptor it inherited (another command's pipe,
// held here, would not see its end).
[[noreturn]] void guard(pid_t host, pid_t command, std::array<int, 2> watch, int limit) {
  close_all_but(watch, limit);
  sigset_t wanted;
  sigemptyset(&wanted);
  sigaddset(&wanted, SIGCHLD);
  sigaddset(&wanted, kHostGone);
  const int signals = signalfd(-1, &wanted, SFD_CLOEXEC);
  if (signals < 0) {
    kill(0, SIGKILL);  // cannot watch the host: nothing runs unguarded
    _exit(127);
  }
  pollfd polled[3] = {{signals, POLLIN, 0}, {watch[0], 0, 0}, {watch[1], 0, 0}};
  int status = 0;
  bool ended = false;
  for (;;) {
    if (getppid() != host) {
      kill(0, SIGKILL);  // the group, the guard with it
      _exit(128 + SIGKILL);
    }
    if (!ended) {
      const pid_t got = waitpid(command, &status, WNOHANG);
      if (got < 0 && errno == ECHILD) _exit(127);  // cannot be: SIGCHLD is not ignored here
      ended = got == command;
    }
    if (ended && polled[1].fd < 0 && polled[2].fd < 0) break;
    if (poll(polled, 3, -1) < 0) continue;  // EINTR; no handler runs here
    if ((polled[0].revents & POLLIN) != 0) {
      signalfd_siginfo info[8];
      [[maybe_unused]] const ssize_t n = read(signals, info, sizeof info);  // drained
    }
    // With no events asked, poll reports a pipe's read end only when every
    // write end is closed (POLLHUP), however much is still unread in it.
    for (int i = 1; i < 3; ++i) {
      if (polled[i].revents != 0) polled[i].fd = -1;
    }
  }
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  const int sig = WTERMSIG(status);
  prctl(PR_SET_DUMPABLE, 0);  // no core of the guard's own, beside (or over) the command's
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, nullptr);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, nullptr);
  kill(getpid(), sig);
  _exit(128 + sig);  // a signal whose default is not to end the process
}

// Starts `args` (a PATH search for a bare name) with `env`, in `cwd` when
// given, its stdin, stdout and stderr on the pipes' ends, behind a guard
// (above): the guard leads the command's process group (a cancel signals
// the whole group), ends as the command does, and kills the group when the
// host dies (a worker or a `pyoco run` killed with SIGKILL leaves nothing of
// the command running on, whose effects would otherwise happen twice when
// the run is tried again elsewhere). posix_spawn cannot do that, so this
// forks (then vforks); the processes make only system calls before exec. Closes the
// command's ends of the pipes here. The guard's pid (the group's id), or -1
// with `failed` (an errno) and `what` (kChdir, kExec or kFork).
pid_t spawn(const std::vector<char*>& args, const std::vector<char*>& env, const std::string& cwd,
            Pipe& in, Pipe& out, Pipe& err, int& failed, const char*& what) {
  Pipe report;  // the command's errno when exec fails; closed by a successful exec
  const pid_t parent = getpid();
  const std::array<int, 3> fds = {in.read_end(), out.write_end(), err.write_end()};
  const std::array<int, 2> watch = {out.read_end(), err.read_end()};
  rlimit files{};
  const int limit = getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < (1u << 20)
                        ? static_cast<int>(files.rlim_cur)
                        : 1 << 20;
  // No signal is handled between fork and exec: the child would run the
  // host's handlers (pyoco's writes a byte to its own interrupt pipe, read
  // by the parent as a second Ctrl+C). The guard keeps every signal
  // blocked; the command puts handled signals back to their defaults, then
  // takes this thread's mask, as posix_spawn does.
  sigset_t all, mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &mask);
  const pid_t pid = fork();
  if (pid != 0) pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  if (pid < 0) {
    failed = errno;
    what = kFork;
    return -1;
  }
  auto fail = [&](const char* step) {
    const int e = errno;
    const char tag = step == kChdir ? 'c' : step == kFork ? 'f' : 'x';
    [[maybe_unused]] ssize_t n = write(report.write_end(), &tag, 1);
    n = write(report.write_end(), &e, sizeof e);
    _exit(127);
  };
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, kHostGone);
    if (getppid() != parent) _exit(127);  // it died before the line above
    prctl(PR_SET_NAME, "pyoco-guard");    // in ps and top; its command line is the host's
    // SIGCHLD ignored would reap the command unseen.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &dfl, nullptr);
    const pid_t me = getpid();
    // vfork: the guard waits until the command's exec, and the copy of the
    // host's page tables a fork makes is not made twice per command. The
    // command writes only to its own stack and to `mask` before exec.
    const pid_t command = vfork();
    if (command < 0) fail(kFork);
    if (command > 0) guard(parent, command, watch, limit);
    // The command: dies with the guard too (should the guard alone be killed).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != me) _exit(127);
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
    sigdelset(&mask, SIGPIPE);
    pthread_sigmask(SIG_SETMASK, &mask, nullptr);
    for (int target = 0; target < 3; ++target) {
      // Already in place (the host's own was closed): keep it open past exec.
      if (fds[target] == target ? fcntl(target, F_SETFD, 0) < 0 : dup2(fds[target], target) < 0) {
        fail(kExec);
      }
    }
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) fail(kChdir);
    execvpe(args[0], args.data(), env.data());
    fail(kExec);
  }
  // The guard waits for every write end of stdout and stderr to close
  // before it ends: the host's go now.
  in.close_read();
  out.close_write();
  err.close_write();
  report.close_write();
  char tag = 0;
  int e = 0;
  ssize_t n;
  do {
    n = read(report.read_end(), &tag, 1);
  } while (n < 0 && errno == EINTR);
  if (n == 1 && read(report.read_end(), &e, sizeof e) == static_cast<ssize_t>(sizeof e)) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    failed = e;
    what = tag == 'c' ? kChdir : tag == 'f' ? kFork : kExec;
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

// One running command, waited on by the reactor: its output pipes, its
// stdin, and its exit (through a pidfd). Everything but cancel() runs on
// the reactor thread.
class Command : public std::enable_shared_from_this<Command> {
 public:
  Command(pid_t pid, int out_fd, int err_fd, int in_fd, std::string stdin_data, bool check,
          pyoco::Completion done)
      : pid_(pid),
        pipes_{asio::posix::stream_descriptor(reactor(), out_fd),
               asio::posix::stream_descriptor(reactor(), err_fd)},
        in_(reactor()),
        exit_(reactor()),
        timer_(reactor()),
        stdin_(std::move(stdin_data)),
        check_(check),
        done_(std::move(done)) {
    if (in_fd >= 0) in_.assign(in_fd);
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
      if (self->finished_ || self->cancelled_) return;
      self->cancelled_ = true;
      kill(-self->pid_, SIGTERM);
      self->kill_timer_ = std::make_unique<asio::steady_timer>(reactor(), kTermGrace);
      self->kill_timer_->async_wait([self](boost::system::error_code ec) {
        if (!ec && !self->finished_) kill(-self->pid_, SIGKILL);
      });
    });
  }

 private:
  void read(int i) {
    pipes_[i].async_read_some(
        asio::buffer(buffers_[i]),
        [self = shared_from_this(), i](boost::system::error_code ec, std::size_t n) {
          // Past the cap the pipe is still read (the command must not
          // block on it), but what it brings is dropped.
          std::string& into = self->captured_[i];
          if (into.size() + n <= kMaxCaptured) {
            into.append(self->buffers_[i].data(), n);
          } else {
            self->over_[i] = true;
          }
          if (!ec) return self->read(i);
          self->pipes_[i].close();
          --self->open_pipes_;
          self->finish_if_done();
        });
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
    if (cancelled_) {
      done_.cancelled("cancelled: the command was terminated");
      return;
    }
    const int code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    if (over_[0] || over_[1]) {
      done_.fail_permanently(std::string("the command's ") + (over_[0] ? "stdout" : "stderr") +
                             " passed " + std::to_string(kMaxCaptured >> 20) +
                             " MiB (an output is kept in memory); write large output to a file"
                             " (exit code " +
                             std::to_string(code) + ")");
      return;
    }
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
  std::array<asio::posix::stream_descriptor, 2> pipes_;
  asio::posix::stream_descriptor in_, exit_;
  asio::steady_timer timer_;
  std::unique_ptr<asio::steady_timer> kill_timer_;
  std::array<std::array<char, 65536>, 2> buffers_;
  // What a node's output may hold of each stream.
  static constexpr std::size_t kMaxCaptured = 16u << 20;
  std::string captured_[2];
  bool over_[2] = {false, false};
  std::string stdin_;
  int open_pipes_ = 2;
  int status_ = 0;
  bool exited_ = false, cancelled_ = false, finished_ = false;
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
      {"stdout", "string", false, "what it printed (at most 16 MiB, or the task fails)"},
      {"stderr", "string", false, "what it printed on stderr (at most 16 MiB)"}};

  void start(Context& ctx, const Inputs& in, pyoco::Completion done) override {
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
    int failed = 0;  // errno of what failed in the child
    const char* what = nullptr;
    const pid_t pid = spawn(args, env, cwd, input, out, err, failed, what);
    if (pid < 0) {
      if (what == kChdir) {
        throw pyoco::Error("cwd: '" + cwd + "' is not a directory it can enter (" +
                           std::strerror(failed) + ")");
      }
      throw pyoco::Error("cannot start '" + argv[0] + "': " + std::strerror(failed));
    }

    std::string stdin_data = in.get<std::string>("stdin", "");
    if (stdin_data.empty()) input.close_write();
    const int in_fd = stdin_data.empty() ? -1 : input.release_write();
    auto command =
        std::make_shared<Command>(pid, out.release_read(), err.release_read(), in_fd,
                                  std::move(stdin_data), in.get<bool>("check", true), done);
    ctx.on_cancel([command] { command->cancel(); });
    command->begin();
  }
};

}  // namespace

void register_shell_task(pyoco::Registry& registry) { registry.add<Shell>(); }

}  // namespace pyoco_std
