#include <pyoco/core/value.hpp>
#include <pyoco/trace/event.hpp>
#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>

namespace pyoco::trace {

Event Event::from(const RunEvent& e) {
  Event o;
  o.kind = e.kind;
  o.seq = e.seq;
  o.time = e.time;
  o.run_id = e.run_id;
  o.flow = e.flow;
  o.node = e.node;
  o.task = e.task;
  o.record = e.record;
  o.attempt = e.attempt;
  o.max_attempts = e.max_attempts;
  o.duration_ms = e.duration_ms;
  o.delay_ms = e.delay_ms;
  o.progress = e.progress;
  o.message = e.message;
  o.level = e.level;
  o.status = e.status;
  o.task_state = e.task_state;
  o.output = e.output;
  if (e.value != nullptr) o.value = *e.value;
  o.artifacts.assign(e.artifacts.begin(), e.artifacts.end());
  o.planned.reserve(e.planned.size());
  for (const PlannedNode& p : e.planned) {
    o.planned.push_back({std::string(p.node), std::string(p.task), p.record, std::string(p.after)});
  }
  o.flow_file = e.flow_file;
  o.params = e.params;
  if (e.params_value != nullptr) o.params_value = *e.params_value;
  o.plugins = e.plugins;
  return o;
}

RunEvent Event::view(std::vector<PlannedNode>& planned_views) const {
  planned_views.clear();
  for (const Planned& p : planned) planned_views.push_back({p.node, p.task, p.record, p.after});
  RunEvent e{};
  e.kind = kind;
  e.seq = seq;
  e.time = time;
  e.run_id = run_id;
  e.flow = flow;
  e.node = node;
  e.task = task;
  e.record = record;
  e.attempt = attempt;
  e.max_attempts = max_attempts;
  e.duration_ms = duration_ms;
  e.delay_ms = delay_ms;
  e.progress = progress;
  e.message = message;
  e.level = level;
  e.status = status;
  e.task_state = task_state;
  e.output = output;
  e.value = kind == EventKind::NodeDone ? &value : nullptr;
  e.artifacts = artifacts;
  e.planned = planned_views;
  e.flow_file = flow_file;
  e.params = params;
  e.params_value = kind == EventKind::RunStart && !params_value.is_null() ? &params_value : nullptr;
  e.plugins = plugins;
  return e;
}

const char* to_string(EventKind k) {
  switch (k) {
    case EventKind::RunStart:
      return "run_start";
    case EventKind::NodeStart:
      return "node_start";
    case EventKind::NodeDone:
      return "node_done";
    case EventKind::NodeError:
      return "node_error";
    case EventKind::NodeRetry:
      return "node_retry";
    case EventKind::NodeSkipped:
      return "node_skipped";
    case EventKind::NodeCancelled:
      return "node_cancelled";
    case EventKind::Log:
      return "log";
    case EventKind::NodesPlanned:
      return "nodes_planned";
    case EventKind::RunCancelling:
      return "run_cancelling";
    case EventKind::RunEnd:
      return "run_end";
    case EventKind::Heartbeat:
      return "heartbeat";
  }
  return "?";
}

boost::json::object to_json(const Event& e) {
  namespace json = boost::json;
  json::object o;
  o["seq"] = e.seq;
  o["kind"] = to_string(e.kind);
  o["ts"] = utc_timestamp(e.time);
  o["run_id"] = e.run_id;
  o["flow"] = e.flow;
  const bool about_node = !e.node.empty();
  if (about_node) {
    o["node"] = e.node;
    o["task"] = e.task;
    o["record"] = e.record;
    o["attempt"] = e.attempt;
    o["task_state"] = core::to_string(e.task_state);
  }
  switch (e.kind) {
    case EventKind::RunStart: {
      if (!e.flow_file.empty()) o["flow_file"] = e.flow_file;
      json::error_code ec;
      json::value params = core::parse_json(e.params, ec);
      o["params"] = ec ? json::value(json::object()) : std::move(params);
      if (!e.plugins.empty()) {
        json::value plugins = core::parse_json(e.plugins, ec);
        if (!ec) o["plugins"] = std::move(plugins);
      }
      break;
    }
    case EventKind::NodeDone:
    case EventKind::NodeError:
    case EventKind::NodeCancelled: {
      o["duration_ms"] = e.duration_ms;
      if (!e.output.empty()) o["output"] = e.output;
      json::array artifacts;
      for (const auto& a : e.artifacts) {
        artifacts.push_back({{"name", a.name},
                             {"path", a.path},
                             {"size", a.size},
                             {"sha256", a.sha256},
                             {"media_type", a.media_type}});
      }
      if (!artifacts.empty()) o["artifacts"] = std::move(artifacts);
      break;
    }
    case EventKind::NodeRetry:
      o["max_attempts"] = e.max_attempts;
      o["delay_ms"] = e.delay_ms;
      break;
    case EventKind::Log:
      o["level"] = to_string(e.level);
      break;
    case EventKind::Heartbeat:
      if (e.progress >= 0) o["progress"] = e.progress;
      break;
    case EventKind::NodesPlanned: {
      json::array planned;
      for (const auto& p : e.planned) {
        json::array after;
        for (std::string_view rest = p.after; !rest.empty();) {
          const std::size_t comma = rest.find(',');
          after.emplace_back(rest.substr(0, comma));
          rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        }
        planned.push_back({{"node", p.node},
                           {"task", p.task},
                           {"record", p.record},
                           {"after", std::move(after)}});
      }
      o["planned"] = std::move(planned);
      break;
    }
    case EventKind::RunEnd:
    case EventKind::RunCancelling:
      o["status"] = core::to_string(e.status);
      break;
    default:
      break;
  }
  if (!e.message.empty()) o["message"] = e.message;
  return o;
}

std::optional<Event> event_from_json(const boost::json::object& o) {
  namespace json = boost::json;
  auto text = [&](const char* key) -> std::string {
    const json::value* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto number = [&](const char* key) -> double {
    const json::value* v = o.if_contains(key);
    return v != nullptr && v->is_number() ? v->to_number<double>() : 0.0;
  };
  const std::string kind = text("kind");
  Event e;
  bool known = false;
  for (int k = 0; k <= static_cast<int>(EventKind::Heartbeat); ++k) {
    if (kind == to_string(static_cast<EventKind>(k))) {
      e.kind = static_cast<EventKind>(k);
      known = true;
    }
  }
  if (!known) return std::nullopt;
  e.seq = static_cast<std::uint64_t>(number("seq"));
  e.run_id = text("run_id");
  e.flow = text("flow");
  e.node = text("node");
  e.task = text("task");
  e.attempt = static_cast<std::uint32_t>(number("attempt"));
  e.max_attempts = static_cast<std::uint32_t>(number("max_attempts"));
  e.duration_ms = number("duration_ms");
  e.delay_ms = number("delay_ms");
  e.message = text("message");
  e.output = text("output");
  e.time = std::chrono::system_clock::now();
  const std::string level = text("level");
  for (LogLevel l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error}) {
    if (level == to_string(l)) e.level = l;
  }
  const std::string status = text("status");
  for (int s = 0; s <= static_cast<int>(core::RunStatus::Cancelled); ++s) {
    if (status == core::to_string(static_cast<core::RunStatus>(s))) {
      e.status = static_cast<core::RunStatus>(s);
    }
  }
  return e;
}

}  // namespace pyoco::trace
