// A self-signed certificate made in the test (OpenSSL's API, no openssl
// command needed): an EC P-256 key and an X.509 certificate for 127.0.0.1
// and localhost, valid for a day, written as PEM files a server loads and a
// client trusts as its CA.
#pragma once

#include <filesystem>

namespace pyoco::testing {

struct CertificateFiles {
  std::filesystem::path cert;  // PEM certificate (also the CA to trust)
  std::filesystem::path key;   // PEM private key, mode 0600
};

// Writes <dir>/<name>.crt and <dir>/<name>.key. `names`: its subject
// alternative names, as OpenSSL writes them. Throws std::runtime_error.
CertificateFiles make_self_signed(const std::filesystem::path& dir, const char* name = "server",
                                  const char* names = "IP:127.0.0.1,IP:::1,DNS:localhost");

}  // namespace pyoco::testing
