#include "nats_server.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "ports.hpp"

namespace pyoco::testing {

namespace {

// The client port from the server's ports file: {"nats":["nats://127.0.0.1:PORT"],...}
// (tls:// when it requires TLS).
int port_from(const std::string& text) {
  const std::string marker = "://127.0.0.1:";
  const auto at = text.find(marker);
  if (at == std::string::npos) return -1;
  return std::atoi(text.c_str() + at + marker.size());
}

}  // namespace

NatsServer::NatsServer() : NatsServer(NatsServerOptions{}) {}

NatsServer::NatsServer(NatsServerOptions options) : options_(std::move(options)) { start(); }

NatsServer::~NatsServer() {
  if (!child_) return;
  child_->send_signal(SIGTERM);
  child_->wait(std::chrono::seconds(10));  // SIGKILLed by ~ChildProcess if still there
}

int NatsServer::pid() const { return child_ ? child_->pid() : -1; }

std::string NatsServer::log() const { return child_ ? child_->err() : std::string(); }

void NatsServer::kill9() {
  if (!child_) return;
  child_->send_signal(SIGKILL);
  child_->wait(std::chrono::seconds(10));
  child_.reset();
}

void NatsServer::start() {
  const auto ports = dir_.path() / "ports";
  std::filesystem::remove_all(ports);
  std::filesystem::create_directories(ports);
  std::vector<std::string> argv{PYOCO_TEST_NATS_SERVER,
                                "-js",
                                "-a",
                                "127.0.0.1",
                                "-p",
                                std::to_string(port_),
                                "--ports_file_dir",
                                ports.string(),
                                "-sd",
                                (dir_.path() / "store").string()};
  // A fixed JetStream size, not the default 75% of the disk free: the plugin
  // store reserves its whole bound (4 GiB) when made, and a test must not
  // hinge on how full the CI machine's disk is.
  write_text(dir_.path() / "nats.conf",
             "jetstream { max_file_store: " + options_.max_file_store + " }\n" + options_.config);
  argv.insert(argv.end(), {"-c", (dir_.path() / "nats.conf").string()});
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  child_ = std::make_unique<ChildProcess>(argv, std::map<std::string, std::string>{}, dir_.path());
  // Generous: a loaded CI host can take long to start it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    int port = -1;
    std::string text;
    for (const auto& f : std::filesystem::directory_iterator(ports)) {
      text = read_text(f.path());
      port = port_from(text);
    }
    if (port > 0 && accepts_on_loopback(port)) {
      port_ = port;
      const bool tls = text.find("tls://127.0.0.1:") != std::string::npos;
      url_ = (tls ? "tls://127.0.0.1:" : "nats://127.0.0.1:") + std::to_string(port);
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("nats-server did not start within 20 s: " + child_->err());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling, with a deadline
  }
}

}  // namespace pyoco::testing
