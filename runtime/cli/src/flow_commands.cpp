// `pyoco run`, `pyoco check` and `pyoco graph`: a flow file from the
// command line to the engine, the checker or a picture.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/store/history.hpp>
#include <pyoco/trace/event_queue.hpp>
#include <pyoco/trace/sinks.hpp>

#include <unistd.h>
#include <boost/json.hpp>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>

#include "app.hpp"
#include "command.hpp"
#include "interrupts.hpp"
#include "plugin_path.hpp"
#include "run_history.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// ---- shared by the three commands -------------------------------------------

struct FlowOptions {
  std::string file;
  std::vector<std::string> params;  // k=v
  std::string params_file;
  PluginPathOption path;

  void attach(CLI::App* cmd, bool with_params) {
    cmd->add_option("flow", file, "The flow file (flow.yaml or flow.toml)")->required();
    if (with_params) {
      cmd->add_option("-p,--param", params,
                      "A run param KEY=VALUE (repeatable); VALUE is JSON when it parses as JSON, "
                      "else a string")
          ->type_name("KEY=VALUE");
      cmd->add_option("--params-file", params_file, "Params from a JSON or YAML object file")
          ->type_name("FILE");
    }
    path.attach(cmd);
  }
};

// A one-line error for the user; exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

core::Value parse_params(const FlowOptions& o) {
  json::object params;
  if (!o.params_file.empty()) {
    std::ifstream in(o.params_file);
    if (!in) throw UsageError("--params-file " + o.params_file + ": cannot read the file");
    std::stringstream text;
    text << in.rdbuf();
    boost::system::error_code ec;
    json::value v = json::parse(text.str(), ec);
    if (ec) {
      // Not JSON: read it as a YAML (or TOML) flow-style mapping through the flow reader.
      try {
        const std::string wrapped = "flow: {graph: x, defaults: " + text.str() + "}\n";
        const auto spec = core::parse_flow_text(wrapped, o.params_file);
        v = core::to_json(spec.defaults);
      } catch (const core::FlowError&) {
        throw UsageError("--params-file " + o.params_file + ": expected a JSON or YAML object");
      }
    }
    if (!v.is_object()) throw UsageError("--params-file " + o.params_file + ": expected an object");
    params = v.as_object();
  }
  for (const std::string& kv : o.params) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError("--param " + kv + ": expected KEY=VALUE");
    }
    const std::string value = kv.substr(eq + 1);
    boost::system::error_code ec;
    json::value v = json::parse(value, ec);
    params[kv.substr(0, eq)] = ec ? json::value(json::string(value)) : v;
  }
  return core::from_json(params);
}

class CatalogResolver : public core::TaskResolver {
 public:
  explicit CatalogResolver(const plugins::Catalog& c) : catalog_(c) {}
  TaskInfo resolve(const std::string& name) const override {
    TaskInfo info;
    const auto ref = catalog_.find_task(name);
    if (!ref) return info;
    info.exists = true;
    for (const auto& io : ref->task->inputs) {
      info.inputs.push_back(io.name);
      if (io.required) info.required_inputs.push_back(io.name);
    }
    return info;
  }

 private:
  const plugins::Catalog& catalog_;
};

std::shared_ptr<const core::CompiledFlow> load(const FlowOptions& o) {
  auto spec = std::make_shared<const core::FlowSpec>(core::load_flow_file(o.file));
  return std::make_shared<const core::CompiledFlow>(core::compile_flow(std::move(spec)));
}

core::Value merged_params(const core::CompiledFlow& flow, const core::Value& given) {
  json::object merged = core::to_json(flow.spec->defaults).as_object();
  const json::value extra = core::to_json(given);
  for (const auto& [k, v] : extra.as_object()) merged[k] = v;
  return core::from_json(merged);
}

std::string location(const core::SourceLocation& w) { return w.to_string(); }

