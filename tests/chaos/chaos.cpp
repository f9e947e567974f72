#include "chaos.hpp"

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/event_stream.hpp>

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

#include "fleet.hpp"

namespace pyoco::chaos {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

bool terminal_status(std::string_view s) {
  return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED";
}

// The server (n1, n2, ...) that leads `stream` now, asked of any node that
// answers; empty when none knows.
std::string stream_leader(const std::vector<std::string>& urls, const char* stream) {
  std::vector<const char*> servers;
  for (const auto& u : urls) servers.push_back(u.c_str());
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  std::string leader;
  if (natsOptions_Create(&opts) == NATS_OK &&
      natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size())) == NATS_OK &&
      natsOptions_SetTimeout(opts, 2000) == NATS_OK &&
      natsConnection_Connect(&nc, opts) == NATS_OK &&
      natsConnection_JetStream(&js, nc, nullptr) == NATS_OK) {
    jsErrCode jerr{};
    if (js_GetStreamInfo(&si, js, stream, nullptr, &jerr) == NATS_OK && si->Cluster != nullptr &&
        si->Cluster->Leader != nullptr) {
      leader = si->Cluster->Leader;
    }
  }
  if (si != nullptr) jsStreamInfo_Destroy(si);
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) natsConnection_Destroy(nc);
  if (opts != nullptr) natsOptions_Destroy(opts);
  return leader;
}

// "2026-11-30T19:26:28.251073Z" (an event's ts) as epoch seconds; 0 when
// it is not one.
double iso_seconds(std::string_view text) {
  std::tm tm{};
  double seconds = 0;
  const std::string t(text);
  if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%lf", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &seconds) != 6) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<double>(timegm(&tm)) + seconds;
}

class Chaos {
 public:
  explicit Chaos(const ChaosOptions& o) : options_(o), rng_(o.seed), fleet_(fleet_options()) {}

  ChaosReport run() {
    start_ = Clock::now();
    say("fleet up: 3 NATS nodes (R3), 2 gateways, 4 workers x 2 slots; " +
        std::to_string(options_.runs) + " runs over " + std::to_string(options_.span.count()) +
        " s");
    std::vector<std::thread> submitters;
    for (int i = 0; i < options_.submitters; ++i)
      submitters.emplace_back([this] { submit_loop(); });
    make_faults();
    for (auto& t : submitters) t.join();
    say("submitted " + std::to_string(report_.submitted) + ", accepted " +
        std::to_string(report_.accepted));
    check_runs();
    check_events();
    check_metrics();
    report_.seconds = ms_since(start_) / 1000;
    return report_;
  }

 private:
  static FleetOptions fleet_options() {
    FleetOptions f;
    f.flows = {{"chaos", two_task_flow(0.3)}};
    return f;
  }

  void say(const std::string& line) {
    if (options_.progress != nullptr) {
      char at[32];
      std::snprintf(at, sizeof at, "[%6.1f s] ", ms_since(start_) / 1000);
      options_.progress(at + line);
    }
  }

  void problem(const std::string& what) {
    std::lock_guard lock(mutex_);
    if (report_.problems.size() < 50) report_.problems.push_back(what);
  }

  // Submits run i at start + span * i / runs: a steady stream.
  void submit_loop() {
    for (int i; (i = next_run_++) < options_.runs;) {
      std::this_thread::sleep_until(start_ + options_.span * i / options_.runs);
      const auto id =
          fleet_.submit("chaos-" + std::to_string(i), "chaos", {}, i % fleet_.gateways(), 120s);
      std::lock_guard lock(mutex_);
      ++report_.submitted;
      if (id) {
        ++report_.accepted;
        accepted_.push_back(*id);
      } else {
        report_.problems.push_back("run " + std::to_string(i) +
                                   ": no gateway accepted it in 120 s");
      }
    }
  }

  // The runs in flight now (PENDING, RUNNING, CANCELLING), from a gateway's index.
  std::vector<std::string> in_flight() {
    std::vector<std::string> out;
    for (const char* status : {"PENDING", "RUNNING", "CANCELLING"}) {
      const auto v = fleet_.get_json(std::string("/runs?limit=200&status=") + status);
      if (!v || !v->is_array()) continue;
      for (const auto& r : v->as_array()) {
        if (const auto* id = r.as_object().if_contains("run_id");
            id != nullptr && id->is_string()) {
          out.emplace_back(id->as_string());
        }
      }
    }
    return out;
  }

