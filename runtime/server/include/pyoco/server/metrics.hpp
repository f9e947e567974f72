// A gateway's Prometheus metrics: counters and histograms fed by the event
// stream (runs ended, tasks done) and by the requests it serves, gauges read
// when scraped, rendered in the text exposition format (version 0.0.4).
// Label values are bounded: past `label_limit` distinct flows (or tasks,
// or routes) a new one is counted as "other", so no input can grow a
// scrape without bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pyoco::server {

class Metrics {
 public:
  explicit Metrics(std::size_t label_limit = 100);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A RunEnd: pyoco_runs_total{status} and, when `seconds` >= 0,
  // pyoco_run_duration_seconds{flow}.
  void run_ended(std::string_view status, std::string_view flow, double seconds);
  // A task's end: pyoco_task_duration_seconds{task} (the task, e.g. std/echo).
  void task_done(std::string_view task, double seconds);
  // A request served: pyoco_http_requests_total{route,code} and
  // pyoco_http_request_duration_seconds{route}; an event stream (which
  // lasts as long as what it follows) in the count only.
  void http_request(std::string_view route, unsigned code, std::optional<double> seconds);

  // Values the scrape reads from elsewhere (NATS, the registry, the index).
  struct Gauges {
    double runs_in_progress = 0;
    std::vector<std::pair<std::string, double>> queue_pending;  // by tag
    std::vector<std::pair<std::string, double>> workers;        // by state
    double dlq_messages = 0;
  };
  std::string render(const Gauges& gauges) const;

  // pyoco_runs_total's counts so far, by status.
  std::map<std::string, std::uint64_t> runs_ended() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace pyoco::server
