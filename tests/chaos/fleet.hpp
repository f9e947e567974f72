// A whole cluster on one machine for chaos and soak runs: a JetStream
// cluster (NatsCluster), gateways (`pyoco server`) and workers (`pyoco
// worker`) as child processes that can be killed and started again, and a
// client that submits through whichever gateway answers.
#pragma once

#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child.hpp"
#include "nats_cluster.hpp"
#include "temp_dir.hpp"

namespace pyoco::chaos {

struct FleetOptions {
  int nodes = 3;
  int replicas = 3;  // every stream and bucket on this many nodes
  int gateways = 2;
  int workers = 4;
  int slots = 2;
  // The work consumer's AckWait, short so that a dead worker's runs come
  // back in seconds; three progress intervals fit in it (leases).
  std::chrono::milliseconds ack_wait{std::chrono::seconds(4)};
  double progress_interval = 0.5;
  std::map<std::string, std::string> flows;  // name -> flow YAML, in the workers' --flows
  // Set: what each gateway and worker wrote on stderr is appended to
  // <logs>/gateway1.log, <logs>/w1.log... when it stops or is killed (the
  // environment's PYOCO_CHAOS_LOGS by default: to read after a failure).
  std::filesystem::path logs = [] {
    const char* d = std::getenv("PYOCO_CHAOS_LOGS");
    return std::filesystem::path(d != nullptr ? d : "");
  }();
};

class Fleet {
 public:
  // Starts everything and waits until the gateways answer /health.
  explicit Fleet(FleetOptions options);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  NatsCluster& nats() { return nats_; }
  const FleetOptions& options() const { return options_; }

  int gateways() const { return static_cast<int>(gateways_.size()); }
  std::string gateway_url(int i) const;
  int gateway_pid(int i) const;
  bool gateway_running(int i) const;
  // SIGTERM, as `systemctl restart` sends; waits for its exit and returns
  // what it wrote on stderr.
  std::string stop_gateway(int i);
  void start_gateway(int i);  // on its port again; waits until it answers

  int workers() const { return static_cast<int>(workers_.size()); }
  int worker_pid(int i) const;
  bool worker_running(int i) const;
  void kill9_worker(int i);
  void start_worker(int i);

  // POST /runs through gateway `first` (or the next one that answers) with
  // an Idempotency-Key, again with the same key until a gateway accepts it
  // or `deadline` passes: the run id, or nothing.
  std::optional<std::string> submit(const std::string& idempotency_key, const std::string& flow,
                                    const boost::json::object& params, int first,
                                    std::chrono::milliseconds deadline);
  // GET `target` from any gateway that answers 200: its JSON, or nothing.
  std::optional<boost::json::value> get_json(const std::string& target, int first = 0);
  // GET /metrics of gateway i (empty when it does not answer).
  std::string metrics(int i);

 private:
  struct Gateway {
    int port = 0;
    std::unique_ptr<testing::ChildProcess> child;
  };
  FleetOptions options_;
  NatsCluster nats_;
  testing::TempDir dir_;  // flows/, plugins/<worker>
  std::vector<Gateway> gateways_;
  void keep_log(const std::string& name, const testing::ChildProcess& child) const;
  std::vector<std::unique_ptr<testing::ChildProcess>> workers_;
};

// The flow chaos and soak runs submit: `nap` (std/sleep of `seconds`, on a
// host timer), then `say` (std/echo) — long enough in flight for a fault to
// catch runs mid-way, cheap enough for hundreds a second.
std::string two_task_flow(double seconds);

// A counter of a Prometheus text page: the sum of every series of `name`
// whose labels contain `label` (e.g. status="COMPLETED"; empty: all).
double metric_value(const std::string& page, const std::string& name,
                    const std::string& label = "");

// SIGINT and SIGTERM of the program stop its whole process group — every
// nats-server, gateway and worker a Fleet started — before it exits, so a
// chaos or soak run stopped early leaves nothing running (a terminal's
// Ctrl+C reaches them all anyway; `kill PID` of the program alone would not).
void stop_process_group_on_signal();

// RSS in KiB and open descriptors of a live process, from /proc.
struct ProcessUse {
  std::uint64_t rss_kib = 0;
  int fds = 0;
};
ProcessUse process_use(int pid);

}  // namespace pyoco::chaos
