#include "nats_cluster.hpp"

#include <signal.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <thread>

#include "ports.hpp"

namespace pyoco::chaos {

namespace fs = std::filesystem;

NatsCluster::NatsCluster(int nodes) {
  nodes_.resize(static_cast<std::size_t>(nodes));
  for (auto& n : nodes_) {
    n.client_port = testing::free_loopback_port();
    n.route_port = testing::free_loopback_port();
  }
  std::string routes;
  for (const auto& n : nodes_) {
    routes += (routes.empty() ? "" : ", ") + std::string("nats-route://127.0.0.1:") +
              std::to_string(n.route_port);
  }
  for (int i = 0; i < size(); ++i) {
    const fs::path dir = dir_.path() / name(i);
    fs::create_directories(dir / "store");
    // Short timers where nats-server lets us: a dead peer is noticed in
    // seconds, as it would be on a LAN, not after the 2-minute defaults.
    // JetStream's size is fixed, not 75% of the disk free (see NatsServer).
    testing::write_text(
        dir / "nats.conf",
        "server_name: " + name(i) + "\nlisten: 127.0.0.1:" + std::to_string(nodes_[i].client_port) +
            "\nping_interval: \"2s\"\nping_max: 2\n"
            "jetstream { max_file_store: 64GB, store_dir: \"" +
            (dir / "store").string() +
            "\" }\ncluster {\n  name: pyoco_chaos\n  listen: 127.0.0.1:" +
            std::to_string(nodes_[i].route_port) + "\n  routes: [" + routes + "]\n}\n");
  }
  for (int i = 0; i < size(); ++i) start(i);
}

NatsCluster::~NatsCluster() {
  for (int i = 0; i < size(); ++i) {
    auto& child = nodes_[i].child;
    if (!child) continue;
    child->send_signal(SIGCONT);  // a paused node cannot hear SIGTERM
    child->send_signal(SIGTERM);
    child->wait(std::chrono::seconds(10));  // SIGKILLed by ~ChildProcess if still there
  }
}

std::string NatsCluster::url(int node) const {
  return "nats://127.0.0.1:" + std::to_string(nodes_.at(node).client_port);
}

std::vector<std::string> NatsCluster::url_list() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(url(i));
  return out;
}

std::string NatsCluster::urls() const {
  std::string out;
  for (int i = 0; i < size(); ++i) out += (i ? "," : "") + url(i);
  return out;
}

int NatsCluster::index_of(const std::string& n) const {
  for (int i = 0; i < size(); ++i) {
    if (name(i) == n) return i;
  }
  return -1;
}

int NatsCluster::pid(int node) const {
  const auto& child = nodes_.at(node).child;
  return child ? child->pid() : -1;
}

bool NatsCluster::running(int node) const { return nodes_.at(node).child != nullptr; }

void NatsCluster::kill9(int node) {
  auto& child = nodes_.at(node).child;
  if (!child) return;
  child->send_signal(SIGKILL);
  child->wait(std::chrono::seconds(10));
  child.reset();
}

void NatsCluster::start(int node) {
  auto& n = nodes_.at(node);
  if (n.child) return;
  const fs::path dir = dir_.path() / name(node);
  n.child = std::make_unique<testing::ChildProcess>(
      std::vector<std::string>{PYOCO_TEST_NATS_SERVER, "-c", (dir / "nats.conf").string()},
      std::map<std::string, std::string>{}, dir);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!testing::accepts_on_loopback(n.client_port)) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("nats-server " + name(node) +
                               " did not accept clients within 20 s: " + n.child->err());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling, with a deadline
  }
}

void NatsCluster::pause(int node) {
  if (auto& child = nodes_.at(node).child) child->send_signal(SIGSTOP);
}

void NatsCluster::resume(int node) {
  if (auto& child = nodes_.at(node).child) child->send_signal(SIGCONT);
}

}  // namespace pyoco::chaos
