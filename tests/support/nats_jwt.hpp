// Decentralized NATS auth made in the test (OpenSSL's API, no nsc): an
// operator, an account and a user as ed25519 nkeys, their JWTs signed, a
// nats-server configuration that trusts the operator and preloads the
// account, and the user's .creds file.
#pragma once

#include <filesystem>
#include <string>

namespace pyoco::testing {

struct NatsOperatorFiles {
  std::string server_config;    // operator, resolver: MEMORY, resolver_preload
  std::filesystem::path creds;  // a user of the preloaded account (JetStream on)
  // A user of an account the server does not know: refused.
  std::filesystem::path stranger_creds;
};

// Writes <dir>/operator.jwt, user.creds and stranger.creds (0600). Throws std::runtime_error.
NatsOperatorFiles make_nats_operator(const std::filesystem::path& dir);

}  // namespace pyoco::testing
