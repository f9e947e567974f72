// The run model (ARCHITECTURE.md §4a): control never waits for work. Every
// case runs under three loads — the pool saturated by blocking bodies of
// another run (jobs=1 with one blocker, jobs=2 with two) and a free pool —
// and checks what happens *while the blockers still hold their threads*, so
// a deadline or cancel that waited for a body would fail, not just be late.
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <future>
#include <mutex>
#include <regex>

#include "event_log.hpp"
#include "flows.hpp"
#include "records.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using core::RunStatus;
using core::TaskState;
using core::Value;
using pyoco::testing::Gate;
using pyoco::testing::Latch;
namespace bdata = boost::unit_test::data;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;
constexpr auto json = pyoco::testing::json_value;

struct Load {
  unsigned jobs;
  int blockers;  // bodies of another run that hold a worker until released
};
std::ostream& operator<<(std::ostream& os, const Load& l) {
  return os << "jobs=" << l.jobs << ",blockers=" << l.blockers;
}
const Load kLoads[] = {{1, 1}, {2, 2}, {2, 0}};

// An engine with `load.blockers` workers held by bodies that return only
// when the test releases them (or the fixture ends).
struct Saturated {
  explicit Saturated(Load l) : load(l), engine(EngineOptions{l.jobs, {}}) {
    if (load.blockers == 0) return;
    std::string graph, tasks;
    for (int k = 0; k < load.blockers; ++k) {
      graph += (k == 0 ? "" : " & ") + std::string("b") + std::to_string(k);
      tasks += "  b" + std::to_string(k) + ": {use: \"t/block\"}\n";
    }
    RunOptions o;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    o.local_tasks = {{"t/block", [this](TaskCall&, const Value&) {
                        started.arrive();
                        release.wait(std::chrono::seconds(60));
                        return Value();
                      }}};
    blockers =
        engine.start(compile("flow: {graph: \"(" + graph + ")\"}\ntasks:\n" + tasks), std::move(o));
    BOOST_TEST_REQUIRE(started.wait_for(load.blockers), "the blockers did not start");
  }
  ~Saturated() { release.open(); }

  Run start(const std::string& yaml, std::map<std::string, TaskFn> tasks,
            std::function<bool()> may_start = {},
            std::shared_ptr<trace::EventListener> listener = {}) {
    RunOptions o;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    o.local_tasks = std::move(tasks);
    o.may_start = std::move(may_start);
    o.listener = std::move(listener);
    return engine.start(compile(yaml), std::move(o));
  }
  bool blockers_hold() const {
    return load.blockers == 0 || !core::is_terminal(blockers->status());
  }

  Load load;
  pyoco::testing::TempDir dir;
  Engine engine;
  Gate release;
  Latch started;
  std::optional<Run> blockers;
};

constexpr auto record = [](const Run& r, const std::string& node) {
  return pyoco::testing::record_of(r, node);
};

// The names of task bodies in the order they began.
class BodyOrder {
 public:
  TaskFn note(const std::string& name) const {
    return [state = state_, name](TaskCall&, const Value&) {
      std::lock_guard<std::mutex> lock(state->mutex);
      state->names.push_back(name);
      return Value();
    };
  }
  std::vector<std::string> seen() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->names;
  }

 private:
  struct State {
    std::mutex mutex;
    std::vector<std::string> names;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// A body that waits for cancellation (or a minute), counting its starts.
TaskFn waits_for_cancel(std::atomic<int>& starts) {
  return [&starts](TaskCall& call, const Value&) {
    ++starts;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!call.is_cancelled() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return Value();
  };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(run_model)

BOOST_DATA_TEST_CASE(a_deadline_fails_its_task_while_the_pool_is_busy, bdata::make(kLoads), load) {
  Saturated s(load);
  std::atomic<int> starts{0};
  const auto t0 = std::chrono::steady_clock::now();
  Run r = s.start(R"yaml(
flow: {graph: "slow >> after"}
tasks:
  slow: {use: "t/wait", timeout_sec: 0.1}
  after: {use: "t/wait"}
)yaml",
                  {{"t/wait", waits_for_cancel(starts)}});
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)), "the deadline did not end the run");
  const double took_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE(load << ": deadline of 100 ms ended the run after " << took_ms << " ms");
  BOOST_TEST(s.blockers_hold());  // it did not wait for a worker to come free
  BOOST_TEST((r.status() == RunStatus::Failed));
  BOOST_TEST((record(r, "slow").state == TaskState::Failed));
  // Held by the queue all along, it says so, not that its body was slow.
  BOOST_TEST(record(r, "slow").error ==
             (load.blockers > 0 ? "timed out after 0.1 s waiting for a free worker thread (all " +
                                      std::to_string(load.jobs) +
                                      " busy); its body never started: raise --jobs, or run fewer "
                                      "blocking tasks at once"
                                : std::string("timed out after 0.1 s")));
  BOOST_TEST((record(r, "after").state == TaskState::Cancelled));
  BOOST_TEST(took_ms >= 100.0);
  if (load.blockers > 0) BOOST_TEST(starts == 0);  // it never got a worker
}

