// The nats-server `pyoco server --with-nats` runs as its child. On
// loopback it needs no credentials, as a local tool; listening beyond
// loopback it requires a user and password, generated once into the store
// directory for the operator to hand to workers.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/core/subprocess.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace pyoco::cli {

// Where --with-nats keeps its store when no DIR is given.
std::filesystem::path default_nats_dir();

// Whether only this machine can reach `address` (127.0.0.0/8, ::1, localhost).
bool is_loopback(const std::string& address);

struct NatsChildOptions {
  std::filesystem::path dir;         // store/, ports/, nats-server.log, .conf and .env
  std::string listen = "127.0.0.1";  // --nats-listen
  int port = 4222;                   // 0: a free one
  // The operator's own credentials (PYOCO_NATS_USER/PASSWORD or TOKEN):
  // when given, the server requires them, on loopback too.
  cluster::ConnectOptions configured;
};

class NatsChild {
 public:
  // Starts nats-server -js and waits (10 s) until it answers; says on
  // stderr where it listens and, when it requires credentials, where they
  // are (never the secret). Throws cluster::NatsError.
  explicit NatsChild(const NatsChildOptions& options);

  // How this process reaches it: its URL and the credentials it requires.
  cluster::ConnectOptions connect_options(const std::string& name) const;

 private:
  cluster::ConnectOptions client_;
  std::unique_ptr<core::BackgroundProcess> process_;
};

}  // namespace pyoco::cli
