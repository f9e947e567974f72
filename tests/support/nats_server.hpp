// A nats-server with JetStream for one test: on a free loopback port (the
// server picks it, `-p -1`, and writes it to a ports file), its store in a
// temporary directory, waited for with a deadline, killed at scope exit.
// A configuration text (authorization, tls) may be given; the port and
// store stay on the command line, JetStream's size is fixed (64GB).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "child.hpp"
#include "temp_dir.hpp"

namespace pyoco::testing {

struct NatsServerOptions {
  std::string config;             // written to DIR/nats.conf and given with -c
  std::vector<std::string> args;  // more arguments
  // JetStream's file storage, in nats-server's units; written ahead of
  // `config`. Fixed so that no test depends on the disk free.
  std::string max_file_store = "64GB";
};

class NatsServer {
 public:
  NatsServer();  // a new server on a free port
  explicit NatsServer(NatsServerOptions options);
  ~NatsServer();  // stops it (SIGTERM, then SIGKILL at a deadline)
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // nats://127.0.0.1:<port>, or tls://... when its configuration requires TLS.
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  int pid() const;
  // What the server has written to stderr so far (its log).
  std::string log() const;

  // SIGKILL, as a crash; start() brings it back on the same port and store.
  void kill9();
  void start();

 private:
  TempDir dir_;  // store/, ports/ and nats.conf
  NatsServerOptions options_;
  std::unique_ptr<ChildProcess> child_;
  int port_ = -1;  // -1: the first start picks one
  std::string url_;
};

}  // namespace pyoco::testing