// A deadline shorter than the hand-off to a free worker can pass before
// the body starts: said as that, never as a pool that was full. The race is
// the host's: rounds until it has been seen (a few in 30 here), each
// checked.
BOOST_AUTO_TEST_CASE(a_deadline_before_a_free_worker_took_the_body_does_not_blame_the_pool) {
  Saturated s(Load{4, 0});
  int never_started = 0, rounds = 0;
  for (; rounds < 5000 && never_started < 3; ++rounds) {
    // A body that returns at once: none is still held from an earlier round.
    Run r = s.start(R"yaml(
flow: {graph: quick}
tasks:
  quick: {use: "t/quick", timeout_sec: 0.000001}
)yaml",
                    {{"t/quick", [](TaskCall&, const Value&) { return Value(); }}});
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
    // The body may also win the race (the task succeeds), or start first.
    const std::string error = record(r, "quick").error;
    BOOST_TEST((error.empty() || error.starts_with("timed out after 1e-06 s")), error);
    BOOST_TEST(error.find("busy") == std::string::npos, error);
    if (error.find("before its body started") != std::string::npos) {
      ++never_started;
      // The deadline's handler came first, or the worker that took the
      // body found its deadline passed.
      BOOST_TEST((error.find("of 4 were free): a deadline shorter than handing a body to a "
                             "worker; raise timeout_sec") != std::string::npos ||
                  error.find("(a free worker thread took it past its deadline): a deadline "
                             "shorter than handing a body to a worker; raise timeout_sec") !=
                      std::string::npos),
                 error);
    }
  }
  BOOST_TEST_MESSAGE(never_started << " never started in " << rounds << " rounds");
  BOOST_TEST(never_started > 0, "the deadline never beat the hand-off in " << rounds << " rounds");
}

// A deadline that has passed by the time a worker takes the body (here
// always: a nanosecond) means the body never starts, free pool or full; it
// used to start when the worker got there before the deadline's handler (an
// outside tester: 3 runs in 15).
BOOST_DATA_TEST_CASE(a_body_past_its_deadline_never_starts, bdata::make(kLoads), load) {
  Saturated s(load);
  std::atomic<int> starts{0};
  for (int round = 0; round < 20; ++round) {
    Run r = s.start(R"yaml(
flow: {graph: quick}
tasks:
  quick: {use: "t/count", timeout_sec: 0.000000001}
)yaml",
                    {{"t/count", [&starts](TaskCall&, const Value&) {
                        ++starts;
                        return Value();
                      }}});
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
    const std::string error = record(r, "quick").error;
    BOOST_TEST(error.starts_with("timed out after 1e-09 s"), error);
    BOOST_TEST((error.find("never started") != std::string::npos ||
                error.find("before its body started") != std::string::npos),
               error);
  }
  BOOST_TEST(starts.load() == 0);
  BOOST_TEST(s.blockers_hold());
}

BOOST_DATA_TEST_CASE(a_retry_after_a_deadline_gets_its_own_deadline, bdata::make(kLoads), load) {
  Saturated s(load);
  std::atomic<int> starts{0};
  Run r = s.start(R"yaml(
flow: {graph: slow}
tasks:
  slow: {use: "t/wait", timeout_sec: 0.05, retries: 2, retry_backoff: {initial_ms: 1}}
)yaml",
                  {{"t/wait", waits_for_cancel(starts)}});
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST(s.blockers_hold());
  BOOST_TEST((r.status() == RunStatus::Failed));
  BOOST_TEST(record(r, "slow").attempts == 3u);
  BOOST_TEST(record(r, "slow").error.starts_with("timed out after 0.05 s"));
}

