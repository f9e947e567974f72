// The cnats handles behind a Connection, for pyoco's own gateway and
// worker (the cluster library is internal: never installed), and the one
// way a cnats failure becomes a NatsError.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <nats/nats.h>

#include <string>

namespace pyoco::cluster {

struct Connection::Handles {
  ConnectOptions options;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
};

// "<what>: <cnats status text>[ (JetStream error N)][: <last error>]".
[[noreturn]] void throw_nats(const std::string& what, natsStatus s, jsErrCode jerr = jsErrCode{});

}  // namespace pyoco::cluster