  // Polls the runs until each is terminal; how long that took from `from`
  // (-1 at the deadline).
  double wait_terminal(std::vector<std::string> ids, Clock::time_point from,
                       std::chrono::seconds deadline = 180s) {
    if (ids.empty()) return 0;
    while (!ids.empty()) {
      std::erase_if(ids, [&](const std::string& id) {
        const auto v = fleet_.get_json("/runs/" + id);
        if (!v || !v->is_object()) return false;
        const auto* s = v->as_object().if_contains("status");
        return s != nullptr && s->is_string() && terminal_status(s->as_string());
      });
      if (ids.empty()) break;
      if (Clock::now() - from > deadline) return -1;
      std::this_thread::sleep_for(50ms);  // polling records, with a deadline
    }
    return ms_since(from);
  }

  // A run submitted at the fault's start: how long until it ended.
  std::thread probe(const std::string& name, Clock::time_point t0, FaultReport& f) {
    return std::thread([this, name, t0, &f] {
      const auto id = fleet_.submit("probe-" + name, "chaos", {}, probe_gateway_, 120s);
      if (!id) {
        problem("probe " + name + ": no gateway accepted it in 120 s");
        return;
      }
      {
        std::lock_guard lock(mutex_);
        ++report_.submitted;
        ++report_.accepted;
        accepted_.push_back(*id);
      }
      f.probe_ms = wait_terminal({*id}, t0);
    });
  }

  void wait_until(double fraction) {
    std::this_thread::sleep_until(
        start_ + std::chrono::duration_cast<Clock::duration>(options_.span * fraction));
  }

  void make_faults() {
    const double step = 0.17;
    wait_until(0.08);
    nats_fault("kill9", "kill -9");
    wait_until(0.08 + step);
    worker_fault();
    wait_until(0.08 + 2 * step);
    gateway_fault();
    wait_until(0.08 + 3 * step);
    nats_fault("pause", "SIGSTOP");
    wait_until(0.08 + 4 * step);
    worker_fault();
  }

  // The node leading PYOCO_WORK (the worst one to lose), killed and
  // restarted after 3 s, or paused for longer than the AckWait.
  void nats_fault(const std::string& kind, const std::string& what) {
    // Asked again for a while: a busy cluster may not answer at once.
    int node = -1;
    for (const auto until = Clock::now() + 5s; node < 0 && Clock::now() < until;) {
      node = fleet_.nats().index_of(stream_leader(fleet_.nats().url_list(), "PYOCO_WORK"));
      if (node < 0) std::this_thread::sleep_for(100ms);  // polling, with a deadline
    }
    FaultReport f;
    if (node < 0) {
      node = 0;  // a node all the same, if not the worst one
      f.fault = what + " NATS node " + fleet_.nats().name(node) + " (leader of PYOCO_WORK unknown)";
    } else {
      f.fault = what + " NATS node " + fleet_.nats().name(node) + " (leader of PYOCO_WORK)";
    }
    const auto stranded = in_flight();
    f.stranded = static_cast<int>(stranded.size());
    const auto t0 = Clock::now();
    f.at_s = std::chrono::duration<double>(t0 - start_).count();
    say(f.fault);
    std::thread p;
    if (kind == "kill9") {
      fleet_.nats().kill9(node);
      p = probe(kind + "-" + std::to_string(report_.faults.size()), t0, f);
      std::this_thread::sleep_for(3s);
      fleet_.nats().start(node);
    } else {
      fleet_.nats().pause(node);
      p = probe(kind + "-" + std::to_string(report_.faults.size()), t0, f);
      std::this_thread::sleep_for(fleet_.options().ack_wait + 2s);
      fleet_.nats().resume(node);
    }
    f.lasted_s = ms_since(t0) / 1000;
    f.stranded_ms = wait_terminal(stranded, t0);
    p.join();
    finish(f);
  }