BOOST_AUTO_TEST_CASE(a_retry_held_back_by_its_own_stubborn_attempt_says_so) {
  // One worker, held by the node's first attempt to start its body, which
  // ignores its cancel: each later attempt's deadline passes before it
  // starts. It used to say "raise --jobs", which would only give the
  // stubborn body more threads. (On a host too busy to hand attempt 1 its
  // body within its deadline, attempt 2 is the stubborn one.)
  Saturated s(Load{1, 0});
  // Shared: the abandoned body may still wait on it after the test's end.
  auto stop = std::make_shared<Gate>();
  auto starts = std::make_shared<std::atomic<int>>(0);
  Run r = s.start(R"yaml(
flow: {graph: stubborn}
tasks:
  stubborn: {use: "t/stubborn", timeout_sec: 0.3, retries: 2, retry_backoff: {initial_ms: 1}}
)yaml",
                  {{"t/stubborn", [stop, starts](TaskCall&, const Value&) {
                      ++*starts;
                      stop->wait(std::chrono::seconds(60));
                      return Value();
                    }}});
  const bool ended = r.wait_for(std::chrono::seconds(10));
  stop->open();
  BOOST_TEST_REQUIRE(ended);
  BOOST_TEST((r.status() == RunStatus::Failed));
  BOOST_TEST(record(r, "stubborn").attempts == 3u);
  BOOST_TEST(starts->load() == 1);  // the later attempts never started
  // Attempt 3 is told of the stuck one too, not only the attempt after it.
  BOOST_TEST(
      std::regex_match(
          record(r, "stubborn").error,
          std::regex(R"(timed out after 0\.3 s waiting for a free worker thread \(all 1 busy, )"
                     R"(one still running attempt [12] of this node, which did not stop at )"
                     R"(its deadline\); its body never started: make the task return when it )"
                     R"(is cancelled)")),
      record(r, "stubborn").error);
}

BOOST_DATA_TEST_CASE(a_cancel_ends_the_run_without_waiting_for_bodies, bdata::make(kLoads), load) {
  Saturated s(load);
  std::atomic<int> starts{0};
  Gate never;  // the running body ignores cancellation
  Latch running;
  Run r =
      s.start(R"yaml(
flow: {graph: "(stubborn & queued) >> after"}
tasks:
  stubborn: {use: "t/stubborn"}
  queued: {use: "t/wait"}
  after: {use: "t/wait"}
)yaml",
              {{"t/wait", waits_for_cancel(starts)}, {"t/stubborn", [&](TaskCall&, const Value&) {
                                                        running.arrive();
                                                        never.wait(std::chrono::seconds(60));
                                                        return Value();
                                                      }}});
  if (load.blockers == 0) BOOST_TEST_REQUIRE(running.wait_for(1));
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)), "cancel waited for a body");
  BOOST_TEST(s.blockers_hold());
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  for (const char* node : {"stubborn", "queued", "after"}) {
    BOOST_TEST((record(r, node).state == TaskState::Cancelled), node);
  }
  BOOST_TEST(record(r, "stubborn").error == "run cancelled");
  // The one that was running is the one cancelled while it ran; what waited
  // for the group never started.
  if (load.blockers == 0) BOOST_TEST(record(r, "stubborn").attempts == 1u);
  BOOST_TEST(record(r, "after").attempts == 0u);
  never.open();
}

BOOST_DATA_TEST_CASE(queued_bodies_of_a_cancelled_run_never_start, bdata::make(kLoads), load) {
  if (load.blockers == 0) return;  // nothing queues on a free pool
  Saturated s(load);
  std::atomic<int> starts{0};
  Run r = s.start(R"yaml(
flow: {graph: "(a & b & c)"}
tasks:
  a: {use: "t/wait"}
  b: {use: "t/wait"}
  c: {use: "t/wait"}
)yaml",
                  {{"t/wait", waits_for_cancel(starts)}});
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  // Free the pool, then run one more task through it: the queue is FIFO, so
  // once that task ran, the cancelled run's bodies were taken off the queue.
  s.release.open();
  BOOST_TEST_REQUIRE(s.blockers->wait_for(std::chrono::seconds(10)));
  Run after = s.start("flow: {graph: x}\ntasks:\n  x: {use: \"t/x\"}\n",
                      {{"t/x", [](TaskCall&, const Value&) { return Value(); }}});
  BOOST_TEST_REQUIRE(after.wait_for(std::chrono::seconds(10)));
  BOOST_TEST(starts == 0);
}

