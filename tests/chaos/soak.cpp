#include "soak.hpp"

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/server/client.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "fleet.hpp"

namespace pyoco::chaos {

namespace json = boost::json;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1];
}

class Soak {
 public:
  explicit Soak(const SoakOptions& o) : options_(o), fleet_(fleet_options()) {}

  SoakReport run() {
    start_ = Clock::now();
    char line[160];
    std::snprintf(line, sizeof line,
                  "fleet up: 3 NATS nodes (R3), 2 gateways, 2 workers x 4 slots; %g runs/s and %g "
                  "reads/s for %lld s",
                  options_.runs_per_second, options_.reads_per_second,
                  static_cast<long long>(options_.duration.count()));
    say(line);
    std::thread watcher([this] { watch_ends(); });
    std::vector<std::thread> load;
    for (int i = 0; i < 2; ++i) load.emplace_back([this, i] { submit_loop(i); });
    load.emplace_back([this] { read_loop(); });
    for (auto next = start_ + options_.interval; next <= start_ + options_.duration;
         next += options_.interval) {
      std::this_thread::sleep_until(next);
      sample();
    }
    stop_ = true;
    for (auto& t : load) t.join();
    // What was submitted last is given a while to end.
    const auto until = Clock::now() + 60s;
    while (ended() < submitted_ && Clock::now() < until) std::this_thread::sleep_for(100ms);
    // The watch waits for its next event: stopping its gateway ends it.
    stop_watch_ = true;
    fleet_.stop_gateway(0);
    watcher.join();
    report_.submitted = submitted_;
    report_.ended = ended();
    growth();
    return report_;
  }

 private:
  static FleetOptions fleet_options() {
    FleetOptions f;
    f.workers = 2;
    f.slots = 4;
    f.ack_wait = 30s;  // the default: nothing is killed here
    f.progress_interval = 5;
    f.flows = {{"soak", two_task_flow(0.05)}};
    return f;
  }

  void say(const std::string& line) {
    if (options_.progress == nullptr) return;
    char at[32];
    std::snprintf(at, sizeof at, "[%6.0f s] ", ms_between(start_, Clock::now()) / 1000);
    options_.progress(at + line);
  }

  // Submits at the steady rate, two clients taking turns, each to its own gateway.
  void submit_loop(int client) {
    const auto gap = std::chrono::duration<double>(2 / options_.runs_per_second);
    auto next = start_ + std::chrono::duration_cast<Clock::duration>(gap * client / 2);
    for (int i = client; !stop_; i += 2) {
      std::this_thread::sleep_until(next);
      next += std::chrono::duration_cast<Clock::duration>(gap);
      const auto t0 = Clock::now();
      const auto id = fleet_.submit("soak-" + std::to_string(i), "soak", {}, client, 10s);
      const auto t1 = Clock::now();
      std::lock_guard lock(mutex_);
      if (!id) {
        ++errors_;
        continue;
      }
      ++submitted_;
      submitted_at_[*id] = t0;
      submit_ms_.push_back(ms_between(t0, t1));
      last_id_ = *id;
    }
  }

  // A run's record and the first page of the list, in turn, at the read rate.
  void read_loop() {
    const auto gap = std::chrono::duration<double>(1 / options_.reads_per_second);
    auto next = start_;
    for (int i = 0; !stop_; ++i) {
      std::this_thread::sleep_until(next);
      next += std::chrono::duration_cast<Clock::duration>(gap);
      std::string target = "/runs?limit=50";
      if (i % 2 == 0) {
        std::lock_guard lock(mutex_);
        if (last_id_.empty()) continue;
        target = "/runs/" + last_id_;
      }
      if (!fleet_.get_json(target, i % fleet_.gateways())) {
        std::lock_guard lock(mutex_);
        ++errors_;
      }
    }
  }

  // Run ends as a client sees them: the gateway's run-level SSE (GET /events).
  void watch_ends() {
    std::string last_id;
    while (!stop_watch_) {
      try {
        server::http_stream(server::Endpoint{fleet_.gateway_url(0), {}, {}}, "/events", last_id,
                            [&](const server::StreamEvent& e) {
                              if (!e.id.empty()) last_id = e.id;
                              on_event(e.data);
                              return !stop_watch_;
                            });
      } catch (const std::exception& e) {
        if (stop_watch_) break;
        say(std::string("watch of /events broke, again: ") + e.what());
        std::this_thread::sleep_for(200ms);
      }
    }
  }

  void on_event(const std::string& data) {
    if (data.find("\"run_end\"") == std::string::npos) return;
    const auto now = Clock::now();
    boost::system::error_code ec;
    const auto v = json::parse(data, ec);
    if (ec || !v.is_object()) return;
    const auto* id = v.as_object().if_contains("run_id");
    if (id == nullptr || !id->is_string()) return;
    std::lock_guard lock(mutex_);
    const auto it = submitted_at_.find(std::string(id->as_string()));
    if (it == submitted_at_.end()) return;
    run_ms_.push_back(ms_between(it->second, now));
    submitted_at_.erase(it);
    ++ended_;
  }

  int ended() {
    std::lock_guard lock(mutex_);
    return ended_;
  }

