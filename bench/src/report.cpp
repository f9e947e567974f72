#include "report.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "stats.hpp"

namespace pyoco::bench {

namespace json = boost::json;

namespace {

// The targets, for this 2-core machine.
constexpr double kMaxNsPerTask = 1000;
constexpr double kMaxHistoryNs = 1500;  // over no listener
constexpr double kMaxCuteNs = 1000;     // over no listener
constexpr double kMaxRatio = 5;
constexpr double kMaxGrowth = 1.5;  // "flat": 100k within 1.5x of 1k
constexpr double kMaxStartupMs = 15;
constexpr double kMaxStartupMib = 12;
constexpr double kMaxList1000Ms = 100;

double num(const json::value& v) { return v.is_null() ? std::nan("") : v.to_number<double>(); }

std::string fmt(double v, int decimals = 0) {
  if (std::isnan(v)) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// "0.52 0.58 0.59 1/123 4567\n" -> "0.52, 0.58, 0.59"
std::string loadavg(const json::value& v) {
  std::istringstream in(json::value_to<std::string>(v));
  std::string a, b, c;
  in >> a >> b >> c;
  return a + ", " + b + ", " + c;
}

json::object target(const std::string& what, const std::string& limit, double measured,
                    const std::string& unit, bool met) {
  json::object t;
  t["target"] = what;
  t["limit"] = limit;
  t["measured"] = measured;
  t["unit"] = unit;
  t["met"] = met;
  return t;
}

}  // namespace

void summarize_results(json::object& r) {
  const json::array& engine = r.at("engine").as_array();
  const auto main_target = r.at("config").at("main_size").to_number<std::size_t>();

  json::array overhead;
  json::array targets;
  std::map<std::string, std::vector<const json::object*>> by_shape;
  for (const json::value& v : engine) {
    const json::object& c = v.as_object();
    by_shape[std::string(c.at("shape").as_string())].push_back(&c);
    if (c.at("target").to_number<std::size_t>() != main_target) continue;
    json::object row;
    row["shape"] = c.at("shape");
    row["label"] = c.at("label");
    row["tasks"] = c.at("tasks");
    row["pyoco_ns_per_task"] = c.at("pyoco").at("ns_per_task");
    row["start_ns_per_task"] = c.at("pyoco").at("start_ns_per_task");
    row["tbb_ns_per_task"] = c.at("tbb").at("ns_per_task");
    row["ratio"] = c.at("ratio");
    row["cute_ns_per_task"] =
        c.at("cute").is_null() ? json::value(nullptr) : c.at("cute").at("ns_per_task");
    row["store_ns_per_task"] =
        c.at("store").is_null() ? json::value(nullptr) : c.at("store").at("ns_per_task");
    const json::value* run = c.if_contains("pyoco_run");
    row["pyoco_run_ns_per_task"] =
        run == nullptr || run->is_null() ? json::value(nullptr) : run->at("ns_per_task");
    const std::string label(c.at("label").as_string());
    const double ns = num(c.at("pyoco").at("ns_per_task"));
    const double ratio = num(c.at("ratio"));
    targets.push_back(
        target(label + ": overhead", "<= 1000 ns/task", ns, "ns/task", ns <= kMaxNsPerTask));
    targets.push_back(target(label + ": pyoco/oneTBB", "<= 5x", ratio, "x", ratio <= kMaxRatio));
    if (!c.at("store").is_null()) {
      const double store = num(c.at("store").at("ns_per_task")) - ns;
      targets.push_back(target(label + ": SQLite history over no listener", "<= +1500 ns/task",
                               store, "ns/task", store <= kMaxHistoryNs));
      const double cute = num(c.at("cute").at("ns_per_task")) - ns;
      targets.push_back(target(label + ": cute trace over no listener", "<= +1000 ns/task", cute,
                               "ns/task", cute <= kMaxCuteNs));
    }
    overhead.push_back(std::move(row));
  }

  json::array scaling;
  for (const auto& [shape, cases] : by_shape) {
    json::object s;
    s["shape"] = shape;
    json::array points;
    std::vector<double> log_n, ns;
    for (const json::object* c : cases) {
      json::object p;
      p["label"] = c->at("label");
      p["tasks"] = c->at("tasks");
      p["ns_per_task"] = c->at("pyoco").at("ns_per_task");
      p["tbb_ns_per_task"] = c->at("tbb").at("ns_per_task");
      p["rss_bytes_per_task"] = c->at("rss_bytes_per_task");
      p["compile_ms"] = c->at("compile_ms");
      log_n.push_back(std::log10(num(c->at("tasks"))));
      ns.push_back(num(c->at("pyoco").at("ns_per_task")));
      points.push_back(std::move(p));
    }
    const double growth = ns.size() >= 2 ? ns.back() / ns.front() : 1.0;
    s["points"] = std::move(points);
    s["growth"] = growth;  // ns/task at the largest size over the smallest
    s["slope_ns_per_decade"] = slope(log_n, ns);
    if (cases.size() >= 2) {
      targets.push_back(target(shape + ": flat per-task cost, largest/smallest size", "<= 1.5x",
                               growth, "x", growth <= kMaxGrowth));
    }
    scaling.push_back(std::move(s));
  }

  const json::object& startup = r.at("startup").as_object();
  const double startup_ms = num(startup.at("wall_ms"));
  const double startup_mib = num(startup.at("peak_rss_mib"));
  targets.push_back(
      target("start-up wall time", "<= 15 ms", startup_ms, "ms", startup_ms <= kMaxStartupMs));
  targets.push_back(
      target("start-up peak RSS", "<= 12 MiB", startup_mib, "MiB", startup_mib <= kMaxStartupMib));
  for (const json::value& v : r.at("discovery").at("list").as_array()) {
    if (v.at("plugins").to_number<std::size_t>() != 1000) continue;
    const double ms = num(v.at("wall_ms"));
    targets.push_back(
        target("plugins list of 1000 plugins", "<= 100 ms", ms, "ms", ms <= kMaxList1000Ms));
  }

  r["overhead"] = std::move(overhead);
  r["scaling"] = std::move(scaling);
  r["targets"] = std::move(targets);
}

std::string render_markdown(const json::object& r) {
  std::ostringstream md;
  const json::object& m = r.at("machine").as_object();
  md << "# pyoco benchmark results\n\n"
     << "Written by `tools/bench.sh` (" << json::value_to<std::string>(r.at("mode")) << " mode) at "
     << json::value_to<std::string>(r.at("generated_at")) << ".\n\n"
     << "Machine: " << json::value_to<std::string>(m.at("cpu")) << ", "
     << m.at("nproc").to_number<int>() << " cores (nproc), " << fmt(num(m.at("memory_gib")), 1)
     << " GiB; " << json::value_to<std::string>(m.at("kernel")) << "; "
     << json::value_to<std::string>(m.at("compiler")) << ", "
     << json::value_to<std::string>(m.at("build_type"))
     << ". Engine jobs: " << r.at("config").at("jobs").to_number<int>()
     << ". Load average (1, 5, 15 min) at start " << loadavg(m.at("loadavg_at_start"))
     << ", at end " << loadavg(m.at("loadavg_at_end")) << ".\n\n";

  md << "## Engine overhead (trivial `bench/noop` tasks through the plugin ABI)\n\n"
     << "Median of " << r.at("config").at("reps").to_number<int>()
     << " runs; ns per task = wall time from start() until the run's handle is gone (its "
        "clean-up included) / tasks. `pyoco run` = what a user of the command pays: the cute "
        "trace and the SQLite history behind one event queue, both flushed. The other pyoco "
        "columns: no listener, the cute sink alone (behind an event queue), the history alone.\n\n"
     << "| shape | tasks | `pyoco run` ns/task | pyoco ns/task | of which in start() | oneTBB "
        "ns/task | pyoco/oneTBB | cute sink ns/task | SQLite store ns/task |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const json::value& v : r.at("overhead").as_array()) {
    const json::value* run = v.as_object().if_contains("pyoco_run_ns_per_task");
    md << "| " << json::value_to<std::string>(v.at("label")) << " | "
       << v.at("tasks").to_number<std::size_t>() << " | "
       << (run == nullptr || run->is_null() ? std::string("-") : fmt(num(*run))) << " | "
       << fmt(num(v.at("pyoco_ns_per_task"))) << " | " << fmt(num(v.at("start_ns_per_task")))
       << " | " << fmt(num(v.at("tbb_ns_per_task"))) << " | " << fmt(num(v.at("ratio")), 1)
       << "x | " << fmt(num(v.at("cute_ns_per_task"))) << " | "
       << fmt(num(v.at("store_ns_per_task"))) << " |\n";
  }

