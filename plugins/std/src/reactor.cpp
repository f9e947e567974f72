#include "reactor.hpp"

#include <pthread.h>
#include <signal.h>

#include <boost/asio/executor_work_guard.hpp>

#include <thread>

namespace pyoco_std {

namespace {

// The loop and its thread. Destroyed when the process exits normally (the
// plugin is never unloaded before): the thread is stopped and joined first,
// so nothing runs while the rest of the process is torn down.
struct Reactor {
  boost::asio::io_context io{1};
  std::thread thread;

  Reactor()
      : thread([this] {
          sigset_t pipe_only;
          sigemptyset(&pipe_only);
          sigaddset(&pipe_only, SIGPIPE);
          pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
          auto guard = boost::asio::make_work_guard(io);
          io.run();
        }) {}
  ~Reactor() {
    io.stop();
    if (thread.joinable()) thread.join();
  }
};

}  // namespace

boost::asio::io_context& reactor() {
  static Reactor r;
  return r.io;
}

}  // namespace pyoco_std