  void sample() {
    SoakSample s;
    s.at_s = ms_between(start_, Clock::now()) / 1000;
    auto add = [&](const std::string& name, int pid) {
      const ProcessUse u = process_use(pid);
      s.processes.push_back({name, static_cast<double>(u.rss_kib) / 1024, u.fds});
    };
    for (int i = 0; i < fleet_.nats().size(); ++i) add(fleet_.nats().name(i), fleet_.nats().pid(i));
    for (int i = 0; i < fleet_.gateways(); ++i) {
      add("gateway" + std::to_string(i + 1), fleet_.gateway_pid(i));
    }
    for (int i = 0; i < fleet_.workers(); ++i)
      add("w" + std::to_string(i + 1), fleet_.worker_pid(i));
    try {
      cluster::Connection nats({.servers = fleet_.nats().url_list()});
      for (const auto& r : cluster::resource_status(nats, cluster::ResourceOptions{})) {
        if (r.name == "pyoco_workers_default") {
          s.lag = r.pending + static_cast<std::uint64_t>(std::max<std::int64_t>(r.ack_pending, 0));
        }
      }
    } catch (const std::exception& e) {
      say(std::string("consumer lag not read: ") + e.what());
    }
    {
      std::lock_guard lock(mutex_);
      s.runs_ended = static_cast<int>(run_ms_.size());
      s.run_p50_ms = percentile(run_ms_, 0.50);
      s.run_p95_ms = percentile(run_ms_, 0.95);
      s.run_p99_ms = percentile(run_ms_, 0.99);
      s.submit_p50_ms = percentile(submit_ms_, 0.50);
      s.submit_p99_ms = percentile(submit_ms_, 0.99);
      s.errors = errors_;
      run_ms_.clear();
      submit_ms_.clear();
      errors_ = 0;
    }
    char line[256];
    std::snprintf(line, sizeof line,
                  "%d runs ended, run p50/p95/p99 %.1f/%.1f/%.1f ms, submit p50/p99 %.1f/%.1f ms, "
                  "lag %llu, errors %d",
                  s.runs_ended, s.run_p50_ms, s.run_p95_ms, s.run_p99_ms, s.submit_p50_ms,
                  s.submit_p99_ms, static_cast<unsigned long long>(s.lag), s.errors);
    std::string use;
    for (const auto& p : s.processes) {
      char one[64];
      std::snprintf(one, sizeof one, " %s %.1f MiB/%d fds", p.name.c_str(), p.rss_mib, p.fds);
      use += one;
    }
    say(line);
    say(" " + use);
    report_.samples.push_back(std::move(s));
  }

  // Growth from the sample after warm-up (the second) to the last: more than
  // 10% and 4 MiB of RSS, or more than 4 descriptors, is growth.
  void growth() {
    if (report_.samples.size() < 3) return;
    const auto& from = report_.samples[1];
    const auto& to = report_.samples.back();
    for (std::size_t i = 0; i < from.processes.size(); ++i) {
      SoakReport::Growth g;
      g.name = from.processes[i].name;
      g.rss_from_mib = from.processes[i].rss_mib;
      g.rss_to_mib = to.processes[i].rss_mib;
      g.fds_from = from.processes[i].fds;
      g.fds_to = to.processes[i].fds;
      g.grew = (g.rss_to_mib > g.rss_from_mib * 1.10 && g.rss_to_mib > g.rss_from_mib + 4) ||
               g.fds_to > g.fds_from + 4;
      g.judged = i >= static_cast<std::size_t>(fleet_.nats().size());  // n1.. come first
      report_.growth.push_back(g);
    }
  }

  SoakOptions options_;
  Fleet fleet_;
  Clock::time_point start_;
  std::atomic<bool> stop_{false}, stop_watch_{false};
  std::mutex mutex_;
  std::unordered_map<std::string, Clock::time_point> submitted_at_;
  std::vector<double> run_ms_, submit_ms_;
  std::string last_id_;
  int submitted_ = 0, ended_ = 0, errors_ = 0;
  SoakReport report_;
};

}  // namespace

bool SoakReport::passed() const {
  if (ended != submitted || samples.size() < 3) return false;
  for (const auto& s : samples) {
    if (s.errors != 0) return false;
  }
  return std::none_of(growth.begin(), growth.end(),
                      [](const Growth& g) { return g.judged && g.grew; });
}

json::object SoakReport::to_json() const {
  json::array ss;
  for (const auto& s : samples) {
    json::object procs;
    for (const auto& p : s.processes) procs[p.name] = {{"rss_mib", p.rss_mib}, {"fds", p.fds}};
    ss.push_back({{"at_s", s.at_s},
                  {"processes", std::move(procs)},
                  {"lag", s.lag},
                  {"runs_ended", s.runs_ended},
                  {"run_ms", {{"p50", s.run_p50_ms}, {"p95", s.run_p95_ms}, {"p99", s.run_p99_ms}}},
                  {"submit_ms", {{"p50", s.submit_p50_ms}, {"p99", s.submit_p99_ms}}},
                  {"errors", s.errors}});
  }
  json::array gs;
  for (const auto& g : growth) {
    gs.push_back({{"process", g.name},
                  {"rss_mib", {g.rss_from_mib, g.rss_to_mib}},
                  {"fds", {g.fds_from, g.fds_to}},
                  {"grew", g.grew},
                  {"judged", g.judged}});
  }
  return {{"passed", passed()},
          {"submitted", submitted},
          {"ended", ended},
          {"samples", std::move(ss)},
          {"growth", std::move(gs)}};
}

SoakReport run_soak(const SoakOptions& options) { return Soak(options).run(); }

}  // namespace pyoco::chaos