void print_diagnostic(std::ostream& out, const core::Diagnostic& d) {
  out << location(d.where) << ": "
      << (d.severity == core::Diagnostic::Severity::Error ? "error: " : "warning: ") << d.message
      << '\n';
}

// The nodes in an order they can run, with what each waits for.
void print_plan(std::ostream& out, const core::FlowGraph& g, const std::string& indent) {
  std::vector<std::uint32_t> order;
  std::vector<std::size_t> waiting(g.nodes.size());
  for (std::uint32_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& r : g.nodes[i].requirements) waiting[i] += r.nodes.size();
  }
  std::vector<std::uint32_t> ready = g.roots();
  while (!ready.empty()) {
    const std::uint32_t n = ready.front();
    ready.erase(ready.begin());
    order.push_back(n);
    for (std::uint32_t s : g.nodes[n].successors) {
      std::size_t count = 0;
      for (const auto& r : g.nodes[s].requirements) {
        count += static_cast<std::size_t>(std::count(r.nodes.begin(), r.nodes.end(), n));
      }
      waiting[s] -= count;
      if (waiting[s] == 0) ready.push_back(s);
    }
  }
  std::size_t step = 0;
  for (std::uint32_t n : order) {
    const core::GraphNode& node = g.nodes[n];
    if (!node.visible()) continue;
    std::string what = node.kind == core::GraphNode::Kind::Task ? node.task->use : "";
    std::string after;
    for (const auto& r : node.requirements) {
      std::string names;
      for (std::uint32_t p : r.nodes) names += (names.empty() ? "" : ", ") + g.nodes[p].name;
      after += (after.empty() ? "" : "; ") + (r.any ? "any of " + names : names);
    }
    out << indent << ++step << ". " << node.name << (what.empty() ? "" : "  " + what)
        << (after.empty() ? "" : "  (after " + after + ")");
    if (node.kind == core::GraphNode::Kind::Task) {
      const auto& t = *node.task;
      if (t.retries > 0) out << "  retries=" << t.retries;
      if (t.timeout_sec > 0) out << "  timeout=" << t.timeout_sec << "s";
      if (t.fail_policy == core::FailPolicy::Isolate) out << "  fail_policy=isolate";
    }
    out << '\n';
    for (std::size_t c = 0; c < node.children.size(); ++c) {
      if (node.kind == core::GraphNode::Kind::Switch) {
        const auto& sc = node.switch_term->cases[c];
        out << indent << "   case " << (sc.is_default ? "default" : core::to_json_text(sc.match))
            << ":\n";
      } else {
        out << indent << "   each iteration:\n";
      }
      print_plan(out, *node.children[c], indent + "      ");
    }
  }
}

// ---- run ----------------------------------------------------------------------

struct RunOptionsCli {
  FlowOptions flow;
  unsigned jobs = 0;
  bool non_cute = false;
  bool cute = false;
  std::string trace_format;
  std::string trace_file;
  std::string artifact_dir;
  std::string run_id;
  bool dry_run = false;
};

trace::TraceFormat console_format(const RunOptionsCli& o) {
  if (o.trace_format == "json") return trace::TraceFormat::Json;
  if (o.trace_format == "plain" || o.non_cute) return trace::TraceFormat::Plain;
  if (o.trace_format == "cute" || o.cute) return trace::TraceFormat::Cute;
  const char* env = std::getenv("PYOCO_CUTE");
  if (env != nullptr && std::string(env) == "0") return trace::TraceFormat::Plain;
  return isatty(STDOUT_FILENO) ? trace::TraceFormat::Cute : trace::TraceFormat::Plain;
}

int check_before_run(const core::CompiledFlow& flow, const plugins::Catalog& catalog,
                     const core::Value& params) {
  const auto diagnostics = core::check_flow(flow, CatalogResolver(catalog), params);
  int errors = 0;
  for (const auto& d : diagnostics) {
    if (d.severity == core::Diagnostic::Severity::Error) {
      print_diagnostic(std::cerr, d);
      ++errors;
    }
  }
  return errors;
}

