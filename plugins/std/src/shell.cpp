// shell: runs a command, captures its exit code and output, and stops it
// when the run is cancelled or the task's deadline passes.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string_view>

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
  void close_read() { close_fd(fd_[0]); }
  void close_write() { close_fd(fd_[1]); }

 private:
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fd_[2] = {-1, -1};
};

// How long a cancelled command has between SIGTERM and SIGKILL.
constexpr std::chrono::seconds kTermGrace{2};

// write() to a pipe whose reader has gone raises SIGPIPE, whose default
// action would end the whole host process (a command that exits without
// reading its stdin). Block it in this thread for the write and swallow one
// that became pending, so the write fails with EPIPE instead.
ssize_t write_without_sigpipe(int fd, const char* data, std::size_t size) {
  sigset_t pipe_only, previous;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
  const ssize_t n = ::write(fd, data, size);
  const int saved = errno;
  if (n < 0 && saved == EPIPE && sigismember(&previous, SIGPIPE) == 0) {
    const timespec now{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &now) == -1 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  errno = saved;
  return n;
}

struct Shell : pyoco::Task {
  static constexpr const char* name = "shell";
  static constexpr const char* summary = "Runs a command and captures exit code, stdout, stderr";
  static constexpr const char* usage =
      "build: {use: \"std/shell\", inputs: {command: \"make -j2\", cwd: \"src\"}}";
  static inline const std::vector<std::string> tags = {"process"};
  static inline const std::vector<Io> inputs = {
      {"command", "string", false, "run with /bin/sh -c (give this or argv)"},
      {"argv", "array", false, "program and arguments, run without a shell"},
      {"cwd", "string", false, "working directory"},
      {"env", "object", false, "variables added to the environment"},
      {"stdin", "string", false, "written to the command's standard input"},
      {"check", "bool", false, "fail the task on a non-zero exit (default true)"}};
  static inline const std::vector<Io> outputs = {
      {"exit_code", "int", false, "the command's exit status"},
      {"stdout", "string", false, "what it printed"},
      {"stderr", "string", false, "what it printed on stderr"}};

  Value run(Context& ctx, const Inputs& in) override {
    std::vector<std::string> argv;
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
      overrides[std::string(key)] = value.as<std::string>();
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
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, input.read_end(), 0);
    posix_spawn_file_actions_adddup2(&actions, out.write_end(), 1);
    posix_spawn_file_actions_adddup2(&actions, err.write_end(), 2);
    const std::string cwd = in.get<std::string>("cwd", "");
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // cancel kills the whole group
    posix_spawnattr_setpgroup(&attr, 0);

    std::vector<char*> args, env;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : env_strings) env.push_back(e.data());
    env.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    out.close_write();
    err.close_write();
    input.close_read();
    if (rc != 0) throw pyoco::Error("cannot start '" + argv[0] + "': " + std::strerror(rc));

    const std::string stdin_data = in.get<std::string>("stdin", "");
    std::size_t written = 0;
    fcntl(input.write_end(), F_SETFL, O_NONBLOCK);
    if (stdin_data.empty()) input.close_write();

    std::string captured[2];
    pollfd fds[3] = {{out.read_end(), POLLIN, 0},
                     {err.read_end(), POLLIN, 0},
                     {stdin_data.empty() ? -1 : input.write_end(), POLLOUT, 0}};
    // Cancelled: SIGTERM to the command's process group, SIGKILL if it is
    // still there after the grace period (it may ignore SIGTERM).
    bool cancelled = false;
    bool killed = false;
    std::chrono::steady_clock::time_point grace;
    auto stop_if_cancelled = [&] {
      if (!cancelled && ctx.is_cancelled()) {
        cancelled = true;
        kill(-pid, SIGTERM);
        grace = std::chrono::steady_clock::now() + kTermGrace;
      }
      if (cancelled && !killed && std::chrono::steady_clock::now() > grace) {
        killed = true;
        kill(-pid, SIGKILL);
      }
    };
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
      stop_if_cancelled();
      const int ready = poll(fds, 3, 50);
      if (ready < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buf[65536];
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          captured[i].append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          fds[i].fd = -1;
        }
      }
      if (fds[2].fd >= 0 && fds[2].revents != 0) {
        const ssize_t n = write_without_sigpipe(fds[2].fd, stdin_data.data() + written,
                                                stdin_data.size() - written);
        if (n > 0) written += static_cast<std::size_t>(n);
        const bool retry = n < 0 && (errno == EAGAIN || errno == EINTR);
        if ((n < 0 && !retry) || written == stdin_data.size()) {
          input.close_write();
          fds[2].fd = -1;
        }
      }
    }

    // The pipes are closed, but the command may live on without them: keep
    // honouring cancellation until it is reaped.
    int status = 0;
    for (pid_t w = 0; (w = waitpid(pid, &status, WNOHANG)) <= 0;) {
      if (w < 0 && errno != EINTR) break;
      stop_if_cancelled();
      poll(nullptr, 0, 5);
    }
    if (cancelled) throw pyoco::Error("cancelled: the command was terminated");
    const int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (exit_code != 0 && in.get<bool>("check", true)) {
      std::string tail =
          captured[1].size() > 400 ? captured[1].substr(captured[1].size() - 400) : captured[1];
      while (!tail.empty() && tail.back() == '\n') tail.pop_back();
      throw pyoco::Error("command exited " + std::to_string(exit_code) +
                         (tail.empty() ? "" : ": " + tail));
    }
    return {{"exit_code", exit_code}, {"stdout", captured[0]}, {"stderr", captured[1]}};
  }
};

}  // namespace

void register_shell_task(pyoco::Registry& registry) { registry.add<Shell>(); }

}  // namespace pyoco_std
