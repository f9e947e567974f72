// The engine's behaviour, ported from what the Python pyoco pins: order,
// parallelism, fail policies, retries, timeouts, joins, loops, switch,
// cancellation. Tasks are in-process callables (and plugin tasks where the
// ABI matters), so every test is deterministic: no sleeps as
// synchronisation, no timing thresholds.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/trace/event_queue.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <limits>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "event_log.hpp"
#include "flows.hpp"
#include "process.hpp"
#include "records.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco;
using core::TaskState;
using core::Value;
using pyoco::testing::Gate;
using pyoco::testing::Latch;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;

// How many calls run at once, and the most that ever did.
class InFlight {
 public:
  void enter() {
    const int now = ++now_;
    int seen = most_.load();
    while (now > seen && !most_.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() { --now_; }
  int most() const { return most_.load(); }

 private:
  std::atomic<int> now_{0}, most_{0};
};
constexpr auto json = pyoco::testing::json_value;

Value echo_value(TaskCall&, const Value& in) { return in.find("value"); }

struct EngineFixture {
  Engine engine{EngineOptions{4, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  pyoco::testing::TempDir artifacts;
  std::shared_ptr<pyoco::testing::EventLog> events = std::make_shared<pyoco::testing::EventLog>();

  Run run(const std::string& yaml, std::map<std::string, TaskFn> tasks, Value params = {}) {
    RunOptions o;
    o.local_tasks = std::move(tasks);
    o.listener = events;
    o.params = params.is_null() ? json("{}") : params;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
    Run r = engine.start(compile(yaml), std::move(o));
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)), "the run did not finish");
    return r;
  }

  static TaskRecord record(const std::vector<TaskRecord>& rs, const std::string& node) {
    return pyoco::testing::record_of(rs, node);
  }
};

const char* kChain = R"(
flow:
  graph: a >> b >> c
tasks:
  a: {use: "t/emit", inputs: {value: 1}}
  b: {use: "t/emit", inputs: {value: "$node.a.output"}}
  c: {use: "t/emit", inputs: {value: "$node.b.output"}}
)";

const char* kChainOfNaps = R"(
flow:
  graph: a >> b >> c
tasks:
  a: {use: "t/nap"}
  b: {use: "t/nap"}
  c: {use: "t/nap"}
)";

}  // namespace

BOOST_FIXTURE_TEST_SUITE(engine, EngineFixture)

BOOST_AUTO_TEST_CASE(chain_runs_in_order_and_passes_outputs) {
  std::mutex m;
  std::vector<std::string> order;
  Run r = run(kChain, {{"t/emit", [&](TaskCall& call, const Value& in) {
                          std::lock_guard<std::mutex> lock(m);
                          order.emplace_back(call.node());
                          return in.find("value");
                        }}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(order == (std::vector<std::string>{"a", "b", "c"}), boost::test_tools::per_element());
  BOOST_TEST(r.output("c").as_int() == 1);
  const auto tasks = r.tasks();
  BOOST_TEST((record(tasks, "a").ended <= record(tasks, "b").started));
  BOOST_TEST((record(tasks, "b").ended <= record(tasks, "c").started));
  BOOST_TEST(r.id().size() == 36u);
  BOOST_TEST(events->count(trace::EventKind::NodeDone) == 3u);
  BOOST_TEST(events->count(trace::EventKind::RunEnd) == 1u);
}

// A run's wall times come from its monotonic clock laid on an anchor it
// re-reads each second (run_clock.hpp): across the re-anchor this chain
// spans, each record lies inside the caller's wall-clock readings around
// the run, in order, and its times agree with its duration up to what the
// system clock itself stepped meanwhile (a VM's time sync does; the re-anchor
// is meant to pick that up). Every body blocks its worker: at jobs 1 the
// chain's own, at jobs 2 with a second chain beside it, so the records are
// made while no worker is free.
BOOST_AUTO_TEST_CASE(record_times_follow_the_wall_clock_across_a_second) {
  const char* kTwoChains = R"yaml(
flow:
  graph: |
    a >> b >> c
    x >> y >> z
tasks:
  a: {use: "t/nap"}
  b: {use: "t/nap"}
  c: {use: "t/nap"}
  x: {use: "t/nap"}
  y: {use: "t/nap"}
  z: {use: "t/nap"}
)yaml";
  for (const unsigned jobs : {1u, 2u}) {
    BOOST_TEST_CONTEXT("jobs " << jobs) {
      Engine saturated{EngineOptions{jobs, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
      RunOptions o;
      o.local_tasks = {{"t/nap", [](TaskCall&, const Value&) {
                          std::this_thread::sleep_for(std::chrono::milliseconds(400));
                          return Value();
                        }}};
      o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
      const auto steady_before = std::chrono::steady_clock::now();
      const auto before = std::chrono::system_clock::now();
      Run r = saturated.start(compile(jobs == 1 ? kChainOfNaps : kTwoChains), std::move(o));
      BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)), "the run did not finish");
      const auto after = std::chrono::system_clock::now();
      const auto steady_after = std::chrono::steady_clock::now();
      // How far the wall clock moved apart from the monotonic one during the
      // run, give or take the reads' own spacing.
      const double stepped_ms = std::abs(std::chrono::duration<double, std::milli>(
                                             (after - before) - (steady_after - steady_before))
                                             .count());
      BOOST_TEST((r.status() == core::RunStatus::Completed));
      const auto tasks = r.tasks();
      for (const auto& chain :
           {std::vector<std::string>{"a", "b", "c"}, std::vector<std::string>{"x", "y", "z"}}) {
        if (jobs == 1 && chain.front() == "x") continue;
        std::chrono::system_clock::time_point last = before;
        for (const std::string& node : chain) {
          const TaskRecord t = record(tasks, node);
          BOOST_TEST_CONTEXT(node) {
            BOOST_TEST((last <= t.started));
            BOOST_TEST((t.started < t.ended));
            BOOST_TEST((t.ended <= after));
            const double shown =
                std::chrono::duration<double, std::milli>(t.ended - t.started).count();
            // Anchors pair within 20 us; a re-anchor inside the task adds the step.
            BOOST_TEST(std::abs(shown - t.duration_ms) < 1.0 + stepped_ms);
            BOOST_TEST(t.duration_ms >= 400.0);
            last = t.ended;
          }
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(diamond_runs_branches_concurrently) {
  // b and c each wait until both have started: only concurrency lets them finish.
  Latch started;
  Run r =
      run(R"(
flow: {graph: "a >> (b & c) >> d"}
tasks:
  a: {use: "t/emit"}
  b: {use: "t/both"}
  c: {use: "t/both"}
  d: {use: "t/emit"}
)",
          {{"t/emit", echo_value}, {"t/both", [&](TaskCall&, const Value&) {
                                      started.arrive();
                                      if (!started.wait_for(2))
                                        throw std::runtime_error("the other branch never started");
                                      return Value();
                                    }}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  const auto t = r.tasks();
  const auto b = record(t, "b"), c = record(t, "c"), d = record(t, "d");
  BOOST_TEST((b.started < c.ended && c.started < b.ended));  // overlap
  BOOST_TEST((d.started >= b.ended));
  BOOST_TEST((d.started >= c.ended));
}

// NodesPlanned says what each node waits for (what a dashboard draws the
// graph from): every edge, for a fan-in of 200 OR-ed nodes into 200 too.
BOOST_AUTO_TEST_CASE(planned_nodes_say_what_they_wait_for) {
  run(R"(
flow: {graph: "a >> (b & c) >> d"}
tasks:
  a: {use: "t/emit"}
  b: {use: "t/emit"}
  c: {use: "t/emit"}
  d: {use: "t/emit"}
)",
      {{"t/emit", echo_value}});
  const auto planned = events->of(trace::EventKind::NodesPlanned);
  BOOST_REQUIRE(planned.size() == 1u);
  std::map<std::string, std::string> after;
  for (const auto& p : planned[0].planned) after[p.node] = p.after;
  BOOST_TEST(after["a"] == "");
  BOOST_TEST(after["b"] == "a");
  BOOST_TEST(after["c"] == "a");
  BOOST_TEST((after["d"] == "b,c" || after["d"] == "c,b"), after["d"]);

  std::string left, right, tasks;
  for (int i = 0; i < 200; ++i) {
    left += (i ? " | l" : "l") + std::to_string(i);
    right += (i ? " & r" : "r") + std::to_string(i);
    tasks += "  l" + std::to_string(i) + ": {use: \"t/emit\"}\n  r" + std::to_string(i) +
             ": {use: \"t/emit\"}\n";
  }
  events = std::make_shared<pyoco::testing::EventLog>();
  run("flow: {graph: \"(" + left + ") >> (" + right + ")\"}\ntasks:\n" + tasks,
      {{"t/emit", echo_value}});
  const auto wide = events->of(trace::EventKind::NodesPlanned);
  BOOST_REQUIRE(wide.size() == 1u);
  for (const auto& p : wide[0].planned) {
    const auto names = std::count(p.after.begin(), p.after.end(), ',') + (p.after.empty() ? 0 : 1);
    if (p.node[0] == 'r') BOOST_TEST(names == 200, p.node << ": " << names);
    if (p.node[0] == 'l') BOOST_TEST(names == 0, p.node << ": " << names);
  }
}

BOOST_AUTO_TEST_CASE(isolate_skips_downstream_and_independent_work_continues) {
  Run r =
      run(R"(
flow:
  graph: |
    a >> bad >> after
    a >> other
tasks:
  a: {use: "t/emit"}
  bad: {use: "t/boom", fail_policy: isolate}
  after: {use: "t/emit"}
  other: {use: "t/emit"}
)",
          {{"t/emit", echo_value},
           {"t/boom", [](TaskCall&, const Value&) -> Value { throw std::runtime_error("boom"); }}});
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const auto t = r.tasks();
  BOOST_TEST((record(t, "bad").state == TaskState::Failed));
  BOOST_TEST(record(t, "bad").error == "boom");
  BOOST_TEST((record(t, "after").state == TaskState::Skipped));
  BOOST_TEST((record(t, "other").state == TaskState::Succeeded));
  const auto entries = events->events();
  BOOST_TEST(entries.back().message == "bad");  // the run's end lists the failed nodes
}

BOOST_AUTO_TEST_CASE(stop_fails_the_run_and_cancels_pending_tasks) {
  Run r =
      run(R"(
flow: {graph: "bad >> after"}
tasks:
  bad: {use: "t/boom"}
  after: {use: "t/emit"}
)",
          {{"t/emit", echo_value},
           {"t/boom", [](TaskCall&, const Value&) -> Value { throw std::runtime_error("no"); }}});
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST((record(r.tasks(), "after").state == TaskState::Cancelled));
}

// A root that fails as it starts (a switch whose expression fails) stops the
// run before the roots after it are reached: each of them ends once, before
// the run's end (they were ended twice, the second time after the end).
BOOST_AUTO_TEST_CASE(roots_after_one_that_stops_the_run_at_once_end_once) {
  Run r = run(R"yaml(
flow: {graph: "(switch(on={{1 / 0}}) { default: a } | (b >> c))"}
tasks:
  a: {use: "t/emit"}
  b: {use: "t/emit"}
  c: {use: "t/emit"}
)yaml",
              {{"t/emit", echo_value}});
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(events->of(trace::EventKind::NodeCancelled, "b").size() == 1u);
  BOOST_TEST(events->of(trace::EventKind::NodeCancelled, "c").size() == 1u);
  const auto all = events->events();
  BOOST_REQUIRE(!all.empty());
  BOOST_TEST((all.back().kind == trace::EventKind::RunEnd));
}

BOOST_AUTO_TEST_CASE(retries_succeed_after_transient_failures) {
  Run r = run(R"(
flow: {graph: flaky}
tasks:
  flaky:
    use: "std/fail"
    inputs: {times: 2}
    retries: 2
    retry_backoff: {initial_ms: 1, factor: 2, max_ms: 5, jitter: false}
)",
              {});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  const auto& rec = record(r.tasks(), "flaky");
  BOOST_TEST(rec.attempts == 3u);
  BOOST_TEST(r.output("flaky").as_int() == 3);
  BOOST_TEST(events->count(trace::EventKind::NodeRetry, "flaky") == 2u);
  std::vector<double> delays;
  for (const auto& e : events->events()) {
    if (e.kind != trace::EventKind::NodeRetry) continue;
    BOOST_TEST(e.max_attempts == 3u);
    delays.push_back(e.delay_ms);
  }
  // Each retry event says the backoff it waits: 1 ms, then 1 x 2.
  BOOST_TEST(delays == (std::vector<double>{1.0, 2.0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_refused_artifact_says_why_through_the_sdk) {
  Run r = run(R"(
flow: {graph: w}
tasks:
  w: {use: "std/write_file", inputs: {name: "../escape.txt", content: "x"}}
)",
              {});
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r.tasks(), "w").error ==
             "cannot save artifact '../escape.txt': artifact name '../escape.txt' must stay "
             "inside the run: no '.' or '..' parts");
}

BOOST_AUTO_TEST_CASE(retries_fail_after_the_limit) {
  Run r = run(R"(
flow: {graph: flaky}
tasks:
  flaky:
    use: "std/fail"
    inputs: {times: 5, message: "still broken"}
    retries: 1
    retry_backoff: {initial_ms: 1, jitter: false}
)",
              {});
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const auto& rec = record(r.tasks(), "flaky");
  BOOST_TEST(rec.attempts == 2u);
  BOOST_TEST(rec.error == "still broken (call 2)");
  BOOST_TEST(events->count(trace::EventKind::NodeRetry) == 1u);
  BOOST_TEST(events->count(trace::EventKind::NodeError) == 1u);
}

