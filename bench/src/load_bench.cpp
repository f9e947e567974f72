// pyoco_load_bench: HTTP load on the gateway with wrk, against a minimal
// Beast server (pyoco_beast_ceiling, the ceiling) in the same run. It
// starts a nats-server, `pyoco cluster init`, one gateway (`pyoco server`)
// and W workers of the trivial flow, preloads runs, then for each route
// runs wrk on the gateway and on the ceiling in turn (the ceiling serves
// the gateway's own answers, captured here, so both send the same bytes).
// Then S Server-Sent Events watchers, one per run, on `GET
// /runs/{id}/watch`: runs submitted on a tag no worker serves stay
// pending, so every stream is held open; the read routes are measured
// again while they are; then a worker for that tag starts and each
// watcher's run ends. The ceiling gets the same S streams and the same
// reads. Every failure (a non-2xx answer, a socket error, a watcher not
// held or never told of its run's end) is reported and makes it exit 1.
//
//   pyoco_load_bench [--smoke] [--out DIR] [--seconds N] [--connections C]
//                    [--watchers S] [--workers W]
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/core/subprocess.hpp>

#include <nats/nats.h>

#include <unistd.h>

#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "event_clock.hpp"
#include "http_client.hpp"
#include "local_cluster.hpp"
#include "sse_watchers.hpp"
#include "stats.hpp"
#include "wrk.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using pyoco::bench::Clock;
using pyoco::bench::ms_between;
using namespace std::chrono_literals;