// A task cancelled while it waited for room never started: no start time,
// no attempt, in its record and in its node_cancelled event (which the
// history keeps), as for a task cancelled before it was ready.
BOOST_DATA_TEST_CASE(a_task_cancelled_while_it_waited_for_room_never_started, bdata::make(kLoads),
                     load) {
  if (load.blockers == 0) return;  // nothing waits on a free pool
  Saturated s(load);
  std::string graph, tasks;
  for (int k = 0; k < 12; ++k) {
    graph += (k == 0 ? "t" : " & t") + std::to_string(k);
    tasks += "  t" + std::to_string(k) + ": {use: \"t/quick\"}\n";
  }
  auto log = std::make_shared<pyoco::testing::EventLog>();
  Run r = s.start("flow: {graph: \"(" + graph + ")\"}\ntasks:\n" + tasks,
                  {{"t/quick", [](TaskCall&, const Value&) { return Value(); }}}, {}, log);
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] {
    std::size_t running = 0;
    for (const auto& t : r.tasks()) running += t.state == TaskState::Running ? 1 : 0;
    return running >= 2 * load.jobs;
  }));
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  std::size_t never_started = 0;
  for (const auto& t : r.tasks()) {
    BOOST_TEST((t.state == TaskState::Cancelled), t.node);
    if (t.started != std::chrono::system_clock::time_point{}) continue;
    ++never_started;
    BOOST_TEST(t.attempts == 0u, t.node);
    const auto cancelled = log->of(trace::EventKind::NodeCancelled, t.node);
    BOOST_TEST_REQUIRE(cancelled.size() == 1u, t.node);
    BOOST_TEST(cancelled[0].attempt == 0u, t.node);
    BOOST_TEST(log->count(trace::EventKind::NodeStart, t.node) == 0u, t.node);
  }
  BOOST_TEST(never_started == 12 - 2 * load.jobs);
}

BOOST_DATA_TEST_CASE(tasks_and_status_answer_while_bodies_block, bdata::make(kLoads), load) {
  Saturated s(load);
  if (load.blockers == 0) return;
  auto tasks = std::async(std::launch::async, [&] { return s.blockers->tasks(); });
  BOOST_TEST_REQUIRE((tasks.wait_for(std::chrono::seconds(5)) == std::future_status::ready),
                     "Run::tasks() waited for a body");
  const auto records = tasks.get();
  BOOST_TEST(records.size() == static_cast<std::size_t>(load.blockers));
  for (const auto& t : records) BOOST_TEST((t.state == TaskState::Running), t.node);
  BOOST_TEST((s.blockers->status() == RunStatus::Running));
}

BOOST_DATA_TEST_CASE(engine_destructor_returns_when_a_body_never_returns, bdata::make(kLoads),
                     load) {
  // The abandoned body waits on `never` past ~Engine. However the test
  // ends, `never` is opened and the body has returned before what it
  // touches is destroyed: its worker is detached, never joined.
  Gate never;
  Latch running, returned;
  struct LetGo {
    Gate& never;
    Latch& returned;
    bool started = false;
    ~LetGo() {
      never.open();
      if (started) BOOST_CHECK(returned.wait_for(1));
    }
  } let_go{never, returned};
  std::optional<Run> r;
  std::chrono::steady_clock::duration took{};
  pyoco::testing::TempDir dir;
  std::optional<Engine> engine(std::in_place, EngineOptions{load.jobs, {}});
  RunOptions o;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
  o.local_tasks = {{"t/stuck", [&running, &never, &returned](TaskCall&, const Value&) {
                      running.arrive();
                      never.wait(std::chrono::seconds(120));
                      returned.arrive();
                      return Value();
                    }}};
  r = engine->start(compile("flow: {graph: stuck}\ntasks:\n  stuck: {use: \"t/stuck\"}\n"),
                    std::move(o));
  BOOST_TEST_REQUIRE(running.wait_for(1));
  let_go.started = true;  // from now on it returns only through `never`
  const auto t0 = std::chrono::steady_clock::now();
  engine.reset();
  took = std::chrono::steady_clock::now() - t0;
  const double ms = std::chrono::duration<double, std::milli>(took).count();
  BOOST_TEST_MESSAGE(load << ": ~Engine took " << ms << " ms with a body that never returns");
  BOOST_TEST(ms < 5000.0);  // bounded (about a second); a join would hang for two minutes
  BOOST_TEST((r->status() == RunStatus::Cancelled));
  BOOST_TEST((record(*r, "stuck").state == TaskState::Cancelled));
  r->cancel();  // a handle that outlived its engine stays safe to use
}

