// Which process wrote a run, and whether it still lives: pid plus the
// process's start time, so a pid the kernel has since reused is not mistaken
// for the run's own process.
#include <pyoco/store/history.hpp>

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace pyoco::store {

namespace {

// Field 22 of /proc/<pid>/stat (starttime), 0 when it cannot be read;
// `state` (field 3) too when asked for.
std::int64_t start_ticks(std::int64_t pid, char* state = nullptr) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  // The command name (field 2) is in parentheses and may hold spaces.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 3 && state != nullptr && !field.empty()) *state = field[0];
    if (i == 22) return std::stoll(field);
  }
  return 0;
}

}  // namespace

ProcessIdentity this_process() {
  ProcessIdentity p;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) p.host = host;
  p.pid = getpid();
  p.start = start_ticks(p.pid);
  return p;
}

bool process_alive(std::int64_t pid, std::int64_t start) {
  if (pid <= 0) return false;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  char state = '?';
  const std::int64_t now = start_ticks(pid, &state);
  // A zombie has exited: only its parent has not reaped it yet.
  if (state == 'Z' || state == 'X') return false;
  if (start == 0) return true;  // nothing to compare against
  return now == 0 || now == start;
}

std::filesystem::path default_store_file() {
  if (const char* home = std::getenv("PYOCO_HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / "state.db";
  }
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::filesystem::path(xdg) / "pyoco" / "state.db";
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    const passwd* pw = getpwuid(getuid());
    home = pw != nullptr ? pw->pw_dir : "/tmp";
  }
  return std::filesystem::path(home) / ".local" / "state" / "pyoco" / "state.db";
}

}  // namespace pyoco::store
