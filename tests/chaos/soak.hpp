// A soak run (docs/reliability.md): a steady load of submits and reads
// through the gateways to the workers for MINUTES, sampled every interval —
// each process's RSS and open descriptors, the work consumer's lag, the
// latency of runs from submit to end and of submits — to show what grows.
#pragma once

#include <boost/json.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace pyoco::chaos {

struct SoakOptions {
  std::chrono::seconds duration{std::chrono::minutes(10)};
  std::chrono::seconds interval{std::chrono::seconds(30)};
  double runs_per_second = 20;
  double reads_per_second = 20;  // GET /runs/{id} and GET /runs?limit=50, in turn
  void (*progress)(const std::string& line) = nullptr;
};

struct SoakSample {
  double at_s = 0;
  struct Process {
    std::string name;  // n1, gateway1, w1, ...
    double rss_mib = 0;
    int fds = 0;
  };
  std::vector<Process> processes;
  std::uint64_t lag = 0;  // jobs not yet delivered + delivered, not yet acked
  int runs_ended = 0;     // in this interval
  double run_p50_ms = 0, run_p95_ms = 0, run_p99_ms = 0;  // submit -> RunEnd seen
  double submit_p50_ms = 0, submit_p99_ms = 0;            // POST /runs answered
  int errors = 0;  // failed submits and reads in this interval
};

struct SoakReport {
  std::vector<SoakSample> samples;
  int submitted = 0;
  int ended = 0;  // of the submitted, RunEnd seen by the end
  // Per process: RSS and descriptors at the end against the first sample
  // after warm-up (the second).
  struct Growth {
    std::string name;
    double rss_from_mib = 0, rss_to_mib = 0;
    int fds_from = 0, fds_to = 0;
    bool grew = false;
    // nats-server's memory holds its streams' recent blocks: it grows with
    // what the streams keep, which is NATS's to bound (max_mem, limits),
    // not a leak of ours. Shown, not judged.
    bool judged = true;
  };
  std::vector<Growth> growth;
  bool passed() const;
  boost::json::object to_json() const;
};

SoakReport run_soak(const SoakOptions& options);

}  // namespace pyoco::chaos