// A worker keeps the next step of a chain of short bodies for itself, past
// bodies waiting in the pool's queue (executors.hpp), but only briefly: a
// body of another run, queued while every worker is busy with such chains,
// starts long before they end. At jobs 1 one chain holds the only worker;
// at jobs 2 two chains hold both. The bound checked is loose (a quarter of
// what is left of the chains, about 50 ms of steps; about 100 us is
// expected): the test tells a bounded wait from one for the chains' end,
// not 100 us from a few milliseconds, which a loaded machine could not.
BOOST_DATA_TEST_CASE(chains_of_short_bodies_do_not_hold_back_another_runs_body,
                     bdata::make({1u, 2u}), jobs) {
  constexpr int kSteps = 10000;  // of 20 us each: 200 ms at least, a chain
  std::atomic<int> steps{0};
  std::atomic<int> steps_when_probed{-1};
  pyoco::testing::TempDir dir;
  Engine engine(EngineOptions{jobs, {}});
  auto options = [&] {
    RunOptions o;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    o.local_tasks = {{"t/spin",
                      [&steps](TaskCall&, const Value&) {
                        const auto until =
                            std::chrono::steady_clock::now() + std::chrono::microseconds(20);
                        while (std::chrono::steady_clock::now() < until) {
                        }
                        ++steps;
                        return Value();
                      }},
                     {"t/probe", [&](TaskCall&, const Value&) {
                        steps_when_probed = steps.load();
                        return Value();
                      }}};
    return o;
  };
  std::string graph, tasks;
  for (int k = 0; k < kSteps; ++k) {
    graph += (k == 0 ? "c" : " >> c") + std::to_string(k);
    tasks += "  c" + std::to_string(k) + ": {use: \"t/spin\"}\n";
  }
  const auto chain = compile("flow: {graph: \"" + graph + "\"}\ntasks:\n" + tasks);
  const auto probe_flow = compile("flow: {graph: probe}\ntasks:\n  probe: {use: \"t/probe\"}\n");
  std::vector<Run> chains;
  for (unsigned k = 0; k < jobs; ++k) chains.push_back(engine.start(chain, options()));
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return steps.load() >= 20; }));

  const int before = steps.load();
  const int left = kSteps * static_cast<int>(jobs) - before;
  BOOST_TEST_REQUIRE(left > 1000 * static_cast<int>(jobs), "the chains ran out before the probe");
  Run probe = engine.start(probe_flow, options());
  BOOST_TEST_REQUIRE(probe.wait_for(std::chrono::seconds(60)));
  BOOST_TEST((probe.status() == RunStatus::Completed));
  const int passed = steps_when_probed.load() - before;
  BOOST_TEST_MESSAGE("jobs=" << jobs << ": the probe started " << passed
                             << " chain steps after it was started, of " << left << " left");
  // Waiting for the chains would see all that is left of them pass.
  BOOST_TEST(passed < left / 4);
  for (Run& c : chains) {
    c.cancel();  // still going: three quarters of them at least are left
    BOOST_TEST_REQUIRE(c.wait_for(std::chrono::seconds(60)));
    BOOST_TEST((c.status() == RunStatus::Cancelled));
  }
}

// A task that counts its starts.
TaskFn counts(std::atomic<int>& starts) {
  return [&starts](TaskCall&, const Value&) {
    ++starts;
    return Value();
  };
}
const char* const kTwoSteps = R"yaml(
flow: {graph: "a >> b"}
tasks:
  a: {use: "t/count"}
  b: {use: "t/count"}
)yaml";

// RunOptions::may_start (a cluster worker past its lease): a node it holds
// waits, asked again, and starts once it says yes.
BOOST_AUTO_TEST_CASE(a_node_held_by_may_start_starts_once_it_may) {
  Saturated s(Load{2, 0});
  std::atomic<int> starts{0};
  auto asked = std::make_shared<std::atomic<int>>(0);
  auto allow = std::make_shared<std::atomic<bool>>(false);
  Run r = s.start(kTwoSteps, {{"t/count", counts(starts)}}, [asked, allow] {
    ++*asked;
    return allow->load();
  });
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return asked->load() >= 3; }));
  BOOST_TEST(starts == 0);  // asked again and again, started nothing
  BOOST_TEST((r.status() == RunStatus::Running));
  allow->store(true);
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == RunStatus::Completed));
  BOOST_TEST(starts == 2);
}

// A task that waited for room starts only if may_start still says yes: a
// cluster worker's lease can lapse while its tasks wait behind busy workers,
// and then nothing more may start. Cancelled while held, the run ends.
BOOST_DATA_TEST_CASE(a_task_that_waited_for_room_asks_may_start_again, bdata::make(kLoads), load) {
  if (load.blockers == 0) return;  // nothing waits on a free pool
  Saturated s(load);
  std::atomic<int> starts{0};
  auto allow = std::make_shared<std::atomic<bool>>(true);
  auto asked = std::make_shared<std::atomic<int>>(0);
  std::string graph, tasks;
  for (int k = 0; k < 12; ++k) {
    graph += (k == 0 ? "t" : " & t") + std::to_string(k);
    tasks += "  t" + std::to_string(k) + ": {use: \"t/count\"}\n";
  }
  Run r = s.start("flow: {graph: \"(" + graph + ")\"}\ntasks:\n" + tasks,
                  {{"t/count", counts(starts)}}, [allow, asked] {
                    ++*asked;
                    return allow->load();
                  });
  const std::size_t handed = 2 * load.jobs;
  auto running = [&r] {
    std::size_t n = 0;
    for (const auto& t : r.tasks()) n += t.state == TaskState::Running ? 1 : 0;
    return n;
  };
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return running() >= handed; }));
  allow->store(false);
  const int asked_before = asked->load();
  s.release.open();  // room for the others, which may not start now
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] {
    return starts.load() == static_cast<int>(handed) && asked->load() >= asked_before + 2;
  }));
  BOOST_TEST(running() == 0u);  // the handed ones ended; none started since
  BOOST_TEST(starts.load() == static_cast<int>(handed));
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == RunStatus::Cancelled));
  BOOST_TEST(starts.load() == static_cast<int>(handed));
}

