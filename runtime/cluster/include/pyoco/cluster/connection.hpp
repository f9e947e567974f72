// A connection to NATS with JetStream: the one door of the cluster library
// to the servers. Blocking calls; never made on an engine strand.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::cluster {

// NATS could not be reached or refused what was asked; the message says
// which server or resource, and what to do.
class NatsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// NATS (cnats) refused a key or subject as malformed: what was asked for
// (often a name a client sent: a space, '*', '>') is wrong, not NATS away.
// Asking again gets the same answer.
class NatsInvalidArgument : public NatsError {
 public:
  using NatsError::NatsError;
};

// Where NATS is: `--nats`, else PYOCO_NATS_URL, else nats://127.0.0.1:4222.
// "a:4222,b:4222" is a cluster; a URL without a scheme gets nats://.
// Throws NatsError for an empty entry or another scheme.
// A URL may carry credentials (nats://user:pass@host, nats://token@host).
std::vector<std::string> nats_servers(std::string_view flag);

// A URL as it may be shown: a password or token in it masked
// (nats://user:***@host, nats://***@host). Every message naming a server uses it.
std::string redact_url(std::string_view url);

struct ConnectOptions {
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{std::chrono::seconds(2)};  // to connect, and each request
  std::string name = "pyoco";                                  // shown by the server (connz)
  // Credentials, at most one kind: a user and password, a token, or a
  // .creds file (a user JWT and its nkey seed, decentralized auth).
  std::string user;
  std::string password;
  std::string token;
  std::filesystem::path creds_file;
  // TLS: the CA that signed the server's certificate, and a client
  // certificate and key for servers that verify clients. Giving either, or
  // a tls:// URL, makes the connection TLS only.
  std::filesystem::path tls_ca;
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  // The name the servers' certificates must carry (a DNS name or an IP);
  // empty: the host of the server URLs, which must then all be one host.
  std::string tls_server_name;
};

class Connection {
 public:
  // Throws NatsError when no server answers within the timeout, refuses
  // the credentials, or TLS fails; the message never holds a secret.
  explicit Connection(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const ConnectOptions& options() const;
  // The server it is connected to now, e.g. nats://127.0.0.1:4222 (redacted).
  std::string connected_url() const;
  // Whether it is connected now, as cnats last told; never waits (a
  // reconnect under way holds the connection's lock for seconds).
  bool connected() const;

  struct Handles;  // cnats's connection and JetStream context (src/handles.hpp)
  Handles& handles() const { return *handles_; }

 private:
  std::unique_ptr<Handles> handles_;
};

}  // namespace pyoco::cluster
