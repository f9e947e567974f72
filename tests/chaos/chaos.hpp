// Chaos on a whole cluster (docs/reliability.md): runs submitted at a steady
// rate through two gateways to four workers on a three-node JetStream
// cluster (every stream and bucket R3) while faults are made one after
// another — the work stream's leader killed (SIGKILL) and brought back,
// workers killed, a gateway restarted, a NATS node paused (SIGSTOP) for
// longer than the AckWait. Afterwards every accepted run must have exactly
// one terminal state and one RunEnd, none may have started a task after its
// end, and the gateways' /metrics counters must equal the runs.
#pragma once

#include <boost/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace pyoco::chaos {

struct ChaosOptions {
  int runs = 1000;
  // Submissions are spread over this long, so that every fault falls amid
  // them (the faults take most of it).
  std::chrono::seconds span{std::chrono::seconds(60)};
  int submitters = 4;  // concurrent clients
  unsigned seed = 1;
  // Called with each step's line as it happens (progress on a terminal).
  void (*progress)(const std::string& line) = nullptr;
};

struct FaultReport {
  std::string fault;    // "kill -9 the PYOCO_WORK leader n2", ...
  double at_s = 0;      // since the first submission
  double lasted_s = 0;  // until the fault was undone (node back, worker restarted, ...)
  // From the fault until a run submitted at that moment ended COMPLETED,
  // and until every run the fault caught in flight had ended (-1: never).
  double probe_ms = -1;
  double stranded_ms = -1;
  int stranded = 0;  // runs in flight on what the fault hit
};

struct ChaosReport {
  int submitted = 0;                    // runs the clients asked for
  int accepted = 0;                     // ...that a gateway accepted (2xx)
  std::map<std::string, int> statuses;  // terminal states of the accepted runs
  int not_terminal = 0;                 // accepted runs with no terminal state at the deadline
  int run_end_not_once = 0;             // runs with 0 or 2+ RunEnds in PYOCO_EVENTS
  int ran_after_end = 0;                // runs with a task started after their RunEnd
  int stored_late = 0;             // task starts stored after their run's RunEnd, stamped before it
  int status_mismatch = 0;         // record's status differs from its RunEnd's
  int runs_in_stream = 0;          // distinct runs with events
  double metrics_runs_total = -1;  // sum over gateways, stopped instances included
  int redelivered_runs = 0;        // runs that needed more than one attempt
  std::vector<FaultReport> faults;
  std::vector<std::string> problems;  // the first ones, each naming a run
  double seconds = 0;

  bool passed() const;
  boost::json::object to_json() const;
};

ChaosReport run_chaos(const ChaosOptions& options);

}  // namespace pyoco::chaos