// A run cancelled while may_start holds its node ends at once, and once the
// engine is gone nothing of it is kept: a held node's timer still armed at
// shutdown kept the run and the engine's executors for ever (a cluster
// worker drained as its run started leaked them).
BOOST_DATA_TEST_CASE(a_run_cancelled_while_may_start_holds_it_ends_and_is_let_go,
                     bdata::make(kLoads), load) {
  std::weak_ptr<int> run_kept;
  {
    Saturated s(load);
    std::atomic<int> starts{0};
    auto token = std::make_shared<int>(0);
    run_kept = token;
    auto asked = std::make_shared<std::atomic<int>>(0);
    Run held = s.start(kTwoSteps, {{"t/count", counts(starts)}}, [token, asked] {
      ++*asked;
      return false;
    });
    token.reset();
    BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return asked->load() >= 2; }));
    held.cancel();
    BOOST_TEST_REQUIRE(held.wait_for(std::chrono::seconds(5)));
    BOOST_TEST(s.blockers_hold());  // it did not wait for a worker
    BOOST_TEST((held.status() == RunStatus::Cancelled));
    BOOST_TEST((record(held, "a").state == TaskState::Cancelled));
    BOOST_TEST(starts == 0);
  }  // the engine shuts down well within the held node's 50 ms
  BOOST_TEST(run_kept.expired(), "the cancelled run outlived its engine");
}

// Engine::abandoned_bodies(): the threads still inside bodies their run gave
// up on (a deadline, then the stop it causes), which a cluster worker reads
// to take no run while they hold every thread. On a free pool both bodies
// run and are counted; under the saturated loads they never start, so the
// count stays 0 while the blockers (busy, but their run goes on) hold every
// thread. A body that returns gives its thread back.
BOOST_DATA_TEST_CASE(abandoned_bodies_count_the_threads_given_up_bodies_hold, bdata::make(kLoads),
                     load) {
  Saturated s(load);
  // Shared: an abandoned body may still wait on them after the test's end.
  auto stop = std::make_shared<Gate>();
  auto entered = std::make_shared<std::atomic<unsigned>>(0);
  TaskFn deaf = [stop, entered](TaskCall&, const Value&) {
    ++*entered;
    stop->wait(std::chrono::seconds(60));
    return Value();
  };
  Run r = s.start(R"yaml(
flow: {graph: "(late & deaf)"}
tasks:
  late: {use: "t/deaf", timeout_sec: 0.5}
  deaf: {use: "t/deaf"}
)yaml",
                  {{"t/deaf", deaf}});
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)), "the deadline did not end the run");
  BOOST_TEST((r.status() == RunStatus::Failed));
  BOOST_TEST(s.blockers_hold());
  if (load.blockers == 0) BOOST_TEST(entered->load() >= 1u);  // a free pool started them
  if (load.blockers > 0) BOOST_TEST(entered->load() == 0u);   // never started: nothing held
  // Counted by the time a body could run, and exactly those that did.
  BOOST_TEST(pyoco::testing::eventually(
      [&] { return s.engine.abandoned_bodies() == entered->load(); }, std::chrono::seconds(5)));
  BOOST_TEST(s.engine.abandoned_bodies() <= s.engine.jobs());
  stop->open();
  BOOST_TEST(pyoco::testing::eventually([&] { return s.engine.abandoned_bodies() == 0u; }));
}