  // A random worker killed with what it was running, restarted after 2 s.
  void worker_fault() {
    std::vector<int> up;
    for (int i = 0; i < fleet_.workers(); ++i) {
      if (fleet_.worker_running(i)) up.push_back(i);
    }
    const int w = up.at(std::uniform_int_distribution<std::size_t>(0, up.size() - 1)(rng_));
    const std::string wid = "w" + std::to_string(w + 1);
    std::vector<std::string> running;
    if (const auto v = fleet_.get_json("/workers"); v && v->is_array()) {
      for (const auto& entry : v->as_array()) {
        const auto& o = entry.as_object();
        if (o.at("worker_id").as_string() != wid) continue;
        for (const auto& r : o.at("running").as_array()) running.emplace_back(r.as_string());
      }
    }
    FaultReport f;
    f.fault = "kill -9 worker " + wid;
    f.stranded = static_cast<int>(running.size());
    const auto t0 = Clock::now();
    f.at_s = std::chrono::duration<double>(t0 - start_).count();
    say(f.fault + " (running " + std::to_string(running.size()) + ")");
    fleet_.kill9_worker(w);
    std::thread p = probe("worker-" + std::to_string(report_.faults.size()), t0, f);
    std::this_thread::sleep_for(2s);
    fleet_.start_worker(w);
    f.lasted_s = ms_since(t0) / 1000;
    f.stranded_ms = wait_terminal(running, t0);
    p.join();
    finish(f);
  }

  // A gateway stopped (SIGTERM, as a restart does) and started again; what
  // it had counted is read off its last line.
  void gateway_fault() {
    const int g = 1;
    FaultReport f;
    f.fault = "restart gateway " + std::to_string(g + 1) + " (SIGTERM, start)";
    const auto stranded = in_flight();
    f.stranded = static_cast<int>(stranded.size());
    const auto t0 = Clock::now();
    f.at_s = std::chrono::duration<double>(t0 - start_).count();
    say(f.fault);
    const std::string err = fleet_.stop_gateway(g);
    const auto at = err.rfind("runs_total=");
    if (at == std::string::npos) {
      problem("the stopped gateway did not say what it counted: " +
              err.substr(err.size() > 2000 ? err.size() - 2000 : 0));
    } else {
      counted_by_stopped_ += std::atof(err.c_str() + at + 11);
    }
    probe_gateway_ = g;  // the probe asks the restarted one first
    std::thread p = probe("gateway-" + std::to_string(report_.faults.size()), t0, f);
    fleet_.start_gateway(g);
    f.lasted_s = ms_since(t0) / 1000;
    f.stranded_ms = wait_terminal(stranded, t0);
    p.join();
    probe_gateway_ = 0;
    finish(f);
  }

  void finish(FaultReport& f) {
    char line[200];
    std::snprintf(line, sizeof line,
                  "  undone after %.1f s; a run submitted then ended after %.0f ms; the %d in "
                  "flight all ended after %.0f ms",
                  f.lasted_s, f.probe_ms, f.stranded, f.stranded_ms);
    say(line);
    if (f.probe_ms < 0) problem(f.fault + ": the run submitted at the fault never ended");
    if (f.stranded_ms < 0) problem(f.fault + ": runs in flight at the fault never ended");
    report_.faults.push_back(f);
  }

  // Every accepted run: one terminal state, read from its record.
  void check_runs() {
    const double ms = wait_terminal(accepted_, Clock::now());
    if (ms < 0) say("some runs did not end within 180 s");
    for (const auto& id : accepted_) {
      const auto v = fleet_.get_json("/runs/" + id);
      const auto* o = v && v->is_object() ? &v->as_object() : nullptr;
      const auto* s = o != nullptr ? o->if_contains("status") : nullptr;
      if (s == nullptr || !s->is_string() || !terminal_status(s->as_string())) {
        ++report_.not_terminal;
        problem("run " + id + " has no terminal state: " + (v ? json::serialize(*v) : "no record"));
        continue;
      }
      const std::string status(s->as_string());
      ++report_.statuses[status];
      status_of_[id] = status;
      if (const auto* a = o->if_contains("attempt");
          a != nullptr && a->is_int64() && a->as_int64() > 1) {
        ++report_.redelivered_runs;
      }
    }
    std::string line = "records:";
    for (const auto& [s, n] : report_.statuses) line += " " + s + " " + std::to_string(n);
    say(line + ", " + std::to_string(report_.redelivered_runs) + " needed a second attempt");
  }

