// A connection to NATS with JetStream: the one door of the cluster library
// to the servers. Blocking calls; never made on an engine strand.
#pragma once

#include <chrono>
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

// Where NATS is: `--nats`, else PYOCO_NATS_URL, else nats://127.0.0.1:4222.
// "a:4222,b:4222" is a cluster; a URL without a scheme gets nats://.
// Throws NatsError for an empty entry or another scheme.
std::vector<std::string> nats_servers(std::string_view flag);

struct ConnectOptions {
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{std::chrono::seconds(2)};  // to connect, and each request
  std::string name = "pyoco";                                  // shown by the server (connz)
};

class Connection {
 public:
  // Throws NatsError when no server answers within the timeout.
  explicit Connection(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const ConnectOptions& options() const;
  // The server it is connected to now, e.g. nats://127.0.0.1:4222.
  std::string connected_url() const;

  struct Handles;  // cnats's connection and JetStream context (src/handles.hpp)
  Handles& handles() const { return *handles_; }

 private:
  std::unique_ptr<Handles> handles_;
};

}  // namespace pyoco::cluster
