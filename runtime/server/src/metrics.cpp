#include <pyoco/version.h>
#include <pyoco/server/metrics.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <set>

namespace pyoco::server {

namespace {

// Seconds; a run or a task from a millisecond to an hour, a request from
// half a millisecond to ten seconds.
constexpr std::array<double, 17> kRunBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                             5,     10,   30,    60,   120, 300,  900, 3600};
constexpr std::array<double, 14> kHttpBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};

struct Histogram {
  std::vector<std::uint64_t> buckets;  // not cumulative; one past the last bound: +Inf
  double sum = 0;
  std::uint64_t count = 0;

  void observe(double v, const double* bounds, std::size_t n) {
    if (buckets.empty()) buckets.assign(n + 1, 0);
    std::size_t i = 0;
    while (i < n && v > bounds[i]) ++i;
    ++buckets[i];
    sum += v;
    ++count;
  }
};

// Label values seen so far, at most `limit`; later ones are "other".
class Bounded {
 public:
  explicit Bounded(std::size_t limit) : limit_(limit) {}
  // `v` is taken as a new value only when `may_add`; otherwise an unseen
  // value is "other".
  std::string fold(std::string_view v, bool may_add = true) {
    if (auto it = seen_.find(v); it != seen_.end()) return *it;
    if (!may_add || seen_.size() >= limit_) return "other";
    return *seen_.emplace(v).first;
  }

 private:
  std::size_t limit_;
  std::set<std::string, std::less<>> seen_;
};

std::string escape(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// The shortest text that reads back as `v` (0.1, not 0.10000000000000001:
// Prometheus matches `le` labels as text).
std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// `labels` is `k="v",...` (already escaped), or empty.
void sample(std::string& out, const std::string& name, const std::string& labels, double v) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += number(v);
  out += '\n';
}

template <std::size_t N>
void histogram(std::string& out, const char* name, const std::string& labels, const Histogram& h,
               const std::array<double, N>& bounds) {
  const std::string sep = labels.empty() ? "" : ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= N; ++i) {
    cumulative += h.buckets.empty() ? 0 : h.buckets[i];
    const std::string le = i < N ? number(bounds[i]) : "+Inf";
    sample(out, std::string(name) + "_bucket", labels + sep + "le=\"" + le + "\"",
           static_cast<double>(cumulative));
  }
  sample(out, std::string(name) + "_sum", labels, h.sum);
  sample(out, std::string(name) + "_count", labels, static_cast<double>(h.count));
}

}  // namespace

struct Metrics::State {
  explicit State(std::size_t limit) : flows(limit), tasks(limit), routes(limit) {}
  mutable std::mutex mutex;
  Bounded flows, tasks, routes;
  std::map<std::string, std::uint64_t> runs;  // by status
  std::map<std::string, Histogram> run_seconds;
  std::map<std::string, Histogram> task_seconds;
  std::map<std::pair<std::string, unsigned>, std::uint64_t> requests;
  std::map<std::string, Histogram> request_seconds;
};

Metrics::Metrics(std::size_t label_limit) : state_(std::make_unique<State>(label_limit)) {}
Metrics::~Metrics() = default;

std::map<std::string, std::uint64_t> Metrics::runs_ended() const {
  std::lock_guard lock(state_->mutex);
  return state_->runs;
}

void Metrics::run_ended(std::string_view status, std::string_view flow, double seconds) {
  std::lock_guard lock(state_->mutex);
  // The stream is anyone's who may publish to NATS: a status of ours, or "other".
  const bool known = status == "COMPLETED" || status == "FAILED" || status == "CANCELLED";
  ++state_->runs[known ? std::string(status) : "other"];
  if (seconds >= 0) {
    // A flow earns a series of its own by a run that completed, or was
    // cancelled after it started: anyone may submit made-up flow names,
    // which the workers fail at once, and those must not take the series
    // from the real flows.
    const bool real = status == "COMPLETED" || status == "CANCELLED";
    state_->run_seconds[state_->flows.fold(flow, real)].observe(seconds, kRunBuckets.data(),
                                                                kRunBuckets.size());
  }
}

