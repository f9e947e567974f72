// The cnats handles behind a Connection, for pyoco's own gateway and
// worker (the cluster library is internal: never installed), and the one
// way a cnats failure becomes a NatsError.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <nats/nats.h>

#include <cstdint>
#include <string>

namespace pyoco::cluster {

struct Connection::Handles {
  ConnectOptions options;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
};

// A subscription to the events of PYOCO_EVENTS on `subject` (a run's
// "pyoco.ev.<id>.>", its logs, or every run's "pyoco.ev.*.run") after stream
// sequence `after` (0: from the first), read with natsSubscription_NextMsg;
// null when NATS refuses it. The caller destroys it.
natsSubscription* subscribe_events(Connection& nats, const std::string& subject,
                                   std::uint64_t after);

// "<what>: <cnats status text>[ (JetStream error N)][: <last error>]".
[[noreturn]] void throw_nats(const std::string& what, natsStatus s, jsErrCode jerr = jsErrCode{});

}  // namespace pyoco::cluster
