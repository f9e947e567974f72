// API keys without NATS: the key format, pyoco-server's record and KDF
// (known answers computed with Python's hashlib.pbkdf2_hmac, as
// pyoco-server computes them), scopes.
#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/core/base64.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

namespace cluster = pyoco::cluster;
namespace json = boost::json;

namespace {

// A pyoco-server record: secret "Xy7_kq2-Lm9Np4Rs8Tu1Vw3Yz5Ab6Cd0", salt
// bytes 0..15, no pepper, its default 200,000 iterations.
json::object python_record() {
  return json::object{{"key_id", "0123456789abcdef01234567"},
                      {"tenant_id", "demo"},
                      {"kdf", "pbkdf2_hmac_sha256"},
                      {"iterations", 200000},
                      {"salt_b64", "AAECAwQFBgcICQoLDA0ODw"},
                      {"hash_b64", "62QGOK7SWeygsGqo86EbHY8Z4PyTvv-dQ0CwQiyGmSY"},
                      {"created_at", 1700000000.5},
                      {"revoked_at", nullptr}};
}

constexpr const char* kSecret = "Xy7_kq2-Lm9Np4Rs8Tu1Vw3Yz5Ab6Cd0";

}  // namespace

BOOST_AUTO_TEST_CASE(a_pyoco_server_record_verifies_its_secret) {
  const cluster::ApiKeyRecord r = cluster::api_key_record_from_json(python_record());
  BOOST_TEST(r.tenant_id == "demo");
  BOOST_TEST(r.iterations == 200000);
  BOOST_TEST(r.scopes.empty());
  BOOST_TEST(!r.revoked());
  BOOST_TEST(cluster::secret_matches(r, kSecret, ""));
  BOOST_TEST(!cluster::secret_matches(r, "Xy7_kq2-Lm9Np4Rs8Tu1Vw3Yz5Ab6Cd1", ""));
  BOOST_TEST(!cluster::secret_matches(r, kSecret, "a pepper it was not made with"));
}

BOOST_AUTO_TEST_CASE(the_pepper_is_appended_to_the_secret_as_pyoco_server_does) {
  json::object o = python_record();
  o["iterations"] = 1000;
  o["hash_b64"] = "oD1pWMNRcM0Gzs96ifk-IdN7EE2Rpjgqs-Btn_h4vTM";  // secret + "pepper-1"
  const cluster::ApiKeyRecord r = cluster::api_key_record_from_json(o);
  BOOST_TEST(cluster::secret_matches(r, kSecret, "pepper-1"));
  BOOST_TEST(!cluster::secret_matches(r, kSecret, ""));
}

BOOST_AUTO_TEST_CASE(a_record_round_trips_and_keeps_pyoco_server_fields) {
  cluster::ApiKeyRecord r = cluster::api_key_record_from_json(python_record());
  r.scopes = {"runs:read", "admin"};
  r.expires_at = 1800000000;
  const json::object o = cluster::to_json(r);
  for (const char* k : {"key_id", "tenant_id", "kdf", "iterations", "salt_b64", "hash_b64",
                        "created_at", "revoked_at"}) {
    BOOST_TEST(o.contains(k), k);
  }
  const cluster::ApiKeyRecord back = cluster::api_key_record_from_json(o);
  BOOST_TEST(back.hash_b64 == r.hash_b64);
  BOOST_TEST(back.scope_bits() == (cluster::kScopeRunsRead | cluster::kScopeAdmin));
  BOOST_TEST(back.expired(1800000000));
  BOOST_TEST(!back.expired(1799999999));
}

