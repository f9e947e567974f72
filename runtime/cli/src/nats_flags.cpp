#include "nats_flags.hpp"

#include <cstdlib>

namespace pyoco::cli {

namespace {

// The flag when given, else the environment variable (unset or empty: "").
std::string setting(const std::string& flag, const char* variable) {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(variable);
  return value != nullptr ? value : "";
}

}  // namespace

void NatsFlags::add_to(CLI::App* command) {
  command
      ->add_option("--nats", nats,
                   "NATS server URL, or several comma-separated (default: PYOCO_NATS_URL, else "
                   "nats://127.0.0.1:4222)")
      ->type_name("URL[,URL]");
  command
      ->add_option("--nats-creds", creds,
                   "NATS credentials file (.creds: a user JWT and its nkey seed; default: "
                   "PYOCO_NATS_CREDS). A user and password or a token come from "
                   "PYOCO_NATS_USER/PYOCO_NATS_PASSWORD or PYOCO_NATS_TOKEN only")
      ->type_name("FILE");
  command
      ->add_option("--nats-tls-ca", tls_ca,
                   "Trust this CA for NATS's TLS certificate; turns TLS on (default: "
                   "PYOCO_NATS_TLS_CA)")
      ->type_name("FILE");
  command
      ->add_option("--nats-tls-cert", tls_cert,
                   "Client certificate for NATS servers that verify clients (default: "
                   "PYOCO_NATS_TLS_CERT)")
      ->type_name("FILE");
  command
      ->add_option("--nats-tls-key", tls_key,
                   "The client certificate's key (default: PYOCO_NATS_TLS_KEY)")
      ->type_name("FILE");
}

cluster::ConnectOptions NatsFlags::connect_options(const std::string& name) const {
  cluster::ConnectOptions o;
  o.servers = cluster::nats_servers(nats);
  o.name = name;
  o.user = setting("", "PYOCO_NATS_USER");
  o.password = setting("", "PYOCO_NATS_PASSWORD");
  o.token = setting("", "PYOCO_NATS_TOKEN");
  o.creds_file = setting(creds, "PYOCO_NATS_CREDS");
  o.tls_ca = setting(tls_ca, "PYOCO_NATS_TLS_CA");
  o.tls_cert = setting(tls_cert, "PYOCO_NATS_TLS_CERT");
  o.tls_key = setting(tls_key, "PYOCO_NATS_TLS_KEY");
  o.tls_server_name = setting("", "PYOCO_NATS_TLS_SERVER_NAME");
  return o;
}

}  // namespace pyoco::cli
