// The std plugin's own event loop: one thread that waits on child
// processes, pipes and sockets for every task that waits, so a task that
// waits holds no host worker thread (ABI 1.1 async tasks).
#pragma once

#include <boost/asio/io_context.hpp>

namespace pyoco_std {

// Started on first use; stopped and joined when the process exits (the
// plugin stays loaded until then). SIGPIPE is blocked on its thread, so a
// write to a pipe whose reader has gone fails with EPIPE instead of ending
// the host process.
boost::asio::io_context& reactor();

}  // namespace pyoco_std
