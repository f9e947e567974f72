// ABI 1.1 through the engine: async tasks wait without holding a worker,
// cancel callbacks and deadlines reach them, heartbeats become events,
// scratch updates are atomic, and the status a task ends with is honoured.
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/plugins/task.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <mutex>

#include "event_log.hpp"
#include "flows.hpp"
#include "process.hpp"
#include "records.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using core::RunStatus;
using core::TaskState;
using core::Value;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;
constexpr auto json = pyoco::testing::json_value;

struct AsyncFixture {
  pyoco::testing::TempDir dir;
  std::shared_ptr<pyoco::testing::EventLog> events = std::make_shared<pyoco::testing::EventLog>();
  Engine engine{EngineOptions{
      2,
      {pyoco::testing::fixture_dir() / "asyncy", pyoco::testing::fixture_dir() / "twice",
       pyoco::testing::fixture_dir() / "busy",
       pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};

  Run run(const std::string& yaml, const char* params = "{}") {
    RunOptions o;
    o.params = json(params);
    o.listener = events;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    Run r = engine.start(compile(yaml), std::move(o));
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(60)), "the run did not finish");
    return r;
  }
  static TaskRecord record(const Run& r, const std::string& node) {
    return pyoco::testing::record_of(r, node);
  }
};

std::string range_json(int n) {
  std::string s = "{\"items\": [";
  for (int i = 0; i < n; ++i) s += (i ? "," : "") + std::to_string(i);
  return s + "]}";
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(async_tasks, AsyncFixture)

BOOST_AUTO_TEST_CASE(a_thousand_sleeps_wait_together_on_two_workers) {
  // Blocking, 1,000 one-second sleeps on 2 workers take 500 s; waiting on
  // host timers they take about one.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string params = range_json(1000);
  Run r = run(R"yaml(
flow: {graph: "foreach(over={{$ctx.params.items}}, parallel=1000) { nap }"}
tasks:
  nap: {use: "std/sleep", inputs: {seconds: 1}}
)yaml",
              params.c_str());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("1000 x std/sleep 1 s at jobs=2: " << s << " s");
  BOOST_TEST_REQUIRE((r.status() == RunStatus::Completed));
  BOOST_TEST(r.tasks().size() > 1000u);
  BOOST_TEST(s < 30.0);  // bounded far below the 500 s a blocking sleep takes
}

BOOST_AUTO_TEST_CASE(shell_commands_wait_together_on_two_workers) {
  // Forty `sleep 1` commands: blocking, 2 workers need 20 s; the std plugin
  // waits on them from its own reactor thread.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string params = range_json(40);
  Run r = run(R"yaml(
flow: {graph: "foreach(over={{$ctx.params.items}}, parallel=40) { nap }"}
tasks:
  nap: {use: "std/shell", inputs: {command: "sleep 1; echo done"}}
)yaml",
              params.c_str());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("40 x std/shell 'sleep 1' at jobs=2: " << s << " s");
  BOOST_TEST_REQUIRE((r.status() == RunStatus::Completed));
  const Value outs = r.output("foreach_1");
  BOOST_TEST_REQUIRE(outs.size() == 40u);
  for (std::size_t i = 0; i < outs.size(); ++i) {
    BOOST_TEST(outs.at(i).find("stdout").as_string() == "done\n");
  }
  BOOST_TEST(s < 15.0);  // bounded well below the 20 s that blocking takes
}

BOOST_AUTO_TEST_CASE(a_parallel_counter_on_scratch_loses_no_update) {
  const std::string params = range_json(2000);
  Run r = run(R"yaml(
flow: {graph: "foreach(over={{$ctx.params.items}}, parallel=64) { count }"}
tasks:
  count: {use: "asyncy/count"}
)yaml",
              params.c_str());
  BOOST_TEST_REQUIRE((r.status() == RunStatus::Completed));
  const Value counts = r.output("foreach_1");
  BOOST_TEST_REQUIRE(counts.size() == 2000u);
  std::vector<std::int64_t> seen;
  for (std::size_t i = 0; i < counts.size(); ++i) seen.push_back(counts.at(i).as_int());
  std::sort(seen.begin(), seen.end());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    BOOST_TEST_REQUIRE(seen[i] == static_cast<std::int64_t>(i + 1));  // each count exactly once
  }
}