namespace {

struct Args {
  bool smoke = false;
  fs::path out = PYOCO_BENCH_SOURCE_DIR "/bench/results";
  fs::path pyoco = PYOCO_BENCH_CLI;
  fs::path ceiling = PYOCO_BENCH_CEILING;
  fs::path plugin_dir = PYOCO_BENCH_PLUGIN_DIR;
  fs::path post_script = PYOCO_BENCH_SOURCE_DIR "/bench/load/post_runs.lua";
  unsigned seconds = 10;
  unsigned connections = 32;
  unsigned wrk_threads = 2;
  unsigned watchers = 200;
  unsigned workers = 2;
  unsigned slots = 4;
  unsigned preload = 200;
};

// A number from /proc/PID/status ("Threads", "VmRSS" in kB).
long status_number(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

json::object summarize(const std::vector<double>& v) {
  return json::object{{"p50_ms", pyoco::bench::percentile(v, 0.5)},
                      {"p99_ms", pyoco::bench::percentile(v, 0.99)},
                      {"max_ms", pyoco::bench::percentile(v, 1.0)}};
}

struct Route {
  std::string name;    // as the table shows it
  std::string target;  // path and query
  fs::path script;     // wrk -s, or empty
};

// The processes whose CPU a measurement reports, by name.
using Pids = std::vector<std::pair<std::string, std::vector<int>>>;

class Bench {
 public:
  explicit Bench(const Args& a) : a_(a) {}

  // One wrk run on `base`+route, with the CPU each process of `pids` used
  // meanwhile (in cores: CPU ms over wall ms). A non-2xx answer, a socket
  // error or no answer at all is a failure.
  json::object wrk(const std::string& server, const std::string& base, const Route& r,
                   const Pids& pids, const std::string& phase) {
    std::vector<double> before;
    for (const auto& [name, list] : pids)
      for (int pid : list) before.push_back(pyoco::bench::cpu_ms(pid));
    const auto t0 = Clock::now();
    const pyoco::bench::WrkResult w = pyoco::bench::run_wrk(base + r.target, a_.wrk_threads,
                                                            a_.connections, a_.seconds, r.script);
    const double wall = ms_between(t0, Clock::now());
    json::object cpu;
    std::size_t i = 0;
    for (const auto& [name, list] : pids) {
      double used = 0;
      for (int pid : list) used += pyoco::bench::cpu_ms(pid) - before[i++];
      cpu[name] = used / wall;
    }
    cpu["wrk"] = w.cpu_ms / wall;
    std::cerr << "load bench: " << phase << " " << server << " " << r.name << ": " << std::fixed
              << std::setprecision(0) << w.requests_per_s << " req/s\n";
    const std::string where = phase + " " + server + " " + r.name;
    if (w.requests == 0) failures_.push_back(where + ": no request answered\n" + w.report);
    if (w.non_2xx > 0)
      failures_.push_back(where + ": " + std::to_string(w.non_2xx) + " non-2xx answers");
    if (w.socket_errors > 0)
      failures_.push_back(where + ": " + std::to_string(w.socket_errors) + " socket errors\n" +
                          w.report);
    return json::object{{"requests_per_s", w.requests_per_s},
                        {"p50_ms", w.p50_ms},
                        {"p90_ms", w.p90_ms},
                        {"p99_ms", w.p99_ms},
                        {"requests", w.requests},
                        {"non_2xx", w.non_2xx},
                        {"socket_errors", w.socket_errors},
                        {"cpu_cores", std::move(cpu)}};
  }

  // Gateway then ceiling for each route: rows of the table.
  json::array compare(const std::vector<Route>& routes, const std::string& gateway,
                      const std::string& ceiling, const Pids& gateway_pids,
                      const Pids& ceiling_pids, const std::string& phase) {
    json::array rows;
    for (const Route& r : routes) {
      json::object g = wrk("gateway", gateway, r, gateway_pids, phase);
      json::object c = wrk("ceiling", ceiling, r, ceiling_pids, phase);
      const double ratio =
          g.at("requests_per_s").to_number<double>() / c.at("requests_per_s").to_number<double>();
      rows.push_back(json::object{{"route", r.name},
                                  {"gateway", std::move(g)},
                                  {"ceiling", std::move(c)},
                                  {"ratio", ratio}});
    }
    return rows;
  }

  void fail(std::string why) { failures_.push_back(std::move(why)); }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  const Args& a_;
  std::vector<std::string> failures_;
};

// The gateway's index total (GET /stats): what every submit adds to.
std::uint64_t index_total(pyoco::bench::HttpClient& c) {
  return json::parse(c.call(boost::beast::http::verb::get, "/stats"))
      .at("total")
      .to_number<std::uint64_t>();
}

// Waits until the index counts `want` runs and none in progress or pending:
// the seconds it took, or -1 at the deadline.
double wait_for_index(pyoco::bench::HttpClient& c, std::uint64_t want, std::chrono::seconds limit) {
  const auto t0 = Clock::now();
  while (Clock::now() - t0 < limit) {
    const json::value s = json::parse(c.call(boost::beast::http::verb::get, "/stats"));
    if (s.at("total").to_number<std::uint64_t>() >= want &&
        s.at("runs").at("PENDING").to_number<std::uint64_t>() == 0 &&
        s.at("in_progress").to_number<std::uint64_t>() == 0)
      return ms_between(t0, Clock::now()) / 1000;
    std::this_thread::sleep_for(50ms);  // polled, with a deadline
  }
  return -1;
}

// How many consumers PYOCO_EVENTS has: the gateway makes one per SSE
// stream, after it has sent the run's snapshot.
std::int64_t event_consumers(pyoco::cluster::Connection& nats) {
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, nats.handles().js, "PYOCO_EVENTS", nullptr, nullptr) != NATS_OK)
    throw std::runtime_error("cannot read PYOCO_EVENTS's stream info");
  const auto n = static_cast<std::int64_t>(si->State.Consumers);
  jsStreamInfo_Destroy(si);
  return n;
}