// A body a worker releases while it runs waits in that worker's backlog
// (executors.hpp), so that short bodies stay on one core. One whose owner
// then sits in a long body is taken by another worker: here `waits` holds
// its worker until `frees` has run, and `first` releases both on the
// worker that ran it. Without that, `waits` would wait in vain. The other worker
// is awake (spinning) or, after `first` slept past its spin, asleep.
BOOST_DATA_TEST_CASE(a_body_behind_a_worker_stuck_in_a_long_one_is_run_by_another,
                     bdata::make({0, 5}) * bdata::make({false, true}), first_sleeps_ms,
                     short_one_first) {
  for (int round = 0; round < 10; ++round) {
    Engine engine(EngineOptions{2, {}});
    pyoco::testing::TempDir dir;
    auto freed = std::make_shared<Gate>();
    RunOptions o;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    o.local_tasks = {
        {"t/first",
         [first_sleeps_ms](TaskCall&, const Value&) {
           std::this_thread::sleep_for(std::chrono::milliseconds(first_sleeps_ms));
           return Value();
         }},
        {"t/short", [](TaskCall&, const Value&) { return Value(); }},
        {"t/waits",
         [freed](TaskCall&, const Value&) { return json(freed->wait() ? "true" : "false"); }},
        {"t/frees",
         [freed](TaskCall&, const Value&) {
           freed->open();
           return Value();
         }},
    };
    // With `short` first, the worker runs it, then (back in its loop,
    // where the wake meant for a sleeping worker may reach it instead)
    // takes `waits` from its own backlog and is stuck.
    const std::string graph =
        short_one_first ? "first >> (short & waits & frees)" : "first >> (waits & frees)";
    Run r = engine.start(compile("flow: {graph: \"" + graph + R"yaml("}
tasks:
  first: {use: "t/first"}
  short: {use: "t/short"}
  waits: {use: "t/waits"}
  frees: {use: "t/frees"}
)yaml"),
                         std::move(o));
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)), "round " << round << " hung");
    BOOST_TEST((r.status() == RunStatus::Completed));
    BOOST_TEST((r.output("waits") == json("true")), "round " << round << ": waits gave up waiting");
  }
}

// A task whose body waits for a free worker has not started: it is PENDING
// with no start time, and only the few bodies handed to the pool ahead of a
// free worker (2 x jobs a run) show RUNNING. Once it runs, its duration is
// its own body's, not its wait for the blockers.
BOOST_DATA_TEST_CASE(a_task_waiting_for_a_free_worker_has_not_started, bdata::make(kLoads), load) {
  if (load.blockers == 0) return;  // nothing waits on a free pool
  Saturated s(load);
  constexpr int kTasks = 12;
  std::string graph, tasks;
  for (int k = 0; k < kTasks; ++k) {
    graph += (k == 0 ? "t" : " & t") + std::to_string(k);
    tasks += "  t" + std::to_string(k) + ": {use: \"t/quick\"}\n";
  }
  Run r = s.start("flow: {graph: \"(" + graph + ")\"}\ntasks:\n" + tasks,
                  {{"t/quick", [](TaskCall&, const Value&) { return Value(); }}});
  const std::size_t handed = 2 * load.jobs;
  auto count = [&r](TaskState state) {
    std::size_t n = 0;
    for (const auto& t : r.tasks()) n += t.state == state ? 1 : 0;
    return n;
  };
  BOOST_TEST_REQUIRE(
      pyoco::testing::eventually([&] { return count(TaskState::Running) >= handed; }),
      "the run did not hand bodies to the pool");
  // The blockers hold every worker a while longer: what waits shows it.
  const auto hold = std::chrono::milliseconds(300);
  std::this_thread::sleep_for(hold);
  BOOST_TEST_REQUIRE(s.blockers_hold());
  std::vector<std::string> waited;
  for (const auto& t : r.tasks()) {
    if (t.state == TaskState::Running) continue;
    BOOST_TEST((t.state == TaskState::Pending), t.node);
    BOOST_TEST((t.started == std::chrono::system_clock::time_point{}), t.node);
    waited.push_back(t.node);
  }
  BOOST_TEST(count(TaskState::Running) == handed);
  BOOST_TEST(waited.size() == kTasks - handed);
  s.release.open();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == RunStatus::Completed));
  const double hold_ms = std::chrono::duration<double, std::milli>(hold).count();
  for (const std::string& node : waited) {
    const auto t = record(r, node);
    BOOST_TEST(t.attempts == 1u, node);
    BOOST_TEST(t.duration_ms < hold_ms,
               node << " took " << t.duration_ms << " ms: its wait counted");
  }
}