BOOST_AUTO_TEST_CASE(a_task_that_stops_itself_ends_cancelled_without_retries) {
  Run r = run(R"yaml(
flow: {graph: "give_up >> after"}
tasks:
  give_up: {use: "asyncy/give_up", retries: 3}
  after: {use: "std/echo"}
)yaml");
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  BOOST_TEST((record(r, "give_up").state == TaskState::Cancelled));
  BOOST_TEST(record(r, "give_up").attempts == 1u);
  BOOST_TEST(record(r, "give_up").error == "nothing to do today");
  BOOST_TEST((record(r, "after").state == TaskState::Cancelled));
  std::size_t ended = 0;  // ended once: not again by the stop it caused
  for (const auto& e : events->events()) {
    ended += e.kind == trace::EventKind::NodeCancelled && e.node == "give_up" ? 1 : 0;
  }
  BOOST_TEST(ended == 1u);
}

BOOST_AUTO_TEST_CASE(a_permanent_failure_is_not_retried) {
  Run r = run(R"yaml(
flow: {graph: broken}
tasks:
  broken: {use: "asyncy/broken", retries: 3, retry_backoff: {initial_ms: 1}}
)yaml");
  BOOST_TEST((r.status() == RunStatus::Failed));
  BOOST_TEST((record(r, "broken").state == TaskState::Failed));
  BOOST_TEST(record(r, "broken").attempts == 1u);
  BOOST_TEST(record(r, "broken").error == "the disk is gone");
}

