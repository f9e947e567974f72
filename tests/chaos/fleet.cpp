#include "fleet.hpp"

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/server/client.hpp>

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "ports.hpp"
#include "process.hpp"

namespace pyoco::chaos {

namespace fs = std::filesystem;
namespace json = boost::json;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// The resources, made once the cluster has a JetStream leader to ask (a
// fresh cluster needs a few seconds to elect one).
void init_resources(const NatsCluster& nats, const FleetOptions& o) {
  cluster::ResourceOptions ro;
  ro.replicas = o.replicas;
  ro.ack_wait = o.ack_wait;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    try {
      cluster::Connection c({.servers = nats.url_list()});
      cluster::init_resources(c, ro);
      return;
    } catch (const cluster::NatsError& e) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error(std::string("the NATS cluster did not take pyoco's resources: ") +
                                 e.what());
      }
      std::this_thread::sleep_for(200ms);  // a leader election, with a deadline
    }
  }
}

}  // namespace

Fleet::Fleet(FleetOptions options) : options_(std::move(options)), nats_(options_.nodes) {
  init_resources(nats_, options_);
  fs::create_directories(dir_.path() / "flows");
  for (const auto& [name, yaml] : options_.flows) {
    testing::write_text(dir_.path() / "flows" / (name + ".yaml"), yaml);
  }
  gateways_.resize(static_cast<std::size_t>(options_.gateways));
  for (int i = 0; i < gateways(); ++i) {
    gateways_[i].port = testing::free_loopback_port();
    start_gateway(i);
  }
  workers_.resize(static_cast<std::size_t>(options_.workers));
  for (int i = 0; i < workers(); ++i) start_worker(i);
}

Fleet::~Fleet() {
  // Workers first (they drain), then gateways, then NATS (nats_ is
  // destroyed after these members' owners return).
  for (auto& w : workers_) {
    if (w) w->send_signal(SIGTERM);
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (!workers_[i]) continue;
    workers_[i]->wait(15s);
    keep_log("w" + std::to_string(i + 1), *workers_[i]);
  }
  for (int i = 0; i < gateways(); ++i) {
    if (gateway_running(i)) stop_gateway(i);
  }
}

std::string Fleet::gateway_url(int i) const {
  return "http://127.0.0.1:" + std::to_string(gateways_.at(i).port);
}

int Fleet::gateway_pid(int i) const {
  const auto& c = gateways_.at(i).child;
  return c ? c->pid() : -1;
}

bool Fleet::gateway_running(int i) const { return gateways_.at(i).child != nullptr; }

std::string Fleet::stop_gateway(int i) {
  auto& child = gateways_.at(i).child;
  if (!child) return {};
  child->send_signal(SIGTERM);
  child->wait(30s);
  std::string err = child->err();
  keep_log("gateway" + std::to_string(i + 1), *child);
  child.reset();
  return err;
}

void Fleet::keep_log(const std::string& name, const testing::ChildProcess& child) const {
  if (options_.logs.empty()) return;
  fs::create_directories(options_.logs);
  std::ofstream(options_.logs / (name + ".log"), std::ios::app) << child.err();
}

void Fleet::start_gateway(int i) {
  auto& g = gateways_.at(i);
  if (g.child) return;
  g.child = std::make_unique<testing::ChildProcess>(
      // With its run index in a file, as the packaged unit runs it (an
      // in-memory index holds every run of the last 7 days in RAM).
      std::vector<std::string>{
          testing::pyoco_exe().string(), "server", "--nats", nats_.urls(), "--listen",
          "127.0.0.1:" + std::to_string(g.port), "--index",
          (dir_.path() / ("gateway" + std::to_string(i + 1) + ".db")).string()},
      std::map<std::string, std::string>{{"PYOCO_NATS_REPLICAS", std::to_string(options_.replicas)},
                                         {"PYOCO_PLUGIN_PATH", ""},
                                         {"PYOCO_HTTP_AUTH_MODE", ""}},
      dir_.path());
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    try {
      if (server::http_call(gateway_url(i), http::verb::get, "/health", {}, "application/json", {},
                            2s)
              .status == 200) {
        return;
      }
    } catch (const std::exception&) {
      // not listening yet
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("gateway " + std::to_string(i) +
                               " did not answer /health in 60 s: " + g.child->err());
    }
    std::this_thread::sleep_for(50ms);  // polling, with a deadline
  }
}