// S watchers held on `base` (one per target), the reads measured while they
// are; what the streams did.
struct Held {
  json::object figures;
  std::unique_ptr<pyoco::bench::SseWatchers> watchers;
};
Held hold(
    Bench& bench, const std::string& server, const std::string& base,
    const std::vector<std::string>& targets, int pid, const std::string& marker,
    const std::function<bool(pyoco::bench::SseWatchers&)>& following =
        [](pyoco::bench::SseWatchers&) { return true; }) {
  Held h;
  const long threads_before = status_number(pid, "Threads");
  const long rss_before = status_number(pid, "VmRSS");
  const auto t0 = Clock::now();
  const auto [host, port] = pyoco::bench::host_port(base);
  h.watchers = std::make_unique<pyoco::bench::SseWatchers>(host, port, targets, marker);
  const bool all = h.watchers->wait_first_events(60s);
  const double open_ms = ms_between(t0, Clock::now());
  // Measured once every stream follows its events, not while they start.
  bool followed = false;
  // A watch that falls back to a consumer of its own waits for NATS to
  // make it (tens of seconds for 200 on a large stream): the bound is
  // generous, the time is reported.
  for (const auto until = Clock::now() + 180s; !followed && Clock::now() < until;) {
    followed = following(*h.watchers);
    if (!followed) std::this_thread::sleep_for(10ms);  // polled, with a deadline
  }
  if (!followed) bench.fail(server + ": the SSE streams did not all follow their events in 180 s");
  const double follow_ms = ms_between(t0, Clock::now());
  const std::size_t held = h.watchers->held();
  json::array errors;
  std::size_t failed = 0;
  for (const auto& w : h.watchers->snapshot()) {
    if (w.error.empty()) continue;
    ++failed;
    if (errors.size() < 5) errors.push_back(json::value(w.target + ": " + w.error));
  }
  if (!all || held != targets.size()) {
    bench.fail(server + ": " + std::to_string(held) + " of " + std::to_string(targets.size()) +
               " SSE watchers held (" + std::to_string(failed) + " failed" +
               (errors.empty() ? std::string() : ", first: " + json::serialize(errors)) + ")");
  }
  h.figures = json::object{{"watchers", targets.size()},
                           {"held", held},
                           {"failed", failed},
                           {"errors", std::move(errors)},
                           {"all_held_ms", open_ms},
                           {"all_following_ms", follow_ms},
                           {"threads_before", threads_before},
                           {"threads_held", status_number(pid, "Threads")},
                           {"rss_kib_before", rss_before},
                           {"rss_kib_held", status_number(pid, "VmRSS")}};
  return h;
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string table(const json::array& rows) {
  std::ostringstream md;
  md << "| route | gateway req/s | p50 ms | p99 ms | ceiling req/s | p50 ms | p99 ms | ratio |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& v : rows) {
    const auto& o = v.as_object();
    auto cell = [&](const char* side) {
      const auto& s = o.at(side).as_object();
      return fixed(s.at("requests_per_s").to_number<double>(), 0) + " | " +
             fixed(s.at("p50_ms").to_number<double>(), 2) + " | " +
             fixed(s.at("p99_ms").to_number<double>(), 2);
    };
    md << "| " << o.at("route").as_string().c_str() << " | " << cell("gateway") << " | "
       << cell("ceiling") << " | " << fixed(o.at("ratio").to_number<double>(), 3) << " |\n";
  }
  return md.str();
}

std::string cpu_line(const json::array& rows) {
  std::ostringstream md;
  for (const auto& v : rows) {
    const auto& o = v.as_object();
    md << "- " << o.at("route").as_string().c_str() << ": gateway side";
    for (const auto& [name, cores] : o.at("gateway").at("cpu_cores").as_object())
      md << " " << name << " " << fixed(cores.to_number<double>(), 2);
    md << "; ceiling side";
    for (const auto& [name, cores] : o.at("ceiling").at("cpu_cores").as_object())
      md << " " << name << " " << fixed(cores.to_number<double>(), 2);
    md << "\n";
  }
  return md.str();
}

