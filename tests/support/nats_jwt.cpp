#include "nats_jwt.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <sys/stat.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <vector>

#include "temp_dir.hpp"

namespace pyoco::testing {

namespace {

using Bytes = std::vector<unsigned char>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("NATS operator setup: ") + what);
}

// nkeys' prefix bytes (nats-io/nkeys strkey.go): the first base32 letter
// of a key says what it is.
constexpr unsigned char kSeed = 18 << 3;      // S
constexpr unsigned char kOperator = 14 << 3;  // O
constexpr unsigned char kAccount = 0;         // A
constexpr unsigned char kUser = 20 << 3;      // U

// CRC-16/XMODEM, as nkeys checks it.
std::uint16_t crc16(const Bytes& data) {
  std::uint16_t crc = 0;
  for (const unsigned char b : data) {
    crc ^= static_cast<std::uint16_t>(b << 8);
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc;
}

// RFC 4648 base32, no padding.
std::string base32(const Bytes& data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const unsigned char b : data) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

std::string base64url(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

std::string with_crc(Bytes raw) {
  const std::uint16_t crc = crc16(raw);
  raw.push_back(static_cast<unsigned char>(crc & 0xff));  // little-endian
  raw.push_back(static_cast<unsigned char>(crc >> 8));
  return base32(raw);
}

struct NKey {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{nullptr, EVP_PKEY_free};
  std::string public_key;  // e.g. "U..."
  std::string seed;        // e.g. "SU..."
};

NKey make_nkey(unsigned char prefix) {
  Bytes seed(32);
  check(RAND_bytes(seed.data(), 32) == 1, "random seed");
  NKey k;
  k.key.reset(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), 32));
  check(k.key != nullptr, "ed25519 key");
  Bytes pub(32);
  std::size_t len = 32;
  check(EVP_PKEY_get_raw_public_key(k.key.get(), pub.data(), &len) == 1 && len == 32, "public key");
  Bytes raw{prefix};
  raw.insert(raw.end(), pub.begin(), pub.end());
  k.public_key = with_crc(raw);
  Bytes raw_seed{static_cast<unsigned char>(kSeed | (prefix >> 5)),
                 static_cast<unsigned char>((prefix & 31) << 3)};
  raw_seed.insert(raw_seed.end(), seed.begin(), seed.end());
  k.seed = with_crc(raw_seed);
  return k;
}

// A JWT of nats-io/jwt v2: claims about `subject`, signed by `issuer`.
std::string sign_jwt(const NKey& issuer, const std::string& subject, const std::string& name,
                     const std::string& nats) {
  const std::string header = base64url(R"({"typ":"JWT","alg":"ed25519-nkey"})");
  const std::string claims =
      base64url(R"({"jti":")" + subject.substr(0, 20) + R"(","iat":)" +
                std::to_string(std::time(nullptr)) + R"(,"iss":")" + issuer.public_key +
                R"(","name":")" + name + R"(","sub":")" + subject + R"(","nats":)" + nats + "}");
  const std::string signed_part = header + "." + claims;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string signature(64, '\0');
  std::size_t len = signature.size();
  check(ctx != nullptr &&
            EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, issuer.key.get()) == 1 &&
            EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                           reinterpret_cast<const unsigned char*>(signed_part.data()),
                           signed_part.size()) == 1,
        "signing");
  signature.resize(len);
  return signed_part + "." + base64url(signature);
}

constexpr const char* kAccountClaims =
    R"({"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,)"
    R"("wildcards":true,"conn":-1,"leaf":-1,"mem_storage":-1,"disk_storage":-1,)"
    R"("streams":-1,"consumer":-1},"type":"account","version":2})";
// The system account NATS needs for JetStream in operator mode (no JetStream of its own).
constexpr const char* kSystemAccountClaims =
    R"({"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,)"
    R"("wildcards":true,"conn":-1,"leaf":-1},"type":"account","version":2})";
constexpr const char* kUserClaims =
    R"({"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,"type":"user","version":2})";

std::filesystem::path write_creds(const std::filesystem::path& file, const NKey& account,
                                  const std::string& name) {
  const NKey user = make_nkey(kUser);
  write_text(file, "-----BEGIN NATS USER JWT-----\n" +
                       sign_jwt(account, user.public_key, name, kUserClaims) +
                       "\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n" +
                       user.seed + "\n------END USER NKEY SEED------\n");
  ::chmod(file.c_str(), 0600);
  return file;
}

}  // namespace

NatsOperatorFiles make_nats_operator(const std::filesystem::path& dir) {
  const NKey op = make_nkey(kOperator);
  const NKey account = make_nkey(kAccount);
  const NKey stranger = make_nkey(kAccount);
  const NKey system = make_nkey(kAccount);
  write_text(dir / "operator.jwt",
             sign_jwt(op, op.public_key, "pyoco-test", R"({"type":"operator","version":2})"));
  NatsOperatorFiles files;
  files.server_config = "operator: \"" + (dir / "operator.jwt").string() +
                        "\"\nsystem_account: " + system.public_key +
                        "\nresolver: MEMORY\nresolver_preload: {\n  " + account.public_key +
                        ": \"" + sign_jwt(op, account.public_key, "pyoco", kAccountClaims) +
                        "\"\n  " + system.public_key + ": \"" +
                        sign_jwt(op, system.public_key, "SYS", kSystemAccountClaims) + "\"\n}\n";
  files.creds = write_creds(dir / "user.creds", account, "worker");
  files.stranger_creds = write_creds(dir / "stranger.creds", stranger, "stranger");
  return files;
}

}  // namespace pyoco::testing
