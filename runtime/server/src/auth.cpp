#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/server/auth.hpp>

#include "env_settings.hpp"
#include "failure_limiter.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

namespace pyoco::server {

namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

using Digest = std::array<unsigned char, 32>;

// The token of an `Authorization: Bearer <token>` value, or nullopt.
std::optional<std::string_view> bearer_token(std::string_view v) {
  constexpr std::string_view bearer = "Bearer ";
  if (v.size() > bearer.size() &&
      std::equal(bearer.begin(), bearer.end(), v.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) ==
               std::tolower(static_cast<unsigned char>(b));
      })) {
    return v.substr(bearer.size());
  }
  return std::nullopt;
}

// The key as the request carries it: X-API-Key, else Authorization: Bearer.
// Either header sent twice is refused (400), and so are two different keys
// in the two (a proxy's own `Authorization: Basic ...` beside X-API-Key is
// not a key): which of two keys a proxy or a client meant is not the
// gateway's to guess.
std::string_view presented_key(const Request& req) {
  for (const char* name : {"X-API-Key", "Authorization"}) {
    if (req.count(name) > 1) {
      throw HttpError{400, "bad_request",
                      std::string("the header ") + name +
                          " is sent more than once: send one API key, in one header"};
    }
  }
  const auto authorization = req.find(http::field::authorization);
  const std::optional<std::string_view> bearer =
      authorization == req.end() ? std::nullopt : bearer_token(authorization->value());
  if (auto it = req.find("X-API-Key"); it != req.end()) {
    if (bearer && *bearer != it->value()) {
      throw HttpError{400, "bad_request",
                      "X-API-Key and Authorization: Bearer carry two different keys: send one "
                      "API key, in one header"};
    }
    return it->value();
  }
  if (authorization != req.end()) {
    // Not a bearer token: checked, and refused, as a key.
    if (bearer) return *bearer;
    return authorization->value();
  }
  return {};
}

}  // namespace

struct KeyAuthenticator::Impl {
  cluster::Connection& nats;
  AuthOptions options;
  cluster::ApiKeyStore store;
  kvStore* kv = nullptr;
  mutable FailureLimiter limiter;
  // A secret is cached as a keyed hash (the key random per process), never
  // as itself.
  std::array<unsigned char, 32> cache_key{};

  struct Entry {
    cluster::ApiKeyRecord record;
    std::optional<Digest> verified;  // the keyed hash of the secret the KDF accepted
    bool gone = false;               // deleted, or no longer a valid record
  };
  mutable std::shared_mutex mutex;
  mutable std::unordered_map<std::string, Entry> keys;  // by key_id

  // The cache is trusted only while the watch is known to be current:
  // caught up since its last (re)start, on a connection that stayed up.
  std::atomic<bool> fresh{false};
  // When the watch was last known current (steady clock ticks): keys
  // verified here are admitted to routes that answer from memory for
  // options.stale_reads_for after it, while NATS is away.
  std::atomic<std::chrono::steady_clock::rep> current_at{0};
  std::atomic<bool> stopping{false};
  std::thread watcher;

  Impl(cluster::Connection& n, AuthOptions o)
      : nats(n),
        options(std::move(o)),
        store(n),
        limiter(options.max_failures, options.failure_window) {
    if (RAND_bytes(cache_key.data(), static_cast<int>(cache_key.size())) != 1) {
      throw std::runtime_error("the system's random source failed");
    }
    const natsStatus s = js_KeyValue(&kv, nats.handles().js, "pyoco_auth");
    if (s != NATS_OK) cluster::throw_nats("cannot open bucket pyoco_auth", s);
    watcher = std::thread([this] { watch(); });
  }

  ~Impl() {
    stopping = true;
    watcher.join();
    kvStore_Destroy(kv);
  }

  // SHA-256 fetched once: OpenSSL 3 looks an implicit EVP_sha256() up in
  // its provider store, under a lock, on every init, which the handler
  // threads would contend for on every request.
  std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> sha256{EVP_MD_fetch(nullptr, "SHA256", nullptr),
                                                         &EVP_MD_free};

  Digest keyed_hash(std::string_view secret) const {
    struct Context {  // one per thread, reused
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      ~Context() { EVP_MD_CTX_free(ctx); }
    };
    thread_local Context c;
    Digest out{};
    unsigned int len = 0;
    EVP_DigestInit_ex(c.ctx, sha256.get(), nullptr);
    EVP_DigestUpdate(c.ctx, cache_key.data(), cache_key.size());
    EVP_DigestUpdate(c.ctx, secret.data(), secret.size());
    EVP_DigestFinal_ex(c.ctx, out.data(), &len);
    return out;
  }

  bool connected() const {
    return natsConnection_Status(nats.handles().nc) == NATS_CONN_STATUS_CONNECTED;
  }