int run_flow(const RunOptionsCli& o) {
  const auto flow = load(o.flow.file.empty() ? o.flow : o.flow);
  const core::Value params = parse_params(o.flow);
  EngineOptions eo;
  eo.jobs = o.jobs;
  eo.plugin_search_path = o.flow.path.search_path();
  // Optional so that it ends (see ~Engine) while Ctrl+C is still watched.
  std::optional<Engine> engine(std::in_place, eo);
  if (check_before_run(*flow, engine->catalog(), merged_params(*flow, params)) > 0) {
    std::cerr << "pyoco run: " << o.flow.file << " has errors; nothing ran (see `pyoco check`)\n";
    return kExitUsage;
  }
  if (o.dry_run) {
    std::cout << "plan for flow " << flow->spec->name << ":\n";
    print_plan(std::cout, flow->graph, "  ");
    return kExitOk;
  }

  // The engine's control thread only queues events; the console, a trace
  // file and the history hear them from the queue's thread.
  auto events = std::make_shared<trace::EventQueue>();
  events->add(trace::make_trace_sink(
      console_format(o), std::shared_ptr<std::ostream>(&std::cout, [](std::ostream*) {})));
  if (!o.trace_file.empty()) {
    auto file = std::make_shared<std::ofstream>(o.trace_file, std::ios::app);
    if (!*file) throw UsageError("--trace-file " + o.trace_file + ": cannot open for writing");
    const auto format =
        o.trace_format == "json" ? trace::TraceFormat::Json : trace::TraceFormat::Plain;
    events->add(trace::make_trace_sink(format, file));
  }

  RunOptions ro;
  ro.params = params;
  ro.listener = events;
  ro.run_id = o.run_id;
  ro.env = process_environment();  // what $env.NAME reads
  const char* env_dir = std::getenv("PYOCO_ARTIFACT_DIR");
  // Absolute, so the paths in task records and the history mean the same
  // thing from any directory.
  ro.artifacts = std::make_shared<LocalArtifactStore>(
      fs::absolute(!o.artifact_dir.empty() ? fs::path(o.artifact_dir)
                   : env_dir != nullptr    ? fs::path(env_dir)
                                           : fs::path(".pyoco/artifacts"))
          .lexically_normal());

  if (!o.run_id.empty()) {
    try {
      if (open_run_history()->run(o.run_id)) {
        throw UsageError("--run-id " + o.run_id +
                         ": the history already has a run with this id; choose another");
      }
    } catch (const store::StoreError&) {
      // no usable history: nothing to collide with
    }
  }

  // Tasks' children, and the orphans they leave, stay ours to stop.
  become_subreaper();

  // The run history: fed by the same events as the trace. A history that
  // cannot be opened costs the record, not the run.
  std::unique_ptr<store::HistoryWriter> history;
  try {
    auto options = store::HistoryOptions::from_env();
    history = std::make_unique<store::HistoryWriter>(open_run_history(), options);
    events->add(history->recorder());
  } catch (const store::StoreError& e) {
    std::cerr << "pyoco run: warning: this run is not recorded in the history: " << e.what()
              << '\n';
  }

  Run run = engine->start(flow, std::move(ro));
  if (history) {
    // `pyoco runs cancel` from another process: as a first Ctrl+C.
    history->watch_cancel(run.id(), [run]() mutable { run.cancel(); });
  }
  {
    InterruptWatcher interrupts({
        .cancel = [run]() mutable { run.cancel(); },
        .exit_now =
            [&] {
              // Second Ctrl+C: stop every process a task started, record the
              // run, leave. What ran so far is in the trace and the history.
              signal_descendants(SIGKILL);
              std::cout << std::flush;
              std::cerr << "pyoco run: interrupted again; killed what the tasks started and "
                           "exiting without waiting for them\n";
              if (history) {
                history->abandon(run.id(),
                                 "interrupted twice: pyoco exited without waiting for it");
              }
              std::_Exit(kExitCancelled);
            },
        .check_now =
            [&history] {
              if (history) history->check_cancel_requests();
            },
    });
    run.wait();
    events->flush();  // the trace's last line before anything else is printed
    engine.reset();   // up to a second for bodies that ignore their cancel
    // A task that was abandoned (cancel, deadline) may have left a process
    // behind, even one a late body started during the reset: it goes with
    // the run, not with the shell that started pyoco.
    if (run.status() != core::RunStatus::Completed) stop_descendants(std::chrono::seconds(1));
  }
  if (history) {
    history->flush();
    if (const std::string e = history->last_error(); !e.empty()) {
      std::cerr << "pyoco run: warning: the run history may be incomplete: " << e << '\n';
    }
  }
  switch (run.status()) {
    case core::RunStatus::Completed:
      return kExitOk;
    case core::RunStatus::Cancelled:
      return kExitCancelled;
    default:
      return kExitFailed;
  }
}

