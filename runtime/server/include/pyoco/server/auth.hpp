// Who calls, and may they (docs/security.md). With API-key auth on, every
// route but /health names the scope it needs in the route table; a request
// is answered 401 without a key, 403 with a bad, revoked, expired or
// out-of-scope one, 429 once its address has failed too often, 503 when
// NATS cannot be asked (never counted as a failure). Keys are
// verified once with the KDF and then from a cache (a hit costs a hash and
// a lookup); a watch on the `pyoco_auth` bucket carries a revoke to every
// gateway as it is written.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/server/http.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace pyoco::server {

struct AuthOptions {
  std::string pepper;  // PYOCO_AUTH_PEPPER: the same on every gateway and `pyoco keys`
  // More failed keys than this from one address within the window: 429
  // until the window has passed (no key is checked meanwhile).
  int max_failures = 20;
  std::chrono::milliseconds failure_window{std::chrono::seconds(60)};
  // Keys checked (a KDF each) at once, across all addresses; past it a new
  // key is answered 503 at once. 0: one per two cores, at most 4 (a
  // quarter of the gateway's 16 handler threads).
  int max_kdfs = 0;
  // While NATS is away (no revoke can reach the gateway then), a key this
  // gateway verified before is still admitted, for this long after its
  // watch on the keys was last current, to the routes that answer from
  // memory (GET /runs, /stats, /workers, with X-Pyoco-Stale); every other
  // route, and any key not verified here, is 503 nats_unavailable. 0:
  // never (every route 503 while NATS is away).
  std::chrono::seconds stale_reads_for{300};
};

// PYOCO_HTTP_AUTH_MODE=api_key (else none: nullopt), PYOCO_AUTH_PEPPER,
// PYOCO_AUTH_MAX_FAILURES, PYOCO_AUTH_FAILURE_WINDOW_SEC,
// PYOCO_AUTH_STALE_READS_SEC. Throws
// std::invalid_argument naming a bad value.
std::optional<AuthOptions> auth_options_from_env();

class KeyAuthenticator {
 public:
  // Starts following the bucket. Throws NatsError when it is missing.
  KeyAuthenticator(cluster::Connection& nats, AuthOptions options);
  ~KeyAuthenticator();
  KeyAuthenticator(const KeyAuthenticator&) = delete;
  KeyAuthenticator& operator=(const KeyAuthenticator&) = delete;

  // The caller of `request` (from `address`) if it holds `scope`; throws
  // the HttpError to answer otherwise. `from_memory`: the route answers
  // from memory while NATS is away (AuthOptions::stale_reads_for).
  Caller authenticate(const Request& request, const std::string& address, unsigned scope,
                      bool from_memory = false) const;

  // Whether the key `key_id`, admitted before, is still neither revoked,
  // expired nor deleted: from the cache while the watch is current, else
  // from the bucket (true when NATS cannot say). For open event streams.
  bool still_valid(const std::string& key_id) const;

  // True while the watch on the bucket is current (its records all read,
  // the connection up): only then is the cache trusted.
  bool ready() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pyoco::server
