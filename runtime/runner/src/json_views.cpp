#include <pyoco/core/value.hpp>
#include <pyoco/runner/json_views.hpp>
#include <pyoco/trace/sinks.hpp>

#include <cmath>
#include <ostream>
#include <string>
#include <unordered_map>

namespace pyoco::runner {

namespace json = boost::json;
using store::Clock;

namespace {

bool unset(Clock::time_point t) { return t == Clock::time_point{}; }

std::string utc_timestamp(Clock::time_point t) { return unset(t) ? "" : trace::utc_timestamp(t); }

json::value utc_or_null(Clock::time_point t) {
  return unset(t) ? json::value(nullptr) : json::value(utc_timestamp(t));
}

// Milliseconds to the microsecond.
double ms(double v) { return std::round(v * 1000) / 1000; }

// The params as recorded: JSON object text (kept as text if it is not JSON).
json::value params_json(const std::string& text) {
  boost::system::error_code ec;
  json::value v = core::parse_json(text, ec);
  return ec ? json::value(text) : v;
}

json::array strings_json(const std::vector<std::string>& items) {
  json::array out;
  for (const auto& s : items) out.push_back(json::string(s));
  return out;
}

json::array io_json(const std::vector<plugins::IoSpec>& ios) {
  json::array out;
  for (const auto& io : ios) {
    out.push_back(json::object{{"name", io.name},
                               {"type", io.type},
                               {"required", io.required},
                               {"description", io.description}});
  }
  return out;
}

}  // namespace

// ---- runs ----

json::object to_json(const store::RunRecord& r) {
  return json::object{
      {"run_id", r.id},
      {"flow", r.flow},
      {"flow_file", r.flow_file},
      {"status", core::to_string(r.status)},
      {"reason", r.reason},
      {"started", utc_timestamp(r.started)},
      {"ended", utc_or_null(r.ended)},
      {"duration_ms", unset(r.ended) ? json::value(nullptr) : json::value(ms(r.duration_ms))},
      {"host", r.host},
      {"pid", r.pid},
      {"cancel_requested", r.cancel_requested},
      {"params", params_json(r.params)},
      {"plugins", params_json(r.plugins)}};
}

json::value output_json(const store::OutputRecord& output) {
  if (!output.dropped.empty()) return nullptr;
  boost::system::error_code ec;
  json::value v = core::parse_json(output.json, ec);
  return ec ? json::value(nullptr) : v;
}

namespace {

// A task of `runs show --json`, its kept output (if any) whole.
class ShownTasks {
 public:
  explicit ShownTasks(const std::vector<store::OutputRecord>& outputs) {
    for (const auto& o : outputs) by_node_[o.node] = &o;
  }
  json::object operator()(const TaskRecord& task) const {
    json::object t = to_json(task);
    if (auto it = by_node_.find(task.node); it != by_node_.end()) {
      t["output"] = output_json(*it->second);
      if (!it->second->dropped.empty()) {
        t["output_bytes"] = it->second->bytes;
        t["output_dropped"] = it->second->dropped;
      }
    }
    return t;
  }

 private:
  std::unordered_map<std::string_view, const store::OutputRecord*> by_node_;
};

// As `pyoco ... --json` prints a value.
std::string json_text(const json::value& v) { return core::to_json_text(core::from_json(v)); }

}  // namespace

json::object to_json(const store::RunRecord& run, const std::vector<TaskRecord>& tasks,
                     const std::vector<store::OutputRecord>& outputs) {
  const ShownTasks shown(outputs);
  json::object out = to_json(run);
  json::array ts;
  for (const TaskRecord& task : tasks) ts.push_back(shown(task));
  out["tasks"] = std::move(ts);
  return out;
}

void write_json(std::ostream& out, const store::RunRecord& run,
                const std::vector<TaskRecord>& tasks,
                const std::vector<store::OutputRecord>& outputs) {
  const ShownTasks shown(outputs);
  // The run's object without its closing brace, then "tasks" (its last
  // key, as to_json() makes it) one task at a time.
  const json::object head = to_json(run);
  std::string text = json_text(head);
  text.pop_back();
  out << text << (head.empty() ? "" : ",") << "\"tasks\":[";
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    out << (i == 0 ? "" : ",") << json_text(shown(tasks[i]));
  }
  out << "]}";
}

json::object to_json(const core::ArtifactRecord& a) {
  return json::object{{"name", a.name},
                      {"path", a.path},
                      {"size", a.size},
                      {"sha256", a.sha256},
                      {"media_type", a.media_type}};
}