  md << "\n## Scaling\n\n"
     << "| shape | size | tasks | pyoco ns/task | oneTBB ns/task | compile ms | peak RSS "
        "bytes/task |\n"
     << "|---|---|---:|---:|---:|---:|---:|\n";
  for (const json::value& s : r.at("scaling").as_array()) {
    for (const json::value& p : s.at("points").as_array()) {
      md << "| " << json::value_to<std::string>(s.at("shape")) << " | "
         << json::value_to<std::string>(p.at("label")) << " | "
         << p.at("tasks").to_number<std::size_t>() << " | " << fmt(num(p.at("ns_per_task")))
         << " | " << fmt(num(p.at("tbb_ns_per_task"))) << " | " << fmt(num(p.at("compile_ms")), 1)
         << " | " << fmt(num(p.at("rss_bytes_per_task"))) << " |\n";
    }
  }
  md << "\n| shape | ns/task largest / smallest | slope (ns/task per 10x tasks) |\n"
     << "|---|---:|---:|\n";
  for (const json::value& s : r.at("scaling").as_array()) {
    md << "| " << json::value_to<std::string>(s.at("shape")) << " | " << fmt(num(s.at("growth")), 2)
       << "x | " << fmt(num(s.at("slope_ns_per_decade"))) << " |\n";
  }