BOOST_AUTO_TEST_CASE(timeout_fails_at_the_deadline_not_when_the_body_returns) {
  Gate release, body_done;
  std::atomic<bool> saw_cancel{false};
  Run r = run(R"(
flow: {graph: slow}
tasks:
  slow: {use: "t/stuck", timeout_sec: 0.05}
)",
              {{"t/stuck", [&](TaskCall& call, const Value&) {
                  // Ignores its deadline until the test lets it go.
                  release.wait();
                  saw_cancel = call.is_cancelled();
                  body_done.open();
                  return Value();
                }}});
  // The run ended while the body was still blocked.
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const auto& rec = record(r.tasks(), "slow");
  BOOST_TEST((rec.state == TaskState::Failed));
  BOOST_TEST(rec.error == "timed out after 0.05 s");
  release.open();
  BOOST_TEST_REQUIRE(body_done.wait());
  BOOST_TEST(saw_cancel.load());  // its context reported cancelled
}

BOOST_AUTO_TEST_CASE(or_join_goes_on_when_one_branch_succeeds) {
  const char* yaml = R"(
flow: {graph: "(x | y) >> z"}
tasks:
  x: {use: "t/x", fail_policy: isolate}
  y: {use: "t/y", fail_policy: isolate}
  z: {use: "t/emit"}
)";
  auto boom = [](TaskCall&, const Value&) -> Value { throw std::runtime_error("down"); };
  Run one = run(yaml, {{"t/x", boom}, {"t/y", echo_value}, {"t/emit", echo_value}});
  BOOST_TEST((record(one.tasks(), "z").state == TaskState::Succeeded));
  Run none = run(yaml, {{"t/x", boom}, {"t/y", boom}, {"t/emit", echo_value}});
  BOOST_TEST((record(none.tasks(), "z").state == TaskState::Skipped));
  BOOST_TEST((none.status() == core::RunStatus::Failed));
}

BOOST_AUTO_TEST_CASE(foreach_gives_item_index_and_alias_and_collects) {
  Run r = run(R"(
flow:
  defaults: {items: ["a", "b", "c"]}
  graph: "foreach(over={{items}}, item=it, index=i, collect=list, parallel=2) { shout }"
tasks:
  shout: {use: "t/shout", inputs: {it: "$loop.it", pos: "$loop.i"}}
)",
              {{"t/shout", [](TaskCall& call, const Value& in) {
                  core::ValueNode* o = call.arena().make_object();
                  core::Arena::set(o, "it", in.find("it").node());
                  core::Arena::set(o, "pos", in.find("pos").node());
                  return call.wrap(o);
                }}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) ==
             R"([{"it":"a","pos":0},{"it":"b","pos":1},{"it":"c","pos":2}])");
  BOOST_TEST((record(r.tasks(), "shout[2]").state == TaskState::Succeeded));
  // The loop node ran once: attempt 1, as a task that ran once (it said 0).
  BOOST_TEST(record(r.tasks(), "foreach_1").attempts == 1u);
}

BOOST_AUTO_TEST_CASE(a_loop_variable_fills_a_declared_input_of_that_name) {
  // std/echo declares an input `value`; the loop's item is called value.
  Run r = run(R"(
flow:
  defaults: {items: [1, 2]}
  graph: "foreach(over={{items}}, item=value, collect=list) { echo }"
tasks:
  echo: {use: "std/echo"}
)",
              {});
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[1,2]");
}

BOOST_AUTO_TEST_CASE(foreach_collect_first_and_flatten) {
  const std::string body = R"(
tasks:
  emit: {use: "t/emit", inputs: {value: "$loop.it"}}
)";
  auto flow = [&](const char* collect) {
    return std::string("flow:\n  defaults: {items: [[1, 2], [3], 4]}\n") +
           "  graph: \"foreach(over={{items}}, item=it, collect=" + collect + ") { emit }\"" + body;
  };
  Run first = run(flow("first"), {{"t/emit", echo_value}});
  BOOST_TEST_REQUIRE((first.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(first.output("foreach_1")) == "[1,2]");
  Run flat = run(flow("flatten"), {{"t/emit", echo_value}});
  BOOST_TEST_REQUIRE((flat.status() == core::RunStatus::Completed));
  // Lists are spliced in, anything else is kept as one element.
  BOOST_TEST(core::to_json_text(flat.output("foreach_1")) == "[1,2,3,4]");
  Run list = run(flow("list"), {{"t/emit", echo_value}});
  BOOST_TEST(core::to_json_text(list.output("foreach_1")) == "[[1,2],[3],4]");
  Run last = run(flow("last"), {{"t/emit", echo_value}});
  BOOST_TEST(core::to_json_text(last.output("foreach_1")) == "4");
}

