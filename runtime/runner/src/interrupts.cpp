#include <pyoco/runner/interrupts.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace pyoco::runner {

namespace {

int g_pipe[2] = {-1, -1};

extern "C" void on_signal(int signal) {
  const int saved = errno;
  const char byte = static_cast<char>(signal);
  [[maybe_unused]] const auto n = write(g_pipe[1], &byte, 1);
  errno = saved;
}

// SIGHUP (the terminal closed) is an interrupt too: the run was killed
// with it, recorded as interrupted, its commands left running.
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGURG};
struct sigaction g_before[std::size(kSignals)];  // restored by ~InterruptWatcher

// pid -> parent pid, for every process /proc shows.
std::multimap<pid_t, pid_t> children_by_parent() {
  std::multimap<pid_t, pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (const dirent* e = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) != 2) continue;
    if (state == 'Z') continue;  // already dead
    out.emplace(static_cast<pid_t>(ppid), static_cast<pid_t>(pid));
  }
  closedir(proc);
  return out;
}

std::vector<pid_t> descendants() {
  const auto tree = children_by_parent();
  std::vector<pid_t> found;
  std::vector<pid_t> todo{getpid()};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto [from, to] = tree.equal_range(p);
    for (auto it = from; it != to; ++it) {
      found.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return found;
}

}  // namespace

InterruptWatcher::InterruptWatcher(InterruptActions actions) : actions_(std::move(actions)) {
  // The write end never blocks a handler (a full pipe drops the byte).
  if (pipe2(g_pipe, O_CLOEXEC) != 0) return;  // no watcher: default signal behaviour
  fcntl(g_pipe[1], F_SETFL, O_NONBLOCK);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < std::size(kSignals); ++i) {
    sigaction(kSignals[i], nullptr, &g_before[i]);
    // `nohup pyoco run` ignores SIGHUP on purpose: it stays ignored.
    if (kSignals[i] == SIGHUP && g_before[i].sa_handler == SIG_IGN) continue;
    sigaction(kSignals[i], &sa, nullptr);
  }
  thread_ = std::thread([this] { loop(); });
}

InterruptWatcher::~InterruptWatcher() {
  if (!thread_.joinable()) return;
  for (std::size_t i = 0; i < std::size(kSignals); ++i)
    sigaction(kSignals[i], &g_before[i], nullptr);
  const char stop = 0;
  [[maybe_unused]] const auto n = write(g_pipe[1], &stop, 1);
  thread_.join();
  // The pipe stays open: a handler that was already running when the
  // defaults came back may still write to it, and a closed descriptor's
  // number may belong to something else by then.
}

void InterruptWatcher::loop() {
  int interrupts = 0;
  for (;;) {
    char byte = 0;
    const auto n = read(g_pipe[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == 0) return;
    if (byte == SIGURG) {
      if (actions_.check_now) actions_.check_now();
    } else if (byte == SIGHUP && interrupts > 0) {
      // A closed terminal may send it twice (the shell, then the kernel as
      // the session ends): a hang-up never escalates to leaving at once.
      continue;
    } else if (++interrupts == 1) {
      if (actions_.cancel) actions_.cancel();
    } else {
      if (actions_.exit_now) actions_.exit_now();
    }
  }
}

void become_subreaper() { prctl(PR_SET_CHILD_SUBREAPER, 1); }

int signal_descendants(int signal) {
  int count = 0;
  for (pid_t pid : descendants()) {
    if (getpgid(pid) == pid) kill(-pid, signal);  // a group a task started (std/shell's)
    if (kill(pid, signal) == 0) ++count;
  }
  return count;
}

void stop_descendants(std::chrono::milliseconds grace) {
  if (signal_descendants(SIGTERM) == 0) return;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (descendants().empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  signal_descendants(SIGKILL);
}

}  // namespace pyoco::runner