  const json::object& st = r.at("startup").as_object();
  md << "\n## Start-up and discovery (whole `pyoco` processes)\n\n"
     << "| command | runs | median wall ms | min wall ms | median peak RSS MiB |\n"
     << "|---|---:|---:|---:|---:|\n"
     << "| `" << json::value_to<std::string>(st.at("command")) << "` | "
     << st.at("runs").to_number<int>() << " | " << fmt(num(st.at("wall_ms")), 1) << " | "
     << fmt(num(st.at("wall_ms_min")), 1) << " | " << fmt(num(st.at("peak_rss_mib")), 1) << " |\n";
  for (const json::value& v : r.at("discovery").at("list").as_array()) {
    md << "| `pyoco plugins list` over " << v.at("plugins").to_number<std::size_t>()
       << " plugins | " << v.at("runs").to_number<int>() << " | " << fmt(num(v.at("wall_ms")), 1)
       << " | " << fmt(num(v.at("wall_ms_min")), 1) << " | " << fmt(num(v.at("peak_rss_mib")), 1)
       << " |\n";
  }
  const json::value& lint = r.at("discovery").at("lint");
  md << "| `pyoco plugins lint` of the bench plugin (exit " << lint.at("exit_code").to_number<int>()
     << ") | " << lint.at("runs").to_number<int>() << " | " << fmt(num(lint.at("wall_ms")), 1)
     << " | " << fmt(num(lint.at("wall_ms_min")), 1) << " | "
     << fmt(num(lint.at("peak_rss_mib")), 1) << " |\n";

  md << "\n## Targets\n\n| target | limit | measured | met |\n|---|---|---:|---|\n";
  for (const json::value& t : r.at("targets").as_array()) {
    md << "| " << json::value_to<std::string>(t.at("target")) << " | "
       << json::value_to<std::string>(t.at("limit")) << " | " << fmt(num(t.at("measured")), 1)
       << " " << json::value_to<std::string>(t.at("unit")) << " | "
       << (t.at("met").as_bool() ? "yes" : "**no**") << " |\n";
  }
  return md.str();
}

namespace {

void pretty(std::ostringstream& out, const json::value& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent) * 2, ' ');
  const std::string inner(static_cast<std::size_t>(indent + 1) * 2, ' ');
  if (v.is_object() && !v.as_object().empty()) {
    out << "{\n";
    bool first = true;
    for (const auto& [k, member] : v.as_object()) {
      out << (first ? "" : ",\n") << inner << json::serialize(json::string(k)) << ": ";
      pretty(out, member, indent + 1);
      first = false;
    }
    out << "\n" << pad << "}";
  } else if (v.is_array() && !v.as_array().empty()) {
    // Arrays of numbers stay on one line.
    const bool flat = std::all_of(v.as_array().begin(), v.as_array().end(),
                                  [](const json::value& e) { return e.is_number(); });
    if (flat) {
      out << json::serialize(v);
      return;
    }
    out << "[\n";
    bool first = true;
    for (const json::value& e : v.as_array()) {
      out << (first ? "" : ",\n") << inner;
      pretty(out, e, indent + 1);
      first = false;
    }
    out << "\n" << pad << "]";
  } else {
    out << json::serialize(v);
  }
}

}  // namespace

std::string pretty_json(const json::value& v) {
  std::ostringstream out;
  pretty(out, v, 0);
  out << "\n";
  return out.str();
}

}  // namespace pyoco::bench
