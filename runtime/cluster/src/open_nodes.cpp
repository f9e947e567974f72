#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/open_nodes.hpp>
#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <unordered_map>

namespace pyoco::cluster {

namespace json = boost::json;

std::vector<OpenNode> open_nodes(Connection& nats, const std::string& run_id) {
  std::vector<OpenNode> started;                      // in the order they started
  std::unordered_map<std::string, std::size_t> open;  // node -> its place in `started`
  const bool whole =
      read_events(nats, "pyoco.ev." + run_id + ".node", 0, [&](const StoredEvent& e) {
        const json::object& ev = *e.event;
        const json::value* kind = ev.if_contains("kind");
        const json::value* node = ev.if_contains("node");
        if (kind == nullptr || !kind->is_string() || node == nullptr || !node->is_string()) {
          return true;
        }
        const std::string name(node->as_string());
        if (kind->as_string() == "heartbeat") return true;  // still started
        if (kind->as_string() != "node_start") {
          open.erase(name);  // done, failed, retried, skipped or cancelled
          return true;
        }
        OpenNode n{name, {}, 0};
        if (const json::value* t = ev.if_contains("task"); t && t->is_string())
          n.task = t->as_string();
        for (auto [key, into] :
             {std::pair{"attempt", &n.attempt}, {"run_attempt", &n.run_attempt}}) {
          if (const json::value* a = ev.if_contains(key); a && a->is_number()) {
            boost::system::error_code ec;
            *into = a->to_number<std::int64_t>(ec);
          }
        }
        if (const auto it = open.find(name); it != open.end()) {
          started[it->second] = std::move(n);  // a later try of the same node
        } else {
          open.emplace(name, started.size());
          started.push_back(std::move(n));
        }
        return true;
      });
  // Part of them read: a node whose end was not read would be ended twice.
  if (!whole) return {};
  // A node that ended and started again is in `started` twice: its last
  // place counts.
  std::vector<OpenNode> out;
  for (std::size_t i = 0; i < started.size(); ++i) {
    if (const auto it = open.find(started[i].node); it != open.end() && it->second == i) {
      out.push_back(std::move(started[i]));
    }
  }
  return out;
}

void record_open_nodes(json::object& snapshot, const std::vector<OpenNode>& open,
                       std::string_view state) {
  const json::value* tasks = snapshot.if_contains("tasks");
  if (open.empty() || (tasks != nullptr && tasks->is_object() && !tasks->as_object().empty())) {
    return;
  }
  json::object t;
  for (const OpenNode& n : open) t[n.node] = state;
  snapshot["tasks"] = std::move(t);
  snapshot["task_counts"] = json::object{{state, open.size()}};
  snapshot["tasks_omitted"] = 0;
}

void publish_open_node_ends(Connection& nats, const RunRecord& ended,
                            const std::vector<OpenNode>& open, std::string_view state,
                            const std::string& why) {
  const json::object& s = ended.snapshot;
  const std::string run_id(s.at("run_id").as_string());
  const std::string ts = trace::utc_timestamp(std::chrono::system_clock::now());
  for (const OpenNode& n : open) {
    json::object o{{"kind", state == "CANCELLED" ? "node_cancelled" : "node_error"},
                   {"run_id", run_id},
                   {"node", n.node},
                   {"task", n.task},
                   {"attempt", n.attempt},
                   {"task_state", state},
                   {"message", why},
                   {"ts", ts}};
    // The dead attempt's: its events are the ones left open.
    if (n.run_attempt > 0) o["run_attempt"] = n.run_attempt;
    publish_event_once(nats, run_id, "node", run_id + ".ended." + n.node, o);
  }
}

}  // namespace pyoco::cluster
