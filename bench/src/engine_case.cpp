#include "engine_case.hpp"

#include <pyoco/engine/engine.hpp>
#include <pyoco/store/history.hpp>
#include <pyoco/trace/event_queue.hpp>
#include <pyoco/trace/sinks.hpp>

#include <unistd.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>

#include "process.hpp"
#include "stats.hpp"
#include "tbb_baseline.hpp"

namespace pyoco::bench {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

// compile_flow checks for cycles by recursion: a 100,000-node chain needs
// more than the default 8 MiB stack.
constexpr std::size_t kCompileStack = std::size_t{1} << 30;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::shared_ptr<const core::CompiledFlow> compile(const FlowParts& parts) {
  std::shared_ptr<const core::CompiledFlow> out;
  run_with_stack(kCompileStack, [&] {
    out = std::make_shared<const core::CompiledFlow>(core::compile_flow(parts.spec, parts.graph));
  });
  return out;
}

// The compiled graph must be the shape: same nodes (no hidden joins), same edges.
void check_graph(const core::FlowGraph& g, const Shape& shape) {
  std::size_t edges = 0;
  for (const auto& n : g.nodes) edges += n.successors.size();
  if (g.nodes.size() != shape.nodes() || edges != shape.edges()) {
    throw std::runtime_error(
        "pyoco compiled " + shape.label + " to " + std::to_string(g.nodes.size()) + " nodes and " +
        std::to_string(edges) + " edges, expected " + std::to_string(shape.nodes()) + " and " +
        std::to_string(shape.edges()));
  }
}

// One run: start() until its handle is gone (the run's clean-up counts, as
// oneTBB's does), and of that the time until start() returned (binding
// every node to its task, and whatever the pool ran meanwhile).
struct RunTime {
  double total_ns = 0;
  double start_ns = 0;
};

// `after_wait` runs inside the clock (the listeners' final flush).
RunTime timed_run(Engine& engine, const std::shared_ptr<const core::CompiledFlow>& flow,
                  const std::shared_ptr<trace::EventListener>& listener,
                  std::size_t expect_tasks = 0, const std::function<void()>& after_wait = {}) {
  RunOptions options;
  options.listener = listener;
  const auto start = Clock::now();
  std::optional<Run> run(engine.start(flow, options));
  const auto started = Clock::now();
  run->wait();
  if (after_wait) after_wait();
  const core::RunStatus status = run->status();
  if (status != core::RunStatus::Completed) {
    std::string why = core::to_string(status);
    for (const TaskRecord& t : run->tasks()) {
      if (!t.error.empty()) {
        why += ": " + t.node + ": " + t.error;
        break;
      }
    }
    throw std::runtime_error("pyoco run of " + flow->spec->name + " did not complete: " + why);
  }
  const std::size_t recorded = expect_tasks != 0 ? run->tasks().size() : 0;
  run.reset();
  const auto end = Clock::now();
  if (expect_tasks != 0 && recorded != expect_tasks) {
    throw std::runtime_error("pyoco run recorded " + std::to_string(recorded) +
                             " tasks, expected " + std::to_string(expect_tasks));
  }
  return RunTime{std::chrono::duration<double, std::nano>(end - start).count(),
                 std::chrono::duration<double, std::nano>(started - start).count()};
}

json::object summarize(const std::vector<RunTime>& runs, std::size_t tasks) {
  const auto n = static_cast<double>(tasks);
  json::array per_task;
  std::vector<double> total, start;
  for (const RunTime& r : runs) {
    total.push_back(r.total_ns / n);
    start.push_back(r.start_ns / n);
    per_task.push_back(total.back());
  }
  json::object o;
  o["ns_per_task"] = median(total);
  o["start_ns_per_task"] = median(start);  // of ns_per_task: inside Engine::start
  o["run_ms"] = median(total) * n / 1e6;
  o["samples_ns_per_task"] = std::move(per_task);
  return o;
}

std::vector<RunTime> repeat(unsigned reps, const std::function<RunTime()>& once) {
  std::vector<RunTime> out;
  for (unsigned i = 0; i < reps; ++i) out.push_back(once());
  return out;
}

}  // namespace