int Fleet::worker_pid(int i) const {
  const auto& w = workers_.at(i);
  return w ? w->pid() : -1;
}

bool Fleet::worker_running(int i) const { return workers_.at(i) != nullptr; }

void Fleet::kill9_worker(int i) {
  auto& w = workers_.at(i);
  if (!w) return;
  w->send_signal(SIGKILL);
  w->wait(10s);
  keep_log("w" + std::to_string(i + 1), *w);
  w.reset();
}

void Fleet::start_worker(int i) {
  auto& w = workers_.at(i);
  if (w) return;
  const std::string id = "w" + std::to_string(i + 1);
  std::ostringstream progress;
  progress << options_.progress_interval;
  w = std::make_unique<testing::ChildProcess>(
      std::vector<std::string>{testing::pyoco_exe().string(), "worker", "--nats", nats_.urls(),
                               "--worker-id", id, "--slots", std::to_string(options_.slots),
                               "--flows", (dir_.path() / "flows").string(), "--progress-interval",
                               progress.str(), "--no-plugin-sync", "--plugins-dir",
                               (dir_.path() / "plugins" / id).string()},
      std::map<std::string, std::string>{{"PYOCO_PLUGIN_PATH", ""}}, dir_.path());
}

std::optional<std::string> Fleet::submit(const std::string& key, const std::string& flow,
                                         const json::object& params, int first,
                                         std::chrono::milliseconds deadline) {
  const std::string body = json::serialize(json::object{{"flow_name", flow}, {"params", params}});
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (int turn = first;; ++turn) {
    const int g = turn % gateways();
    try {
      const auto r = server::http_call(gateway_url(g), http::verb::post, "/runs", body,
                                       "application/json", {{"Idempotency-Key", key}}, 5s);
      if (r.status / 100 == 2) return std::string(json::parse(r.body).at("run_id").as_string());
      if (r.status / 100 == 4) {
        throw std::runtime_error("POST /runs refused: " + std::to_string(r.status) + " " + r.body);
      }
    } catch (const server::ClientError&) {
      // that gateway is down or cut off: the next one
    }
    if (std::chrono::steady_clock::now() > until) return std::nullopt;
    if (g == gateways() - 1) std::this_thread::sleep_for(50ms);  // every gateway tried: back off
  }
}

std::optional<json::value> Fleet::get_json(const std::string& target, int first) {
  for (int turn = 0; turn < gateways(); ++turn) {
    const int g = (first + turn) % gateways();
    try {
      const auto r = server::http_call(gateway_url(g), http::verb::get, target, {},
                                       "application/json", {}, 5s);
      if (r.status == 200) return json::parse(r.body);
    } catch (const std::exception&) {
      // the next gateway
    }
  }
  return std::nullopt;
}

std::string Fleet::metrics(int i) {
  try {
    const auto r =
        server::http_call(gateway_url(i), http::verb::get, "/metrics", {}, "text/plain", {}, 5s);
    return r.status == 200 ? r.body : std::string();
  } catch (const std::exception&) {
    return {};
  }
}

std::string two_task_flow(double seconds) {
  std::ostringstream yaml;
  yaml << "flow:\n  graph: nap >> say\ntasks:\n  nap: {use: \"std/sleep\", inputs: {seconds: "
       << seconds << "}}\n  say: {use: \"std/echo\", inputs: {message: \"done\"}}\n";
  return yaml.str();
}

double metric_value(const std::string& page, const std::string& name, const std::string& label) {
  double sum = 0;
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;  // another metric with this prefix
    const auto space = line.rfind(' ');
    if (!label.empty() && line.find(label) > space) continue;
    sum += std::stod(line.substr(space + 1));
  }
  return sum;
}

namespace {
extern "C" void stop_group(int sig) {
  std::signal(SIGINT, SIG_IGN);  // the group's signal comes back to this process too
  std::signal(SIGTERM, SIG_IGN);
  ::kill(0, SIGTERM);
  ::_exit(128 + sig);
}
}  // namespace

void stop_process_group_on_signal() {
  std::signal(SIGINT, stop_group);
  std::signal(SIGTERM, stop_group);
}

ProcessUse process_use(int pid) {
  ProcessUse u;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) u.rss_kib = std::stoull(line.substr(6));
  }
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++u.fds;
  }
  return u;
}

}  // namespace pyoco::chaos