void Metrics::task_done(std::string_view task, double seconds) {
  std::lock_guard lock(state_->mutex);
  state_->task_seconds[state_->tasks.fold(task)].observe(seconds, kRunBuckets.data(),
                                                         kRunBuckets.size());
}

void Metrics::http_request(std::string_view route, unsigned code, std::optional<double> seconds) {
  std::lock_guard lock(state_->mutex);
  const std::string r = state_->routes.fold(route);
  ++state_->requests[{r, code}];
  if (seconds) {
    state_->request_seconds[r].observe(*seconds, kHttpBuckets.data(), kHttpBuckets.size());
  }
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  std::lock_guard lock(state_->mutex);
  header(out, "pyoco_build_info", "gauge", "The pyoco that serves these metrics (always 1).");
  sample(out, "pyoco_build_info", "version=\"" PYOCO_VERSION_STRING "\"", 1);

  header(out, "pyoco_runs_total", "counter",
         "Runs ended, by status, counted from the event stream by the gateways together.");
  for (const char* status : {"COMPLETED", "FAILED", "CANCELLED"}) {  // present from the start
    const auto it = state_->runs.find(status);
    sample(out, "pyoco_runs_total", std::string("status=\"") + status + "\"",
           static_cast<double>(it == state_->runs.end() ? 0 : it->second));
  }
  if (const auto it = state_->runs.find("other"); it != state_->runs.end()) {
    sample(out, "pyoco_runs_total", "status=\"other\"", static_cast<double>(it->second));
  }

  header(out, "pyoco_run_duration_seconds", "histogram",
         "How long runs took from their start to their end, by flow.");
  for (const auto& [flow, h] : state_->run_seconds) {
    histogram(out, "pyoco_run_duration_seconds", "flow=\"" + escape(flow) + "\"", h, kRunBuckets);
  }
  header(out, "pyoco_task_duration_seconds", "histogram",
         "How long task bodies took, by task (plugin/task).");
  for (const auto& [task, h] : state_->task_seconds) {
    histogram(out, "pyoco_task_duration_seconds", "task=\"" + escape(task) + "\"", h, kRunBuckets);
  }

  header(out, "pyoco_runs_in_progress", "gauge",
         "Runs running or being cancelled, in the whole cluster.");
  sample(out, "pyoco_runs_in_progress", "", g.runs_in_progress);
  header(out, "pyoco_queue_pending", "gauge", "Jobs waiting for a worker, by tag.");
  for (const auto& [tag, n] : g.queue_pending) {
    sample(out, "pyoco_queue_pending", "tag=\"" + escape(tag) + "\"", n);
  }
  header(out, "pyoco_workers", "gauge", "Workers in the registry, by state.");
  for (const auto& [state, n] : g.workers) {
    sample(out, "pyoco_workers", "state=\"" + escape(state) + "\"", n);
  }
  header(out, "pyoco_dlq_messages", "gauge", "Dead letters in PYOCO_DLQ.");
  sample(out, "pyoco_dlq_messages", "", g.dlq_messages);

  header(out, "pyoco_http_requests_total", "counter",
         "Requests this gateway answered, by route and status code.");
  for (const auto& [key, n] : state_->requests) {
    sample(out, "pyoco_http_requests_total",
           "route=\"" + escape(key.first) + "\",code=\"" + std::to_string(key.second) + "\"",
           static_cast<double>(n));
  }
  header(out, "pyoco_http_request_duration_seconds", "histogram",
         "How long this gateway took to answer, by route.");
  for (const auto& [route, h] : state_->request_seconds) {
    histogram(out, "pyoco_http_request_duration_seconds", "route=\"" + escape(route) + "\"", h,
              kHttpBuckets);
  }
  return out;
}

}  // namespace pyoco::server