// ---- check --------------------------------------------------------------------

struct CheckOptions {
  FlowOptions flow;
  bool dry_run = false;
  bool json = false;
};

json::object diagnostic_json(const core::Diagnostic& d) {
  return json::object{
      {"severity", d.severity == core::Diagnostic::Severity::Error ? "error" : "warning"},
      {"file", d.where.file},
      {"line", d.where.line},
      {"column", d.where.column},
      {"message", d.message}};
}

int check(const CheckOptions& o) {
  std::vector<core::Diagnostic> diagnostics;
  std::shared_ptr<const core::CompiledFlow> flow;
  try {
    flow = load(o.flow);
    const core::Value params = merged_params(*flow, parse_params(o.flow));
    const plugins::Catalog catalog = o.flow.path.catalog();
    diagnostics = core::check_flow(*flow, CatalogResolver(catalog), params);
  } catch (const core::FlowError& e) {
    diagnostics.push_back({core::Diagnostic::Severity::Error, e.where(), e.problem()});
  }
  std::size_t errors = 0, warnings = 0;
  for (const auto& d : diagnostics) {
    (d.severity == core::Diagnostic::Severity::Error ? errors : warnings) += 1;
  }
  if (o.json) {
    json::array ds;
    for (const auto& d : diagnostics) ds.push_back(diagnostic_json(d));
    json::object out{
        {"file", o.flow.file},  {"flow", flow ? json::value(flow->spec->name) : nullptr},
        {"ok", errors == 0},    {"errors", errors},
        {"warnings", warnings}, {"diagnostics", std::move(ds)}};
    if (o.dry_run && flow && errors == 0) {
      std::ostringstream plan;
      print_plan(plan, flow->graph, "");
      out["plan"] = plan.str();
    }
    std::cout << json::serialize(out) << '\n';
    return errors == 0 ? kExitOk : kExitFailed;
  }
  for (const auto& d : diagnostics) print_diagnostic(errors > 0 ? std::cerr : std::cout, d);
  if (errors == 0) {
    std::cout << o.flow.file << ": ok"
              << (warnings > 0 ? " (" + std::to_string(warnings) +
                                     (warnings == 1 ? " warning)" : " warnings)")
                               : "")
              << '\n';
    if (o.dry_run && flow) {
      std::cout << "plan for flow " << flow->spec->name << ":\n";
      print_plan(std::cout, flow->graph, "  ");
    }
    return kExitOk;
  }
  std::cerr << o.flow.file << ": " << errors << (errors == 1 ? " error" : " errors") << '\n';
  return kExitFailed;
}

// ---- graph --------------------------------------------------------------------

struct GraphOptions {
  FlowOptions flow;
  std::string format = "dot";
};

int graph(const GraphOptions& o) {
  const auto flow = load(o.flow);
  std::cout << (o.format == "mermaid" ? core::export_mermaid(*flow) : core::export_dot(*flow));
  return kExitOk;
}