BOOST_AUTO_TEST_CASE(foreach_parallel_runs_up_to_n_iterations_at_once) {
  // The first three iterations each wait until all three have started: only
  // running them at once lets them finish. The pool has 4 threads, so the
  // limit of 3 in flight is the loop's, not the pool's.
  Latch started;
  InFlight in_flight;
  Run r = run(R"(
flow:
  defaults: {items: [0, 1, 2, 3, 4, 5]}
  graph: "foreach(over={{items}}, item=it, parallel=3) { work }"
tasks:
  work: {use: "t/work", inputs: {value: "$loop.it"}}
)",
              {{"t/work", [&](TaskCall&, const Value& in) {
                  in_flight.enter();
                  started.arrive();
                  const bool together = started.wait_for(3);
                  in_flight.leave();
                  if (!together) throw std::runtime_error("three iterations never ran at once");
                  return in.find("value");
                }}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[0,1,2,3,4,5]");
  BOOST_TEST(in_flight.most() == 3);  // never more than parallel=3
  const auto t = r.tasks();
  const TaskRecord w[] = {record(t, "work[0]"), record(t, "work[1]"), record(t, "work[2]")};
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) {
      BOOST_TEST_CONTEXT("work[" << a << "] and work[" << b << "]") {
        BOOST_TEST((w[a].started < w[b].ended && w[b].started < w[a].ended));  // overlap
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(foreach_parallel_1_runs_iterations_one_after_another) {
  InFlight in_flight;
  Run r = run(R"(
flow:
  defaults: {items: [0, 1, 2, 3]}
  graph: "foreach(over={{items}}, item=it) { work }"
tasks:
  work: {use: "t/work", inputs: {value: "$loop.it"}}
)",
              {{"t/work", [&](TaskCall&, const Value& in) {
                  in_flight.enter();
                  in_flight.leave();
                  return in.find("value");
                }}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(in_flight.most() == 1);
  const auto t = r.tasks();
  for (int k = 0; k + 1 < 4; ++k) {
    BOOST_TEST((record(t, "work[" + std::to_string(k) + "]").ended <=
                record(t, "work[" + std::to_string(k + 1) + "]").started));
  }
}

BOOST_AUTO_TEST_CASE(a_loop_body_reads_a_node_that_ran_before_the_loop) {
  const char* yaml = R"(
flow:
  defaults: {items: [1, 2]}
  graph: "base >> foreach(over={{items}}, item=it) { add }"
tasks:
  base: {use: "t/emit", inputs: {value: 10}}
  add: {use: "t/add", inputs: {base: "$node.base.output", it: "$loop.it"}}
)";
  // What the engine runs, check passes too (it did not know the body sees outer nodes).
  struct AllExist : core::TaskResolver {
    TaskInfo resolve(const std::string&) const override { return {true, {}, {}}; }
  };
  auto flow = compile(yaml);
  const auto ds = core::check_flow(*flow, AllExist(), flow->spec->defaults);
  BOOST_TEST(ds.empty(), (ds.empty() ? "" : ds.front().message));
  Run r =
      run(yaml, {{"t/emit", echo_value}, {"t/add", [](TaskCall& call, const Value& in) {
                                            return call.wrap(call.arena().make_int(
                                                in.find("base").as_int() + in.find("it").as_int()));
                                          }}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[11,12]");
}

BOOST_AUTO_TEST_CASE(repeat_runs_count_times_and_collects_last) {
  std::atomic<int> calls{0};
  Run r = run(R"(
flow: {graph: "repeat(count=3, collect=last) { tick }"}
tasks:
  tick: {use: "t/tick", inputs: {n: "$loop.index"}}
)",
              {{"t/tick", [&](TaskCall&, const Value& in) {
                  ++calls;
                  return in.find("n");
                }}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(calls == 3);
  BOOST_TEST(r.output("repeat_1").as_int() == 2);
}

// A node after a loop or a switch starts once they have ended, never
// before: in its record (so in the trace and the history) a node's start
// is at or after its predecessor's end. The engine reuses an end's clock
// reading for the start it causes; a loop ends after its last iteration's
// task, in the same drain, and its successor must follow the loop's end.
BOOST_AUTO_TEST_CASE(a_node_after_a_loop_or_a_switch_starts_no_earlier_than_it_ended) {
  for (int round = 0; round < 10; ++round) {
    Run r = run(R"(
flow:
  graph: |
    first >> repeat(count=2) { tick } >> after
    first >> switch(on={{mode}}) { fast: picked; default: other; } >> also
tasks:
  first: {use: "t/noop"}
  tick: {use: "t/noop"}
  after: {use: "t/noop"}
  picked: {use: "t/noop"}
  other: {use: "t/noop"}
  also: {use: "t/noop"}
)",
                {{"t/noop", [](TaskCall&, const Value&) { return Value(); }}},
                json(R"({"mode": "fast"})"));
    BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
    const auto tasks = r.tasks();
    BOOST_TEST_CONTEXT("round " << round) {
      BOOST_TEST((record(tasks, "first").ended <= record(tasks, "repeat_1").started));
      BOOST_TEST((record(tasks, "repeat_1").ended <= record(tasks, "after").started));
      BOOST_TEST((record(tasks, "switch_1").ended <= record(tasks, "also").started));
    }
  }
}

BOOST_AUTO_TEST_CASE(an_empty_loop_gives_what_its_collect_promises) {
  // No iterations: an empty list for list and flatten, null for first and
  // last (issue 12: it used to be an object of the frame's end nodes).
  Run r = run(R"(
flow:
  graph: |
    repeat(count=0) { tick }
    foreach(over={{empty}}, collect=flatten) { tick }
    foreach(over={{empty}}, collect=last) { tick }
    repeat(count=0, collect=first) { tick }
tasks:
  tick: {use: "t/emit", inputs: {value: 1}}
)",
              {{"t/emit", echo_value}}, json(R"({"empty": []})"));
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("repeat_1")) == "[]");
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[]");
  BOOST_TEST(r.output("foreach_2").is_null());
  BOOST_TEST(r.output("repeat_2").is_null());
}

BOOST_AUTO_TEST_CASE(a_huge_parallel_over_a_short_list_starts_only_its_items) {
  // parallel= beyond the items used to spin through every slot (issue 12).
  const auto start = std::chrono::steady_clock::now();
  Run r = run(R"(
flow: {graph: "foreach(over={{[1, 2, 3]}}, parallel=10000) { tick }"}
tasks:
  tick: {use: "t/emit", inputs: {value: "$loop.item"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[1,2,3]");
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::seconds(2)));
}

BOOST_AUTO_TEST_CASE(a_loop_past_the_runs_task_limit_fails_its_node_not_the_machine) {
  for (const char* graph :
       {"repeat(count=1000) { a >> b }", "foreach(over={{items}}, parallel=4) { a >> b }",
        "repeat(count=3) { repeat(count=1000) { a } }"}) {
    BOOST_TEST_CONTEXT(graph) {
      RunOptions o;
      o.local_tasks = {{"t/emit", echo_value}};
      o.params = json(R"({"items": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]})");
      o.limits.max_tasks = 21;
      Run r = engine.start(compile(std::string("flow: {graph: \"") + graph + R"("}
tasks:
  a: {use: "t/emit", inputs: {value: 1}}
  b: {use: "t/emit", inputs: {value: 2}}
)"),
                           std::move(o));
      BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
      BOOST_TEST((r.status() == core::RunStatus::Failed));
      const auto records = r.tasks();
      BOOST_TEST(records.size() <= 21u);
      const auto failed = std::find_if(records.begin(), records.end(), [](const TaskRecord& t) {
        return t.error.find("this run reached its limit of 21 tasks (PYOCO_MAX_TASKS)") !=
               std::string::npos;
      });
      BOOST_TEST_REQUIRE((failed != records.end()));
      BOOST_TEST((failed->task == "repeat" || failed->task == "foreach"));
    }
  }
}

// The limit held only loops and switches: a flow of more plain nodes than
// it allows ran whole. It is refused at start, before any task runs; a flow
// of exactly the limit runs.
BOOST_AUTO_TEST_CASE(a_flow_of_more_nodes_than_the_task_limit_is_refused_at_start) {
  std::atomic<int> calls{0};
  auto count = [&calls](TaskCall&, const Value&) {
    ++calls;
    return Value();
  };
  const std::string yaml = R"(flow: {name: wide, graph: "a >> (b & c) >> d"}
tasks:
  a: {use: "t/count"}
  b: {use: "t/count"}
  c: {use: "t/count"}
  d: {use: "t/count"}
)";
  RunOptions o;
  o.local_tasks = {{"t/count", count}};
  o.limits.max_tasks = 3;
  try {
    engine.start(compile(yaml), std::move(o));
    BOOST_ERROR("a flow of 4 tasks started under a limit of 3");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string(e.what()) ==
               "flow 'wide' has 4 tasks, over the run's limit of 3 tasks (PYOCO_MAX_TASKS): "
               "raise the limit or split the flow");
  }
  BOOST_TEST(calls.load() == 0);

  RunOptions fits;
  fits.local_tasks = {{"t/count", count}};
  fits.limits.max_tasks = 4;
  Run r = engine.start(compile(yaml), std::move(fits));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(calls.load() == 4);
}

BOOST_AUTO_TEST_CASE(a_heartbeats_progress_is_kept_between_0_and_1_or_unknown) {
  auto beat = [](double progress) {
    return [progress](TaskCall& call, const Value&) {
      call.heartbeat(progress, "x");
      return Value();
    };
  };
  Run r = run(R"yaml(
flow: {graph: "(nan & inf & minus_inf & over & fine)"}
tasks:
  nan: {use: "t/nan"}
  inf: {use: "t/inf"}
  minus_inf: {use: "t/minus_inf"}
  over: {use: "t/over"}
  fine: {use: "t/fine"}
)yaml",
              {{"t/nan", beat(std::nan(""))},
               {"t/inf", beat(std::numeric_limits<double>::infinity())},
               {"t/minus_inf", beat(-std::numeric_limits<double>::infinity())},
               {"t/over", beat(1.5)},
               {"t/fine", beat(0.5)}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  const auto rs = r.tasks();
  BOOST_TEST(record(rs, "nan").progress == -1.0);
  BOOST_TEST(record(rs, "inf").progress == 1.0);
  BOOST_TEST(record(rs, "minus_inf").progress == -1.0);
  BOOST_TEST(record(rs, "over").progress == 1.0);
  BOOST_TEST(record(rs, "fine").progress == 0.5);
}

BOOST_AUTO_TEST_CASE(until_stops_when_its_condition_holds) {
  std::atomic<int> calls{0};
  Run r = run(R"(
flow: {graph: "until(cond={{scratch.count >= 3}}, max_iter=10, collect=list) { step }"}
tasks:
  step: {use: "t/step"}
)",
              {{"t/step", [&](TaskCall& call, const Value&) {
                  const int n = ++calls;
                  core::ValueBuilder b;
                  call.set_scratch("count", b.wrap(b.arena().make_int(n)));
                  return b.wrap(b.arena().make_int(n));
                }}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(calls == 3);
  BOOST_TEST(core::to_json_text(r.output("until_1")) == "[1,2,3]");
}

// As pyoco: an until that runs out of iterations fails, naming its
// condition; without max_iter it runs pyoco's 1000 first.
BOOST_AUTO_TEST_CASE(until_reaching_max_iter_fails_the_loop) {
  for (const auto& [graph, iterations] :
       {std::pair{"until(cond={{false}}, max_iter=4, collect=last) { step }", 4},
        std::pair{"until(cond={{false}}) { step }", 1000}}) {
    BOOST_TEST_CONTEXT(graph) {
      std::atomic<int> calls{0};
      Run r =
          run(std::string("flow: {graph: \"") + graph + "\"}\ntasks:\n  step: {use: \"t/step\"}\n",
              {{"t/step", [&](TaskCall&, const Value&) {
                  ++calls;
                  return Value();
                }}});
      BOOST_TEST((r.status() == core::RunStatus::Failed));
      BOOST_TEST(calls == iterations);
      BOOST_TEST((record(r.tasks(), "until_1").state == TaskState::Failed));
      BOOST_TEST(record(r.tasks(), "until_1").error ==
                 "until condition 'false' is still false after max_iter=" +
                     std::to_string(iterations));
    }
  }
}

BOOST_AUTO_TEST_CASE(switch_takes_the_matching_case_or_the_default) {
  const char* yaml = R"(
flow: {graph: "switch(on={{mode}}) { fast: f; slow: s; default: d; } >> after"}
tasks:
  f: {use: "t/emit", inputs: {value: "fast"}}
  s: {use: "t/emit", inputs: {value: "slow"}}
  d: {use: "t/emit", inputs: {value: "default"}}
  after: {use: "t/emit", inputs: {value: "$node.switch_1.output"}}
)";
  Run slow = run(yaml, {{"t/emit", echo_value}}, json(R"({"mode": "slow"})"));
  BOOST_TEST(slow.output("after").as_string() == "slow");
  Run other = run(yaml, {{"t/emit", echo_value}}, json(R"({"mode": "other"})"));
  BOOST_TEST(other.output("after").as_string() == "default");
}

// A switch whose case the run's stop cancelled is CANCELLED, as a loop's
// iteration is: it was FAILED, named among the failed nodes and given an
// error line, although only its sibling failed (and on Ctrl+C too).
BOOST_AUTO_TEST_CASE(a_switch_whose_case_a_stop_cancelled_is_cancelled_not_failed) {
  Latch napping;
  const char* yaml = R"y(
flow: {graph: "(switch(on={{mode}}) { a: nap; } & boom)"}
tasks:
  nap: {use: "t/nap"}
  boom: {use: "t/boom"}
)y";
  std::map<std::string, TaskFn> tasks{
      {"t/nap",
       [&](TaskCall& call, const Value&) {
         napping.arrive();
         while (!call.is_cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
         return Value();
       }},
      {"t/boom", [&](TaskCall&, const Value&) -> Value {
         // No BOOST_ macros on a worker thread: Boost.Test is not thread-safe.
         if (!napping.wait_for(1)) throw std::runtime_error("nap never started");
         throw std::runtime_error("no");
       }}};
  Run failed = run(yaml, tasks, json(R"({"mode": "a"})"));
  BOOST_TEST((failed.status() == core::RunStatus::Failed));
  BOOST_TEST((record(failed.tasks(), "switch_1").state == TaskState::Cancelled));
  BOOST_TEST((record(failed.tasks(), "nap").state == TaskState::Cancelled));
  BOOST_TEST(events->count(trace::EventKind::NodeError) == 1u);  // boom's only

  // Cancelled from outside while its case runs.
  RunOptions o;
  o.local_tasks = {{"t/nap", tasks["t/nap"]}};
  o.params = json(R"({"mode": "a"})");
  Latch started;
  o.local_tasks["t/nap"] = [&](TaskCall& call, const Value&) {
    started.arrive();
    while (!call.is_cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return Value();
  };
  Run cancelled = engine.start(compile(R"(
flow: {graph: "switch(on={{mode}}) { a: nap; }"}
tasks:
  nap: {use: "t/nap"}
)"),
                               std::move(o));
  BOOST_TEST_REQUIRE(started.wait_for(1));
  cancelled.cancel();
  BOOST_TEST_REQUIRE(cancelled.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((cancelled.status() == core::RunStatus::Cancelled));
  BOOST_TEST((record(cancelled.tasks(), "switch_1").state == TaskState::Cancelled));
}

// As pyoco: only true and false (quoted or not) are boolean labels; True
// is the string "True", which no boolean matches.
BOOST_AUTO_TEST_CASE(switch_on_a_boolean_matches_true_and_false_labels) {
  for (const char* flag : {"true", "false"}) {
    BOOST_TEST_CONTEXT(flag) {
      const auto flags = json((std::string(R"({"flag": )") + flag + "}").c_str());
      Run r = run(R"(
flow: {graph: "switch(on={{flag}}) { true: yes; \"false\": no }"}
tasks:
  yes: {use: "t/emit", inputs: {value: "yes"}}
  no: {use: "t/emit", inputs: {value: "no"}}
)",
                  {{"t/emit", echo_value}}, flags);
      BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
      BOOST_TEST(r.output("switch_1").as_string() == (std::string(flag) == "true" ? "yes" : "no"));
      Run python = run(R"(
flow: {graph: "switch(on={{flag}}) { True: yes; False: no }"}
tasks:
  yes: {use: "t/emit", inputs: {value: "yes"}}
  no: {use: "t/emit", inputs: {value: "no"}}
)",
                       {{"t/emit", echo_value}}, flags);
      BOOST_TEST((python.status() == core::RunStatus::Failed));
    }
  }
  // Python's ==: the label 1 matches the subject true, and 2 matches 2.0.
  for (const char* params : {R"({"n": true})", R"({"n": 2.0})"}) {
    BOOST_TEST_CONTEXT(params) {
      Run r = run(R"(
flow: {graph: "switch(on={{n}}) { 1: yes; 2: yes; default: no }"}
tasks:
  yes: {use: "t/emit", inputs: {value: "yes"}}
  no: {use: "t/emit", inputs: {value: "no"}}
)",
                  {{"t/emit", echo_value}}, json(params));
      BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
      BOOST_TEST(r.output("switch_1").as_string() == "yes");
    }
  }
}

