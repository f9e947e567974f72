// pyoco_cluster_bench: cluster mode end to end on this machine. A
// nats-server, `pyoco server` (the gateway) and W `pyoco worker` processes
// with S slots each run a trivial flow (one bench/noop task) submitted over
// HTTP (POST /runs) by C clients on keep-alive connections. The clock is
// this process's: a run's submit is when its POST is sent, its first task
// start and its end are when their events (node_start, run_end) reach this
// process's core NATS subscription. CPU per run comes from /proc of each
// process. The baseline, in the same run, is the same flow on one
// in-process Engine (no NATS, no HTTP).
//
//   pyoco_cluster_bench [--smoke] [--out DIR] [--runs N] [--clients C]
#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/subprocess.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/server/auth.hpp>

#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "event_clock.hpp"
#include "http_client.hpp"
#include "local_cluster.hpp"
#include "stats.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace http = boost::beast::http;
using pyoco::bench::Clock, pyoco::bench::EventClock, pyoco::bench::ms_between,
    pyoco::bench::percentile;
using Submitter = pyoco::bench::HttpClient;
using namespace std::chrono_literals;

namespace {

struct Args {
  bool smoke = false;
  fs::path out = PYOCO_BENCH_SOURCE_DIR "/bench/results";
  fs::path pyoco = PYOCO_BENCH_CLI;
  fs::path plugin_dir = PYOCO_BENCH_PLUGIN_DIR;
  std::size_t runs = 3000;
  std::size_t latency_runs = 300;
  unsigned clients = 8;
  bool auth_only = false;
};

struct Setup {
  unsigned workers = 1, slots = 1;
};

json::object summarize(const std::vector<double>& v) {
  return json::object{{"p50_ms", percentile(v, 0.5)}, {"p99_ms", percentile(v, 0.99)}};
}

// One configuration: its workers started, measured, stopped.
json::object measure(const Args& a, const Setup& s, const std::string& nats_url,
                     const std::string& gateway, int gateway_pid, int nats_pid,
                     const fs::path& scratch, EventClock& clock) {
  std::vector<pyoco::bench::Process> workers;
  for (unsigned w = 0; w < s.workers; ++w) {
    workers.push_back(pyoco::bench::start_worker(
        a.pyoco, nats_url, "bench-" + std::to_string(w), s.slots, scratch / "flows", a.plugin_dir,
        scratch / ("worker-" + std::to_string(w) + ".log")));
  }
  const auto [host, port] = pyoco::bench::host_port(gateway);

  // Warm-up, which also waits for the workers: runs until one ends.
  {
    Submitter sub(host, port);
    std::vector<std::string> warm;
    for (unsigned i = 0; i < s.workers * s.slots * 2; ++i) warm.push_back(sub.submit());
    if (!clock.wait_ends(warm, 30s)) throw std::runtime_error("the warm-up runs did not end");
  }

  // Latency: one run at a time, on an idle cluster.
  std::vector<double> lat_post, lat_start, lat_end;
  {
    Submitter sub(host, port);
    for (std::size_t i = 0; i < a.latency_runs; ++i) {
      const auto t0 = Clock::now();
      const std::string id = sub.submit();
      lat_post.push_back(ms_between(t0, Clock::now()));
      if (!clock.wait_ends({id}, 30s)) throw std::runtime_error("run " + id + " did not end");
      const EventClock::Times t = clock.get(id);
      lat_start.push_back(ms_between(t0, t.start));
      lat_end.push_back(ms_between(t0, t.end));
    }
  }

  // Throughput: C clients submitting as fast as the gateway answers.
  std::vector<int> pids{gateway_pid, nats_pid};
  for (auto& w : workers) pids.push_back(w->pid());
  std::vector<double> cpu_before;
  for (int pid : pids) cpu_before.push_back(pyoco::bench::cpu_ms(pid));
  std::vector<std::vector<std::pair<std::string, Clock::time_point>>> sent(a.clients);
  std::atomic<std::size_t> next{0};
  const auto t_begin = Clock::now();
  {
    std::vector<std::thread> threads;
    for (unsigned c = 0; c < a.clients; ++c) {
      threads.emplace_back([&, c] {
        Submitter sub(host, port);
        while (next.fetch_add(1) < a.runs) {
          const auto t0 = Clock::now();
          sent[c].emplace_back(sub.submit(), t0);
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  const auto t_submitted = Clock::now();
  std::vector<std::string> ids;
  for (const auto& per : sent)
    for (const auto& [id, t0] : per) ids.push_back(id);
  if (!clock.wait_ends(ids, 300s)) throw std::runtime_error("the throughput runs did not end");
  Clock::time_point last_end{};
  std::vector<double> load_start, load_end;
  for (const auto& per : sent) {
    for (const auto& [id, t0] : per) {
      const EventClock::Times t = clock.get(id);
      last_end = std::max(last_end, t.end);
      load_start.push_back(ms_between(t0, t.start));
      load_end.push_back(ms_between(t0, t.end));
    }
  }
  std::vector<double> cpu_per_run;
  for (std::size_t i = 0; i < pids.size(); ++i) {
    cpu_per_run.push_back((pyoco::bench::cpu_ms(pids[i]) - cpu_before[i]) /
                          static_cast<double>(a.runs));
  }
  double workers_cpu = 0;
  for (std::size_t i = 2; i < cpu_per_run.size(); ++i) workers_cpu += cpu_per_run[i];
  for (auto& w : workers) w->stop(10s);

  const double seconds = ms_between(t_begin, last_end) / 1000.0;
  json::object o;
  o["workers"] = s.workers;
  o["slots"] = s.slots;
  o["runs"] = a.runs;
  o["clients"] = a.clients;
  o["runs_per_s"] = static_cast<double>(a.runs) / seconds;
  o["submits_per_s"] = static_cast<double>(a.runs) / (ms_between(t_begin, t_submitted) / 1000.0);
  o["idle_post"] = summarize(lat_post);
  o["idle_submit_to_start"] = summarize(lat_start);
  o["idle_submit_to_completed"] = summarize(lat_end);
  o["loaded_submit_to_start"] = summarize(load_start);
  o["loaded_submit_to_completed"] = summarize(load_end);
  o["cpu_ms_per_run"] = json::object{
      {"gateway", cpu_per_run[0]}, {"nats_server", cpu_per_run[1]}, {"workers", workers_cpu}};
  return o;
}

// The same flow on one in-process engine: runs/s with as many runs in flight
// as the largest cluster setup has slots.
json::object baseline(const Args& a, std::size_t in_flight) {
  pyoco::EngineOptions eo;
  eo.plugin_search_path = {a.plugin_dir};
  pyoco::Engine engine(eo);
  auto spec = std::make_shared<pyoco::core::FlowSpec>(
      pyoco::core::parse_flow_text(pyoco::bench::kTrivialFlow, "trivial.yaml"));
  auto flow = std::make_shared<pyoco::core::CompiledFlow>(pyoco::core::compile_flow(spec));
  std::vector<double> one;
  for (int i = 0; i < 200; ++i) {
    const auto t0 = Clock::now();
    pyoco::Run r = engine.start(flow, {});
    r.wait();
    one.push_back(ms_between(t0, Clock::now()));
  }
  const auto t0 = Clock::now();
  std::vector<pyoco::Run> window;
  for (std::size_t i = 0; i < a.runs; ++i) {
    window.push_back(engine.start(flow, {}));
    if (window.size() >= in_flight) {
      for (auto& r : window) r.wait();
      window.clear();
    }
  }
  for (auto& r : window) r.wait();
  const double seconds = ms_between(t0, Clock::now()) / 1000.0;
  return json::object{{"runs_per_s", static_cast<double>(a.runs) / seconds},
                      {"run_ms", summarize(one)}};
}

// Requests/s of C keep-alive clients on `target` for `seconds`.
double requests_per_s(const std::string& gateway, const std::string& key, const std::string& target,
                      unsigned clients, double seconds) {
  const auto [host, port] = pyoco::bench::host_port(gateway);
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      Submitter client(host, port, key);
      std::uint64_t n = 0;
      while (!stop) {
        client.call(http::verb::get, target);
        ++n;
      }
      done += n;
    });
  }
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  return static_cast<double>(done) / (ms_between(t0, Clock::now()) / 1000.0);
}

// API keys' cost: the same reads from C clients to a gateway without
// authentication and to one that requires keys (each request carrying one,
// verified from the cache after its first), alternating, median of 5 each.
// The cheapest route (GET /workers, from memory) shows the check's share at
// its largest; GET /runs/{id} (a KV read) as clients mostly meet it.
json::object auth_overhead(const Args& a, const std::string& nats_url,
                           const std::string& plain_gateway, const fs::path& scratch) {
  const auto made =
      pyoco::core::run_process({a.pyoco.string(), "keys", "create", "--tenant", "bench", "--scope",
                                "admin", "--json", "--nats", nats_url});
  if (made.exit_code != 0) throw std::runtime_error("keys create: " + made.err);
  const std::string key(json::parse(made.out).at("api_key").as_string());
  pyoco::core::ProcessOptions keyed_env;
  keyed_env.env["PYOCO_HTTP_AUTH_MODE"] = "api_key";
  std::string keyed_gateway;
  const pyoco::bench::Process keyed = pyoco::bench::start_gateway(
      a.pyoco, nats_url, scratch / "gateway-auth.log", keyed_gateway, keyed_env);
  const auto [keyed_host, keyed_port] = pyoco::bench::host_port(keyed_gateway);
  Submitter first(keyed_host, keyed_port, key);
  auto t0 = Clock::now();
  const std::string run = first.submit();  // the first request: the KDF
  const double first_ms = ms_between(t0, Clock::now());
  // Its run index replays the event stream from the start (every run of
  // the setups before): measure once it has caught up with that run, the
  // newest, or the replay's CPU would be counted against the keys.
  for (const auto until = Clock::now() + 120s;
       first.call(http::verb::get, "/runs?limit=1").find(run) == std::string::npos;) {
    if (Clock::now() > until) throw std::runtime_error("the keyed gateway's index never caught up");
    std::this_thread::sleep_for(50ms);
  }

  const double seconds = a.smoke ? 0.3 : 2.0;
  json::array routes;
  for (const std::string& target : {std::string("/workers?limit=1"), "/runs/" + run}) {
    std::vector<double> plain, keyed_rps;
    for (int rep = 0; rep < 5; ++rep) {
      plain.push_back(requests_per_s(plain_gateway, "", target, a.clients, seconds));
      keyed_rps.push_back(requests_per_s(keyed_gateway, key, target, a.clients, seconds));
    }
    const double p = pyoco::bench::median(plain), k = pyoco::bench::median(keyed_rps);
    routes.push_back(
        json::object{{"route", target.rfind("/runs/", 0) == 0 ? "GET /runs/{id}" : "GET /workers"},
                     {"no_auth_rps", p},
                     {"api_key_rps", k},
                     {"ratio", k / p}});
  }
  keyed->stop();

  // One check as the gateway makes it, in this process: the first runs the
  // KDF, the rest are cache hits.
  pyoco::cluster::ConnectOptions co;
  co.servers = {nats_url};
  pyoco::cluster::Connection conn(co);
  pyoco::server::KeyAuthenticator auth(conn, {});
  pyoco::server::Request req{http::verb::get, "/runs", 11};
  req.set("X-API-Key", key);
  t0 = Clock::now();
  auth.authenticate(req, "127.0.0.1", pyoco::cluster::kScopeRunsRead);
  const double kdf_ms = ms_between(t0, Clock::now());
  const int hits = a.smoke ? 10000 : 200000;
  t0 = Clock::now();
  for (int i = 0; i < hits; ++i)
    auth.authenticate(req, "127.0.0.1", pyoco::cluster::kScopeRunsRead);
  const double hit_ns = ms_between(t0, Clock::now()) * 1e6 / hits;
  return json::object{{"first_request_ms", first_ms},  {"kdf_check_ms", kdf_ms},
                      {"cached_check_ns", hit_ns},     {"clients", a.clients},
                      {"seconds_per_sample", seconds}, {"routes", std::move(routes)}};
}

std::string fixed(double v, int digits = 2) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string render(const json::object& r) {
  std::ostringstream md;
  const double base = r.at("baseline").at("runs_per_s").to_number<double>();
  md << "# Cluster mode, end to end\n\n"
     << "Trivial runs (one `bench/noop` task) through `POST /runs`, NATS JetStream and "
        "`pyoco worker`, on this machine ("
     << r.at("nproc").to_number<int>() << " cores). "
     << "Baseline: the same flow on one in-process engine, " << fixed(base, 0) << " runs/s.\n\n"
     << "| workers × slots | runs/s | × baseline | idle p50/p99 POST ms | idle p50/p99 "
        "submit→start ms | idle "
        "p50/p99 submit→COMPLETED ms | loaded p50/p99 submit→COMPLETED ms | CPU ms/run "
        "gateway / NATS / workers |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& v : r.at("setups").as_array()) {
    const auto& o = v.as_object();
    auto pp = [&](const char* k) {
      return fixed(o.at(k).at("p50_ms").to_number<double>()) + " / " +
             fixed(o.at(k).at("p99_ms").to_number<double>());
    };
    const auto& cpu = o.at("cpu_ms_per_run").as_object();
    md << "| " << o.at("workers").to_number<int>() << " × " << o.at("slots").to_number<int>()
       << " | " << fixed(o.at("runs_per_s").to_number<double>(), 0) << " | "
       << fixed(o.at("runs_per_s").to_number<double>() / base, 3) << " | " << pp("idle_post")
       << " | " << pp("idle_submit_to_start") << " | " << pp("idle_submit_to_completed") << " | "
       << pp("loaded_submit_to_completed") << " | "
       << fixed(cpu.at("gateway").to_number<double>(), 3) << " / "
       << fixed(cpu.at("nats_server").to_number<double>(), 3) << " / "
       << fixed(cpu.at("workers").to_number<double>(), 3) << " |\n";
  }
  const auto& auth = r.at("auth").as_object();
  md << "\n## API keys' cost\n\n"
     << auth.at("clients").to_number<int>()
     << " keep-alive clients against a gateway without authentication and one that requires API "
        "keys (every request carries one; the first verification, the PBKDF2 KDF, took "
     << fixed(auth.at("first_request_ms").to_number<double>(), 1)
     << " ms; later ones come from the cache). One check in process: "
     << fixed(auth.at("kdf_check_ms").to_number<double>(), 1) << " ms with the KDF, "
     << fixed(auth.at("cached_check_ns").to_number<double>() / 1000, 2)
     << " µs from the cache. Median of 5 alternating samples of "
     << fixed(auth.at("seconds_per_sample").to_number<double>(), 1) << " s.\n\n"
     << "| route | no auth req/s | API key req/s | ratio |\n"
     << "|---|---|---|---|\n";
  for (const auto& v : auth.at("routes").as_array()) {
    const auto& o = v.as_object();
    md << "| " << o.at("route").as_string().c_str() << " | "
       << fixed(o.at("no_auth_rps").to_number<double>(), 0) << " | "
       << fixed(o.at("api_key_rps").to_number<double>(), 0) << " | "
       << fixed(o.at("ratio").to_number<double>(), 3) << " |\n";
  }
  return md.str();
}

}  // namespace

int main(int argc, char** argv) try {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--smoke") {
      a.smoke = true;
      a.runs = 100;
      a.latency_runs = 20;
    } else if (arg == "--out") {
      a.out = value();
    } else if (arg == "--runs") {
      a.runs = std::stoul(value());
    } else if (arg == "--auth-only") {  // API keys' cost at full size, one small setup
      a.auth_only = true;
    } else if (arg == "--clients") {
      a.clients = static_cast<unsigned>(std::stoul(value()));
    } else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: pyoco_cluster_bench [--smoke] [--auth-only] [--out DIR] [--runs N] "
                   "[--clients C]\n";
      return 0;
    } else {
      throw std::invalid_argument("unknown argument " + arg + " (see --help)");
    }
  }
  const fs::path scratch = pyoco::bench::make_scratch("pyoco-cluster-bench");

  const pyoco::bench::LocalNats nats = pyoco::bench::start_nats(scratch, a.pyoco);
  const std::string& nats_url = nats.url;
  std::string gateway_url;
  const pyoco::bench::Process gateway =
      pyoco::bench::start_gateway(a.pyoco, nats_url, scratch / "gateway.log", gateway_url);
  EventClock clock(nats_url);

  const std::vector<Setup> setups =
      a.smoke || a.auth_only ? std::vector<Setup>{{1, 1}}
                             : std::vector<Setup>{{1, 1}, {1, 4}, {2, 1}, {2, 4}, {4, 1}, {4, 4}};
  json::object results;
  results["generated_at"] = static_cast<std::int64_t>(std::time(nullptr));
  results["nproc"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  results["mode"] = a.smoke ? "smoke" : "full";
  json::array measured;
  for (const Setup& s : setups) {
    std::cerr << "cluster bench: " << s.workers << " workers x " << s.slots << " slots\n";
    measured.push_back(
        measure(a, s, nats_url, gateway_url, gateway->pid(), nats.process->pid(), scratch, clock));
  }
  results["setups"] = std::move(measured);
  std::cerr << "cluster bench: API keys' cost\n";
  results["auth"] = auth_overhead(a, nats_url, gateway_url, scratch);
  results["baseline"] = baseline(a, 16);
  gateway->stop();
  nats.process->stop();

  fs::create_directories(a.out);
  std::ofstream(a.out / "cluster.json") << json::serialize(results) << '\n';
  const std::string md = render(results);
  std::ofstream(a.out / "cluster.md") << md;
  std::cout << md;
  fs::remove_all(scratch);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "pyoco_cluster_bench: " << e.what() << '\n';
  return 1;
}
