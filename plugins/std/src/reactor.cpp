#include "reactor.hpp"

#include <pthread.h>
#include <signal.h>

#include <boost/asio/executor_work_guard.hpp>

#include <thread>

namespace pyoco_std {

boost::asio::io_context& reactor() {
  // Leaked on purpose: destroying it at exit while its thread runs would
  // race; the process ending stops the thread.
  static boost::asio::io_context* io = [] {
    auto* ctx = new boost::asio::io_context(1);
    std::thread([ctx] {
      sigset_t pipe_only;
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
      auto guard = boost::asio::make_work_guard(*ctx);
      ctx->run();
    }).detach();
    return ctx;
  }();
  return *io;
}

}  // namespace pyoco_std