// A body node is read after its loop as its last run, and each frame reads
// its own: in a parallel foreach, iteration k's `b` reads iteration k's `a`
// (inside a repeat), never another iteration's that ended later.
BOOST_AUTO_TEST_CASE(body_results_are_scoped_to_the_frame_that_reads_them) {
  Run r = run(R"(
flow: {graph: "foreach(over={{items}}, parallel=4) { repeat(count=2) { a } >> b } >> c"}
tasks:
  a: {use: "t/emit", inputs: {value: "$loop.item"}}
  b: {use: "t/emit", inputs: {value: "$node.a.output"}}
  c: {use: "t/emit", inputs: {value: "$node.b.output"}}
)",
              {{"t/emit", echo_value}}, json(R"({"items": [1, 2, 3, 4, 5, 6, 7, 8]})"));
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[1,2,3,4,5,6,7,8]");
  BOOST_TEST(r.output("c").is_int());  // the b that ended last, whichever it was
}

// pyoco's loop frames: $ctx.loop is the innermost, $ctx.loops.<i> each
// enclosing loop, outermost first.
BOOST_AUTO_TEST_CASE(loop_frames_read_as_pyoco_shows_them) {
  Run r = run(R"(
flow:
  graph: |
    foreach(over={{items}}, item=it) { repeat(count=2) { switch(on={{$ctx.loops.1.index == $ctx.loop.index and $ctx.loops.0.item == $ctx.it and $ctx.loop.path == 'foreach:it[' + ($ctx.loops.0.index == 0 and '0' or '1') + '].repeat[' + ($ctx.loop.index == 0 and '0' or '1') + ']' and $ctx.loop.count == 2 and loop.iteration == $ctx.loop.index + 1}}) { true: yes; default: no } } }
tasks:
  yes: {use: "t/emit", inputs: {value: "yes"}}
  no: {use: "t/emit", inputs: {value: "no"}}
)",
              {{"t/emit", echo_value}}, json(R"({"items": ["a", "b"]})"));
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == R"([["yes","yes"],["yes","yes"]])");
  Run outside = run(R"(
flow: {graph: "switch(on={{$ctx.loops.0.index}}) { default: no }"}
tasks:
  no: {use: "t/emit", inputs: {value: "no"}}
)",
                    {{"t/emit", echo_value}});
  BOOST_TEST((outside.status() == core::RunStatus::Failed));
  const auto sw = record(outside.tasks(), "switch_1");
  BOOST_TEST(sw.error.find("not found: there are 0 enclosing loops here") != std::string::npos,
             sw.error);
}

// outputs: with a longer path sets a key inside, keeping the others.
BOOST_AUTO_TEST_CASE(outputs_paths_set_keys_inside) {
  Run r = run(R"(
flow: {graph: "a >> b >> switch(on={{scratch.s.x == 1 and scratch.s.y == 2 and params.p.q == 1}}) { true: yes; default: no }"}
tasks:
  a: {use: "t/emit", inputs: {value: 1}, outputs: ["scratch.s.x", "params.p.q"]}
  b: {use: "t/emit", inputs: {value: 2}, outputs: ["scratch.s.y"]}
  yes: {use: "t/emit", inputs: {value: "yes"}}
  no: {use: "t/emit", inputs: {value: "no"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(r.output("switch_1").as_string() == "yes");
}

// repeat(count={{expr}}): an int when the loop starts, within the limits.
BOOST_AUTO_TEST_CASE(repeat_counts_from_an_expression) {
  const char* yaml = R"(
flow: {graph: "repeat(count={{n}}) { a }"}
tasks:
  a: {use: "t/emit", inputs: {value: 1}}
)";
  Run two = run(yaml, {{"t/emit", echo_value}}, json(R"({"n": 2})"));
  BOOST_TEST_REQUIRE((two.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(two.output("repeat_1")) == "[1,1]");
  for (const auto& [n, message] : std::vector<std::pair<const char*, const char*>>{
           {R"({"n": "2"})", "must be an integer, not string \"2\""},
           {R"({"n": -1})", "is -1, a negative count"},
           {R"({"n": 1000001})", "over the limit of 1000000 iterations"}}) {
    BOOST_TEST_CONTEXT(n) {
      Run bad = run(yaml, {{"t/emit", echo_value}}, json(n));
      BOOST_TEST((bad.status() == core::RunStatus::Failed));
      const auto loop = record(bad.tasks(), "repeat_1");
      BOOST_TEST(loop.error.find(message) != std::string::npos, loop.error);
    }
  }
}

BOOST_AUTO_TEST_CASE(switch_with_no_match_and_no_default_fails_clearly) {
  Run r = run(R"(
flow: {graph: "switch(on={{mode}}) { a: x; }"}
tasks:
  x: {use: "t/emit"}
)",
              {{"t/emit", echo_value}}, json(R"({"mode": "b"})"));
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r.tasks(), "switch_1").error ==
             "switch on 'mode': no case matches \"b\" and there is no default");
}