json::object run_engine_case(const CaseOptions& o) {
  EngineOptions engine_options;
  engine_options.plugin_search_path = {o.plugin_dir};
  if (const char* j = std::getenv("PYOCO_BENCH_JOBS"))
    engine_options.jobs = static_cast<unsigned>(std::atoi(j));
  Engine engine(engine_options);  // once, for every run below

  // Warm up what every case pays once: the plugin's loading, the pool's
  // threads, TBB's arena.
  {
    const Shape tiny = make_shape(ShapeKind::Chain, 2);
    timed_run(engine, compile(make_flow(tiny, "bench/noop")), nullptr);
    TbbShape(tiny).run();
  }

  const Shape shape = make_shape(o.kind, o.target);
  const std::size_t tasks = shape.nodes();
  const std::uint64_t rss_base = current_rss_bytes();

  auto t = Clock::now();
  const FlowParts parts = make_flow(shape, "bench/noop");
  const double build_ms = ms_since(t);
  t = Clock::now();
  const auto flow = compile(parts);
  const double compile_ms = ms_since(t);
  check_graph(flow->graph, shape);

  // The first run warms the allocator and marks the peak: build + compile + one run.
  const RunTime first = timed_run(engine, flow, nullptr, tasks);
  const std::uint64_t rss_peak = peak_rss_bytes();

  json::object out;
  out["shape"] = to_string(shape.kind);
  out["label"] = shape.label;
  out["target"] = o.target;
  out["param"] = shape.param;
  out["tasks"] = tasks;
  out["edges"] = shape.edges();
  out["reps"] = o.reps;
  out["jobs"] = engine.jobs();
  out["build_ms"] = build_ms;
  out["compile_ms"] = compile_ms;
  out["first_run_ms"] = first.total_ns / 1e6;
  out["rss_base_bytes"] = rss_base;
  out["rss_peak_bytes"] = rss_peak;
  out["rss_bytes_per_task"] = static_cast<double>(rss_peak > rss_base ? rss_peak - rss_base : 0) /
                              static_cast<double>(tasks);

  json::object pyoco =
      summarize(repeat(o.reps, [&] { return timed_run(engine, flow, nullptr); }), tasks);

  t = Clock::now();
  TbbShape tbb_shape(shape);
  const double tbb_build_ms = ms_since(t);
  tbb_shape.run();  // warm
  json::object tbb = summarize(repeat(o.reps, [&] { return RunTime{tbb_shape.run(), 0}; }), tasks);
  tbb.erase("start_ns_per_task");
  tbb["build_ms"] = tbb_build_ms;

  const double ratio = pyoco["ns_per_task"].as_double() / tbb["ns_per_task"].as_double();
  out["pyoco"] = std::move(pyoco);
  out["tbb"] = std::move(tbb);
  out["ratio"] = ratio;

  out["cute"] = nullptr;
  out["store"] = nullptr;
  out["pyoco_run"] = nullptr;
  if (o.observability) {
    // The cute trace as every user of a sink has it: behind an event queue
    // (a sink writes), flushed before the clock stops.
    auto cute_once = [&] {
      auto queue = std::make_shared<trace::EventQueue>();
      queue->add(trace::make_trace_sink(trace::TraceFormat::Cute,
                                        std::make_shared<std::ofstream>("/dev/null")));
      return timed_run(engine, flow, queue, 0, [&] { queue->flush(); });
    };
    cute_once();  // warm
    out["cute"] = summarize(repeat(o.reps, cute_once), tasks);

    // The SQLite store on: a recorder per run, as `pyoco run` does; the
    // clock stops after the writer's final flush.
    const std::filesystem::path db =
        o.scratch_dir / ("bench-state-" + std::to_string(::getpid()) + ".db");
    {
      auto store = store::open_sqlite_store(db);
      store::HistoryWriter history(store);
      auto once = [&] {
        auto recorder = history.recorder();
        return timed_run(engine, flow, recorder, 0, [&] { history.flush(); });
      };
      once();  // warm
      out["store"] = summarize(repeat(o.reps, once), tasks);
      if (const std::string error = history.last_error(); !error.empty()) {
        throw std::runtime_error("the run history could not be written: " + error);
      }
    }
    std::filesystem::remove(db);

    // What a `pyoco run` user pays: the cute trace and the history, both
    // behind one event queue, flushed before the clock stops.
    {
      auto store = store::open_sqlite_store(db);
      store::HistoryWriter history(store);
      auto once = [&] {
        auto queue = std::make_shared<trace::EventQueue>();
        queue->add(trace::make_trace_sink(trace::TraceFormat::Cute,
                                          std::make_shared<std::ofstream>("/dev/null")));
        queue->add(history.recorder());
        return timed_run(engine, flow, queue, 0, [&] {
          queue->flush();
          history.flush();
        });
      };
      once();  // warm
      out["pyoco_run"] = summarize(repeat(o.reps, once), tasks);
    }
    std::filesystem::remove(db);
    std::filesystem::remove(db.string() + "-wal");
    std::filesystem::remove(db.string() + "-shm");
  }
  return out;
}

}  // namespace pyoco::bench
