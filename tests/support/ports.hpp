// Loopback ports for servers a test starts that cannot pick their own.
#pragma once

namespace pyoco::testing {

// A TCP port on 127.0.0.1 nothing listens on now (the kernel's pick).
int free_loopback_port();

}  // namespace pyoco::testing