  // PYOCO_EVENTS, read whole in stream order: one RunEnd per run, no task
  // started after it, its status the record's.
  void check_events() {
    const auto events_from = Clock::now();
    struct Seen {
      int run_ends = 0;
      std::string end_status;
      double ended_at = 0;  // the RunEnd's, epoch seconds
      int started_after_end = 0;
      int stored_late = 0;       // started before the end, stored after it
      std::string end_of, late;  // the RunEnd, and the first task started after it
    };
    std::map<std::string, Seen> runs;
    cluster::Connection nats({.servers = fleet_.nats().url_list()});
    // A read cut short (a replica still catching up stops the push for a
    // moment) is read again whole, three times at most.
    const auto fold = [&](const json::object& e) {
      const auto* id = e.if_contains("run_id");
      const auto* kind = e.if_contains("kind");
      if (id == nullptr || kind == nullptr || !id->is_string() || !kind->is_string()) return;
      Seen& s = runs[std::string(id->as_string())];
      if (kind->as_string() == "run_end") {
        ++s.run_ends;
        if (const auto* st = e.if_contains("status"); st != nullptr && st->is_string()) {
          s.end_status = st->as_string();
        }
        s.end_of = json::serialize(e);
        if (const auto* at = e.if_contains("ended_at"); at != nullptr && at->is_number()) {
          s.ended_at = at->to_number<double>();
        }
      } else if (kind->as_string() == "node_start" && s.run_ends > 0) {
        // Stream order is not when it happened: a superseded attempt's
        // events, held up with its NATS server (paused), are stored when
        // it is back, after the next attempt's end. Judged by its time
        // (every process here shares one clock).
        const auto* ts = e.if_contains("ts");
        const double at = ts != nullptr && ts->is_string() ? iso_seconds(ts->as_string()) : 0;
        if (at > 0 && s.ended_at > 0 && at < s.ended_at) {
          ++s.stored_late;
        } else if (++s.started_after_end == 1) {
          s.late = json::serialize(e);
        }
      }
    };
    // A run's RunEnd is published once its record is terminal, so it may
    // follow the record by a moment (or by an AckWait, when the worker died
    // in between and the next delivery publishes it): read again until
    // every run has one, for 30 s at most.
    const auto until = Clock::now() + 30s;
    auto every_run_ended = [&] {
      return std::all_of(accepted_.begin(), accepted_.end(), [&](const std::string& id) {
        const auto it = runs.find(id);
        return it != runs.end() && it->second.run_ends > 0;
      });
    };
    const auto each = [&](const cluster::StoredEvent& e) {
      fold(*e.event);
      return true;
    };
    bool whole = false;
    for (int cut_short = 0;;) {
      runs.clear();
      whole = cluster::read_events(nats, "pyoco.ev.>", 0, each);
      if (!whole && ++cut_short < 3) continue;
      if (!whole || every_run_ended() || Clock::now() > until) break;
      std::this_thread::sleep_for(500ms);  // the last RunEnds on their way, with a deadline
    }
    if (!whole) problem("PYOCO_EVENTS could not be read whole");
    say(std::string("events read ") + (every_run_ended() ? "with" : "WITHOUT") +
        " a RunEnd for every run, " + std::to_string(ms_since(events_from) / 1000) +
        " s after every record was terminal");
    report_.runs_in_stream = static_cast<int>(runs.size());
    for (const auto& id : accepted_) {
      const Seen& s = runs[id];
      report_.stored_late += s.stored_late;
      if (s.run_ends != 1) {
        ++report_.run_end_not_once;
        problem("run " + id + " has " + std::to_string(s.run_ends) + " RunEnds");
      }
      if (s.started_after_end > 0) {
        ++report_.ran_after_end;
        // Which attempt, and when (a late publish or a late start).
        problem("run " + id + " started " + std::to_string(s.started_after_end) +
                " task(s) after its RunEnd " + s.end_of + "; the first: " + s.late);
      }
      if (const auto it = status_of_.find(id);
          it != status_of_.end() && s.run_ends > 0 && it->second != s.end_status) {
        ++report_.status_mismatch;
        problem("run " + id + ": record " + it->second + ", RunEnd " + s.end_status);
      }
    }
    for (const auto& [id, s] : runs) {
      if (std::find(accepted_.begin(), accepted_.end(), id) == accepted_.end()) {
        problem("run " + id + " has events but no client was told it was accepted");
      }
    }
    say("events: " + std::to_string(runs.size()) + " runs in PYOCO_EVENTS, " +
        std::to_string(report_.run_end_not_once) + " without exactly one RunEnd, " +
        std::to_string(report_.ran_after_end) + " ran a task after their end, " +
        std::to_string(report_.stored_late) +
        " task starts stored after their run's end but stamped before it");
  }

