// The cnats handles behind a Connection, for pyoco's own gateway and
// worker (the cluster library is internal: never installed), and the one
// way a cnats failure becomes a NatsError.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pyoco::cluster {

struct Connection::Handles {
  ConnectOptions options;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  // Kept by cnats's connection callbacks: natsConnection_Status takes the
  // connection's lock, which a reconnect holds for up to its connect timeout.
  std::atomic<bool> up{false};
  // cnats's last callback for the connection has run: only then may these
  // handles (the callbacks' closure) go.
  std::mutex closing;
  std::condition_variable closed_cv;
  bool closed = false;
};

// Ends a push subscription (sync or async) and frees it. cnats 3.4 (the
// one Debian 12 has) looks a subscription up in its read loop and then
// uses it without a reference, so natsSubscription_Destroy while messages
// are flowing frees it under the reader (a crash on a freed mutex). A
// drain first (UNSUB, then a flush: the server sends nothing more and the
// reader has handed over all it had) makes the free safe. What was still
// queued is dropped. Waits at most a few seconds when NATS is away. Not
// for pull subscriptions (a drain would delete a consumer cnats made).
void close_subscription(natsSubscription* sub);

struct SubscriptionCloser {
  void operator()(natsSubscription* sub) const { close_subscription(sub); }
};
using Subscription = std::unique_ptr<natsSubscription, SubscriptionCloser>;

// A subscription to what a stream holds on `subject` (PYOCO_EVENTS: a run's
// "pyoco.ev.<id>.>", its logs, or every run's "pyoco.ev.*.run"; a plugin
// package's chunks) after stream sequence `after` (0: from the first),
// read with natsSubscription_NextMsg; null when NATS refuses it.
// `not_before` (epoch seconds; 0: none), used only when `after` is 0, starts
// at the first message stored at or after that time: NATS then looks for
// the subject's messages from there, not through the whole stream (making
// a consumer of a run's subject on a stream of 100,000s of events took NATS
// 2.9 about a second each, and watches queue behind each other).
Subscription subscribe_events(Connection& nats, const std::string& subject, std::uint64_t after,
                              double not_before = 0);

// Reads what `sub` (from subscribe_events) has to deliver up to what the
// stream held when it was made, in stream order, without waiting on a
// timeout when there is nothing: `each` for every message (freed after)
// until it answers false. False when it stopped short (NATS away, or 2 s
// without the next message).
bool read_stored(natsSubscription* sub, const std::function<bool(natsMsg*)>& each);

// A message as a stream stores it.
struct StoredMessage {
  std::uint64_t seq = 0;
  std::string subject;
  std::string data;
};

// The first message of `stream` at or after sequence `from` on `subject`
// (wildcards allowed): one JetStream API request, no consumer (making one
// is a scan NATS does one at a time per connection). NATS looks from `from`
// to the next match, so asking from near it is cheap and asking for what
// is not there scans the rest of the stream. Nullopt when there is none.
// Throws NatsError.
std::optional<StoredMessage> next_stored(Connection& nats, const std::string& stream,
                                         std::uint64_t from, const std::string& subject);

// The last message of `stream` on `subject` (no wildcards), from NATS's
// index of the subject's last message: one request, no scan. Nullopt when
// there is none. Throws NatsError.
std::optional<StoredMessage> last_stored(Connection& nats, const std::string& stream,
                                         const std::string& subject);

// The current value of every key of KV bucket `bucket` under `prefix`
// ("" for all), in one pass over the bucket's stream: cnats's own
// kvStore_Keys and watchers are freed while their messages may still come
// (see close_subscription). Throws NatsError when NATS cannot be asked.
std::vector<std::pair<std::string, std::string>> kv_entries(Connection& nats,
                                                            const std::string& bucket,
                                                            const std::string& prefix = "");

// "<what>: <cnats status text>[ (JetStream error N)][: <last error>]",
// which throw_nats throws.
std::string nats_error_message(const std::string& what, natsStatus s, jsErrCode jerr = jsErrCode{});
[[noreturn]] void throw_nats(const std::string& what, natsStatus s, jsErrCode jerr = jsErrCode{});

// KV bucket `name`, opened. Throws NatsError: "missing ...: run `pyoco
// cluster init`" only when NATS says it does not exist; when NATS cannot
// be asked, that (a bucket is not missing because NATS is away).
kvStore* open_bucket(Connection& nats, const char* name);

}  // namespace pyoco::cluster
