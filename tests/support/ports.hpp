// Loopback ports for servers a test starts that cannot pick their own.
#pragma once

namespace pyoco::testing {

// A TCP port on 127.0.0.1 nothing listens on now (the kernel's pick).
int free_loopback_port();

// Whether something accepts TCP connections on 127.0.0.1:port now.
bool accepts_on_loopback(int port);

// A socket connected to 127.0.0.1:port, or -1. `receive_buffer` > 0 sets
// SO_RCVBUF first (a small window makes the server's writes block soon).
int connect_loopback(int port, int receive_buffer = 0);

}  // namespace pyoco::testing
