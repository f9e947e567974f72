// The tasks a dead owner left started. A run ended by another process (the
// next worker, for a cancel asked while its owner was dead; the reaper)
// reads the run's node events for tasks that started and never ended, ends
// them in its record when the owner saved no tasks there (it died before
// its first progress write), and publishes their ends, so that the trace
// and the record show every task that started as ended.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/run_records.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::cluster {

struct OpenNode {
  std::string node;
  std::string task;
  std::int64_t attempt = 0;      // the node's own try
  std::int64_t run_attempt = 0;  // the run's delivery that started it
};

// Nodes whose last event on PYOCO_EVENTS is their start (or a heartbeat),
// in the order they started. Empty when NATS cannot be asked or stops
// answering before the end (a node whose end was not read would be ended
// twice): the run is ended all the same.
std::vector<OpenNode> open_nodes(Connection& nats, const std::string& run_id);

// A record whose owner saved no tasks: each open node in `tasks` as
// `state`, counted in `task_counts`. A record with tasks is left alone
// (end_unfinished_tasks ends those).
void record_open_nodes(boost::json::object& snapshot, const std::vector<OpenNode>& open,
                       std::string_view state);

// Each open node's end, as its owner would have published it before the
// run's: node_cancelled (`state` CANCELLED) or node_error, saying `why`.
// Message id "<run_id>.ended.<node>": an end retried stores one. Throws
// NatsError.
void publish_open_node_ends(Connection& nats, const RunRecord& ended,
                            const std::vector<OpenNode>& open, std::string_view state,
                            const std::string& why);

}  // namespace pyoco::cluster