BOOST_AUTO_TEST_CASE(invalid_records_name_their_field) {
  auto error_of = [](json::object o) -> std::string {
    try {
      cluster::api_key_record_from_json(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  json::object o = python_record();
  o.erase("hash_b64");
  BOOST_TEST(error_of(o).find("hash_b64") == 0);
  o = python_record();
  o["kdf"] = "md5";
  BOOST_TEST(error_of(o).find("kdf") == 0);
  o = python_record();
  o["tenant_id"] = "a b";
  BOOST_TEST(error_of(o).find("tenant_id") == 0);
  o = python_record();
  o["salt_b64"] = "not base64!";
  BOOST_TEST(error_of(o).find("salt_b64") == 0);
  o = python_record();
  o["iterations"] = 0;
  BOOST_TEST(error_of(o).find("iterations") == 0);
}

BOOST_AUTO_TEST_CASE(the_key_format_is_pyoco_server_s) {
  const auto k = cluster::parse_api_key(std::string("pyoco_0123456789abcdef01234567.") + kSecret);
  BOOST_REQUIRE(k);
  BOOST_TEST(k->key_id == "0123456789abcdef01234567");
  BOOST_TEST(k->secret == kSecret);
  for (const char* bad : {"", "pyoco_", "0123456789abcdef.0123456789abcdef0123",
                          "pyoco_short.0123456789abcdef0123", "pyoco_0123456789abcdef.short",
                          "pyoco_0123456789abcdef", "pyoco_0123456789abcdef.0123456789abcdef01 3",
                          "pyoco_01234567/9abcdef.0123456789abcdef0123"}) {
    BOOST_TEST(!cluster::parse_api_key(bad), bad);
  }
}

BOOST_AUTO_TEST_CASE(a_generated_key_verifies_and_its_secret_is_not_in_its_record) {
  const cluster::NewApiKey k = cluster::generate_api_key(
      "acme", cluster::kScopeRunsRead | cluster::kScopeRunsWrite, std::nullopt, "pep", 1000);
  const auto parsed = cluster::parse_api_key(k.api_key);
  BOOST_REQUIRE(parsed);
  BOOST_TEST(parsed->key_id == k.record.key_id);
  BOOST_TEST(cluster::secret_matches(k.record, parsed->secret, "pep"));
  BOOST_TEST(!cluster::secret_matches(k.record, parsed->secret, ""));
  const std::string stored = json::serialize(cluster::to_json(k.record));
  BOOST_TEST(stored.find(parsed->secret) == std::string::npos);
  BOOST_TEST(k.record.scopes == (std::vector<std::string>{"runs:read", "runs:write"}));
  const cluster::NewApiKey other = cluster::generate_api_key("acme", 0, std::nullopt, "pep", 1000);
  BOOST_TEST(other.record.key_id != k.record.key_id);
  BOOST_TEST(other.record.salt_b64 != k.record.salt_b64);
  BOOST_CHECK_THROW(cluster::generate_api_key("no spaces", 0, std::nullopt, "", 1000),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(admin_holds_every_scope_and_the_others_only_their_own) {
  using namespace cluster;
  BOOST_TEST(scope_allows(kScopeAdmin, kScopePluginsWrite));
  BOOST_TEST(scope_allows(kScopeRunsRead | kScopeRunsWrite, kScopeRunsWrite));
  BOOST_TEST(!scope_allows(kScopeRunsRead, kScopeRunsWrite));
  BOOST_TEST(!scope_allows(kScopeRunsWrite, kScopeMetricsRead));
  BOOST_TEST(!scope_allows(0, kScopeRunsRead));
  BOOST_TEST(*scope_from_name("plugins:write") == kScopePluginsWrite);
  BOOST_TEST(!scope_from_name("runs:*"));
  BOOST_TEST(all_scope_names() == "runs:read, runs:write, plugins:write, metrics:read, admin");
}

BOOST_AUTO_TEST_CASE(base64url_round_trips_every_length) {
  std::string bytes;
  for (int n = 0; n < 40; ++n) {
    BOOST_TEST(*pyoco::core::from_base64url(pyoco::core::base64url(bytes)) == bytes);
    bytes += static_cast<char>(n * 37 + 200);
  }
  BOOST_TEST(pyoco::core::base64url("\xfb\xff") == "-_8");
  BOOST_TEST(pyoco::core::base64("\xfb\xff") == "+/8=");
  BOOST_TEST(!pyoco::core::from_base64url("a"));
  BOOST_TEST(!pyoco::core::from_base64url("ab+c"));
}
