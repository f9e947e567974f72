// pyoco-shell-guard: the process between a host (a `pyoco run`, a cluster
// worker) and a command std/shell runs, and the leader of the command's
// process group. A small program of its own (a guard forked from the host
// without exec held a copy-on-write snapshot of the host's memory for the
// command's whole life), linked statically, whose bytes libpyoco_std.so
// carries: std/shell execs it from a sealed memfd, or else from the copy
// installed beside libpyoco_std.so.
//
//   pyoco-shell-guard <host-pid> <cwd, or empty> -- <program> [<arg>...]
//
// started by the host (shell.cpp) with the command's environment, every
// signal blocked, in the command's process group, and these descriptors:
//   0, 1, 2  the command's stdin, stdout and stderr
//   3        the report pipe: on failure, a tag ('c' chdir, 'x' exec, 'f'
//            fork) and the errno; closed when the command has exec'ed
//   4, 5     the host's read ends of stdout and stderr, watched
// Every other descriptor it inherited is closed.
//
// - The host dies, by any means (SIGKILL too): the kernel sends the guard
//   SIGUSR1 (PR_SET_PDEATHSIG), and the guard kills the whole group. A
//   PR_SET_PDEATHSIG on the command alone killed `sh` and left what it
//   started (its pipeline, `sleep 30`, a python loop) running on, beside
//   attempt 2 of the run in a cluster. Anyone may send SIGUSR1 (a command's
//   `kill -USR1 0` reaches its whole group; a host thread's exit sends it
//   too): the guard acts only when its parent has changed.
// - The command ends: the guard waits until nothing holds the command's
//   stdout and stderr any more (a background job of the command may still
//   write to them, and the task still waits for it: it is guarded as long),
//   then ends as the command did: the same exit code, or killed by the same
//   signal (without a core dump of its own).
// - A cancel's SIGTERM to the group: the guard keeps every signal blocked
//   (it takes only SIGUSR1 and SIGCHLD, through a signalfd), so the command
//   has its grace and its own end is relayed. SIGKILL ends all.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

enum { kReport = 3, kWatchOut = 4, kWatchErr = 5, kFirstOther = 6 };

// What the kernel sends the guard when the host dies.
#define HOST_GONE SIGUSR1

static void report(char tag) {
  const int e = errno;
  char message[1 + sizeof e];
  message[0] = tag;
  memcpy(message + 1, &e, sizeof e);
  ssize_t n = write(kReport, message, sizeof message);
  (void)n;
  _exit(127);
}

// Closes every descriptor from kFirstOther on: close_range, or one by one
// up to the descriptor limit on kernels before 5.9.
static void close_others(void) {
  if (syscall(SYS_close_range, (unsigned)kFirstOther, ~0u, 0) == 0) return;
  struct rlimit files;
  long limit = 1L << 20;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < (rlim_t)limit) {
    limit = (long)files.rlim_cur;
  }
  for (long fd = kFirstOther; fd < limit; ++fd) close((int)fd);
}

static pid_t parse_pid(const char* text) {
  char* end = NULL;
  errno = 0;
  const long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value <= 1 || value > INT_MAX) return -1;
  return (pid_t)value;
}

int main(int argc, char** argv) {
  // First: the host may die at any moment, this one included; the check
  // after it closes the race with a host that died before it.
  prctl(PR_SET_PDEATHSIG, HOST_GONE);
  // Exec'ed from a memfd (as std/shell does), the kernel names the process
  // after the descriptor ("3", or "memfd:pyoco-sh"): ps -o comm and top
  // show this name instead (cut to 15 characters).
  prctl(PR_SET_NAME, "pyoco-shell-guard");
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    static const char usage[] =
        "pyoco-shell-guard: started by pyoco's std/shell, not by hand\n"
        "usage: pyoco-shell-guard <host-pid> <cwd, or empty> -- <program> [<arg>...]\n";
    ssize_t n = write(2, usage, sizeof usage - 1);
    (void)n;
    return 2;
  }
  const pid_t host = parse_pid(argv[1]);
  // Gone before the line above (or not started by it): nothing starts.
  if (host < 0 || getppid() != host) _exit(127);
  const char* cwd = argv[2];
  char** command_argv = argv + 4;

  close_others();
  // The command keeps none of them; the report pipe closes with its exec.
  for (int fd = kReport; fd <= kWatchErr; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  // SIGCHLD ignored (inherited from the host) would reap the command unseen.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGCHLD, &dfl, NULL);
  // Every signal stays blocked here (as the host started it); the two it
  // waits for are read from a signalfd.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  sigset_t wanted;
  sigemptyset(&wanted);
  sigaddset(&wanted, SIGCHLD);
  sigaddset(&wanted, HOST_GONE);
  const int signals = signalfd(-1, &wanted, SFD_CLOEXEC);
  if (signals < 0) report('f');  // cannot watch the host: nothing runs unguarded

  const pid_t me = getpid();
  // vfork: the guard waits until the command's exec (or its failure,
  // reported before the report pipe closes). The command writes only to
  // its own stack before exec.
  const pid_t command = vfork();
  if (command < 0) report('f');
  if (command == 0) {
    // The command: dies with the guard too (should the guard alone be
    // killed), and has a clean signal mask.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != me) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (cwd[0] != '\0' && chdir(cwd) != 0) report('c');
    execvpe(command_argv[0], command_argv, environ);
    report('x');
  }
  // The command has exec'ed, or failed and reported it. The guard holds
  // none of the command's descriptors from here on: stdout's and stderr's
  // ends are watched for their last writer, and a stdin reader of the
  // guard's would keep the host writing.
  close(kReport);
  for (int fd = 0; fd <= 2; ++fd) close(fd);

  struct pollfd polled[3] = {{signals, POLLIN, 0}, {kWatchOut, 0, 0}, {kWatchErr, 0, 0}};
  int status = 0;
  int ended = 0;
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
      struct signalfd_siginfo info[8];
      ssize_t n = read(signals, info, sizeof info);  // drained
      (void)n;
    }
    // With no events asked, poll reports a pipe's read end only when every
    // write end is closed (POLLHUP), however much is still unread in it.
    for (int i = 1; i < 3; ++i) {
      if (polled[i].revents != 0) polled[i].fd = -1;
    }
  }
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  const int sig = WTERMSIG(status);
  // No core of the guard's own, beside (or over) the command's: not
  // dumpable, and no core size either (a core_pattern pipe with
  // fs.suid_dumpable=2 dumps what is not dumpable).
  prctl(PR_SET_DUMPABLE, 0);
  const struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  sigaction(sig, &dfl, NULL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, NULL);
  kill(me, sig);
  _exit(128 + sig);  // a signal whose default is not to end the process
}