  // Every change of a key reaches this gateway as it is written: a revoke
  // holds from the next request on. When the connection drops, the cache
  // stops counting (within a quarter second) and the watch starts over
  // once it is back, reading every key again.
  void watch() {
    while (!stopping) {
      fresh = false;
      kvWatcher* w = nullptr;
      if (!connected() || kvStore_Watch(&w, kv, "api_keys.>", nullptr) != NATS_OK) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      while (!stopping) {
        if (!connected()) break;
        if (fresh) current_at = std::chrono::steady_clock::now().time_since_epoch().count();
        kvEntry* e = nullptr;
        const natsStatus s = kvWatcher_Next(&e, w, 250);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) break;
        if (e == nullptr) {  // the initial values are all there
          fresh = true;
          current_at = std::chrono::steady_clock::now().time_since_epoch().count();
          continue;
        }
        apply(e);
        kvEntry_Destroy(e);
      }
      fresh = false;
      kvWatcher_Stop(w);
      kvWatcher_Destroy(w);
    }
  }

  static std::optional<cluster::ApiKeyRecord> record_of(const char* text) {
    boost::system::error_code ec;
    const json::value v = json::parse(text, ec);
    try {
      if (!ec && v.is_object()) return cluster::api_key_record_from_json(v.as_object());
    } catch (const std::invalid_argument&) {
    }
    return std::nullopt;
  }

  // Replaces what is known of a key (a tombstone when it is gone): a
  // verified secret stays verified while the hash it was checked against does.
  void learn(const std::string& id, std::optional<cluster::ApiKeyRecord> record) const {
    std::unique_lock lock(mutex);
    Entry& entry = keys[id];
    if (!record) {
      entry = Entry{{}, std::nullopt, true};
      return;
    }
    if (entry.gone || entry.record.hash_b64 != record->hash_b64 ||
        entry.record.salt_b64 != record->salt_b64 ||
        entry.record.iterations != record->iterations) {
      entry.verified.reset();
    }
    entry.gone = false;
    entry.record = std::move(*record);
  }

  void apply(kvEntry* e) {
    const std::string id = std::string(kvEntry_Key(e)).substr(std::strlen(cluster::kApiKeyPrefix));
    learn(id, kvEntry_Operation(e) == kvOp_Put ? record_of(kvEntry_ValueString(e)) : std::nullopt);
  }

  // The key as the bucket has it now: for a key the watch has not told of
  // yet (made a moment ago), and for every key while the watch is not
  // current. NATS away: 503, never a stale yes, and not a refused key: the
  // attempt counted for `address` is taken back.
  std::optional<Entry> read(const std::string& key_id, bool authoritative,
                            const std::string& address) const {
    std::optional<cluster::ApiKeyRecord> r;
    try {
      r = store.get(key_id);
    } catch (const cluster::NatsError& e) {
      limiter.succeeded(address);
      throw nats_unavailable(e.what());
    }
    if (authoritative) {
      learn(key_id, r);
    } else if (r) {
      // Never over what the watch has said since (a delete included).
      std::unique_lock lock(mutex);
      keys.try_emplace(key_id, Entry{std::move(*r), std::nullopt, false});
    }
    std::shared_lock lock(mutex);
    auto it = keys.find(key_id);
    if (it == keys.end() || it->second.gone) return std::nullopt;
    return it->second;
  }

  [[noreturn]] void refuse(const std::string& address, const std::string& detail) const {
    cluster::log(cluster::LogLevel::warning, "API key refused",
                 {{"address", address}, {"reason", detail}});
    throw HttpError{403, "forbidden", detail};
  }

  static HttpError nats_unavailable(const std::string& why) {
    return HttpError{503, "nats_unavailable",
                     "cannot check the API key: " + why + " (retry when NATS is back)", 5};
  }

  // A key verified here, while NATS is away, for a route that answers
  // from memory: admitted without NATS for options.stale_reads_for after
  // the watch was last current. No revoke can reach the gateway meanwhile,
  // but what such a route shows stands still since then too.
  std::optional<Caller> admitted_while_away(const cluster::PresentedKey& key,
                                            const Digest& presented, unsigned scope) const {
    if (options.stale_reads_for.count() <= 0 || fresh || connected()) return std::nullopt;
    const auto since = std::chrono::steady_clock::duration(current_at.load());
    if (since.count() == 0 ||
        std::chrono::steady_clock::now().time_since_epoch() - since > options.stale_reads_for) {
      return std::nullopt;
    }
    std::shared_lock lock(mutex);
    auto it = keys.find(key.key_id);
    if (it == keys.end() || it->second.gone) return std::nullopt;
    const Entry& e = it->second;
    if (!e.verified || CRYPTO_memcmp(e.verified->data(), presented.data(), presented.size()) != 0 ||
        e.record.revoked() || e.record.expired(cluster::epoch_now())) {
      return std::nullopt;
    }
    return admitted(e.record, scope);
  }

  Caller authenticate(const Request& req, const std::string& address, unsigned scope,
                      bool from_memory) const {
    const std::string_view text = presented_key(req);
    if (text.empty()) {
      throw HttpError{401, "unauthorized",
                      "this route needs an API key: send it as X-API-Key or Authorization: "
                      "Bearer (`pyoco keys create` makes one)"};
    }
    const auto key = cluster::parse_api_key(text);
    const Digest presented = keyed_hash(key ? key->secret : std::string());
    if (key && fresh) {
      // The common case, under the shared lock: a verified, live key.
      std::shared_lock lock(mutex);
      if (auto it = keys.find(key->key_id); it != keys.end() && !it->second.gone) {
        const Entry& e = it->second;
        const cluster::ApiKeyRecord& r = e.record;
        if (e.verified &&
            CRYPTO_memcmp(e.verified->data(), presented.data(), presented.size()) == 0 &&
            !r.revoked() && !r.expired(cluster::epoch_now())) {
          return admitted(r, scope);
        }
      }
    }
    if (key && from_memory) {
      if (auto caller = admitted_while_away(*key, presented, scope)) return *caller;
    }
    // Anything else may fail, and is counted as if it will before it costs
    // anything (a KDF, a read of NATS); a success is taken back.
    limiter.attempt(address);
    if (!key) refuse(address, "the API key is not of the form pyoco_<id>.<secret>");
    std::optional<Entry> entry;
    if (fresh) {
      std::shared_lock lock(mutex);
      if (auto it = keys.find(key->key_id); it != keys.end()) {
        if (it->second.gone) refuse(address, "the API key is not known");
        entry = it->second;
      }
    }
    if (!entry) entry = read(key->key_id, !fresh, address);
    if (!entry) refuse(address, "the API key is not known");

    const cluster::ApiKeyRecord& r = entry->record;
    const bool cached = entry->verified && CRYPTO_memcmp(entry->verified->data(), presented.data(),
                                                         presented.size()) == 0;
    if (!cached) {
      if (!verified_once(r, presented, key->secret, address)) {
        // The same answer for a wrong secret of a live, revoked or expired
        // key: a key id alone tells nothing of its key's state.
        refuse(address, "the API key is not known");
      }
      std::unique_lock lock(mutex);
      if (auto it = keys.find(key->key_id);
          it != keys.end() && !it->second.gone && it->second.record.hash_b64 == r.hash_b64) {
        it->second.verified = presented;
      }
    }
    // Only to the holder of the secret: why a good secret is refused.
    if (r.revoked()) refuse(address, "the API key " + r.key_id + " was revoked");
    if (r.expired(cluster::epoch_now())) refuse(address, "the API key " + r.key_id + " expired");
    limiter.succeeded(address);
    return admitted(r, scope);
  }

  bool still_valid(const std::string& key_id) const {
    std::optional<cluster::ApiKeyRecord> r;
    if (fresh) {
      std::shared_lock lock(mutex);
      if (auto it = keys.find(key_id); it != keys.end()) {
        if (it->second.gone) return false;
        r = it->second.record;
      }
    }
    if (!r) {
      try {
        r = store.get(key_id);
      } catch (const cluster::NatsError&) {
        return true;  // unknown for now: asked again at the next check
      }
      if (!r) return false;
    }
    return !r->revoked() && !r->expired(cluster::epoch_now());
  }

  // The KDF, at most kdf_slots at once (AuthOptions::max_kdfs). Wrong secrets for real key ids,
  // sent from many addresses (each under the limiter's count), would
  // otherwise take every handler thread and core, and cached keys and
  // /health would wait behind them; past the cap the answer is 503 at
  // once, and the attempt does not count against the address.
  const int kdf_slots = options.max_kdfs > 0
                            ? options.max_kdfs
                            : std::clamp(static_cast<int>(std::thread::hardware_concurrency()) / 2,
                                         1, 4);
  mutable std::atomic<int> kdfs{0};
  static HttpError too_many_checks() {
    return HttpError{503, "busy",
                     "the gateway is checking too many API keys at once; try again shortly"};
  }
  bool secret_matches(const cluster::ApiKeyRecord& r, const std::string& secret,
                      const std::string& address) const {
    if (kdfs.fetch_add(1) >= kdf_slots) {
      kdfs.fetch_sub(1);
      limiter.succeeded(address);
      cluster::log(cluster::LogLevel::warning, "API key check refused: too many at once",
                   {{"address", address}});
      throw too_many_checks();
    }
    struct Release {
      std::atomic<int>& n;
      ~Release() { n.fetch_sub(1); }
    } release{kdfs};
    return cluster::secret_matches(r, secret, options.pepper);
  }

  // The KDF run once for requests that present the same secret of the
  // same key at the same time (a client's first requests with a new key,
  // sent in parallel): the first runs it, the others wait for its verdict
  // rather than each taking a KDF slot, where all but one would be
  // answered 503 busy.
  mutable std::mutex verifying_mutex;
  mutable std::map<std::string, std::shared_future<bool>, std::less<>> verifying;
  // Requests waiting for another's check, held on handler threads: at most
  // half the gateway's 16, or one secret sent on many connections at once
  // would park every handler thread on a single KDF. A client's burst of
  // first requests with a new key (8 in the test) fits.
  static constexpr int kMaxWaitingForCheck = 8;
  mutable int waiting_for_check = 0;
  bool verified_once(const cluster::ApiKeyRecord& r, const Digest& presented,
                     const std::string& secret, const std::string& address) const {
    std::string id = r.key_id + '\n' + r.hash_b64 + '\n';
    id.append(reinterpret_cast<const char*>(presented.data()), presented.size());
    std::promise<bool> verdict;
    std::shared_future<bool> result;
    bool first = false;
    {
      std::lock_guard lock(verifying_mutex);
      auto [it, inserted] = verifying.try_emplace(id);
      if (inserted) it->second = verdict.get_future().share();
      first = inserted;
      result = it->second;
      if (!first && waiting_for_check >= kMaxWaitingForCheck) {
        limiter.succeeded(address);
        throw too_many_checks();
      }
      if (!first) ++waiting_for_check;
    }
    if (!first) {
      struct Leave {
        const Impl& self;
        ~Leave() {
          std::lock_guard lock(self.verifying_mutex);
          --self.waiting_for_check;
        }
      } leave{*this};
      try {
        return result.get();
      } catch (const HttpError&) {  // the first was refused a slot: so is this one, uncounted
        limiter.succeeded(address);
        throw;
      }
    }
    try {
      verdict.set_value(secret_matches(r, secret, address));
    } catch (...) {
      verdict.set_exception(std::current_exception());
    }
    {
      std::lock_guard lock(verifying_mutex);
      verifying.erase(id);
    }
    return result.get();
  }

  // The caller of a good key, if it holds the route's scope.
  static Caller admitted(const cluster::ApiKeyRecord& r, unsigned scope) {
    const unsigned held = r.scope_bits();
    if (!cluster::scope_allows(held, scope)) {
      throw HttpError{403, "forbidden",
                      "the API key " + r.key_id + " lacks the scope " +
                          cluster::scope_names(scope).front() + " this route needs"};
    }
    Caller caller;
    caller.tenant = r.tenant_id;
    caller.key_id = r.key_id;
    caller.scopes = held;
    caller.tags = r.tags;
    return caller;
  }
};

