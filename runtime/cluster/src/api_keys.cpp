#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/core/base64.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {

constexpr std::array<std::pair<const char*, unsigned>, 5> kScopes{{
    {"runs:read", kScopeRunsRead},
    {"runs:write", kScopeRunsWrite},
    {"plugins:write", kScopePluginsWrite},
    {"metrics:read", kScopeMetricsRead},
    {"admin", kScopeAdmin},
}};

bool token_chars(std::string_view s, std::size_t min, std::size_t max) {
  if (s.size() < min || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("the system's random source failed");
  }
  return out;
}

std::string derive(std::string_view secret, std::string_view pepper, std::string_view salt,
                   int iterations) {
  const std::string password = std::string(secret) + std::string(pepper);
  std::string out(32, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(), 32,
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    throw std::runtime_error("PBKDF2 failed");
  }
  return out;
}

}  // namespace

std::optional<unsigned> scope_from_name(std::string_view name) {
  for (const auto& [n, bit] : kScopes)
    if (name == n) return bit;
  return std::nullopt;
}

std::vector<std::string> scope_names(unsigned scopes) {
  std::vector<std::string> out;
  for (const auto& [n, bit] : kScopes)
    if ((scopes & bit) != 0) out.emplace_back(n);
  return out;
}

std::string all_scope_names() {
  std::string out;
  for (const auto& [n, bit] : kScopes) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

bool scope_allows(unsigned held, unsigned needed) {
  return (held & kScopeAdmin) != 0 || (held & needed) == needed;
}

unsigned ApiKeyRecord::scope_bits() const {
  unsigned bits = 0;
  for (const std::string& s : scopes) bits |= scope_from_name(s).value_or(0);
  return bits;
}

json::object to_json(const ApiKeyRecord& r) {
  json::array scopes;
  for (const std::string& s : r.scopes) scopes.emplace_back(s);
  return json::object{
      {"key_id", r.key_id},
      {"tenant_id", r.tenant_id},
      {"kdf", r.kdf},
      {"iterations", r.iterations},
      {"salt_b64", r.salt_b64},
      {"hash_b64", r.hash_b64},
      {"created_at", r.created_at},
      {"revoked_at", r.revoked_at ? json::value(*r.revoked_at) : json::value(nullptr)},
      {"scopes", std::move(scopes)},
      {"expires_at", r.expires_at ? json::value(*r.expires_at) : json::value(nullptr)},
      {"tags", json::array(r.tags.begin(), r.tags.end())},
  };
}

ApiKeyRecord api_key_record_from_json(const json::object& o) {
  auto text = [&](const char* k, bool required) -> std::string {
    const json::value* v = o.if_contains(k);
    if (v == nullptr || v->is_null()) {
      if (required) throw std::invalid_argument(std::string(k) + ": missing");
      return {};
    }
    if (!v->is_string()) throw std::invalid_argument(std::string(k) + ": not a string");
    return std::string(v->as_string());
  };
  auto number = [&](const char* k) -> std::optional<double> {
    const json::value* v = o.if_contains(k);
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (!v->is_number()) throw std::invalid_argument(std::string(k) + ": not a number");
    return v->to_number<double>();
  };
  ApiKeyRecord r;
  r.key_id = text("key_id", true);
  r.tenant_id = text("tenant_id", true);
  if (std::string kdf = text("kdf", false); !kdf.empty()) r.kdf = kdf;
  if (r.kdf != "pbkdf2_hmac_sha256") {
    throw std::invalid_argument("kdf: " + r.kdf + " is not pbkdf2_hmac_sha256");
  }
  if (auto it = number("iterations")) {
    if (!(*it >= 1 && *it <= 10'000'000)) {
      throw std::invalid_argument("iterations: from 1 to 10000000");
    }
    r.iterations = static_cast<int>(*it);
  }
  r.salt_b64 = text("salt_b64", true);
  r.hash_b64 = text("hash_b64", true);
  if (!core::from_base64url(r.salt_b64)) throw std::invalid_argument("salt_b64: not base64url");
  const auto hash = core::from_base64url(r.hash_b64);
  if (!hash || hash->size() != 32) throw std::invalid_argument("hash_b64: not 32 bytes base64url");
  r.created_at = number("created_at").value_or(0);
  r.revoked_at = number("revoked_at");
  r.expires_at = number("expires_at");
  auto strings = [&](const char* k, std::vector<std::string>& out) {
    const json::value* s = o.if_contains(k);
    if (s == nullptr || s->is_null()) return;
    if (!s->is_array()) throw std::invalid_argument(std::string(k) + ": not an array");
    for (const json::value& v : s->as_array()) {
      if (!v.is_string()) throw std::invalid_argument(std::string(k) + ": not an array of strings");
      out.emplace_back(v.as_string());
    }
  };
  strings("scopes", r.scopes);
  strings("tags", r.tags);
  if (!token_chars(r.key_id, 8, 64)) throw std::invalid_argument("key_id: not [A-Za-z0-9_-]{8,64}");
  if (!valid_tenant(r.tenant_id)) throw std::invalid_argument("tenant_id: not [A-Za-z0-9_-]{1,64}");
  return r;
}

bool valid_tenant(std::string_view tenant) { return token_chars(tenant, 1, 64); }

std::optional<PresentedKey> parse_api_key(std::string_view text) {
  constexpr std::string_view prefix = "pyoco_";
  if (text.substr(0, prefix.size()) != prefix) return std::nullopt;
  text.remove_prefix(prefix.size());
  const auto dot = text.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view id = text.substr(0, dot), secret = text.substr(dot + 1);
  if (!token_chars(id, 8, 64) || !token_chars(secret, 16, 256)) return std::nullopt;
  return PresentedKey{std::string(id), std::string(secret)};
}

NewApiKey generate_api_key(const std::string& tenant, unsigned scopes,
                           std::optional<double> expires_at, std::string_view pepper,
                           int iterations, std::vector<std::string> tags) {
  if (!valid_tenant(tenant)) {
    throw std::invalid_argument("tenant \"" + tenant + "\": 1 to 64 letters, digits, '_' or '-'");
  }
  static const char* hex = "0123456789abcdef";
  std::string key_id;
  for (unsigned char c : random_bytes(12)) key_id += hex[c >> 4], key_id += hex[c & 15];
  const std::string secret = core::base64url(random_bytes(32));
  const std::string salt = random_bytes(16);
  NewApiKey out;
  out.api_key = "pyoco_" + key_id + "." + secret;
  ApiKeyRecord& r = out.record;
  r.key_id = key_id;
  r.tenant_id = tenant;
  r.iterations = iterations;
  r.salt_b64 = core::base64url(salt);
  r.hash_b64 = core::base64url(derive(secret, pepper, salt, iterations));
  r.created_at = epoch_now();
  r.scopes = scope_names(scopes);
  r.expires_at = expires_at;
  r.tags = std::move(tags);
  return out;
}

bool secret_matches(const ApiKeyRecord& record, std::string_view secret, std::string_view pepper) {
  const auto salt = core::from_base64url(record.salt_b64);
  const auto expected = core::from_base64url(record.hash_b64);
  if (!salt || !expected || expected->size() != 32) return false;
  const std::string actual = derive(secret, pepper, *salt, record.iterations);
  return CRYPTO_memcmp(actual.data(), expected->data(), 32) == 0;
}

struct ApiKeyStore::Impl {
  explicit Impl(Connection& n) : nats(n) {}
  Connection& nats;
  kvStore* kv = nullptr;
};

ApiKeyStore::ApiKeyStore(Connection& nats) : impl_(std::make_unique<Impl>(nats)) {
  impl_->kv = open_bucket(nats, "pyoco_auth");
}

ApiKeyStore::~ApiKeyStore() { kvStore_Destroy(impl_->kv); }

bool ApiKeyStore::create(const ApiKeyRecord& record) {
  const std::string key = kApiKeyPrefix + record.key_id;
  const std::string body = json::serialize(to_json(record));
  std::uint64_t revision = 0;
  const natsStatus s =
      kvStore_Create(&revision, impl_->kv, key.c_str(), body.data(), static_cast<int>(body.size()));
  if (s == NATS_OK) return true;
  if (get(record.key_id)) return false;
  throw_nats("cannot store API key " + record.key_id, s);
}

std::optional<ApiKeyRecord> ApiKeyStore::get(const std::string& key_id) const {
  if (!token_chars(key_id, 8, 64)) return std::nullopt;  // never a key of the bucket
  kvEntry* e = nullptr;
  const std::string key = kApiKeyPrefix + key_id;
  const natsStatus s = kvStore_Get(&e, impl_->kv, key.c_str());
  if (s == NATS_NOT_FOUND) return std::nullopt;
  if (s != NATS_OK) throw_nats("cannot read API key " + key_id, s);
  boost::system::error_code ec;
  const json::value v = json::parse(kvEntry_ValueString(e), ec);
  kvEntry_Destroy(e);
  if (ec || !v.is_object()) throw NatsError("API key " + key_id + ": its record is not JSON");
  try {
    return api_key_record_from_json(v.as_object());
  } catch (const std::invalid_argument& x) {
    throw NatsError("API key " + key_id + ": its record is invalid: " + x.what());
  }
}

std::vector<ApiKeyRecord> ApiKeyStore::list() const {
  std::vector<ApiKeyRecord> out;
  for (const auto& [key, value] : kv_entries(impl_->nats, "pyoco_auth", kApiKeyPrefix)) {
    boost::system::error_code ec;
    const json::value v = json::parse(value, ec);
    if (ec || !v.is_object()) continue;  // an invalid record is skipped here; `get` names it
    try {
      out.push_back(api_key_record_from_json(v.as_object()));
    } catch (const std::invalid_argument&) {
    }
  }
  std::sort(out.begin(), out.end(), [](const ApiKeyRecord& a, const ApiKeyRecord& b) {
    return a.created_at > b.created_at;
  });
  return out;
}

std::optional<ApiKeyRecord> ApiKeyStore::revoke(const std::string& key_id) {
  std::optional<ApiKeyRecord> r = get(key_id);
  if (!r || r->revoked()) return r;
  r->revoked_at = epoch_now();
  const std::string key = kApiKeyPrefix + key_id;
  const std::string body = json::serialize(to_json(*r));
  const natsStatus s =
      kvStore_Put(nullptr, impl_->kv, key.c_str(), body.data(), static_cast<int>(body.size()));
  if (s != NATS_OK) throw_nats("cannot revoke API key " + key_id, s);
  return r;
}

}  // namespace pyoco::cluster