std::string render(const json::object& r) {
  std::ostringstream md;
  const auto& sse = r.at("sse").as_object();
  const auto& g = sse.at("gateway").as_object();
  const auto& c = sse.at("ceiling").as_object();
  auto p = [](const json::value& o) {
    return fixed(o.at("p50_ms").to_number<double>(), 1) + " / " +
           fixed(o.at("p99_ms").to_number<double>(), 1) + " / " +
           fixed(o.at("max_ms").to_number<double>(), 1);
  };
  md << "# HTTP load (wrk)\n\n"
     << "wrk -t" << r.at("wrk_threads").to_number<int>() << " -c"
     << r.at("connections").to_number<int>() << " -d" << r.at("seconds").to_number<int>()
     << "s on this machine (" << r.at("nproc").to_number<int>() << " cores), gateway with "
     << r.at("workers").to_number<int>() << " workers × " << r.at("slots").to_number<int>()
     << " slots; ceiling: pyoco_beast_ceiling, the same answers.\n\n"
     << table(r.at("routes").as_array()) << "\nCPU (cores) during each run:\n\n"
     << cpu_line(r.at("routes").as_array());
  const auto& q = r.at("post_queue").as_object();
  md << "\nPOST /runs queued " << q.at("runs_posted").to_number<std::uint64_t>()
     << " runs (index grew by " << q.at("index_grew_by").to_number<std::uint64_t>()
     << "); the workers finished them " << fixed(q.at("drained_after_s").to_number<double>(), 1)
     << " s after wrk stopped.\n\n"
     << "## With " << g.at("watchers").to_number<int>() << " SSE watchers held\n\n"
     << "Gateway: " << g.at("held").to_number<int>() << " held (" << g.at("failed").to_number<int>()
     << " failed), their snapshots in " << fixed(g.at("all_held_ms").to_number<double>(), 0)
     << " ms, all following their run's events in "
     << fixed(g.at("all_following_ms").to_number<double>(), 0) << " ms (consumers of "
     << "PYOCO_EVENTS made meanwhile: " << g.at("consumers_made").to_number<std::int64_t>()
     << "); threads " << g.at("threads_before").to_number<int>() << " → "
     << g.at("threads_held").to_number<int>() << ", RSS "
     << g.at("rss_kib_before").to_number<int>() / 1024 << " → "
     << g.at("rss_kib_held").to_number<int>() / 1024
     << " MiB. Ceiling: " << c.at("held").to_number<int>() << " held, threads "
     << c.at("threads_before").to_number<int>() << " → " << c.at("threads_held").to_number<int>()
     << ".\n\n"
     << table(sse.at("routes").as_array()) << "\nCPU (cores) during each run:\n\n"
     << cpu_line(sse.at("routes").as_array())
     << "\nRuns released (a worker for their tag started): " << g.at("ended").to_number<int>()
     << " of " << g.at("watchers").to_number<int>()
     << " watchers told of their run's end; p50 / p99 / max ms: release → watcher "
     << p(g.at("release_to_watcher_end")) << "; run_end on NATS → watcher "
     << p(g.at("nats_end_to_watcher_end")) << "; submit → watcher "
     << p(g.at("submit_to_watcher_end")) << " (includes the time held).\n";
  if (!r.at("failures").as_array().empty()) {
    md << "\n## Failures\n\n";
    for (const auto& f : r.at("failures").as_array()) md << "- " << f.as_string().c_str() << "\n";
  }
  return md.str();
}

}  // namespace