BOOST_AUTO_TEST_CASE(a_second_completion_is_refused_and_reported) {
  const auto before = plugins::refused_completions();
  Run r = run("flow: {graph: t}\ntasks:\n  t: {use: \"twice/twice\"}\n");
  BOOST_TEST_REQUIRE((r.status() == RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(core::to_json_text(r.output("t")) == "1");  // the first completion counts
  BOOST_TEST(plugins::refused_completions() == before + 1);
}

BOOST_AUTO_TEST_CASE(the_deadline_reaches_an_async_task_through_its_cancel_callback) {
  Run r = run(R"yaml(
flow: {graph: "(watch & nap)"}
tasks:
  watch: {use: "asyncy/watch", timeout_sec: 2, fail_policy: isolate}
  nap: {use: "asyncy/nap", inputs: {seconds: 3}}
)yaml");
  // A 2 s timeout (0.2 s could pass before a slow host started the task:
  // its deadline already behind it), and a nap past it: the run goes on.
  BOOST_TEST((r.status() == RunStatus::Failed));
  BOOST_TEST((record(r, "watch").state == TaskState::Failed));
  BOOST_TEST(record(r, "watch").error == "timed out after 2 s");
  BOOST_TEST((record(r, "nap").state == TaskState::Succeeded));
  BOOST_TEST(events->logged("watch", "deadline ahead"));
  BOOST_TEST(events->logged("watch", "on_cancel fired"));  // at the deadline, while the run went on
  bool heartbeat = false;
  for (const auto& e : events->events()) {
    heartbeat = heartbeat || (e.kind == trace::EventKind::Heartbeat && e.node == "watch" &&
                              e.progress == 0.5 && e.message == "half way");
  }
  BOOST_TEST(heartbeat);
}

BOOST_AUTO_TEST_CASE(a_cancel_reaches_an_async_task_at_once) {
  RunOptions o;
  o.listener = events;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
  Run r = engine.start(compile("flow: {graph: watch}\ntasks:\n  watch: {use: \"asyncy/watch\"}\n"),
                       std::move(o));
  BOOST_TEST_REQUIRE(
      pyoco::testing::eventually([&] { return events->logged("watch", "no deadline"); }));
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  BOOST_TEST((record(r, "watch").state == TaskState::Cancelled));
  BOOST_TEST(events->logged("watch", "on_cancel fired"));
}

// abi.h, Threads: a cancel that lands while an async task's start() runs
// has the task's on-cancel callback wait for start() to return. The run's
// end waits for both, at most half a second, so what they log is recorded
// before it (std/shell's last lines were lost that way); a start() that
// goes on longer does not hold the run past that. Also with the other
// worker held by a blocking body.
BOOST_AUTO_TEST_CASE(a_cancel_during_start_keeps_what_start_and_its_callback_log) {
  struct Case {
    const char* graph;
    const char* seconds;
  };
  for (const auto& [graph, seconds] :
       {Case{"t", "0.3"}, Case{"(t | block)", "0.3"}, Case{"t", "3"}}) {
    BOOST_TEST_CONTEXT(graph << ", start() " << seconds << " s") {
      events = std::make_shared<pyoco::testing::EventLog>();
      RunOptions o;
      o.listener = events;
      o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
      Run r = engine.start(compile(std::string("flow: {graph: \"") + graph +
                                   "\"}\ntasks:\n  block: {use: busy/block, inputs: {seconds: "
                                   "1}}\n  t: {use: asyncy/slow_start, inputs: {seconds: " +
                                   seconds + "}}\n"),
                           std::move(o));
      BOOST_TEST_REQUIRE(
          pyoco::testing::eventually([&] { return events->logged("t", "start() began"); }));
      const auto cancelled_at = std::chrono::steady_clock::now();
      r.cancel();
      BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - cancelled_at).count();
      BOOST_TEST((r.status() == RunStatus::Cancelled));
      BOOST_TEST((record(r, "t").state == TaskState::Cancelled));
      const auto all = events->events();
      auto at = [&](trace::EventKind kind, const std::string& message) {
        return std::find_if(all.begin(), all.end(),
                            [&](const trace::Event& e) {
                              return e.kind == kind && (message.empty() || e.message == message);
                            }) -
               all.begin();
      };
      const auto end = at(trace::EventKind::RunEnd, "");
      BOOST_TEST_REQUIRE(end < static_cast<std::ptrdiff_t>(all.size()));
      if (std::string(seconds) == "0.3") {
        BOOST_TEST(at(trace::EventKind::Log, "start() returns") < end);
        BOOST_TEST(at(trace::EventKind::Log, "on_cancel heard after start()") < end);
        BOOST_TEST(took < 2.0);
      } else {
        BOOST_TEST(took < 1.5, "the run waited for start() past half a second: " << took << " s");
        BOOST_TEST(took >= 0.4, "the run did not wait for start(): " << took << " s");
      }
      // The worker inside start() is free again before the next case.
      BOOST_TEST(pyoco::testing::eventually([&] { return engine.abandoned_bodies() == 0; }));
    }
  }
}

// docs/plugins.md, "Async tasks": only the first end counts, later ones
// return false and do nothing, and a value built after the end, in the
// timer's callback or in start() that ended the call, still builds (it
// threw "the host could not allocate a value": the call's arena was sealed).
BOOST_AUTO_TEST_CASE(later_ends_of_a_call_return_false_and_values_still_build) {
  for (const char* in_start : {"false", "true"}) {
    BOOST_TEST_CONTEXT("in_start: " << in_start) {
      Run r = run(std::string(R"yaml(
flow: {graph: "thrice >> report"}
tasks:
  thrice: {use: "asyncy/thrice", timeout_sec: 20, inputs: {in_start: )yaml") +
                  in_start + R"yaml(}}
  report: {use: "asyncy/peek", inputs: {key: thrice}}
)yaml");
      BOOST_TEST_REQUIRE((r.status() == RunStatus::Completed),
                         record(r, "thrice").error << " / " << record(r, "report").error);
      BOOST_TEST(core::to_json_text(r.output("thrice")) == "1");  // the first end
      BOOST_TEST(core::to_json_text(r.output("report")) == "[true,false,false]");
    }
  }
}

// docs/plugins.md, "Async tasks": a value built on a thread of the task's
// own, outside the call, throws there, and the message says how to build it.
BOOST_AUTO_TEST_CASE(a_value_built_on_a_thread_of_the_plugins_says_how_to_build_it) {
  Run r = run("flow: {graph: t}\ntasks:\n  t: {use: \"asyncy/stray\", timeout_sec: 20}\n");
  const std::string error = record(r, "t").error;
  BOOST_TEST(error.find("pyoco::Value built outside a task call") != std::string::npos, error);
  BOOST_TEST(error.find("done.ok_with([&] { return pyoco::Value(...); })") != std::string::npos,
             error);
  BOOST_TEST(error.find("auto scope = ctx.enter();") != std::string::npos, error);
  BOOST_TEST(error.find("inside run()") == std::string::npos, error);  // not for async tasks
}

// docs/plugins.md, "Threads": an exception escaping a timer's callback ends
// the call as one from start() would, at once (it was printed and dropped,
// and the node waited for its timeout).
BOOST_AUTO_TEST_CASE(an_exception_in_a_timer_callback_ends_the_call) {
  struct Case {
    const char* how;
    TaskState state;
    const char* error;
    std::uint32_t attempts;
  };
  for (const Case& c : {Case{"error", TaskState::Failed, "a callback threw: boom in a timer", 2},
                        Case{"permanent", TaskState::Failed, "never again", 1},
                        Case{"cancelled", TaskState::Cancelled, "I stop myself", 1}}) {
    BOOST_TEST_CONTEXT(c.how) {
      const auto t0 = std::chrono::steady_clock::now();
      Run r = run(std::string(R"yaml(
flow: {graph: t}
tasks:
  t: {use: "asyncy/throw_later", timeout_sec: 5, retries: 1, retry_backoff: {initial_ms: 1},
      inputs: {how: )yaml") +
                  c.how + "}}\n");
      BOOST_TEST((record(r, "t").state == c.state));
      BOOST_TEST(record(r, "t").error == c.error);
      BOOST_TEST(record(r, "t").attempts == c.attempts);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      BOOST_TEST(s < 4.0);  // ended by the exception, not at its timeout
    }
  }
}

// abi.h, "Threads": a timer due while start() is still running waits until
// it returns, so a plugin never has the two building the call's values at
// once (its callback ran on the control thread beside start()). Also with
// both workers held by blocking bodies around it.
BOOST_AUTO_TEST_CASE(a_callback_never_runs_beside_its_start) {
  for (const char* graph : {"t", "(t | block1 | block2)"}) {
    BOOST_TEST_CONTEXT(graph) {
      Run r = run(std::string("flow: {graph: \"") + graph + R"yaml("}
tasks:
  t: {use: "asyncy/overlap", timeout_sec: 20}
  block1: {use: "busy/block", inputs: {seconds: 0.3}}
  block2: {use: "busy/block", inputs: {seconds: 0.3}}
)yaml");
      BOOST_TEST_REQUIRE((record(r, "t").state == TaskState::Succeeded), record(r, "t").error);
      BOOST_TEST(core::to_json_text(r.output("t")) == R"(["after","start"])");
    }
  }
}

// docs/flows.md, "Limits": a task's output nested past 64 levels fails the
// task, at once and for good, whatever its depth (a million levels used to
// be walked by recursion, a stack frame per level, by every listener).
BOOST_AUTO_TEST_CASE(an_output_nested_past_the_limit_fails_its_task) {
  for (const char* levels : {"64", "65", "1000000"}) {
    BOOST_TEST_CONTEXT(levels) {
      Run r = run(std::string("flow: {graph: t}\ntasks:\n  t: {use: asyncy/deep, retries: 2, "
                              "inputs: {levels: ") +
                  levels + "}}\n");
      if (std::string(levels) == "64") {
        BOOST_TEST((r.status() == RunStatus::Completed), record(r, "t").error);
        continue;
      }
      BOOST_TEST((record(r, "t").state == TaskState::Failed));
      BOOST_TEST(record(r, "t").attempts == 1u);  // a bug of the task: not retried
      BOOST_TEST(record(r, "t").error ==
                 "asyncy/deep returned a value nested more than 64 levels deep, past the limit "
                 "every value in pyoco keeps (a bug of the task)");
    }
  }
}

// abi.h, host_timer: a timer that fell due while start() ran, and whose
// call start() then ended itself, hears CANCELLED once start() returns (it
// heard a stale OK and, in a C plugin, completed the call a second time).
BOOST_AUTO_TEST_CASE(a_timer_held_back_by_start_hears_that_the_call_ended) {
  Run r = run(R"yaml(
flow: {graph: "t >> report"}
tasks:
  t: {use: "asyncy/late_timer", timeout_sec: 20}
  report: {use: "asyncy/peek", inputs: {key: late_timer}}
)yaml");
  BOOST_TEST_REQUIRE((r.status() == RunStatus::Completed), record(r, "report").error);
  BOOST_TEST(core::to_json_text(r.output("report")) == "false");
}

// abi.h: scratch refuses a value past the limits an output keeps (it is read
// and compared later, by tasks and expressions), and the SDK says why.
BOOST_AUTO_TEST_CASE(scratch_refuses_a_value_past_the_limits) {
  Run ok = run("flow: {graph: t}\ntasks:\n  t: {use: asyncy/stash_deep, inputs: {levels: 64}}\n");
  BOOST_TEST((ok.status() == RunStatus::Completed), record(ok, "t").error);
  Run r = run("flow: {graph: t}\ntasks:\n  t: {use: asyncy/stash_deep, inputs: {levels: 65}}\n");
  BOOST_TEST((record(r, "t").state == TaskState::Failed));
  // The reason itself, not the three it might be.
  BOOST_TEST(record(r, "t").error.find("cannot set scratch 'deep': a value nested more than 64 "
                                       "levels deep") != std::string::npos,
             record(r, "t").error);
}

// docs/flows.md, "Limits": an output that stands for more than 16,777,216
// items (lists holding the same list many times) fails its task at once;
// 60 shared lists stand for 2^61 items, which every walk (the history's
// JSON, a comparison) used to take for ever over. 20 levels (2^21) is kept.
BOOST_AUTO_TEST_CASE(an_output_of_too_many_shared_items_fails_its_task) {
  for (const char* levels : {"20", "60"}) {
    BOOST_TEST_CONTEXT(levels) {
      Run r = run(std::string("flow: {graph: t}\ntasks:\n  t: {use: asyncy/shared, inputs: "
                              "{levels: ") +
                  levels + "}}\n");
      if (std::string(levels) == "20") {
        BOOST_TEST((r.status() == RunStatus::Completed), record(r, "t").error);
        continue;
      }
      BOOST_TEST((record(r, "t").state == TaskState::Failed));
      BOOST_TEST(record(r, "t").error ==
                 "asyncy/shared returned a value of more than 16777216 items (a list or mapping "
                 "held n times counts n times), past the limit every value in pyoco keeps (a bug "
                 "of the task)");
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// docs/flows.md, "States": a task that ends itself CANCELLED under
// `isolate` skips only its dependents; the run ends CANCELLED unless a task
// FAILED.
BOOST_FIXTURE_TEST_CASE(a_task_that_stops_itself_under_isolate_skips_only_its_dependents,
                        AsyncFixture) {
  Run r = run(R"yaml(
flow: {graph: "start >> (give_up >> after & other)"}
tasks:
  start: {use: "std/echo", inputs: {value: 1}}
  give_up: {use: "asyncy/give_up", fail_policy: isolate}
  after: {use: "std/echo"}
  other: {use: "std/echo", inputs: {value: 2}}
)yaml");
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  BOOST_TEST((record(r, "give_up").state == TaskState::Cancelled));
  BOOST_TEST((record(r, "after").state == TaskState::Skipped));
  BOOST_TEST((record(r, "other").state == TaskState::Succeeded));

  Run failed = run(R"yaml(
flow: {graph: "(give_up & broken)"}
tasks:
  give_up: {use: "asyncy/give_up", fail_policy: isolate}
  broken: {use: "std/fail", fail_policy: isolate}
)yaml");
  BOOST_TEST((failed.status() == RunStatus::Failed));
  BOOST_TEST((record(failed, "give_up").state == TaskState::Cancelled));
}