BOOST_AUTO_TEST_CASE(named_nodes_run_one_task_twice) {
  Run r = run(R"(
flow: {graph: "first: emit >> second: emit"}
tasks:
  emit: {use: "t/emit", inputs: {value: 7}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(r.tasks().size() == 2u);
  BOOST_TEST(r.output("second").as_int() == 7);
}

BOOST_AUTO_TEST_CASE(outputs_copy_into_params) {
  Run r = run(R"(
flow: {graph: "a >> b"}
tasks:
  a: {use: "t/emit", inputs: {value: 42}, outputs: ["params.answer"]}
  b: {use: "t/emit", inputs: {value: "$ctx.params.answer"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST(r.output("b").as_int() == 42);
  BOOST_TEST(r.params().find("answer").as_int() == 42);
}

// A ready task that waits for room in the pool (more ready than the pool
// takes at once) sees the params its inputs were read with, even when a
// task that ran meanwhile changed them.
BOOST_AUTO_TEST_CASE(a_task_that_waits_for_the_pool_sees_the_params_of_its_inputs) {
  std::string graph = "w";
  std::string tasks = "  w: {use: \"t/set\", inputs: {value: 2}, outputs: [\"params.answer\"]}\n";
  constexpr int kReaders = 24;  // beyond the 4 workers and the 8 bodies queued for them
  for (int k = 0; k < kReaders; ++k) {
    graph += " & r" + std::to_string(k);
    tasks += "  r" + std::to_string(k) +
             ": {use: \"t/read\", inputs: {value: \"$ctx.params.answer\"}}\n";
  }
  Gate written;
  Run r = run("flow: {graph: \"(" + graph + ")\"}\ntasks:\n" + tasks,
              {{"t/set",
                [&](TaskCall&, const Value& in) {
                  written.open();
                  return in.find("value");
                }},
               {"t/read",
                [&](TaskCall& call, const Value& in) {
                  written.wait();  // the first readers hold the pool until w has run
                  const bool same = in.find("value").as_int() == call.param("answer").as_int();
                  return json(same ? "true" : "false");
                }}},
              json(R"({"answer": 1})"));
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  for (int k = 0; k < kReaders; ++k) {
    BOOST_TEST(r.output("r" + std::to_string(k)).as_bool(), "r" << k);
  }
  BOOST_TEST(r.params().find("answer").as_int() == 2);
}

BOOST_AUTO_TEST_CASE(a_bad_reference_at_run_time_fails_the_node_with_its_name) {
  Run r = run(R"(
flow: {graph: "a >> b"}
tasks:
  a: {use: "t/emit", inputs: {value: {x: 1}}}
  b: {use: "t/emit", inputs: {value: "$node.a.output.y"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST(record(r.tasks(), "b").error ==
             "input 'value' ($node.a.output.y): the output of 'a' has no 'y'");
}

BOOST_AUTO_TEST_CASE(cancel_ends_running_tasks_cancelled_and_tells_their_bodies) {
  // Shared with the bodies: the run ends without waiting for them, and one
  // may still be opening it as this test ends.
  auto first_started = std::make_shared<Gate>();
  Run r = engine.start(compile(R"(
flow: {graph: "(first | foreach(over={{[1, 2]}}) { inner }) >> second"}
tasks:
  first: {use: "t/block"}
  inner: {use: "t/block"}
  second: {use: "t/emit"}
)"),
                       RunOptions{json("{}"),
                                  events,
                                  std::make_shared<pyoco::LocalArtifactStore>(artifacts.path()),
                                  {{"t/emit", echo_value},
                                   {"t/block", [first_started](TaskCall& call, const Value&) {
                                      first_started->open();
                                      // Cooperative: returns once cancelled.
                                      while (!call.is_cancelled()) {
                                        std::this_thread::sleep_for(std::chrono::milliseconds(1));
                                      }
                                      return Value();
                                    }}}});
  BOOST_TEST_REQUIRE(first_started->wait());
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
  const auto t = r.tasks();
  // Ended at the cancel, not when its body returned (run_model_test shows it
  // with a body that never returns).
  BOOST_TEST((record(t, "first").state == TaskState::Cancelled));
  BOOST_TEST(record(t, "first").error == "run cancelled");
  BOOST_TEST((record(t, "second").state == TaskState::Cancelled));
  // The loop too says it was cancelled, not "run stopped" (a failure's word).
  BOOST_TEST((record(t, "foreach_1").state == TaskState::Cancelled));
  BOOST_TEST(record(t, "foreach_1").error == "run cancelled");
  BOOST_TEST(events->count(trace::EventKind::RunCancelling) == 1u);
}

BOOST_AUTO_TEST_CASE(the_caller_names_the_run_and_gives_its_environment) {
  RunOptions o;
  o.run_id = "nightly-2026.11.29";
  o.env = {{"GREETING", "hello"}};
  o.listener = events;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
  o.local_tasks = {{"t/emit", echo_value}};
  Run r = engine.start(compile(R"(
flow: {graph: "a >> b"}
tasks:
  a: {use: "t/emit", inputs: {value: "$env.GREETING"}}
  b: {use: "t/emit", inputs: {value: "$env.HOME"}}
)"),
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST(r.id() == "nightly-2026.11.29");
  BOOST_TEST(core::to_json_text(r.output("a")) == R"("hello")");
  // Only what the caller passed: the process's own HOME is not visible.
  BOOST_TEST((record(r.tasks(), "b").state == TaskState::Failed));
  BOOST_TEST(record(r.tasks(), "b").error.find("environment variable HOME is not set") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_run_id_that_is_not_safe_everywhere_is_refused) {
  const std::vector<std::string> bad_ids = {"with space", "a/b", std::string(1, '\0'),
                                            std::string(129, 'x'), "nul\n"};
  for (const std::string& bad : bad_ids) {
    RunOptions o;
    o.run_id = bad;
    o.local_tasks = {{"t/emit", echo_value}};
    BOOST_CHECK_THROW(
        engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/emit\"}\n"), std::move(o)),
        std::invalid_argument);
  }
}

// Two live runs of one id would share its artifacts' directory: the second
// start is refused, as a bad id is; once the first ended the id is free.
BOOST_AUTO_TEST_CASE(a_run_id_of_a_live_run_is_refused_until_it_ends) {
  Gate release;
  auto start = [&] {
    RunOptions o;
    o.run_id = "nightly";
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
    o.local_tasks = {{"t/hold", [&release](TaskCall&, const Value&) {
                        release.wait();
                        return Value();
                      }}};
    return engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/hold\"}\n"),
                        std::move(o));
  };
  Run first = start();
  std::string why;
  try {
    start();
    why = "started";
  } catch (const std::invalid_argument& e) {
    why = e.what();
  }
  release.open();
  BOOST_TEST(why ==
             "run id 'nightly' is not allowed: a run of this engine with that id has not ended; "
             "wait for it to end or use another id");
  BOOST_TEST_REQUIRE(first.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((first.status() == core::RunStatus::Completed));  // the refusal left it alone
  Run again = start();
  BOOST_TEST_REQUIRE(again.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((again.status() == core::RunStatus::Completed));
}

BOOST_AUTO_TEST_CASE(artifacts_are_recorded_with_size_and_sha256) {
  Run r = run(R"(
flow: {graph: save}
tasks:
  save: {use: "std/write_file", inputs: {name: "out/report.json", content: {ok: true}}}
)",
              {});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  const auto& rec = record(r.tasks(), "save");
  BOOST_TEST_REQUIRE(rec.artifacts.size() == 1u);
  const auto& a = rec.artifacts.front();
  BOOST_TEST(a.path == (artifacts.path() / r.id() / "out/report.json").string());
  BOOST_TEST(a.size == 11u);  // {"ok":true}
  BOOST_TEST(a.media_type == "application/json");
  // sha256 of {"ok":true}
  BOOST_TEST(a.sha256 == "4062edaf750fb8074e7e83e0c9028c94e32468a8b6f1614774328ef045150f93");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(cpp_flow_api_runs_the_seed_example) {
  Engine engine{EngineOptions{2, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  Flow flow{"hello"};
  auto fetch = flow.task("fetch_data", "hello/fetch_data");
  auto process =
      flow.task("process_data", "hello/process_data").input("data", "$node.fetch_data.output");
  auto shout = flow.task("shout", [](TaskCall& call, const Value& in) {
    const std::string s(in.find("result").as_string());
    return call.wrap(call.arena().make_string(s + "!"));
  });
  shout.input("result", "$node.process_data.output");
  auto save = flow.task("save_result", "hello/save_result").input("result", "$node.shout.output");
  flow >> fetch >> process >> shout >> save;

  Run run = engine.start(flow);
  run.wait();
  BOOST_TEST((run.status() == core::RunStatus::Completed));
  BOOST_TEST(run.output("save_result").as_string() == "CARROT!");
  BOOST_TEST(run.tasks().size() == 4u);
}

BOOST_AUTO_TEST_CASE(cpp_flow_api_groups) {
  Engine engine{EngineOptions{2, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  Flow flow{"groups"};
  auto task = [&](const char* name) {
    return flow.task(name, [](TaskCall& call, const Value&) {
      return call.wrap(call.arena().make_string(call.node()));
    });
  };
  auto a = task("a"), b = task("b"), c = task("c"), d = task("d");
  flow >> a >> (b & c) >> d;
  Run run = engine.start(flow);
  run.wait();
  BOOST_TEST((run.status() == core::RunStatus::Completed));
  const auto& g = flow.compiled()->graph;
  const auto& dn = g.nodes.at(static_cast<std::size_t>(g.find("d")));
  // d waits for b and c: one "all" requirement holding both.
  BOOST_TEST_REQUIRE(dn.requirements.size() == 1u);
  BOOST_TEST(!dn.requirements[0].any);
  BOOST_TEST(dn.requirements[0].nodes.size() == 2u);
}

BOOST_AUTO_TEST_CASE(cpp_flow_api_or_join_goes_on_when_one_branch_succeeds) {
  Engine engine{EngineOptions{2, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  auto build = [](Flow& flow, bool y_fails) {
    auto boom = [](TaskCall&, const Value&) -> Value { throw std::runtime_error("down"); };
    auto ok = [](TaskCall& call, const Value&) {
      return call.wrap(call.arena().make_string(call.node()));
    };
    auto x = flow.task("x", boom).fail_policy(core::FailPolicy::Isolate);
    auto y = y_fails ? flow.task("y", boom) : flow.task("y", ok);
    y.fail_policy(core::FailPolicy::Isolate);
    auto z = flow.task("z", ok);
    flow >> (x | y) >> z;
  };
  Flow one{"or_one"};
  build(one, false);
  const auto& g = one.compiled()->graph;
  const auto& zn = g.nodes.at(static_cast<std::size_t>(g.find("z")));
  BOOST_TEST_REQUIRE(zn.requirements.size() == 1u);
  BOOST_TEST(zn.requirements.front().any);  // an OR-join, not an AND-join
  Run r1 = engine.start(one);
  BOOST_TEST_REQUIRE(r1.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((EngineFixture::record(r1.tasks(), "x").state == TaskState::Failed));
  BOOST_TEST((EngineFixture::record(r1.tasks(), "z").state == TaskState::Succeeded));
  BOOST_TEST(r1.output("z").as_string() == "z");

  Flow none{"or_none"};
  build(none, true);
  Run r2 = engine.start(none);
  BOOST_TEST_REQUIRE(r2.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((r2.status() == core::RunStatus::Failed));
  BOOST_TEST((EngineFixture::record(r2.tasks(), "z").state == TaskState::Skipped));
}

BOOST_AUTO_TEST_CASE(cpp_flow_api_policy_setters_take_effect) {
  // Declared before the engine: its destructor waits for task bodies using them.
  Gate release, body_done;
  std::atomic<int> calls{0};
  auto events = std::make_shared<pyoco::testing::EventLog>();
  Engine engine{EngineOptions{2, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  Flow flow{"policies"};
  // retries: fails twice, then succeeds on the third attempt.
  auto flaky = flow.task("flaky",
                         [&](TaskCall& call, const Value&) -> Value {
                           if (++calls < 3) throw std::runtime_error("transient");
                           return call.wrap(call.arena().make_int(calls.load()));
                         })
                   .retries(2, core::RetryBackoff{1, 2, 5, false});
  // timeout: blocked until the test lets it go; fails at the deadline.
  auto slow = flow.task("slow",
                        [&](TaskCall&, const Value&) {
                          release.wait();
                          body_done.open();
                          return Value();
                        })
                  .timeout(0.05)
                  .fail_policy(core::FailPolicy::Isolate);
  auto after = flow.task("after", [](TaskCall&, const Value&) { return Value(); });
  auto other = flow.task("other", [](TaskCall&, const Value&) { return Value(); });
  flow >> flaky >> slow >> after;
  flow >> flaky >> other;

  RunOptions o;
  o.listener = events;
  Run r = engine.start(flow, {}, std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  // The run ended while slow's body was still blocked.
  release.open();
  BOOST_TEST_REQUIRE(body_done.wait());
  const auto t = r.tasks();
  BOOST_TEST((EngineFixture::record(t, "flaky").state == TaskState::Succeeded));
  BOOST_TEST(EngineFixture::record(t, "flaky").attempts == 3u);
  BOOST_TEST(r.output("flaky").as_int() == 3);
  BOOST_TEST(events->count(trace::EventKind::NodeRetry, "flaky") == 2u);
  BOOST_TEST((EngineFixture::record(t, "slow").state == TaskState::Failed));
  BOOST_TEST(EngineFixture::record(t, "slow").error == "timed out after 0.05 s");
  // isolate: downstream skipped, the independent branch ran, the run failed.
  BOOST_TEST((EngineFixture::record(t, "after").state == TaskState::Skipped));
  BOOST_TEST((EngineFixture::record(t, "other").state == TaskState::Succeeded));
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  // The spec the engine ran carries what the setters said.
  const auto spec = flow.compiled()->spec;
  BOOST_TEST(spec->find_task("flaky")->retries == 2u);
  BOOST_TEST(spec->find_task("flaky")->backoff.jitter == false);
  BOOST_TEST(spec->find_task("slow")->timeout_sec == 0.05);
  BOOST_TEST((spec->find_task("slow")->fail_policy == core::FailPolicy::Isolate));
}

// A flow built in C++ skips the file's checks: the engine saturates waits
// itself, so a huge timeout is no timeout (it used to fire at once) and a
// huge backoff waits 30 days, not a negative time (issue 12).
BOOST_AUTO_TEST_CASE(cpp_flow_api_huge_timeouts_and_backoffs_saturate) {
  auto events = std::make_shared<pyoco::testing::EventLog>();
  Engine engine{EngineOptions{2, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  Flow flow{"huge"};
  auto slow = flow.task("slow",
                        [](TaskCall&, const Value&) {
                          std::this_thread::sleep_for(std::chrono::milliseconds(50));
                          return Value();
                        })
                  .timeout(1e10);
  auto flaky =
      flow.task("flaky",
                [](TaskCall&, const Value&) -> Value { throw std::runtime_error("transient"); })
          .retries(1, core::RetryBackoff{1e13, 2, 1e19, false});
  flow >> slow >> flaky;
  RunOptions o;
  o.listener = events;
  Run r = engine.start(flow, {}, std::move(o));
  BOOST_TEST_REQUIRE(
      pyoco::testing::eventually([&] { return events->count(trace::EventKind::NodeRetry) == 1; }));
  const auto rs = r.tasks();
  BOOST_TEST((pyoco::testing::record_of(rs, "slow").state == TaskState::Succeeded));
  const auto retry = events->of(trace::EventKind::NodeRetry);
  BOOST_TEST_REQUIRE(retry.size() == 1u);
  BOOST_TEST(retry[0].delay_ms == 30.0 * 24 * 3600 * 1000);
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
}

// Building a C++ flow of 100,000 tasks takes a moment: a repeated name is
// found in a set and a node's spec by its index (both scanned every task,
// 100,000 of them took minutes). A repeated name is still refused.
BOOST_AUTO_TEST_CASE(cpp_flow_api_builds_100000_tasks_in_a_moment) {
  Flow flow{"wide"};
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100000; ++i) {
    flow.task("t" + std::to_string(i), "std/echo").input("value", "x").retries(1);
  }
  // 60 s: minutes with the bug, tens of seconds under -O0 sanitizers without it.
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::seconds(60)));
  BOOST_CHECK_THROW(flow.task("t99999", "std/echo"), std::invalid_argument);
  BOOST_TEST(flow.task("t100000", "std/echo").input("value", "y").name() == "t100000");
}

// A flow compiled for check keeps running out of reach while it has a cycle.
BOOST_AUTO_TEST_CASE(a_flow_with_a_cycle_compiled_for_check_is_refused) {
  Engine engine{EngineOptions{1, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  auto flow = std::make_shared<const core::CompiledFlow>(
      core::compile_flow_for_check(std::make_shared<const core::FlowSpec>(core::parse_flow_text(
          "flow: {graph: \"a >> b >> a\"}\ntasks:\n  a: {use: t/x}\n  b: {use: t/x}\n",
          "f.yaml"))));
  RunOptions o;
  o.local_tasks = {{"t/x", echo_value}};
  BOOST_CHECK_EXCEPTION(
      engine.start(flow, std::move(o)), core::FlowError, [](const core::FlowError& e) {
        return std::string(e.what()).find("cycle: a -> b -> a") != std::string::npos;
      });
}

// ---- docs/flows.md, promise by promise --------------------------------------

// "Any FAILED task makes the run FAILED, even when an OR-join went on
// without it."
BOOST_FIXTURE_TEST_CASE(a_failed_branch_of_an_or_join_still_fails_the_run, EngineFixture) {
  Run r =
      run(R"(
flow: {graph: "(primary | mirror) >> use_it"}
tasks:
  primary: {use: "t/boom", fail_policy: isolate}
  mirror: {use: "t/emit", inputs: {value: 1}}
  use_it: {use: "t/emit", inputs: {value: 2}}
)",
          {{"t/emit", echo_value},
           {"t/boom", [](TaskCall&, const Value&) -> Value { throw std::runtime_error("down"); }}});
  BOOST_TEST((record(r.tasks(), "use_it").state == TaskState::Succeeded));
  BOOST_TEST((r.status() == core::RunStatus::Failed));
}

// "A declared input of the task that `inputs:` does not bind is filled, in
// this order, from a loop variable of that name, a run param of that name,
// or the output of an upstream node of that name." (std/echo declares
// `value`.)
BOOST_FIXTURE_TEST_CASE(unbound_inputs_are_filled_by_name_in_the_documented_order, EngineFixture) {
  struct Case {
    const char* what;
    const char* graph;
    const char* params;
    const char* output;  // of the last node, JSON
  };
  const std::vector<Case> table = {
      {"a loop variable before a param and a node",
       "value: up >> foreach(over={{['loop']}}, item=value) { echo }", R"({"value": "param"})",
       R"(["loop"])"},
      {"a param before a node", "value: up >> echo", R"({"value": "param"})", R"("param")"},
      {"an upstream node", "value: up >> echo", "{}", R"("node")"},
      {"nothing of that name: unbound", "up >> echo", "{}", "null"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.what) {
      Run r = run(std::string("flow: {graph: \"") + c.graph + R"("}
tasks:
  up: {use: "std/echo", inputs: {value: "node"}}
  echo: {use: "std/echo"}
)",
                  {}, json(c.params));
      BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
      const std::string last =
          std::string(c.graph).find("foreach") != std::string::npos ? "foreach_1" : "echo";
      BOOST_TEST(core::to_json_text(r.output(last)) == c.output);
    }
  }
}

// `outputs:` paths: params.<key>, scratch.<key> and results.<key>, and a
// node's output as results.<node> in expressions.
BOOST_FIXTURE_TEST_CASE(outputs_copy_to_params_scratch_and_results, EngineFixture) {
  Run r = run(R"(
flow:
  graph: |
    a >> switch(on={{results.alias == 1 and scratch.s == 1 and params.p == 1 and results.a == 1}}) { true: yes; default: no } >> b
tasks:
  a: {use: "t/emit", inputs: {value: 1}, outputs: ["params.p", "scratch.s", "results.alias"]}
  yes: {use: "t/emit", inputs: {value: "yes"}}
  no: {use: "t/emit", inputs: {value: "no"}}
  b: {use: "t/scratch"}
)",
              {{"t/emit", echo_value},
               {"t/scratch", [](TaskCall& call, const Value&) { return call.scratch("s"); }}},
              json(R"({"p": 0})"));  // what a node copies wins over --param
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(r.output("switch_1").as_string() == "yes");
  BOOST_TEST(r.output("b").as_int() == 1);  // tasks read it with ctx.scratch("s")
  BOOST_TEST(r.params().find("p").as_int() == 1);
}

// Each iteration's `$loop.index` lives in a value of its own, so collecting
// them gathers as many arenas as iterations (this was O(n^2): 200,000
// iterations took 36 s; docs/performance.md). The list is whole and in order.
BOOST_FIXTURE_TEST_CASE(a_loop_collects_each_iterations_loop_index_in_order, EngineFixture) {
  constexpr int kIterations = 2000;
  Run r = run("flow: {graph: \"repeat(count=" + std::to_string(kIterations) +
                  R"(, collect=list) { x }"}
tasks:
  x: {use: "t/emit", inputs: {value: "$loop.index"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  const Value out = r.output("repeat_1");
  BOOST_TEST_REQUIRE(out.size() == static_cast<std::size_t>(kIterations));
  for (int k = 0; k < kIterations; ++k) BOOST_TEST_REQUIRE(out.at(k).as_int() == k);
}

// "An iteration's output is the output of its body's last node, or, when
// the body ends in several nodes, an object of their outputs by name."
// "An iteration that fails ends the loop: no further iteration starts."
BOOST_FIXTURE_TEST_CASE(an_iteration_s_output_and_failure, EngineFixture) {
  Run r = run(R"(
flow: {graph: "repeat(count=2) { first >> (x & y) }"}
tasks:
  first: {use: "t/emit", inputs: {value: 0}}
  x: {use: "t/emit", inputs: {value: "$loop.index"}}
  y: {use: "t/emit", inputs: {value: "y"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("repeat_1")) == R"([{"x":0,"y":"y"},{"x":1,"y":"y"}])");

  // Under `stop` the failed iteration stops the run: the loop node, still
  // running, is cancelled with the rest. Under `isolate` the loop node fails.
  auto boom = [](TaskCall&, const Value&) -> Value { throw std::runtime_error("broke"); };
  for (const char* policy : {"stop", "isolate"}) {
    BOOST_TEST_CONTEXT(policy) {
      Run failed = run(std::string(R"(
flow: {graph: "repeat(count=3) { boom } >> after"}
tasks:
  boom: {use: "t/boom", fail_policy: )") +
                           policy + R"(}
  after: {use: "t/emit"}
)",
                       {{"t/emit", echo_value}, {"t/boom", boom}});
      const auto t = failed.tasks();
      BOOST_TEST((failed.status() == core::RunStatus::Failed));
      BOOST_TEST((record(t, "boom[0]").state == TaskState::Failed));
      BOOST_TEST(t.size() == 3u);  // no second iteration started
      BOOST_TEST((record(t, "after").state == TaskState::Cancelled));
      if (std::string(policy) == "stop") {
        BOOST_TEST((record(t, "repeat_1").state == TaskState::Cancelled));
      } else {
        BOOST_TEST((record(t, "repeat_1").state == TaskState::Failed));
        BOOST_TEST(record(t, "repeat_1").error == "iteration 0 did not succeed: boom[0]: broke");
      }
    }
  }
}

// docs/flows.md: a failed loop names the iterations that did not succeed
// (the lowest, past six "and N more") and the error of the lowest, whatever
// order they ended in.
BOOST_FIXTURE_TEST_CASE(a_failed_loop_names_every_failed_iteration, EngineFixture) {
  auto big = [](TaskCall&, const Value& in) -> Value {
    const std::int64_t v = in.find("value").as_int();
    if (v >= 4) throw std::runtime_error("too big: " + std::to_string(v));
    return in.find("value");
  };
  struct Case {
    int items;
    std::string error;
  };
  const std::vector<Case> table = {
      {5, "iteration 4 did not succeed: check[4]: too big: 4"},
      {6, "iterations 4 and 5 did not succeed; iteration 4: check[4]: too big: 4"},
      {10, "iterations 4, 5, 6, 7, 8 and 9 did not succeed; iteration 4: check[4]: too big: 4"},
      {12,
       "iterations 4, 5, 6, 7, 8 and 3 more did not succeed; iteration 4: check[4]: too big: 4"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.items << " items") {
      std::string items = R"({"items": [0)";
      for (int k = 1; k < c.items; ++k) items += "," + std::to_string(k);
      Run failed = run(R"(
flow: {graph: "foreach(over={{items}}, item=it, parallel=20) { check }"}
tasks:
  check: {use: "t/big", fail_policy: isolate, inputs: {value: "$loop.it"}}
)",
                       {{"t/big", big}}, json((items + "]}").c_str()));
      const auto t = failed.tasks();
      BOOST_TEST((failed.status() == core::RunStatus::Failed));
      BOOST_TEST((record(t, "foreach_1").state == TaskState::Failed));
      BOOST_TEST(record(t, "foreach_1").error == c.error);
    }
  }
}

// "`results.<node>` there is the output of that iteration's node"; nested
// iterations are named load[2][0].
BOOST_FIXTURE_TEST_CASE(until_reads_this_iteration_and_nested_bodies_are_numbered, EngineFixture) {
  Run r = run(R"(
flow:
  graph: |
    until(cond={{results.step >= 2}}, max_iter=5) { step }
    foreach(over={{[1, 2, 3]}}) { repeat(count=1) { load } }
tasks:
  step: {use: "t/emit", inputs: {value: "$loop.index"}}
  load: {use: "t/emit", inputs: {value: "$loop.index"}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("until_1")) == "[0,1,2]");
  BOOST_TEST((record(r.tasks(), "load[2][0]").state == TaskState::Succeeded));
  BOOST_TEST(core::to_json_text(r.output("foreach_1")) == "[[0],[0],[0]]");
}

// "A reference that is fine on paper but finds nothing at run time ...
// fails that node with one line ..., without retrying."
BOOST_FIXTURE_TEST_CASE(a_reference_that_finds_nothing_fails_without_retrying, EngineFixture) {
  Run r = run(R"(
flow: {graph: "a"}
tasks:
  a: {use: "t/emit", inputs: {value: "$ctx.params.limit"}, retries: 3, retry_backoff: {initial_ms: 1}}
)",
              {{"t/emit", echo_value}});
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const auto a = record(r.tasks(), "a");
  BOOST_TEST(a.error ==
             "input 'value' ($ctx.params.limit): param 'limit' is not set (pass --param "
             "limit=...)");
  BOOST_TEST(a.attempts == 1u);
  BOOST_TEST(events->count(trace::EventKind::NodeRetry) == 0u);
}

// Switch labels compile as pyoco's do (digits are an int, quoted or not;
// 2.5 is the string "2.5") and match by Python's ==; a foreach over what is
// not a list fails its node.
BOOST_FIXTURE_TEST_CASE(switch_labels_and_foreach_over_a_non_list, EngineFixture) {
  const char* yaml = R"(
flow: {graph: "switch(on={{n}}) { \"3\": three; 2.5: half; default: other }"}
tasks:
  three: {use: "t/emit", inputs: {value: "three"}}
  half: {use: "t/emit", inputs: {value: "half"}}
  other: {use: "t/emit", inputs: {value: "other"}}
)";
  const std::vector<std::pair<const char*, const char*>> table = {
      {R"({"n": 3})", "three"},    {R"({"n": 3.0})", "three"},
      {R"({"n": "3"})", "other"},  // "3" is the label 3, which no string equals
      {R"({"n": 2.5})", "other"},  // 2.5 is the label "2.5", which no number equals
      {R"({"n": "2.5"})", "half"}, {R"({"n": 4})", "other"}};
  for (const auto& [params, chosen] : table) {
    BOOST_TEST_CONTEXT(params) {
      Run r = run(yaml, {{"t/emit", echo_value}}, json(params));
      BOOST_TEST(r.output("switch_1").as_string() == chosen);
    }
  }
  Run bad = run(R"(
flow: {graph: "foreach(over={{items}}) { a }"}
tasks:
  a: {use: "t/emit"}
)",
                {{"t/emit", echo_value}}, json(R"({"items": "abc"})"));
  BOOST_TEST((bad.status() == core::RunStatus::Failed));
  BOOST_TEST(record(bad.tasks(), "foreach_1").error ==
             "foreach over 'items': expected a list, got string");
}

// "The wait before retry k is min(initial_ms x factor^(k-1), max_ms),
// multiplied by a random factor in [0.5, 1) when jitter is on."
BOOST_FIXTURE_TEST_CASE(retry_waits_grow_to_max_ms_and_jitter_halves_at_most, EngineFixture) {
  auto delays = [&](const char* backoff) {
    events = std::make_shared<pyoco::testing::EventLog>();
    Run r = run(std::string(R"(
flow: {graph: flaky}
tasks:
  flaky: {use: "std/fail", inputs: {times: -1}, retries: 4, retry_backoff: )") +
                    backoff + "}\n",
                {});
    BOOST_TEST((r.status() == core::RunStatus::Failed));
    std::vector<double> out;
    for (const auto& e : events->of(trace::EventKind::NodeRetry)) out.push_back(e.delay_ms);
    return out;
  };
  BOOST_TEST(delays("{initial_ms: 2, factor: 3, max_ms: 30, jitter: false}") ==
                 (std::vector<double>{2, 6, 18, 30}),
             boost::test_tools::per_element());
  const auto jittered = delays("{initial_ms: 8, factor: 1, max_ms: 8, jitter: true}");
  BOOST_TEST_REQUIRE(jittered.size() == 4u);
  for (double d : jittered) {
    BOOST_TEST(d >= 4.0);
    BOOST_TEST(d < 8.0);
  }
}

// A run cancelled while a task waits out its backoff: the task ends
// CANCELLED with the error that made it wait, not a bare "run cancelled",
// and counts the attempts that ran; with every worker held meanwhile.
BOOST_FIXTURE_TEST_CASE(a_cancel_while_a_task_waits_to_retry_keeps_why_it_failed, EngineFixture) {
  for (const unsigned jobs : {1u, 2u}) {
    BOOST_TEST_CONTEXT("jobs " << jobs) {
      Engine e{EngineOptions{jobs, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
      RunOptions a;
      a.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
      Run flaky = e.start(compile(R"(
flow: {graph: f}
tasks:
  f: {use: "std/fail", inputs: {times: -1, message: "service unavailable"}, retries: 3,
      retry_backoff: {initial_ms: 60000, max_ms: 60000, jitter: false}}
)"),
                          std::move(a));
      BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] {
        const auto t = flaky.tasks();
        return !t.empty() && t[0].error.find("service unavailable") != std::string::npos;
      }));
      const TaskRecord waiting = flaky.tasks()[0];
      BOOST_TEST((waiting.state == TaskState::Running));
      BOOST_TEST(waiting.attempts == 1u);  // the attempts that ran

      auto gate = std::make_shared<pyoco::testing::Gate>();
      auto held = std::make_shared<std::atomic<unsigned>>(0);
      RunOptions b;
      b.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
      b.local_tasks = {{"t/hold", [gate, held](TaskCall&, const Value&) {
                          ++*held;
                          gate->wait();
                          return Value();
                        }}};
      Run holds = e.start(compile("flow: {graph: \"(h1 & h2)\"}\ntasks: {h1: {use: t/hold}, h2: "
                                  "{use: t/hold}}\n"),
                          std::move(b));
      BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return held->load() == jobs; }));

      flaky.cancel();
      BOOST_TEST_REQUIRE(flaky.wait_for(std::chrono::seconds(2)));
      const TaskRecord t = flaky.tasks()[0];
      BOOST_TEST((t.state == TaskState::Cancelled));
      BOOST_TEST(t.error.starts_with("run cancelled while it waited to retry (attempt 1: "),
                 t.error);
      BOOST_TEST(t.error.find("service unavailable") != std::string::npos, t.error);
      BOOST_TEST(t.attempts == 1u);
      gate->open();
      BOOST_TEST(holds.wait_for(std::chrono::seconds(20)));
    }
  }
}

// "Inputs and references": every form of the table, walking into objects
// and arrays.
BOOST_FIXTURE_TEST_CASE(every_reference_form_resolves, EngineFixture) {
  RunOptions o;
  o.env = {{"GREETING", "hello"}};
  o.params = json(R"({"cfg": {"k": [10, 20]}})");
  o.listener = events;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
  o.local_tasks = {{"t/emit", echo_value}};
  Run r = engine.start(compile(R"yaml(
flow: {graph: "fetch >> (whole & part & param & env)"}
tasks:
  fetch: {use: "t/emit", inputs: {value: {items: [{id: 7}, {id: 8}]}}}
  whole: {use: "t/emit", inputs: {value: "$node.fetch.output"}}
  part: {use: "t/emit", inputs: {value: "$node.fetch.output.items.1.id"}}
  param: {use: "t/emit", inputs: {value: "$ctx.params.cfg.k.1"}}
  env: {use: "t/emit", inputs: {value: "$env.GREETING"}}
)yaml"),
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("whole")) == R"({"items":[{"id":7},{"id":8}]})");
  BOOST_TEST(r.output("part").as_int() == 8);
  BOOST_TEST(r.output("param").as_int() == 20);
  BOOST_TEST(r.output("env").as_string() == "hello");
}

// docs/plugins.md "What you can rely on": one instance per node per run,
// kept across retries (std/fail counts its calls), and each loop iteration
// runs the node afresh, with a new instance.
BOOST_FIXTURE_TEST_CASE(each_iteration_gets_a_new_instance_kept_across_its_retries, EngineFixture) {
  Run r = run(R"(
flow: {graph: "repeat(count=3) { flaky }"}
tasks:
  flaky: {use: "std/fail", inputs: {times: 1}, retries: 1, retry_backoff: {initial_ms: 1}}
)",
              {});
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  // Each iteration: call 1 fails, call 2 (the retry, same instance) succeeds.
  BOOST_TEST(core::to_json_text(r.output("repeat_1")) == "[2,2,2]");
}

namespace {

// The build's std plugin copied to `dir` as version `version`: a second
// plugin of the same name, as a worker's repository install is.
fs::path std_copy(const fs::path& dir, const std::string& version) {
  const fs::path from = pyoco::testing::binary_dir() / "lib/pyoco/plugins/std";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(from)) fs::copy(e.path(), dir / e.path().filename());
  std::ifstream in(dir / "plugin.toml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto at = text.find("version = \"");
  text.replace(at, text.find('"', at + 11) + 1 - at, "version = \"" + version + "\"");
  std::ofstream(dir / "plugin.toml", std::ios::trunc) << text;
  return dir;
}

}  // namespace

// The plugin set is replaced while a run is going: the run finishes on the
// plugin it bound; a run started after binds the new one; each says which.
BOOST_AUTO_TEST_CASE(a_run_keeps_its_plugins_when_the_set_is_replaced) {
  pyoco::testing::TempDir dir, artifacts;
  const fs::path install = pyoco::testing::binary_dir() / "lib/pyoco/plugins";
  Engine engine(EngineOptions{2, {std_copy(dir.path() / "a/std", "7.0.0"), install}});
  const auto flow = compile(R"(
flow: {graph: "hold >> echo"}
tasks:
  hold: {use: "t/hold"}
  echo: {use: "std/echo", inputs: {value: "hi"}}
)");
  Gate release;
  auto start = [&] {
    RunOptions o;
    o.local_tasks = {{"t/hold", [&](TaskCall&, const Value&) {
                        release.wait();
                        return Value();
                      }}};
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
    return engine.start(flow, std::move(o));
  };
  Run before = start();
  BOOST_TEST(before.plugins().at("std") == "7.0.0");
  BOOST_TEST(before.plugins().count("local") == 0u);

  const auto old_catalog = engine.catalog();
  engine.set_plugin_search_path({std_copy(dir.path() / "b/std", "8.0.0"), install});
  BOOST_TEST(engine.catalog()->find_plugin("std")->manifest.version == "8.0.0");
  BOOST_TEST(old_catalog->find_plugin("std")->manifest.version == "7.0.0");  // still valid
  Run after = start();
  BOOST_TEST(after.plugins().at("std") == "8.0.0");

  release.open();
  BOOST_TEST_REQUIRE(before.wait_for(std::chrono::seconds(30)));
  BOOST_TEST_REQUIRE(after.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((before.status() == core::RunStatus::Completed));
  BOOST_TEST((after.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(before.output("echo")) == "\"hi\"");
  BOOST_TEST(core::to_json_text(after.output("echo")) == "\"hi\"");
  BOOST_TEST(before.plugins().at("std") == "7.0.0");  // what it bound, whatever came later
}

// A flow's `plugins:` names the least version it needs: an older plugin
// fails the start, naming what it needs and what there is.
BOOST_AUTO_TEST_CASE(a_flow_needing_a_newer_plugin_does_not_start) {
  Engine engine(EngineOptions{1, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}});
  const auto version = engine.catalog()->find_plugin("std")->manifest.version;
  const auto needs = [](const std::string& v) {
    return compile(
        "plugins: {std: \"" + v +
        "\"}\nflow: {graph: echo}\ntasks:\n  echo: {use: \"std/echo\", inputs: {value: 1}}\n");
  };
  pyoco::testing::TempDir artifacts;
  RunOptions o;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
  Run ok = engine.start(needs(version), o);
  BOOST_TEST_REQUIRE(ok.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((ok.status() == core::RunStatus::Completed));
  try {
    engine.start(needs("99.0.0"), RunOptions{});
    BOOST_ERROR("a flow needing std 99.0.0 started");
  } catch (const core::FlowError& e) {
    BOOST_TEST(std::string(e.what()).find("flow needs plugin std >= 99.0.0; this host has " +
                                          version) != std::string::npos,
               e.what());
    BOOST_TEST(e.where().line == 1u);
  }
  try {
    engine.start(
        compile("plugins: {nope: \"1.0.0\"}\nflow: {graph: a}\ntasks: {a: {use: std/echo}}\n"),
        RunOptions{});
    BOOST_ERROR("a flow needing a plugin nobody has started");
  } catch (const core::FlowError& e) {
    BOOST_TEST(std::string(e.what()).find("there is no plugin nope") != std::string::npos,
               e.what());
  }
}

namespace {

// A listener given directly: it runs inside a run's control.
class CallingListener : public trace::EventListener {
 public:
  std::function<void(const trace::RunEvent&)> call;
  void on_event(const trace::RunEvent& e) override { call(e); }
};

class ThrowingListener : public trace::EventListener {
 public:
  std::atomic<int> heard{0};
  void on_event(const trace::RunEvent&) override {
    ++heard;
    throw std::runtime_error("listener boom");
  }
};

Flow one_task_flow(const std::string& name, TaskFn fn) {
  Flow flow{name};
  auto a = flow.task("a", std::move(fn));
  flow >> a;
  return flow;
}

}  // namespace

// A direct listener runs inside a run's control: a call there that waits
// for another run's control, or for a run's end, could wait for this very
// thread, and every run of the engine hung (~Engine too). Refused instead,
// with what to do; reading its own run there still works.
BOOST_AUTO_TEST_CASE(a_direct_listener_that_would_wait_for_a_run_is_refused_not_hung) {
  Engine engine{EngineOptions{1, {}}};
  Gate release;
  Run held = engine.start(one_task_flow("held", [&](TaskCall&, const Value&) {
    release.wait();
    return Value();
  }));
  std::mutex m;
  std::vector<std::string> refused;
  std::optional<bool> looked;
  auto listener = std::make_shared<CallingListener>();
  listener->call = [&](const trace::RunEvent& e) {
    if (e.kind != trace::EventKind::NodeStart) return;
    std::lock_guard lock(m);
    for (auto attempt : std::vector<std::function<void()>>{
             [&] { (void)held.tasks(); }, [&] { (void)held.params(); },
             [&] { (void)held.output("a"); }, [&] { held.wait(); },
             [&] { (void)held.wait_for(std::chrono::seconds(5)); }}) {
      try {
        attempt();
      } catch (const std::logic_error& x) {
        refused.emplace_back(x.what());
      }
    }
    looked = held.wait_for(std::chrono::milliseconds(0));  // a look: allowed, no throw
  };
  RunOptions o;
  o.listener = listener;
  Run r = engine.start(one_task_flow("listening", [](TaskCall&, const Value&) { return Value(); }),
                       {}, std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  release.open();
  BOOST_TEST_REQUIRE(held.wait_for(std::chrono::seconds(30)));
  std::lock_guard lock(m);
  BOOST_TEST_REQUIRE(refused.size() == 5u);
  BOOST_TEST((looked == std::optional<bool>(false)));
  BOOST_TEST(refused[0].find("tasks() of run " + held.id() +
                             " was called inside the engine's control") != std::string::npos,
             refused[0]);
  BOOST_TEST(refused[0].find("trace::EventQueue") != std::string::npos);
}

// What a listener throws is caught: the run and the other listeners go on
// (it ended the process with std::terminate), given directly or behind a
// queue.
BOOST_AUTO_TEST_CASE(a_listener_that_throws_does_not_end_the_process) {
  Engine engine{EngineOptions{2, {}}};
  auto direct = std::make_shared<ThrowingListener>();
  RunOptions o;
  o.listener = direct;
  Run r = engine.start(one_task_flow("throws", [](TaskCall&, const Value&) { return Value(); }), {},
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(direct->heard.load() >= 3);  // every event was offered, each threw

  auto queued = std::make_shared<ThrowingListener>();
  auto log = std::make_shared<pyoco::testing::EventLog>();
  auto queue = std::make_shared<trace::EventQueue>();
  queue->add(queued);
  queue->add(log);
  RunOptions q;
  q.listener = queue;
  Run r2 = engine.start(one_task_flow("queued", [](TaskCall&, const Value&) { return Value(); }),
                        {}, std::move(q));
  BOOST_TEST_REQUIRE(r2.wait_for(std::chrono::seconds(30)));
  queue->flush();
  BOOST_TEST(queued->heard.load() >= 1);
  BOOST_TEST(log->count(trace::EventKind::RunEnd) == 1u);  // the next listener heard all
}

// Params are an object: an array used to be read as an object's members
// (garbage sizes: bad_alloc or worse); an int was taken as {}.
BOOST_AUTO_TEST_CASE(params_that_are_not_an_object_are_refused) {
  Engine engine{EngineOptions{1, {}}};
  Flow flow = one_task_flow("p", [](TaskCall&, const Value&) { return Value(); });
  for (const char* bad : {"[1, 2, 3]", "7", "\"text\""}) {
    BOOST_CHECK_THROW(engine.start(flow, json(bad)), std::invalid_argument);
    BOOST_CHECK_THROW(flow.defaults(json(bad)), std::invalid_argument);
  }
  // One check, one message: "<what> must be an object (JSON {...}), not <kind>".
  auto message = [](auto&& call) {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  BOOST_TEST(message([&] { engine.start(flow, json("[1]")); }) ==
             "pyoco::Engine::start: params must be an object (JSON {...}), not array");
  BOOST_TEST(message([&] {
               RunOptions o;
               o.params = json("7");
               engine.start(flow, {}, std::move(o));
             }) ==
             "pyoco::Engine::start: RunOptions::params must be an object (JSON {...}), not "
             "int");
  BOOST_TEST(message([&] { flow.defaults(json("\"text\"")); }) ==
             "pyoco::Flow p: defaults must be an object (JSON {...}), not string");
  Run ok = engine.start(flow, json(R"({"n": 1})"));
  BOOST_TEST_REQUIRE(ok.wait_for(std::chrono::seconds(30)));
  BOOST_TEST(ok.params().find("n").as_int() == 1);
}

// RunOptions::params are merged under the params given to start(flow,
// params, options), both over the flow's defaults (they were dropped).
BOOST_AUTO_TEST_CASE(start_with_params_and_options_merges_both) {
  Engine engine{EngineOptions{1, {}}};
  Flow flow = one_task_flow("m", [](TaskCall&, const Value&) { return Value(); });
  flow.defaults(json(R"({"who": "default", "n": 1, "keep": true})"));
  RunOptions o;
  o.params = json(R"({"who": "options", "n": 2})");
  Run r = engine.start(flow, json(R"({"n": 3})"), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST(r.params().find("who").as_string() == "options");
  BOOST_TEST(r.params().find("n").as_int() == 3);
  BOOST_TEST(r.params().find("keep").as_bool());
}

// milliseconds::max() is "for ever": it overflowed to a time already past
// and returned false at once.
BOOST_AUTO_TEST_CASE(wait_for_the_longest_limit_waits_for_the_end) {
  Engine engine{EngineOptions{1, {}}};
  Run r = engine.start(one_task_flow("w", [](TaskCall&, const Value&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return Value();
  }));
  BOOST_TEST(r.wait_for(std::chrono::milliseconds::max()));
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  BOOST_TEST(r.wait_for(std::chrono::hours(24 * 365 * 300)));
}

// A copy of a Flow is a flow of its own (it shared its tasks and defaults
// with the original, whose own later task was then ignored).
BOOST_AUTO_TEST_CASE(a_copied_flow_is_a_flow_of_its_own) {
  Flow f{"orig"};
  auto a =
      f.task("a", [](TaskCall& c, const Value&) { return c.wrap(c.arena().make_string("a")); });
  f >> a;
  Flow g = f;
  g.defaults(json(R"({"copy": true})"));
  auto gb = g.task(
      "b", [](TaskCall& c, const Value&) { return c.wrap(c.arena().make_string("from copy")); });
  g >> gb;
  auto fb = f.task(
      "b", [](TaskCall& c, const Value&) { return c.wrap(c.arena().make_string("from orig")); });
  f >> fb;
  Engine engine{EngineOptions{1, {}}};
  Run r = engine.start(f);
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST(r.output("b").as_string() == "from orig");
  BOOST_TEST(!r.params().contains("copy"));
  Run rg = engine.start(g);
  BOOST_TEST_REQUIRE(rg.wait_for(std::chrono::seconds(30)));
  BOOST_TEST(rg.output("b").as_string() == "from copy");
}

// The C++ builder refuses what a flow file refuses (an outputs path that
// goes nowhere was copied nowhere; a negative or NaN timeout meant none).
BOOST_AUTO_TEST_CASE(cpp_flow_api_refuses_what_a_flow_file_refuses) {
  Flow f{"v"};
  auto a = f.task("a", "std/echo");
  for (const char* bad : {"nope.x", "", "ctx.params.x", "params.", "params", "params..x"}) {
    BOOST_CHECK_THROW(a.output_to(bad), std::invalid_argument);
  }
  a.output_to("params.saved");
  BOOST_CHECK_THROW(a.timeout(-1), std::invalid_argument);
  BOOST_CHECK_THROW(a.timeout(std::nan("")), std::invalid_argument);
  a.timeout(0);  // none, the default
  BOOST_CHECK_THROW(a.retries(1001), std::invalid_argument);
  BOOST_CHECK_THROW(a.retries(1, core::RetryBackoff{-1, 2, 10, false}), std::invalid_argument);
  BOOST_CHECK_THROW(a.retries(1, core::RetryBackoff{1, 0.5, 10, false}), std::invalid_argument);
  try {
    a.output_to("nope.x");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string(e.what()).find("must start with params., scratch. or results.") !=
               std::string::npos);
  }
}

// A wide group built in a loop: `fan &= node` adds branches in place and
// makes the same one group as `a & b & c`.
BOOST_AUTO_TEST_CASE(cpp_flow_api_builds_a_group_in_a_loop) {
  Flow f{"fan"};
  auto task = [&](const std::string& name) {
    return f.task(name, [](TaskCall&, const Value&) { return Value(); });
  };
  auto head = task("head"), tail = task("tail");
  Step fan = task("b0");
  for (int i = 1; i < 2000; ++i) fan &= task("b" + std::to_string(i));
  f >> head >> fan >> tail;
  const auto& g = f.compiled()->graph;
  const auto& t = g.nodes.at(static_cast<std::size_t>(g.find("tail")));
  BOOST_TEST_REQUIRE(t.requirements.size() == 1u);
  BOOST_TEST(t.requirements[0].nodes.size() == 2000u);
  Engine engine{EngineOptions{2, {}}};
  Run r = engine.start(f);
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((r.status() == core::RunStatus::Completed));
}

// "." and ".." name directories where the artifact store keeps a run's
// files: refused at start (the run started and failed at its first save).
BOOST_AUTO_TEST_CASE(dot_run_ids_are_refused_at_start) {
  Engine engine{EngineOptions{1, {}}};
  for (const char* bad : {".", ".."}) {
    RunOptions o;
    o.run_id = bad;
    BOOST_CHECK_THROW(
        engine.start(one_task_flow("d", [](TaskCall&, const Value&) { return Value(); }), {},
                     std::move(o)),
        std::invalid_argument);
  }
}