std::optional<AuthOptions> auth_options_from_env() {
  const std::string mode = env("PYOCO_HTTP_AUTH_MODE");
  if (mode.empty() || mode == "none") return std::nullopt;
  if (mode != "api_key") {
    throw std::invalid_argument("PYOCO_HTTP_AUTH_MODE=" + mode + ": none or api_key");
  }
  AuthOptions o;
  o.pepper = env("PYOCO_AUTH_PEPPER");
  if (const std::string m = env("PYOCO_AUTH_MAX_FAILURES"); !m.empty()) {
    o.max_failures = static_cast<int>(whole_from("PYOCO_AUTH_MAX_FAILURES", m, 1, 1000000));
  }
  if (const std::string w = env("PYOCO_AUTH_FAILURE_WINDOW_SEC"); !w.empty()) {
    o.failure_window = std::chrono::milliseconds(
        static_cast<long>(seconds_from("PYOCO_AUTH_FAILURE_WINDOW_SEC", w, 86400) * 1000));
  }
  if (const std::string s = env("PYOCO_AUTH_STALE_READS_SEC"); !s.empty()) {
    o.stale_reads_for = std::chrono::seconds(whole_from("PYOCO_AUTH_STALE_READS_SEC", s, 0, 86400));
  }
  return o;
}

KeyAuthenticator::KeyAuthenticator(cluster::Connection& nats, AuthOptions options)
    : impl_(std::make_unique<Impl>(nats, std::move(options))) {}

KeyAuthenticator::~KeyAuthenticator() = default;

bool KeyAuthenticator::ready() const { return impl_->fresh; }

bool KeyAuthenticator::still_valid(const std::string& key_id) const {
  return impl_->still_valid(key_id);
}

Caller KeyAuthenticator::authenticate(const Request& request, const std::string& address,
                                      unsigned scope, bool from_memory) const {
  return impl_->authenticate(request, address, scope, from_memory);
}

}  // namespace pyoco::server