json::object to_json(const TaskRecord& t) {
  json::array artifacts;
  for (const auto& a : t.artifacts) artifacts.push_back(to_json(a));
  return json::object{{"node", t.node},
                      {"task", t.task},
                      {"state", core::to_string(t.state)},
                      {"attempts", t.attempts},
                      {"started", utc_timestamp(t.started)},
                      {"ended", utc_timestamp(t.ended)},
                      {"duration_ms", ms(t.duration_ms)},
                      {"error", t.error},
                      {"output", nullptr},
                      {"output_summary", t.output_summary},
                      {"artifacts", std::move(artifacts)},
                      {"progress", t.progress < 0 ? json::value(nullptr) : json::value(t.progress)},
                      {"heartbeat", t.heartbeat},
                      {"heartbeat_at", utc_or_null(t.heartbeat_at)}};
}

json::array artifacts_json(const std::vector<TaskRecord>& tasks) {
  json::array out;
  for (const auto& t : tasks) {
    for (const auto& a : t.artifacts) {
      json::object artifact = to_json(a);
      artifact["node"] = t.node;
      out.push_back(std::move(artifact));
    }
  }
  return out;
}

// ---- flows ----

json::object to_json(const core::Diagnostic& d) {
  return json::object{
      {"severity", d.severity == core::Diagnostic::Severity::Error ? "error" : "warning"},
      {"file", d.where.file},
      {"line", d.where.line},
      {"column", d.where.column},
      {"message", d.message}};
}

// ---- plugins ----

json::object to_json(const plugins::TaskManifest& t, Detail detail) {
  json::object o{{"name", t.name}, {"summary", t.summary}};
  if (detail == Detail::Full) {
    o["usage"] = t.usage;
    o["tags"] = strings_json(t.tags);
    o["inputs"] = io_json(t.inputs);
    o["outputs"] = io_json(t.outputs);
  }
  return o;
}

json::object to_json(const plugins::PluginEntry& p, Detail detail) {
  const plugins::Manifest& m = p.manifest;
  json::array tasks;
  for (const auto& t : m.tasks) tasks.push_back(to_json(t, detail));
  json::object o{{"name", m.name},
                 {"version", m.version},
                 {"abi", m.abi},
                 {"sdk", m.sdk},
                 {"status", m.status},
                 {"summary", m.summary},
                 {"path", m.dir.string()},
                 {"library", m.library},
                 {"shadowed_by", p.shadowed_by ? json::value(p.shadowed_by->string()) : nullptr},
                 {"tasks", std::move(tasks)}};
  if (detail == Detail::Full) {
    o["description"] = m.description;
    o["authors"] = strings_json(m.authors);
    o["license"] = m.license;
    o["homepage"] = m.homepage;
    o["platform"] = json::object{{"os", m.platform_os}, {"arch", m.platform_arch}};
    o["manifest"] = m.file.string();
  }
  return o;
}

json::object plugins_json(const plugins::Catalog& catalog, Detail detail) {
  json::array search_path, found, problems;
  for (const auto& dir : catalog.search_path()) search_path.push_back(json::string(dir.string()));
  for (const auto& p : catalog.plugins()) found.push_back(to_json(p, detail));
  for (const auto& p : catalog.problems()) {
    problems.push_back(
        json::object{{"file", p.file().string()}, {"line", p.line()}, {"message", p.what()}});
  }
  return json::object{{"search_path", std::move(search_path)},
                      {"plugins", std::move(found)},
                      {"problems", std::move(problems)}};
}

json::object tasks_json(const plugins::Catalog& catalog) {
  json::array tasks;
  for (const auto& p : catalog.plugins()) {
    if (p.shadowed_by) continue;
    for (const auto& t : p.manifest.tasks) {
      json::object task = to_json(t, Detail::Full);
      task["name"] = p.manifest.name + "/" + t.name;
      tasks.push_back(std::move(task));
    }
  }
  return json::object{{"tasks", std::move(tasks)}};
}

json::object to_json(const plugins::PluginLint& r) {
  json::array findings;
  for (const auto& f : r.findings) {
    findings.push_back(json::object{{"rule", f.rule},
                                    {"severity", plugins::to_string(f.severity)},
                                    {"file", f.file.string()},
                                    {"line", f.line},
                                    {"message", f.message},
                                    {"hint", plugins::lint_rule(f.rule).hint}});
  }
  return json::object{{"name", r.name},
                      {"version", r.version},
                      {"path", r.dir.string()},
                      {"findings", std::move(findings)}};
}

}  // namespace pyoco::runner
