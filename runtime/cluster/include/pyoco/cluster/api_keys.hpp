// API keys (docs/security.md): `pyoco_<key_id>.<secret>`, kept as
// pyoco-server's records (PBKDF2-HMAC-SHA256 of secret + pepper with a
// salt) in the `pyoco_auth` bucket under `api_keys.<key_id>`, so its keys
// carry over; ours add a tenant's scopes and an expiry. The secret itself
// is never stored.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <boost/json/object.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::cluster {

// What a key may do; `admin` may do everything.
enum Scope : unsigned {
  kScopeRunsRead = 1u << 0,      // runs:read: list, get, tasks, logs, watch; workers
  kScopeRunsWrite = 1u << 1,     // runs:write: submit, cancel
  kScopePluginsWrite = 1u << 2,  // plugins:write: upload code the workers run
  kScopeMetricsRead = 1u << 3,   // metrics:read: GET /metrics (for Prometheus)
  kScopeAdmin = 1u << 4,         // admin: every scope, and PATCH /workers
};

// "runs:read" -> kScopeRunsRead; nullopt for a name that is not a scope.
std::optional<unsigned> scope_from_name(std::string_view name);
// The names of the scopes in `scopes`, in the order above.
std::vector<std::string> scope_names(unsigned scopes);
// Every scope name, for help and errors: "runs:read, runs:write, ...".
std::string all_scope_names();
// True when a key holding `held` may do what needs `needed` (admin: all).
bool scope_allows(unsigned held, unsigned needed);

struct ApiKeyRecord {
  std::string key_id;
  std::string tenant_id;
  std::string kdf = "pbkdf2_hmac_sha256";
  int iterations = 200000;
  std::string salt_b64;  // base64url, no padding, as pyoco-server writes them
  std::string hash_b64;
  double created_at = 0;
  std::optional<double> revoked_at;
  // Ours (pyoco-server's records have neither): a record without scopes
  // has those `pyoco keys import` gives it.
  std::vector<std::string> scopes;
  std::optional<double> expires_at;
  std::vector<std::string> tags;  // the only tags it may submit runs to; empty: any

  unsigned scope_bits() const;  // names that are not scopes count for nothing
  bool revoked() const { return revoked_at.has_value(); }
  bool expired(double now) const { return expires_at && now >= *expires_at; }
};

boost::json::object to_json(const ApiKeyRecord& record);
// Throws std::invalid_argument naming the field that is missing or wrong.
ApiKeyRecord api_key_record_from_json(const boost::json::object& o);

// Tenants are 1 to 64 letters, digits, '_' and '-' (pyoco-server's rule).
bool valid_tenant(std::string_view tenant);

struct PresentedKey {
  std::string key_id;
  std::string secret;
};
// `pyoco_<key_id>.<secret>` with pyoco-server's character rules; nullopt
// for anything else.
std::optional<PresentedKey> parse_api_key(std::string_view text);

struct NewApiKey {
  std::string api_key;  // shown once, to whoever made it
  ApiKeyRecord record;  // what is stored
};
NewApiKey generate_api_key(const std::string& tenant, unsigned scopes,
                           std::optional<double> expires_at, std::string_view pepper,
                           int iterations = 200000, std::vector<std::string> tags = {});

// The KDF over the secret and the pepper, compared in constant time.
// Revocation and expiry are the caller's to check.
bool secret_matches(const ApiKeyRecord& record, std::string_view secret, std::string_view pepper);

// The `pyoco_auth` bucket. Blocking calls; throw NatsError.
class ApiKeyStore {
 public:
  explicit ApiKeyStore(Connection& nats);
  ~ApiKeyStore();
  ApiKeyStore(const ApiKeyStore&) = delete;
  ApiKeyStore& operator=(const ApiKeyStore&) = delete;

  // Writes a new record; false when a record of that key_id exists.
  bool create(const ApiKeyRecord& record);
  std::optional<ApiKeyRecord> get(const std::string& key_id) const;
  std::vector<ApiKeyRecord> list() const;  // newest first
  // Marks it revoked (at most once); nullopt when there is no such key.
  std::optional<ApiKeyRecord> revoke(const std::string& key_id);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

inline constexpr const char* kApiKeyPrefix = "api_keys.";  // the bucket's keys

}  // namespace pyoco::cluster