  // The gateways' pyoco_runs_total (plus what the restarted one counted
  // before it stopped) against the runs: the feeds are asynchronous, so
  // they are given a while to catch up.
  void check_metrics() {
    const double expected = static_cast<double>(report_.accepted);
    const auto until = Clock::now() + 30s;
    double total = -1;
    do {
      total = counted_by_stopped_;
      for (int g = 0; g < fleet_.gateways(); ++g) {
        total += metric_value(fleet_.metrics(g), "pyoco_runs_total");
      }
      if (total == expected) break;
      std::this_thread::sleep_for(200ms);  // the feeds catching up, with a deadline
    } while (Clock::now() < until);
    report_.metrics_runs_total = total;
    if (total != expected) {
      problem("/metrics: pyoco_runs_total sums to " + std::to_string(total) + " for " +
              std::to_string(report_.accepted) + " runs");
    }
    say("metrics: pyoco_runs_total over the gateways = " +
        std::to_string(static_cast<long>(total)) + " (the restarted gateway's " +
        std::to_string(static_cast<long>(counted_by_stopped_)) + " before it stopped included)");
  }

  ChaosOptions options_;
  std::mt19937 rng_;
  Fleet fleet_;
  Clock::time_point start_;
  std::atomic<int> next_run_{0};
  std::atomic<int> probe_gateway_{0};
  std::mutex mutex_;
  std::vector<std::string> accepted_;
  std::map<std::string, std::string> status_of_;
  double counted_by_stopped_ = 0;
  ChaosReport report_;
};

}  // namespace

bool ChaosReport::passed() const {
  if (accepted != submitted || not_terminal != 0 || run_end_not_once != 0 || ran_after_end != 0 ||
      status_mismatch != 0 || metrics_runs_total != accepted || !problems.empty()) {
    return false;
  }
  return std::all_of(faults.begin(), faults.end(),
                     [](const FaultReport& f) { return f.probe_ms >= 0 && f.stranded_ms >= 0; });
}

json::object ChaosReport::to_json() const {
  json::array fs;
  for (const auto& f : faults) {
    fs.push_back({{"fault", f.fault},
                  {"at_s", f.at_s},
                  {"lasted_s", f.lasted_s},
                  {"probe_ms", f.probe_ms},
                  {"stranded", f.stranded},
                  {"stranded_ms", f.stranded_ms}});
  }
  json::object st;
  for (const auto& [s, n] : statuses) st[s] = n;
  json::array ps;
  for (const auto& p : problems) ps.emplace_back(p);
  return {{"passed", passed()},
          {"submitted", submitted},
          {"accepted", accepted},
          {"statuses", std::move(st)},
          {"not_terminal", not_terminal},
          {"run_end_not_once", run_end_not_once},
          {"ran_after_end", ran_after_end},
          {"stored_late", stored_late},
          {"status_mismatch", status_mismatch},
          {"runs_in_stream", runs_in_stream},
          {"metrics_runs_total", metrics_runs_total},
          {"redelivered_runs", redelivered_runs},
          {"faults", std::move(fs)},
          {"problems", std::move(ps)},
          {"seconds", seconds}};
}

ChaosReport run_chaos(const ChaosOptions& options) { return Chaos(options).run(); }

}  // namespace pyoco::chaos