// Runs a command body, turning a user's mistake into one line and exit 2.
template <class F>
int guarded(const char* command, F&& body) {
  try {
    return body();
  } catch (const core::FlowError& e) {
    std::cerr << e.what() << '\n';
  } catch (const plugins::LoadError& e) {
    std::cerr << "pyoco " << command << ": " << e.what() << '\n';
  } catch (const UsageError& e) {
    std::cerr << "pyoco " << command << ": " << e.what() << '\n';
  } catch (const std::invalid_argument& e) {  // e.g. a run id the engine does not allow
    std::cerr << "pyoco " << command << ": " << e.what() << '\n';
  }
  return kExitUsage;
}

}  // namespace

void add_flow_commands(CLI::App& app, CommandTable& table) {
  auto run = std::make_shared<RunOptionsCli>();
  CLI::App* run_cmd = app.add_subcommand("run", "Run a flow file and print its trace");
  run->flow.attach(run_cmd, true);
  run_cmd->add_option("-j,--jobs", run->jobs, "Tasks run at once (default: hardware threads)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            unsigned long n = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            if (ec != std::errc() || end != text.data() + text.size() || n < 1 ||
                n > std::numeric_limits<unsigned>::max()) {
              return "expected a whole number >= 1";
            }
            return {};
          },
          "N>=1"));
  run_cmd->add_flag("--non-cute", run->non_cute, "Plain trace lines (also PYOCO_CUTE=0)");
  run_cmd->add_flag("--cute", run->cute, "Cute trace lines even when stdout is not a terminal");
  run_cmd
      ->add_option("--trace-format", run->trace_format, "cute, plain or json (one object a line)")
      ->check(CLI::IsMember({"cute", "plain", "json"}));
  run_cmd
      ->add_option("--trace-file", run->trace_file,
                   "Also append the trace to FILE (plain, or json with --trace-format json)")
      ->type_name("FILE");
  run_cmd
      ->add_option("--artifact-dir", run->artifact_dir,
                   "Where artifacts go (default: PYOCO_ARTIFACT_DIR, else .pyoco/artifacts)")
      ->type_name("DIR");
  run_cmd
      ->add_option("--run-id", run->run_id,
                   "Name the run (1-128 of A-Z a-z 0-9 . _ -; default: a new UUID)")
      ->type_name("ID");
  run_cmd->add_flag("--dry-run", run->dry_run, "Check the flow and print its plan; run nothing");
  run_cmd->footer(
      "\nExit codes: 0 COMPLETED, 1 FAILED, 2 usage or flow error, 130 cancelled.\n"
      "Ctrl+C once cancels (running tasks are told to stop); twice exits at once.");
  table.add(run_cmd, [run] { return guarded("run", [&] { return run_flow(*run); }); });

  auto chk = std::make_shared<CheckOptions>();
  CLI::App* check_cmd = app.add_subcommand("check", "Validate a flow file without running it");
  chk->flow.attach(check_cmd, true);
  check_cmd->add_flag("--dry-run", chk->dry_run, "Also print the execution plan");
  check_cmd->add_flag("--json", chk->json, "Print JSON for machines");
  check_cmd->footer("\nExit codes: 0 no errors (warnings allowed), 1 errors, 2 usage.");
  table.add(check_cmd, [chk] { return guarded("check", [&] { return check(*chk); }); });

  auto gr = std::make_shared<GraphOptions>();
  CLI::App* graph_cmd =
      app.add_subcommand("graph", "Print a flow's DAG as Graphviz dot or Mermaid");
  gr->flow.attach(graph_cmd, false);
  graph_cmd->add_option("-f,--format", gr->format, "dot or mermaid")
      ->capture_default_str()
      ->check(CLI::IsMember({"dot", "mermaid"}));
  table.add(graph_cmd, [gr] { return guarded("graph", [&] { return graph(*gr); }); });
}

}  // namespace pyoco::cli