int main(int argc, char** argv) try {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> unsigned {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return static_cast<unsigned>(std::stoul(argv[++i]));
    };
    if (arg == "--smoke") {
      a.smoke = true;
      a.seconds = 1;
      a.connections = 8;
      a.preload = 60;
    } else if (arg == "--out") {
      if (i + 1 >= argc) throw std::invalid_argument("--out needs a value");
      a.out = argv[++i];
    } else if (arg == "--seconds") {
      a.seconds = value();
    } else if (arg == "--connections") {
      a.connections = value();
    } else if (arg == "--watchers") {
      a.watchers = value();
    } else if (arg == "--workers") {
      a.workers = value();
    } else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: pyoco_load_bench [--smoke] [--out DIR] [--seconds N] [--connections C] "
                   "[--watchers S] [--workers W]\n";
      return 0;
    } else {
      throw std::invalid_argument("unknown argument " + arg + " (see --help)");
    }
  }
  const fs::path scratch = pyoco::bench::make_scratch("pyoco-load-bench");

  const pyoco::bench::LocalNats nats = pyoco::bench::start_nats(scratch, a.pyoco);
  std::string gateway;
  const pyoco::bench::Process gateway_process =
      pyoco::bench::start_gateway(a.pyoco, nats.url, scratch / "gateway.log", gateway);
  std::vector<pyoco::bench::Process> workers;
  for (unsigned w = 0; w < a.workers; ++w) {
    workers.push_back(pyoco::bench::start_worker(
        a.pyoco, nats.url, "load-" + std::to_string(w), a.slots, scratch / "flows", a.plugin_dir,
        scratch / ("worker-" + std::to_string(w) + ".log")));
  }
  pyoco::bench::EventClock clock(nats.url);
  const auto [host, port] = pyoco::bench::host_port(gateway);
  pyoco::bench::HttpClient client(host, port);

  // Preload: runs for GET /runs/{id} and a full page of GET /runs?limit=50.
  std::cerr << "load bench: preloading " << a.preload << " runs\n";
  std::vector<std::string> preloaded;
  for (unsigned i = 0; i < a.preload; ++i) preloaded.push_back(client.submit());
  if (!clock.wait_ends(preloaded, 120s)) throw std::runtime_error("the preloaded runs did not end");
  if (wait_for_index(client, a.preload, 60s) < 0)
    throw std::runtime_error("the gateway's index did not count the preloaded runs");
  const std::string run = preloaded.back();

  // The gateway's own answers, for the ceiling to send.
  namespace http = boost::beast::http;
  std::ofstream(scratch / "run.json") << client.call(http::verb::get, "/runs/" + run);
  std::ofstream(scratch / "list.json") << client.call(http::verb::get, "/runs?limit=50");
  std::ofstream(scratch / "submit.json")
      << client.call(http::verb::post, "/runs", R"({"flow_name":"trivial","params":{}})");
  const auto ceiling_process = std::make_unique<pyoco::core::BackgroundProcess>(
      std::vector<std::string>{a.ceiling.string(), "--run", (scratch / "run.json").string(),
                               "--list", (scratch / "list.json").string(), "--submit",
                               (scratch / "submit.json").string()},
      scratch / "ceiling.log");
  const std::string ceiling =
      "http://" + pyoco::bench::wait_for_line(scratch / "ceiling.log", "listening on http://", 10s);

  Pids gateway_pids{{"gateway", {gateway_process->pid()}}, {"nats_server", {nats.process->pid()}}};
  std::vector<int> worker_pids;
  for (const auto& w : workers) worker_pids.push_back(w->pid());
  gateway_pids.emplace_back("workers", worker_pids);
  const Pids ceiling_pids{{"ceiling", {ceiling_process->pid()}}};
  const std::vector<Route> reads{{"GET /runs/{id}", "/runs/" + run, {}},
                                 {"GET /runs?limit=50", "/runs?limit=50", {}}};
  const Route post{"POST /runs", "/runs", a.post_script};

  Bench bench(a);
  json::object results;
  results["generated_at"] = static_cast<std::int64_t>(std::time(nullptr));
  results["nproc"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  results["mode"] = a.smoke ? "smoke" : "full";
  results["seconds"] = a.seconds;
  results["connections"] = a.connections;
  results["wrk_threads"] = a.wrk_threads;
  results["workers"] = a.workers;
  results["slots"] = a.slots;
  results["preloaded_runs"] = a.preload;
  results["run_bytes"] = fs::file_size(scratch / "run.json");
  results["list_bytes"] = fs::file_size(scratch / "list.json");

  // The reads first, on an index of the preloaded runs only; POST /runs
  // last, since the runs it queues keep the workers busy after it.
  json::array rows = bench.compare(reads, gateway, ceiling, gateway_pids, ceiling_pids, "idle");
  const std::uint64_t before_post = index_total(client);
  json::object g = bench.wrk("gateway", gateway, post, gateway_pids, "idle");
  const auto posted = g.at("requests").to_number<std::uint64_t>();
  const auto t_posted = Clock::now();
  // Every POST is a run of its own (no Idempotency-Key: a fresh id each);
  // wrk counts only the answers it read before stopping, so up to one
  // more per connection may have been made.
  const double drained = wait_for_index(client, before_post + posted, 600s);
  const std::uint64_t grew = index_total(client) - before_post;
  if (drained < 0 || grew < posted || grew > posted + a.connections) {
    bench.fail("POST /runs: wrk counted " + std::to_string(posted) +
               " answers, the index grew by " + std::to_string(grew) +
               (drained < 0 ? " and the queue did not drain" : ""));
  }
  results["post_queue"] =
      json::object{{"runs_posted", posted},
                   {"index_grew_by", grew},
                   {"drained_after_s", ms_between(t_posted, Clock::now()) / 1000}};
  json::object c = bench.wrk("ceiling", ceiling, post, ceiling_pids, "idle");
  const double ratio =
      g.at("requests_per_s").to_number<double>() / c.at("requests_per_s").to_number<double>();
  rows.push_back(json::object{{"route", post.name},
                              {"gateway", std::move(g)},
                              {"ceiling", std::move(c)},
                              {"ratio", ratio}});
  results["routes"] = std::move(rows);

  // SSE: runs on a tag no worker serves stay pending, their streams open.
  std::cerr << "load bench: " << a.watchers << " SSE watchers\n";
  const auto init = pyoco::core::run_process(
      {a.pyoco.string(), "cluster", "init", "--nats", nats.url, "--tags", "held"});
  if (init.exit_code != 0) throw std::runtime_error("cluster init --tags held: " + init.err);
  std::vector<std::string> held_runs, targets;
  std::vector<Clock::time_point> submitted;
  for (unsigned i = 0; i < a.watchers; ++i) {
    submitted.push_back(Clock::now());
    held_runs.push_back(client.submit("trivial", "held"));
    targets.push_back("/runs/" + held_runs.back() + "/watch");
  }
  json::object sse;
  pyoco::cluster::ConnectOptions co;
  co.servers = {nats.url};
  pyoco::cluster::Connection admin(co);
  // A stream follows once it has sent its run's stored events (the
  // snapshot, then run_submitted): what comes next is live.
  const std::int64_t consumers = event_consumers(admin);
  Held gh = hold(bench, "gateway", gateway, targets, gateway_process->pid(), "\"kind\":\"run_end\"",
                 [](pyoco::bench::SseWatchers& w) { return w.all_have(2); });
  gh.figures["consumers_made"] = event_consumers(admin) - consumers;
  json::array sse_rows;
  for (const Route& r : reads) {
    json::object gw = bench.wrk("gateway", gateway, r, gateway_pids, "sse");
    sse_rows.push_back(json::object{{"route", r.name}, {"gateway", std::move(gw)}});
  }
  // Released: a worker for their tag.
  const auto t_release = Clock::now();
  const pyoco::bench::Process held_worker =
      pyoco::bench::start_worker(a.pyoco, nats.url, "load-held", a.slots, scratch / "flows",
                                 a.plugin_dir, scratch / "worker-held.log", {"--tags", "held"});
  gh.watchers->wait_marked(120s);
  clock.wait_ends(held_runs, 10s);
  std::vector<double> release_to_end, nats_to_end, submit_to_end;
  std::size_t ended = 0;
  const auto seen = gh.watchers->snapshot();
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (seen[i].marked == Clock::time_point{}) continue;
    ++ended;
    release_to_end.push_back(ms_between(t_release, seen[i].marked));
    submit_to_end.push_back(ms_between(submitted[i], seen[i].marked));
    const auto nats_end = clock.get(held_runs[i]).end;
    if (nats_end != Clock::time_point{})
      nats_to_end.push_back(ms_between(nats_end, seen[i].marked));
  }
  if (ended != seen.size()) {
    bench.fail("gateway: " + std::to_string(ended) + " of " + std::to_string(seen.size()) +
               " SSE watchers told of their run's end");
  }
  gh.figures["ended"] = ended;
  gh.figures["release_to_watcher_end"] = summarize(release_to_end);
  gh.figures["nats_end_to_watcher_end"] = summarize(nats_to_end);
  gh.figures["submit_to_watcher_end"] = summarize(submit_to_end);
  gh.watchers.reset();
  // Stream threads are joined when the next stream starts: count them after one.
  gh.figures["threads_after"] = status_number(gateway_process->pid(), "Threads");
  sse["gateway"] = std::move(gh.figures);

  Held ch =
      hold(bench, "ceiling", ceiling, targets, ceiling_process->pid(), "\"kind\":\"run_end\"");
  for (std::size_t i = 0; i < reads.size(); ++i) {
    sse_rows[i].as_object()["ceiling"] =
        bench.wrk("ceiling", ceiling, reads[i], ceiling_pids, "sse");
    auto& row = sse_rows[i].as_object();
    row["ratio"] = row.at("gateway").at("requests_per_s").to_number<double>() /
                   row.at("ceiling").at("requests_per_s").to_number<double>();
  }
  ch.watchers.reset();
  sse["ceiling"] = std::move(ch.figures);
  sse["routes"] = std::move(sse_rows);
  results["sse"] = std::move(sse);

  json::array failures;
  for (const auto& f : bench.failures()) failures.push_back(json::value(f));
  results["failures"] = std::move(failures);
  fs::create_directories(a.out);
  std::ofstream(a.out / "load.json") << json::serialize(results) << '\n';
  const std::string md = render(results);
  std::ofstream(a.out / "load.md") << md;
  std::cout << md;
  if (!bench.failures().empty()) {
    std::cerr << "pyoco_load_bench: " << bench.failures().size()
              << " failures (see above); logs kept in " << scratch << '\n';
    return 1;
  }
  fs::remove_all(scratch);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "pyoco_load_bench: " << e.what() << '\n';
  return 1;
}
