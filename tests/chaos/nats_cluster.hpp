// A JetStream cluster of nats-servers on loopback for chaos and soak runs:
// each node its own client and route ports (picked free once, kept across
// restarts), store and configuration; nodes can be killed, restarted and
// paused (SIGSTOP) one by one.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "child.hpp"
#include "temp_dir.hpp"

namespace pyoco::chaos {

class NatsCluster {
 public:
  // Starts `nodes` servers n1..nN and waits until each accepts clients.
  explicit NatsCluster(int nodes);
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  // Every node's URL, comma-separated, as gateways and workers take them.
  std::string urls() const;
  std::vector<std::string> url_list() const;
  std::string url(int node) const;
  std::string name(int node) const { return "n" + std::to_string(node + 1); }
  // The node called `name` (n1, n2, ...), or -1.
  int index_of(const std::string& name) const;
  int pid(int node) const;
  bool running(int node) const;

  void kill9(int node);
  void start(int node);  // the same ports and store; waits until it accepts
  void pause(int node);  // SIGSTOP: alive to the kernel, silent to its peers
  void resume(int node);

 private:
  struct Node {
    int client_port = 0;
    int route_port = 0;
    std::unique_ptr<testing::ChildProcess> child;
  };
  testing::TempDir dir_;
  std::vector<Node> nodes_;
};

}  // namespace pyoco::chaos
