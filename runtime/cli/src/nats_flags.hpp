// The NATS settings every command that connects shares: where NATS is,
// the credentials and TLS. Secrets come only from the environment or from
// files, never from flags: a flag is seen by anyone who runs `ps`.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <CLI/CLI.hpp>

#include <string>

namespace pyoco::cli {

struct NatsFlags {
  std::string nats;      // --nats URL[,URL]
  std::string creds;     // --nats-creds FILE
  std::string tls_ca;    // --nats-tls-ca FILE
  std::string tls_cert;  // --nats-tls-cert FILE
  std::string tls_key;   // --nats-tls-key FILE

  // Adds --nats, --nats-creds, --nats-tls-ca, --nats-tls-cert, --nats-tls-key.
  void add_to(CLI::App* command);
  // The flags, then PYOCO_NATS_URL, PYOCO_NATS_USER, PYOCO_NATS_PASSWORD,
  // PYOCO_NATS_TOKEN, PYOCO_NATS_CREDS, PYOCO_NATS_TLS_CA, PYOCO_NATS_TLS_CERT,
  // PYOCO_NATS_TLS_KEY. `name` is the connection's name on the server.
  // Throws cluster::NatsError for a bad URL list.
  cluster::ConnectOptions connect_options(const std::string& name) const;
};

}  // namespace pyoco::cli