// A body with a deadline waiting for a worker is not passed over by one
// released later (it failed so, behind a later 300 ms task, in an outside
// tester's flow at --jobs 1).
BOOST_AUTO_TEST_CASE(a_body_released_later_does_not_pass_one_with_a_deadline) {
  Engine engine(EngineOptions{1, {}});
  pyoco::testing::TempDir dir;
  Gate release;
  Latch blocking;
  BodyOrder order;
  auto note = [&order](const std::string& name) { return order.note(name); };
  RunOptions o;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
  o.local_tasks = {{"t/start", note("start")},
                   {"t/block",
                    [&](TaskCall&, const Value&) {
                      blocking.arrive();
                      release.wait(std::chrono::seconds(60));
                      return Value();
                    }},
                   {"t/timed", note("timed")},
                   {"t/plain", note("plain")}};
  // At --jobs 1: block runs, timed (with a deadline) is handed to the pool
  // behind it, plain waits for room and gets it when block ends.
  Run r = engine.start(compile(R"yaml(
flow: {graph: "start >> (block & timed & plain)"}
tasks:
  start: {use: "t/start"}
  block: {use: "t/block"}
  timed: {use: "t/timed", timeout_sec: 30}
  plain: {use: "t/plain"}
)yaml"),
                       std::move(o));
  BOOST_TEST_REQUIRE(blocking.wait_for(1), "block did not start");
  release.open();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  BOOST_TEST((r.status() == RunStatus::Completed));
  const std::vector<std::string> expected = {"start", "timed", "plain"};
  BOOST_TEST(order.seen() == expected, boost::test_tools::per_element());
}

// The same with the body with a deadline in the pool's queue (the run's
// roots were handed over by control's thread while a blocker held the only
// worker) and the later one in the worker's backlog: the deadline goes first.
BOOST_AUTO_TEST_CASE(a_body_with_a_deadline_in_the_pool_goes_before_a_later_one) {
  for (int round = 0; round < 4; ++round) {
    Saturated s(Load{1, 1});
    BodyOrder order;
    auto note = [&order](const std::string& name) { return order.note(name); };
    Run r = s.start(R"yaml(
flow: {graph: "((a >> later) & timed)"}
tasks:
  a: {use: "t/a"}
  later: {use: "t/later"}
  timed: {use: "t/timed", timeout_sec: 30}
)yaml",
                    {{"t/a", note("a")}, {"t/later", note("later")}, {"t/timed", note("timed")}});
    // Both roots are handed over (on control's thread: the worker is held).
    BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] {
      std::size_t running = 0;
      for (const auto& t : r.tasks()) running += t.state == TaskState::Running ? 1 : 0;
      return running == 2;
    }));
    s.release.open();
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
    BOOST_TEST((r.status() == RunStatus::Completed));
    const std::vector<std::string> expected = {"a", "timed", "later"};
    BOOST_TEST(order.seen() == expected, "round " << round);
  }
}

// Bodies of a few milliseconds released together run side by side on
// both workers, not one after another on the worker that released them
// (its backlog is for bodies too short to be worth handing over).
BOOST_AUTO_TEST_CASE(long_bodies_released_together_run_side_by_side) {
  Engine engine(EngineOptions{2, {}});
  pyoco::testing::TempDir dir;
  struct Span {
    std::chrono::steady_clock::time_point from, to;
  };
  auto mutex = std::make_shared<std::mutex>();
  auto spans = std::make_shared<std::vector<Span>>();
  RunOptions o;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
  o.local_tasks = {
      {"t/noop", [](TaskCall&, const Value&) { return Value(); }},
      {"t/work",
       [mutex, spans](TaskCall&, const Value&) {
         const auto from = std::chrono::steady_clock::now();
         while (std::chrono::steady_clock::now() - from < std::chrono::milliseconds(20)) {
         }
         std::lock_guard<std::mutex> lock(*mutex);
         spans->push_back({from, std::chrono::steady_clock::now()});
         return Value();
       }},
  };
  Run r = engine.start(compile(R"yaml(
flow: {graph: "first >> (w1 & w2 & w3 & w4 & w5 & w6)"}
tasks:
  first: {use: "t/noop"}
  w1: {use: "t/work"}
  w2: {use: "t/work"}
  w3: {use: "t/work"}
  w4: {use: "t/work"}
  w5: {use: "t/work"}
  w6: {use: "t/work"}
)yaml"),
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  BOOST_TEST((r.status() == RunStatus::Completed));
  BOOST_TEST_REQUIRE(spans->size() == 6u);
  // Pairs of bodies whose spans overlap: none if one worker ran them all.
  int overlapping = 0;
  for (std::size_t i = 0; i < spans->size(); ++i) {
    for (std::size_t j = i + 1; j < spans->size(); ++j) {
      const Span& a = (*spans)[i];
      const Span& b = (*spans)[j];
      if (a.from < b.to && b.from < a.to) ++overlapping;
    }
  }
  BOOST_TEST(overlapping >= 2, overlapping << " pairs of bodies overlapped");
}

BOOST_AUTO_TEST_SUITE_END()
