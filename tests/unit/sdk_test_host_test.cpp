// pyoco/testing.hpp runs real plugin tasks (the hello and std plugins'
// sources, compiled into this test) with no runtime at all.
#include <pyoco/testing.hpp>

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cstdio>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

void register_tasks(pyoco::Registry& registry);  // plugins/hello/src/hello.cpp

using pyoco::Value;
using pyoco::testing::TestHost;

// A Value is two handles and an index (itself, the inputs it was read from
// and which input): reading in["x"], v[i], items() and members() copies
// them, no path, no allocation.
static_assert(sizeof(Value) == 3 * sizeof(void*));

namespace {

// What a call of the SDK threw as pyoco::Error, or "no error".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const pyoco::Error& e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

}  // namespace

BOOST_AUTO_TEST_CASE(registers_the_plugins_tasks) {
  TestHost host(register_tasks);
  const std::vector<std::string> expected = {"fetch_data", "process_data", "save_result"};
  BOOST_TEST(host.task_names() == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(runs_the_seed_example_step_by_step) {
  TestHost host(register_tasks);
  auto fetched = host.run("fetch_data");
  BOOST_TEST_REQUIRE(fetched.ok(), fetched.error());
  BOOST_TEST(fetched.output()["value"].as<std::string>() == "carrot");
  BOOST_TEST(fetched.output()["id"].as<int>() == 1);

  auto processed = host.run("process_data", {{"data", fetched.output()}});
  BOOST_TEST_REQUIRE(processed.ok(), processed.error());
  BOOST_TEST(processed.output().as<std::string>() == "CARROT");

  BOOST_TEST_REQUIRE(host.logs().size() == 2u);
  BOOST_TEST(host.logs()[1].message == "🥕 Processing: carrot");
  BOOST_TEST(host.logs()[1].task == "process_data");
}

BOOST_AUTO_TEST_CASE(task_errors_come_back_as_results) {
  TestHost host(register_tasks);
  auto r = host.run("process_data", {{"data", Value{{"value", 3}}}});
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.error() == "input 'data.value': expected string, got int");
  BOOST_TEST(!host.run("nope").ok());
  BOOST_TEST(host.run("nope").error() == "no task 'nope' was registered");
}

BOOST_AUTO_TEST_CASE(values_built_in_the_test_live_as_long_as_the_host) {
  TestHost host(register_tasks);
  Value list = Value::array({1, "two", 3.5, true, nullptr});
  Value obj{{"list", list}, {"n", 7}};
  BOOST_TEST(obj["list"].size() == 5u);
  BOOST_TEST(obj["list"][1].as<std::string>() == "two");
  BOOST_TEST(obj["list"][4].is_null());
  BOOST_TEST(obj["missing"].is_null());
  int sum = 0;
  for (auto [key, value] : obj.members()) {
    if (key == "n") sum += value.as<int>();
  }
  BOOST_TEST(sum == 7);
}

// ---- ABI 1.1: async calls, timers, cancels, deadlines, heartbeats, scratch ----

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using pyoco::Completion;
using pyoco::Context;
using pyoco::Inputs;

constexpr int kThreads = 4;
constexpr int kAddsPerThread = 500;

// What the tasks below saw, for the tests to check; AsyncHost resets it.
struct Observed {
  std::atomic<bool> on_cancel_ran{false};
  std::atomic<bool> had_deadline{false};
  std::atomic<Clock::rep> deadline_left{0};  // deadline - now, when the task started
  std::atomic<std::thread::id> completed_by{};
  std::atomic<int> first_ok{-1}, second_ok{-1}, late_fail_ok{-1};  // -1: never called
  std::atomic<int> thread_errors{0};

  void reset() {
    on_cancel_ran = false;
    had_deadline = false;
    deadline_left = 0;
    completed_by = std::thread::id();
    first_ok = second_ok = late_fail_ok = -1;
    thread_errors = 0;
  }
} observed;

// Answers after 20 ms on a host timer, with a value built in the call.
void greet_later(Context& ctx, const Inputs& in, Completion done) {
  const std::string who = in.require<std::string>("who");
  ctx.after(20ms, [done, who](bool fired) {
    if (!fired) {
      done.cancelled("the timer was cancelled");
      return;
    }
    done.ok_with([&] { return Value{{"greeting", "hello " + who}, {"fired", fired}}; });
  });
}

// Completes from a thread of its own, which the instance owns and joins.
class DoubleOnAThread : public pyoco::AsyncTask {
 public:
  static constexpr const char* name = "double_on_a_thread";
  static inline const pyoco::Io inputs[] = {{"n", "int"}};
  ~DoubleOnAThread() override { join(); }
  void start(Context&, const Inputs& in, Completion done) override {
    join();  // a kept instance is started again
    const auto n = in.require<std::int64_t>("n");
    worker_ = std::thread([done, n] {
      observed.completed_by = std::this_thread::get_id();
      done.ok_with([n] { return Value{{"doubled", n * 2}, {"by", "worker"}}; });
    });
  }

 private:
  void join() {
    if (worker_.joinable()) worker_.join();
  }
  std::thread worker_;
};

// Waits 10 s on a host timer unless cancelled first.
void nap_10s(Context& ctx, const Inputs&, Completion done) {
  ctx.on_cancel([] { observed.on_cancel_ran = true; });
  ctx.after(10s,
            [done](bool fired) { fired ? done.ok() : done.cancelled("cancelled while napping"); });
}

// Never completes by itself: notes its deadline, stops when told to.
void watch(Context& ctx, const Inputs&, Completion done) {
  if (const auto deadline = ctx.deadline()) {
    observed.had_deadline = true;
    observed.deadline_left = (*deadline - Clock::now()).count();
  }
  ctx.on_cancel([done] {
    observed.on_cancel_ran = true;
    done.cancelled("stopped by on_cancel");
  });
}

// Completes three times; only the first may count.
void complete_thrice(Context&, const Inputs&, Completion done) {
  observed.first_ok = done.ok(Value("first"));
  observed.second_ok = done.ok(Value("second"));
  observed.late_fail_ok = done.fail("too late");
}

[[noreturn]] void throw_kind(const Inputs& in) {
  const auto kind = in.require<std::string>("kind");
  if (kind == "permanent") throw pyoco::PermanentError("the disk is gone");
  if (kind == "cancelled") throw pyoco::Cancelled("nothing to do today");
  throw std::runtime_error("it broke");
}
Value throw_sync(Context&, const Inputs& in) { throw_kind(in); }
void throw_async(Context&, const Inputs& in, Completion) { throw_kind(in); }

// Two heartbeats: one with progress and a message, one with neither.
void two_beats(const Context& ctx) {
  ctx.heartbeat(0.25, "quarter");
  ctx.heartbeat();
}
Value beat(Context& ctx, const Inputs&) {
  two_beats(ctx);
  return Value();
}
void beat_later(Context& ctx, const Inputs&, Completion done) {
  ctx.after(1ms, [ctx, done](bool fired) {
    two_beats(ctx);
    fired ? done.ok() : done.cancelled();
  });
}

// kThreads threads of the plugin's, each adding 1 to scratch "n"
// kAddsPerThread times, all inside this one call. With {take_turns: true}
// they call the host one at a time, as abi.h asks of threads of one call
// ("scratch_*, arena ... for one call from one thread at a time").
Value count_on_threads(Context& ctx, const Inputs& in) {
  const bool take_turns = in.get("take_turns", false);
  std::mutex turn;
  std::atomic<std::int64_t> sum_of_returns{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto scope = ctx.enter();  // new Values go to this call's arena
      try {
        for (int i = 0; i < kAddsPerThread; ++i) {
          std::unique_lock<std::mutex> lock(turn, std::defer_lock);
          if (take_turns) lock.lock();
          sum_of_returns += ctx.scratch_add("n", 1);
        }
      } catch (const std::exception&) {
        ++observed.thread_errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  return Value{{"n", ctx.scratch("n")}, {"sum_of_returns", sum_of_returns.load()}};
}

// scratch_add on a thread of the plugin's that never entered the call:
// plugins.md lists it among what such a thread may call, and it takes and
// returns plain integers (it built a Value inside, and threw).
void add_on_a_thread(Context& ctx, const Inputs&, Completion done) {
  std::thread([ctx, done] {
    try {
      ctx.scratch_add("t", 2);
      const std::int64_t now = ctx.scratch_add("t", 3);
      done.ok_with([now] { return Value(now); });
    } catch (const std::exception& e) {
      done.fail(e.what());
    }
  }).detach();
}

// Ends its call, then throws (a careless author): the call keeps its end,
// and the SDK says so on stderr, as it does for a callback.
void throws_after_ok(Context&, const Inputs&, Completion done) {
  done.ok(7);
  throw std::runtime_error("late boom");
}

// Compare-and-set against a wrong, a right and an unset expected value.
Value compare_and_set(Context& ctx, const Inputs&) {
  ctx.set_scratch("k", 5);
  Value wrong_now, right_now, fresh_now, fresh_again_now;
  const bool wrong = ctx.scratch_compare_set("k", 4, 9, &wrong_now);
  const Value kept = ctx.scratch("k");
  const bool right = ctx.scratch_compare_set("k", 5, 9, &right_now);
  const bool fresh = ctx.scratch_compare_set("fresh", Value(), "new", &fresh_now);
  const bool fresh_again = ctx.scratch_compare_set("fresh", Value(), "newer", &fresh_again_now);
  return Value{
      {"wrong", wrong},         {"wrong_now", wrong_now},     {"kept", kept},
      {"right", right},         {"right_now", right_now},     {"fresh", fresh},
      {"fresh_now", fresh_now}, {"fresh_again", fresh_again}, {"fresh_again_now", fresh_again_now}};
}

// A `run` task that checks for cancellation, as a long task should.
Value polls_for_cancel(Context& ctx, const Inputs&) {
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (!ctx.is_cancelled() && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (ctx.is_cancelled()) throw pyoco::Cancelled("stopped when told");
  return Value("ran out of time");
}

// An async task that never ends its call (a bug the host must survive).
void never_completes(Context&, const Inputs&, pyoco::Completion) {}

// Hears of the cancel, then ends the call OK 100 ms later, from a thread
// of its own (joined by the test): pyoco ignores that late OK.
std::thread late_ok_thread;
void ok_after_cancel(Context& ctx, const Inputs&, Completion done) {
  auto told = std::make_shared<std::atomic<bool>>(false);
  ctx.on_cancel([told] { *told = true; });
  late_ok_thread = std::thread([told, done] {
    const auto until = Clock::now() + 10s;
    while (!*told && Clock::now() < until) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(100ms);
    done.ok_with([] { return Value("too late"); });
  });
}

// A task's inputs, declared as pyoco wants them (the test host refuses an
// input a task does not declare, as `pyoco check` does).
pyoco::TaskInfo taking(std::initializer_list<const char*> names) {
  pyoco::TaskInfo info;
  for (const char* n : names) info.inputs.push_back(pyoco::Io{n});
  return info;
}

void register_async_tasks(pyoco::Registry& registry) {
  registry.task("polls_for_cancel", polls_for_cancel);
  registry.async_task("never_completes", never_completes);
  registry.async_task("ok_after_cancel", ok_after_cancel);
  registry.async_task("greet_later", greet_later, taking({"who"}));
  registry.add<DoubleOnAThread>();
  registry.async_task("nap_10s", nap_10s);
  registry.async_task("watch", watch);
  registry.async_task("complete_thrice", complete_thrice);
  registry.task("throw_sync", throw_sync, taking({"kind"}));
  registry.async_task("throw_async", throw_async, taking({"kind"}));
  registry.task("beat", beat);
  registry.async_task("beat_later", beat_later);
  registry.task("count_on_threads", count_on_threads, taking({"take_turns"}));
  registry.task("compare_and_set", compare_and_set);
  registry.async_task("add_on_a_thread", add_on_a_thread);
  registry.async_task("throws_after_ok", throws_after_ok);
}

struct AsyncHost {
  AsyncHost() { observed.reset(); }
  TestHost host{register_async_tasks};
};

std::int64_t ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// Each add returns the new count, so the returns are 1..total, once each.
void check_count(const pyoco::testing::CallResult& r, const TestHost& host) {
  constexpr std::int64_t total = kThreads * kAddsPerThread;
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  BOOST_TEST(observed.thread_errors.load() == 0);
  BOOST_TEST(r.output()["n"].as<std::int64_t>() == total);
  BOOST_TEST(r.output()["sum_of_returns"].as<std::int64_t>() == total * (total + 1) / 2);
  BOOST_TEST(host.scratch("n").as<std::int64_t>() == total);
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(an_async_task_answers_from_a_host_timer, AsyncHost) {
  const auto started = Clock::now();
  auto r = host.run("greet_later", {{"who", "world"}});
  const auto took_ms = ms_since(started);
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  BOOST_TEST(r.status() == PYOCO_OK);
  BOOST_TEST(r.output()["greeting"].as<std::string>() == "hello world");
  BOOST_TEST(r.output()["fired"].as<bool>());
  BOOST_TEST(took_ms < 5000);
}

BOOST_FIXTURE_TEST_CASE(an_async_task_completes_from_a_thread_it_owns, AsyncHost) {
  // The second run reuses the instance, which joins its first thread.
  const struct {
    int n;
    bool keep_instance;
  } rows[] = {{21, false}, {-4, true}};
  for (const auto& row : rows) {
    BOOST_TEST_CONTEXT("n=" << row.n << " keep_instance=" << row.keep_instance) {
      observed.completed_by = std::thread::id();
      auto r = host.run("double_on_a_thread", {{"n", row.n}}, row.keep_instance);
      BOOST_TEST_REQUIRE(r.ok(), r.error());
      BOOST_TEST(r.output()["doubled"].as<int>() == row.n * 2);
      BOOST_TEST(r.output()["by"].as<std::string>() == "worker");
      const std::thread::id by = observed.completed_by;
      BOOST_TEST((by != std::thread::id() && by != std::this_thread::get_id()));
    }
  }
  BOOST_TEST(host.refused_completions() == 0);
}

BOOST_FIXTURE_TEST_CASE(cancel_after_cancels_an_async_task_while_it_waits, AsyncHost) {
  host.cancel_after(30ms);
  const auto started = Clock::now();
  auto r = host.run("nap_10s");
  const auto took_ms = ms_since(started);
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.cancelled());
  BOOST_TEST(r.status() == PYOCO_ERR_CANCELLED);
  BOOST_TEST(r.error() == "cancelled while napping");
  BOOST_TEST(observed.on_cancel_ran.load());
  BOOST_TEST(took_ms < 5000);  // the 10 s timer did not run out
}

BOOST_FIXTURE_TEST_CASE(a_timeout_gives_a_deadline_and_cancels_at_it, AsyncHost) {
  // 1 s: the task must start before it runs out (30 ms did not always on a
  // slow host, and its deadline was then behind it).
  host.set_timeout(1s);
  const auto started = Clock::now();
  auto r = host.run("watch");
  const auto took_ms = ms_since(started);
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.error() == "timed out");
  BOOST_TEST(!r.cancelled());  // a timeout fails the attempt: it may be retried
  BOOST_TEST(!r.permanent());
  BOOST_TEST(observed.had_deadline.load());
  // At start the deadline was ahead, and no further than the timeout.
  const auto left = Clock::duration(observed.deadline_left.load());
  BOOST_TEST(left.count() > 0);
  BOOST_TEST((left <= Clock::duration(1s)));
  BOOST_TEST(observed.on_cancel_ran.load());
  BOOST_TEST(took_ms < 5000);
}

BOOST_FIXTURE_TEST_CASE(without_a_timeout_there_is_no_deadline, AsyncHost) {
  host.cancel_after(30ms);
  auto r = host.run("watch");
  BOOST_TEST(r.cancelled());
  BOOST_TEST(r.error() == "stopped by on_cancel");
  BOOST_TEST(!observed.had_deadline.load());
  BOOST_TEST(observed.on_cancel_ran.load());
}

BOOST_FIXTURE_TEST_CASE(only_the_first_completion_counts, AsyncHost) {
  auto r = host.run("complete_thrice");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  BOOST_TEST(r.output().as<std::string>() == "first");
  BOOST_TEST(observed.first_ok.load() == 1);
  BOOST_TEST(observed.second_ok.load() == 0);
  BOOST_TEST(observed.late_fail_ok.load() == 0);
  // The SDK never sends the later ones, so the host refuses none.
  BOOST_TEST(host.refused_completions() == 0);
}

BOOST_FIXTURE_TEST_CASE(exceptions_end_a_call_with_their_status, AsyncHost) {
  const struct {
    const char* task;
    const char* kind;
    pyoco_status status;
    const char* error;
  } rows[] = {
      {"throw_sync", "permanent", PYOCO_ERR_PERMANENT, "the disk is gone"},
      {"throw_sync", "cancelled", PYOCO_ERR_CANCELLED, "nothing to do today"},
      {"throw_sync", "runtime", PYOCO_ERR_TASK, "it broke"},
      {"throw_async", "permanent", PYOCO_ERR_PERMANENT, "the disk is gone"},
      {"throw_async", "cancelled", PYOCO_ERR_CANCELLED, "nothing to do today"},
      {"throw_async", "runtime", PYOCO_ERR_TASK, "it broke"},
  };
  for (const auto& row : rows) {
    BOOST_TEST_CONTEXT(row.task << " throwing " << row.kind) {
      auto r = host.run(row.task, {{"kind", row.kind}});
      BOOST_TEST(!r.ok());
      BOOST_TEST(r.status() == row.status);
      BOOST_TEST(r.permanent() == (row.status == PYOCO_ERR_PERMANENT));
      BOOST_TEST(r.cancelled() == (row.status == PYOCO_ERR_CANCELLED));
      BOOST_TEST(r.error() == row.error);
    }
  }
  BOOST_TEST(host.refused_completions() == 0);
}

BOOST_FIXTURE_TEST_CASE(heartbeats_are_recorded_with_their_task, AsyncHost) {
  for (const std::string task : {"beat", "beat_later"}) {
    BOOST_TEST_CONTEXT(task) {
      const std::size_t before = host.heartbeats().size();
      auto r = host.run(task);
      BOOST_TEST_REQUIRE(r.ok(), r.error());
      const auto beats = host.heartbeats();
      BOOST_TEST_REQUIRE(beats.size() == before + 2);
      BOOST_TEST(beats[before].task == task);
      BOOST_TEST(beats[before].progress == 0.25);
      BOOST_TEST(beats[before].message == "quarter");
      BOOST_TEST(beats[before + 1].task == task);
      BOOST_TEST(beats[before + 1].progress < 0);  // unknown
      BOOST_TEST(beats[before + 1].message.empty());
    }
  }
}

BOOST_FIXTURE_TEST_CASE(scratch_add_from_threads_of_one_call_taking_turns, AsyncHost) {
  // One call's values live in one arena: its threads build values one at a
  // time (abi.h, "Threads"), here by taking turns on a lock of the plugin's.
  check_count(host.run("count_on_threads", {{"take_turns", true}}), host);
}

// What `f` writes to this process's stderr (fd 2).
template <class F>
std::string stderr_of(F&& f) {
  std::fflush(stderr);
  std::FILE* file = std::tmpfile();
  BOOST_TEST_REQUIRE(file != nullptr);
  struct Restore {  // fd 2 is given back even if `f` throws
    int saved = dup(2);
    ~Restore() {
      std::fflush(stderr);
      dup2(saved, 2);
      close(saved);
    }
  };
  {
    const Restore restore;
    dup2(fileno(file), 2);
    f();
  }
  std::rewind(file);
  std::string text;
  for (int c; (c = std::fgetc(file)) != EOF;) text.push_back(static_cast<char>(c));
  std::fclose(file);
  return text;
}

BOOST_FIXTURE_TEST_CASE(start_throwing_after_it_ended_its_call_is_said, AsyncHost) {
  std::optional<pyoco::testing::CallResult> r;
  const std::string said = stderr_of([&] { r.emplace(host.run("throws_after_ok")); });
  BOOST_TEST_REQUIRE(r->ok(), r->error());
  BOOST_TEST(r->output().as<int>() == 7);
  BOOST_TEST(said.find("pyoco plugin: start() threw after its call had ended: late boom") !=
                 std::string::npos,
             said);
}

BOOST_FIXTURE_TEST_CASE(scratch_add_works_on_a_thread_that_never_entered_the_call, AsyncHost) {
  auto r = host.run("add_on_a_thread");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  BOOST_TEST(r.output().as<std::int64_t>() == 5);
  BOOST_TEST(host.scratch("t").as<std::int64_t>() == 5);
}

BOOST_FIXTURE_TEST_CASE(scratch_compare_set_changes_only_what_it_expected, AsyncHost) {
  auto r = host.run("compare_and_set");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  const Value out = r.output();
  BOOST_TEST(!out["wrong"].as<bool>());
  BOOST_TEST(out["wrong_now"].as<int>() == 5);  // what the key holds: unchanged
  BOOST_TEST(out["kept"].as<int>() == 5);
  BOOST_TEST(out["right"].as<bool>());
  BOOST_TEST(out["right_now"].as<int>() == 9);
  BOOST_TEST(out["fresh"].as<bool>());  // null expected: the key was unset
  BOOST_TEST(out["fresh_now"].as<std::string>() == "new");
  BOOST_TEST(!out["fresh_again"].as<bool>());  // it is set now
  BOOST_TEST(out["fresh_again_now"].as<std::string>() == "new");
  BOOST_TEST(host.scratch("k").as<int>() == 9);
  BOOST_TEST(host.scratch("fresh").as<std::string>() == "new");
}

BOOST_FIXTURE_TEST_CASE(cancel_after_reaches_a_run_task_too, AsyncHost) {
  host.cancel_after(std::chrono::milliseconds(30));
  const auto start = Clock::now();
  const auto r = host.run("polls_for_cancel");
  BOOST_TEST(r.cancelled(), r.error());
  BOOST_TEST(r.error() == "stopped when told");
  BOOST_TEST(ms_since(start) < 5000);  // told at 30 ms, not left to run out its 10 s
}

BOOST_FIXTURE_TEST_CASE(set_timeout_reaches_a_run_task_too, AsyncHost) {
  host.set_timeout(std::chrono::milliseconds(30));
  const auto start = Clock::now();
  const auto r = host.run("polls_for_cancel");
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.error() == "timed out");
  BOOST_TEST(ms_since(start) < 5000);
}

BOOST_FIXTURE_TEST_CASE(a_call_that_never_completes_is_reported_at_the_call_limit, AsyncHost) {
  host.set_call_limit(std::chrono::milliseconds(50));
  const auto r = host.run("never_completes");
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.error() == "the task did not complete its call within 50 ms (set_call_limit)");
}

BOOST_FIXTURE_TEST_CASE(a_late_ok_after_cancel_after_is_ignored_as_pyoco_does, AsyncHost) {
  // In pyoco the node is CANCELLED when the run is cancelled; what the task
  // ends the call with afterwards is ignored. The test host said OK here.
  host.cancel_after(30ms);
  const auto r = host.run("ok_after_cancel");
  late_ok_thread.join();
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.cancelled());
  BOOST_TEST(r.status() == PYOCO_ERR_CANCELLED);
  BOOST_TEST(r.error() == "run cancelled");
  BOOST_TEST(r.output().is_null());
  BOOST_TEST(host.refused_completions() == 0);  // taken, then ignored: not refused
}

namespace {

// Ends its call 200 ms after it starts, from a detached thread, having
// logged, beaten, and asked for a timer and a cancel callback: past a 50 ms
// timeout, all of that comes after the TestHost is gone.
struct Late {
  std::atomic<int> ended{-1};      // what done.ok_with returned; -1: not yet
  std::atomic<int> timer{-1};      // fired (1) or not (0)
  std::atomic<int> on_cancel{-1};  // called (1)
} late;
void late_task(Context& ctx, const Inputs&, Completion done) {
  std::thread([ctx, done] {
    std::this_thread::sleep_for(200ms);
    ctx.info("still here");
    ctx.heartbeat(0.9, "nearly");
    ctx.after(1ms, [](bool fired) { late.timer = fired ? 1 : 0; });
    ctx.on_cancel([] { late.on_cancel = 1; });
    late.ended = done.ok_with([] { return Value(7); }) ? 1 : 0;
  }).detach();
}
void register_late(pyoco::Registry& registry) { registry.async_task("late", late_task); }

}  // namespace

BOOST_AUTO_TEST_CASE(a_call_ended_after_its_host_is_gone_is_refused_safely) {
  {
    TestHost host(register_late);
    host.set_timeout(50ms);
    const auto r = host.run("late");
    BOOST_TEST(r.error() == "timed out");
  }
  // The thread ends the call after the host is gone: it touched freed
  // memory (a crash), now it finds the call's context and values alive.
  const auto until = Clock::now() + 5s;
  while (late.ended < 0 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  BOOST_TEST(late.ended.load() == 1);  // the SDK's end: the host refused it
  BOOST_TEST(late.timer.load() == 0);  // the call is over: cancelled at once
  BOOST_TEST(late.on_cancel.load() == 1);
}

BOOST_AUTO_TEST_CASE(a_second_test_host_while_one_lives_throws) {
  std::string why;
  {
    TestHost first(register_tasks);
    try {
      TestHost second(register_tasks);
      why = "no exception";
    } catch (const std::logic_error& e) {
      why = e.what();
    }
    BOOST_TEST(first.run("fetch_data").ok());  // the first is untouched
  }
  BOOST_TEST(
      why.rfind("pyoco::testing::TestHost: another TestHost is alive in this process", 0) == 0u,
      why);
  // Once the first is gone another may be made, also after one whose
  // register_tasks threw (no destructor ran for it).
  BOOST_CHECK_THROW(TestHost([](pyoco::Registry&) { throw std::runtime_error("no"); }),
                    std::runtime_error);
  TestHost next(register_tasks);
  BOOST_TEST(next.task_names().size() == 3u);
}

// ---- docs/plugins.md, promise by promise: values, the context, the test host ----

namespace {

// The call's facts, as the test host gives them.
Value facts(Context& ctx, const Inputs&) {
  return Value{{"run_id", ctx.run_id()},
               {"flow_name", ctx.flow_name()},
               {"node_name", ctx.node_name()},
               {"attempt", static_cast<std::int64_t>(ctx.attempt())},
               {"who", ctx.param("who")},
               {"params_is_object", ctx.params().is_object()},
               {"cancelled", ctx.is_cancelled()},
               {"unset_scratch_is_null", ctx.scratch("never set").is_null()}};
}

// The "Reading" table of "Values", on the inputs {n: 300, obj: {a, b}, list: [1, 2, 3]}.
Value reading(Context&, const Inputs& in) {
  const Value n = in["n"];
  std::string members;
  for (auto [key, value] : in["obj"].members()) members += std::string(key) + ",";
  std::int64_t sum = 0;
  for (Value item : in["list"].items()) sum += item.as<std::int64_t>();
  return Value{{"range_error", error_of([&] { (void)n.as<std::int8_t>(); })},
               {"kind_error", error_of([&] { (void)n.as<std::string>(); })},
               {"as_int16", static_cast<std::int64_t>(n.as<std::int16_t>())},
               {"as_double", n.as<double>()},
               {"as_float", static_cast<double>(n.as<float>())},
               {"get_or_other_kind", n.get_or<std::string>("fallback")},
               {"get_or_null", in["nope"].get_or<std::int64_t>(7)},
               {"missing_member_is_null", in["obj"]["zz"].is_null()},
               {"missing_index_is_null", in["list"][99].is_null()},
               {"contains", in["obj"].contains("b") && !in["obj"].contains("zz")},
               {"scalar_size", static_cast<std::int64_t>(n.size())},
               {"list_size", static_cast<std::int64_t>(in["list"].size())},
               {"members", members},
               {"sum", sum},
               {"is_number", n.is_number() && in["list"][0].is_int() && !n.is_string()}};
}

Value require_name(Context&, const Inputs& in) { return in.require<std::string>("name"); }

// Reads `env` as std/shell does, and `argv`'s items, as strings: a mistyped
// one is named by its path among the inputs.
Value read_deep(Context&, const Inputs& in) {
  std::string out;
  for (auto [key, value] : in["env"].members())
    out += std::string(key) + "=" + value.as<std::string>();
  for (Value item : in["argv"].items()) out += " " + item.as<std::string>();
  out += in.get<Value>("deep", Value())["a"][1]["b"].get_or<std::string>("");
  if (in.contains("deep")) out += in["deep"]["a"][1]["b"].as<std::string>();
  return out;
}
// Reads `message` as a string and `value` as anything, in `how`'s way: the
// two may hold one shared value (both bound to one param or node output).
Value read_message(Context&, const Inputs& in) {
  const std::string how = in.get<std::string>("how", "require");
  (void)in["value"];
  if (how == "members") {
    for (auto [key, item] : in.members()) {
      if (key == "message") return item.as<std::string>();
    }
  }
  if (how == "nested") return in["message"]["N"].as<std::string>();
  return in.require<std::string>("message");
}
// Values that are not inputs say no path.
Value not_inputs(Context& ctx, const Inputs&) {
  const Value built = {{"n", 1}};
  std::string why;
  try {
    (void)built["n"].as<std::string>();
  } catch (const pyoco::Error& e) {
    why = e.what();
  }
  try {
    (void)ctx.params()["flag"].as<std::string>();
  } catch (const pyoco::Error& e) {
    why += std::string(" / ") + e.what();
  }
  return why;
}
Value get_name(Context&, const Inputs& in) { return in.get<std::string>("name", "fallback"); }

// The "Building" block of "Values".
Value building(Context&, const Inputs&) {
  Value record = {{"id", 1}, {"value", "carrot"}};
  Value list = Value::array({1, "two", nullptr});
  Value o = Value::object();
  o.set("n", 3).set("ok", true);
  list.push(record);
  return Value{{"list", list}, {"o", o}};
}

// A thread of the task's own builds values only after ctx.enter().
Value builds_on_a_thread(Context& ctx, const Inputs&) {
  std::string without, with;
  std::thread([&] {
    try {
      Value v(1);
      without = "built";
    } catch (const pyoco::Error& e) {
      without = e.what();
    }
    auto scope = ctx.enter();
    Value v(2);
    with = v.as<std::int64_t>() == 2 ? "built" : "wrong";
  }).join();
  return Value{{"without", without}, {"with", with}};
}

Value logs_every_level(Context& ctx, const Inputs&) {
  ctx.debug("d");
  ctx.info("i");
  ctx.warn("w");
  ctx.error("e");
  ctx.log(PYOCO_LOG_INFO, "l");
  return Value();
}

Value saves_artifacts(Context& ctx, const Inputs&) {
  const std::string text =
      ctx.save_artifact("reports/day1.csv", std::string_view("a,b\n"), "text/csv");
  const std::string bytes = ctx.save_artifact("blob.bin", pyoco::Bytes{{0x89, 0x50}});
  const std::string json = ctx.save_artifact("v.json", Value{{"ok", true}});
  std::string refused;
  for (const char* bad : {"/abs", "../up", "a//b", "a/", "back\\slash", "./x", ""}) {
    refused += error_of([&] { ctx.save_artifact(bad, std::string_view("x")); }) == "no error"
                   ? std::string("taken: ") + bad + ";"
                   : "";
  }
  return Value{{"text", text},
               {"bytes", bytes},
               {"json", json},
               {"back", ctx.load_artifact(text)},
               {"json_back", ctx.load_artifact(json)},
               {"refused", refused},
               {"missing", error_of([&] { ctx.load_artifact("never-saved"); })}};
}

// With host.cancel(): on_cancel and after call back at once, cancelled.
Value cancelled_at_once(Context& ctx, const Inputs&) {
  bool on_cancel = false;
  int fired = -1;
  ctx.on_cancel([&] { on_cancel = true; });
  ctx.after(std::chrono::hours(1), [&](bool f) { fired = f ? 1 : 0; });
  return Value{{"on_cancel", on_cancel}, {"fired", fired}, {"cancelled", ctx.is_cancelled()}};
}

Value throws_an_int(Context&, const Inputs&) { throw 42; }

void register_doc_tasks(pyoco::Registry& registry) {
  registry.task("facts", facts)
      .task("reading", reading, taking({"n", "obj", "list"}))
      .task("require_name", require_name, taking({"name"}))
      .task("get_name", get_name, taking({"name"}))
      .task("read_deep", read_deep, taking({"env", "argv", "deep"}))
      .task("read_message", read_message, taking({"value", "message", "how"}))
      .task("not_inputs", not_inputs)
      .task("building", building)
      .task("builds_on_a_thread", builds_on_a_thread)
      .task("logs_every_level", logs_every_level)
      .task("saves_artifacts", saves_artifacts)
      .task("cancelled_at_once", cancelled_at_once)
      .task("throws_an_int", throws_an_int);
}

std::string second_registration;  // what registering "greet" again threw
void register_twice(pyoco::Registry& registry) {
  registry.task("greet", facts);
  try {
    registry.task("greet", facts);
    second_registration = "taken";
  } catch (const pyoco::Error& e) {
    second_registration = e.what();
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_test_host_gives_the_calls_the_documented_facts) {
  TestHost host(register_doc_tasks);
  auto first = host.run("facts");
  BOOST_TEST_REQUIRE(first.ok(), first.error());
  BOOST_TEST(first.output()["run_id"].as<std::string>() == "test-run");
  BOOST_TEST(first.output()["flow_name"].as<std::string>() == "test-flow");
  BOOST_TEST(first.output()["node_name"].as<std::string>() == "facts");
  BOOST_TEST(first.output()["attempt"].as<int>() == 1);
  BOOST_TEST(first.output()["who"].is_null());
  BOOST_TEST(first.output()["params_is_object"].as<bool>());  // an empty object by default
  BOOST_TEST(!first.output()["cancelled"].as<bool>());
  BOOST_TEST(first.output()["unset_scratch_is_null"].as<bool>());
  // keep_instance counts attempts up, as a retry does; a fresh instance starts at 1.
  host.set_params(Value{{"who", "carrot"}});
  BOOST_TEST(host.run("facts", Value::object(), true).output()["attempt"].as<int>() == 2);
  BOOST_TEST(host.run("facts", Value::object(), true).output()["attempt"].as<int>() == 3);
  auto fresh = host.run("facts");
  BOOST_TEST(fresh.output()["attempt"].as<int>() == 1);
  BOOST_TEST(fresh.output()["who"].as<std::string>() == "carrot");
  // cancel() and cancel(false)
  host.cancel();
  BOOST_TEST(host.run("facts").output()["cancelled"].as<bool>());
  auto at_once = host.run("cancelled_at_once");
  BOOST_TEST_REQUIRE(at_once.ok(), at_once.error());
  BOOST_TEST(at_once.output()["on_cancel"].as<bool>());
  BOOST_TEST(at_once.output()["fired"].as<int>() == 0);
  host.cancel(false);
  BOOST_TEST(!host.run("facts").output()["cancelled"].as<bool>());
}

BOOST_AUTO_TEST_CASE(values_read_as_the_docs_table_says) {
  TestHost host(register_doc_tasks);
  auto r = host.run(
      "reading",
      Value{{"n", 300}, {"obj", Value{{"b", 1}, {"a", 2}}}, {"list", Value::array({1, 2, 3})}});
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  const Value out = r.output();
  BOOST_TEST(out["range_error"].as<std::string>() ==
             "input 'n': int value 300 does not fit the requested type");
  BOOST_TEST(out["kind_error"].as<std::string>() == "input 'n': expected string, got int");
  BOOST_TEST(out["as_int16"].as<int>() == 300);
  BOOST_TEST(out["as_double"].as<double>() == 300.0);  // ints convert
  BOOST_TEST(out["as_float"].as<double>() == 300.0);
  BOOST_TEST(out["get_or_other_kind"].as<std::string>() == "fallback");
  BOOST_TEST(out["get_or_null"].as<int>() == 7);
  BOOST_TEST(out["missing_member_is_null"].as<bool>());
  BOOST_TEST(out["missing_index_is_null"].as<bool>());
  BOOST_TEST(out["contains"].as<bool>());
  BOOST_TEST(out["scalar_size"].as<int>() == 0);
  BOOST_TEST(out["list_size"].as<int>() == 3);
  BOOST_TEST(out["members"].as<std::string>() == "b,a,");  // insertion order
  BOOST_TEST(out["sum"].as<int>() == 6);
  BOOST_TEST(out["is_number"].as<bool>());

  const struct {
    const char* task;
    Value inputs;
    const char* output;  // or, when the call fails:
    const char* error;
  } rows[] = {
      {"require_name", Value::object(), nullptr, "input 'name' is required"},
      {"require_name", Value{{"name", 3}}, nullptr, "input 'name': expected string, got int"},
      {"require_name", Value{{"name", "x"}}, "x", nullptr},
      {"get_name", Value::object(), "fallback", nullptr},
      {"get_name", Value{{"name", 3}}, nullptr, "input 'name': expected string, got int"},
      // what is read from an input names its path (the issue: std/shell's
      // `env: {N: 5}` said only "expected string, got int")
      {"read_deep", Value{{"env", Value{{"A", "1"}, {"N", 5}}}}, nullptr,
       "input 'env.N': expected string, got int"},
      {"read_deep", Value{{"argv", Value::array({"ls", true})}}, nullptr,
       "input 'argv.1': expected string, got bool"},
      {"read_deep", Value{{"deep", Value{{"a", Value::array({0, Value{{"b", 2.5}}})}}}}, nullptr,
       "input 'deep.a.1.b': expected string, got double"},
      // a missing member is nowhere in the inputs: the path, found on error
      // rather than carried, is not found, and the message names none
      {"read_deep", Value{{"deep", Value{{"a", Value::array({0, Value::object()})}}}}, nullptr,
       "expected string, got null"},
      {"read_deep", Value{{"deep", Value{{"a", Value::array({0, Value{{"b", nullptr}}})}}}},
       nullptr, "input 'deep.a.1.b': expected string, got null"},
      {"read_deep", Value{{"env", Value{{"A", "1"}}}, {"argv", Value::array({"x"})}}, "A=1 x",
       nullptr},
      {"throws_an_int", Value::object(), nullptr,
       "unknown exception (not derived from std::exception)"},
  };
  for (const auto& row : rows) {
    BOOST_TEST_CONTEXT(row.task << (row.error != nullptr ? row.error : "")) {
      auto call = host.run(row.task, row.inputs);
      if (row.error != nullptr) {
        BOOST_TEST(!call.ok());
        BOOST_TEST(call.error() == row.error);
      } else {
        BOOST_TEST_REQUIRE(call.ok(), call.error());
        BOOST_TEST(call.output().as<std::string>() == row.output);
      }
    }
  }
}

// Two inputs holding one shared value (`value: $ctx.params.x` and `message:
// $ctx.params.x`, or one node's output): the error named the first input
// holding it, `value` (declared any), not `message`, the one read.
BOOST_AUTO_TEST_CASE(an_error_names_the_input_read_when_two_share_a_value) {
  TestHost host(register_doc_tasks);
  const Value five(5);
  const Value env = {{"N", 5}};
  const struct {
    Value inputs;
    const char* error;
  } rows[] = {
      {Value{{"value", five}, {"message", five}}, "input 'message': expected string, got int"},
      {Value{{"value", five}, {"message", five}, {"how", "members"}},
       "input 'message': expected string, got int"},
      {Value{{"value", env}, {"message", env}, {"how", "nested"}},
       "input 'message.N': expected string, got int"},
  };
  for (const auto& row : rows) {
    auto call = host.run("read_message", row.inputs);
    BOOST_TEST(!call.ok());
    BOOST_TEST(call.error() == row.error);
  }
}

BOOST_AUTO_TEST_CASE(only_values_read_from_the_inputs_name_a_path) {
  TestHost host(register_doc_tasks);
  host.set_params(Value{{"flag", true}});
  auto r = host.run("not_inputs");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  BOOST_TEST(r.output().as<std::string>() ==
             "expected string, got int / expected string, got bool");
}

BOOST_AUTO_TEST_CASE(values_build_as_the_docs_block_says) {
  TestHost host(register_doc_tasks);
  auto r = host.run("building");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  const Value list = r.output()["list"];
  BOOST_TEST_REQUIRE(list.size() == 4u);
  BOOST_TEST(list[1].as<std::string>() == "two");
  BOOST_TEST(list[2].is_null());
  BOOST_TEST(list[3]["value"].as<std::string>() == "carrot");
  BOOST_TEST(r.output()["o"]["n"].as<int>() == 3);
  BOOST_TEST(r.output()["o"]["ok"].as<bool>());

  auto threads = host.run("builds_on_a_thread");
  BOOST_TEST_REQUIRE(threads.ok(), threads.error());
  BOOST_TEST(threads.output()["without"].as<std::string>().rfind(
                 "pyoco::Value built outside a task call", 0) == 0u,
             threads.output()["without"].as<std::string>());
  BOOST_TEST(threads.output()["with"].as<std::string>() == "built");
}

BOOST_AUTO_TEST_CASE(the_test_host_keeps_logs_and_artifacts) {
  std::string dir;
  {
    TestHost host(register_doc_tasks);
    BOOST_TEST_REQUIRE(host.run("logs_every_level").ok());
    const auto logs = host.logs();
    BOOST_TEST_REQUIRE(logs.size() == 5u);
    const pyoco_log_level levels[] = {PYOCO_LOG_DEBUG, PYOCO_LOG_INFO, PYOCO_LOG_WARN,
                                      PYOCO_LOG_ERROR, PYOCO_LOG_INFO};
    for (std::size_t i = 0; i < logs.size(); ++i) {
      BOOST_TEST(logs[i].task == "logs_every_level");
      BOOST_TEST(logs[i].level == levels[i]);
    }
    BOOST_TEST(logs[2].message == "w");

    auto r = host.run("saves_artifacts");
    BOOST_TEST_REQUIRE(r.ok(), r.error());
    const Value out = r.output();
    BOOST_TEST(out["text"].as<std::string>() == "reports/day1.csv");  // the name, not a path
    BOOST_TEST(out["bytes"].as<std::string>() == "blob.bin");
    BOOST_TEST(out["back"].as<std::string>() == "a,b\n");
    BOOST_TEST(out["json_back"].as<std::string>() == R"({"ok":true})");
    BOOST_TEST(out["refused"].as<std::string>() == "");
    BOOST_TEST(out["missing"].as<std::string>() == "this run has no artifact 'never-saved'");
    const auto& artifacts = host.artifacts();
    BOOST_TEST_REQUIRE(artifacts.size() == 3u);
    BOOST_TEST(artifacts[0].media_type == "text/csv");
    BOOST_TEST(artifacts[0].size == 4u);
    BOOST_TEST(artifacts[1].media_type == "application/octet-stream");
    BOOST_TEST(artifacts[2].media_type == "application/json");
    dir = host.artifact_dir().string();
    BOOST_TEST(std::ifstream(host.artifact_dir() / "reports/day1.csv").good());
    const std::vector<std::string> names = {"facts",
                                            "reading",
                                            "require_name",
                                            "get_name",
                                            "read_deep",
                                            "read_message",
                                            "not_inputs",
                                            "building",
                                            "builds_on_a_thread",
                                            "logs_every_level",
                                            "saves_artifacts",
                                            "cancelled_at_once",
                                            "throws_an_int"};
    BOOST_TEST(host.task_names() == names, boost::test_tools::per_element());
  }
  BOOST_TEST(!std::ifstream(dir + "/reports/day1.csv").good());  // removed with the host
}

// "Registering a name twice makes add<T>()/task() throw pyoco::Error (the
// host refused task 'greet')."
BOOST_AUTO_TEST_CASE(registering_a_name_twice_throws) {
  TestHost host(register_twice);
  BOOST_TEST(second_registration == "the host refused task 'greet'");
  BOOST_TEST(host.task_names() == std::vector<std::string>{"greet"},
             boost::test_tools::per_element());
}

// ---- a stateless task (docs/plugins.md "Stateless tasks") -------------------

namespace {

std::atomic<int> shared_made{0};
std::atomic<int> shared_freed{0};
std::atomic<int> own_made{0};

// Says which instance ran the call: the same one for every call of a
// stateless task, a new one for each call of the other.
struct SharedTask : pyoco::Task {
  static constexpr const char* name = "shared";
  static constexpr bool stateless = true;
  SharedTask() : instance_number(++shared_made) {}
  ~SharedTask() override { ++shared_freed; }
  Value run(Context&, const Inputs&) override { return Value(instance_number); }
  const int instance_number;
};

struct OwnTask : pyoco::Task {
  static constexpr const char* name = "own";
  OwnTask() : instance_number(++own_made) {}
  Value run(Context&, const Inputs&) override { return Value(instance_number); }
  const int instance_number;
};

void register_shared_and_own(pyoco::Registry& registry) {
  registry.add<SharedTask>().add<OwnTask>();
}

}  // namespace

// "With `static constexpr bool stateless = true;` one instance, made when
// the plugin registers its tasks, serves every call" (and is freed with the
// plugin); without it, each call of a fresh node gets one of its own.
BOOST_AUTO_TEST_CASE(a_stateless_task_is_made_once_and_every_call_shares_it) {
  shared_made = 0;
  shared_freed = 0;
  own_made = 0;
  {
    TestHost host(register_shared_and_own);
    BOOST_TEST(shared_made == 1);
    BOOST_TEST(own_made == 0);
    for (int i = 0; i < 3; ++i) {
      auto shared = host.run("shared");
      BOOST_TEST_REQUIRE(shared.ok(), shared.error());
      BOOST_TEST(shared.output().as<int>() == 1);
      auto own = host.run("own");
      BOOST_TEST_REQUIRE(own.ok(), own.error());
      BOOST_TEST(own.output().as<int>() == i + 1);
    }
    BOOST_TEST(shared_made == 1);
    BOOST_TEST(own_made == 3);
    BOOST_TEST(shared_freed == 0);
  }
  BOOST_TEST(shared_freed == 1);
}

// ---- docs/plugins.md "On a 1.0 host" ------------------------------------------

namespace {

// The test host's function table cut to what a 1.0 host has: the SDK reads
// its struct_size, as it would a real 1.0 pyoco's.
struct OnA10Host {
  pyoco_host_api table = *pyoco::detail::host_slot();
  const pyoco_host_api* saved = pyoco::detail::host_slot();
  OnA10Host() {
    table.struct_size = offsetof(pyoco_host_api, call_complete);
    pyoco::detail::host_slot() = &table;
  }
  ~OnA10Host() { pyoco::detail::host_slot() = saved; }
};

std::vector<std::string> refused_on_1_0;  // what registering async tasks threw

Value old_host_probe(Context& ctx, const Inputs&) {
  ctx.heartbeat(0.5, "ignored");
  return Value{{"deadline", ctx.deadline().has_value()},
               {"on_cancel", error_of([&] { ctx.on_cancel([] {}); })},
               {"after", error_of([&] { ctx.after(std::chrono::milliseconds(1), [](bool) {}); })},
               {"compare_set", error_of([&] { ctx.scratch_compare_set("k", Value(), Value(1)); })},
               {"add", error_of([&] { ctx.scratch_add("k", 1); })},
               {"load", error_of([&] { ctx.load_artifact("x"); })}};
}

void register_on_a_1_0_host(pyoco::Registry& registry) {
  static std::optional<OnA10Host> old;
  old.emplace();
  refused_on_1_0.clear();
  try {
    registry.async_task("nap", nap_10s);
  } catch (const pyoco::Error& e) {
    refused_on_1_0.emplace_back(e.what());
  }
  try {
    registry.add<DoubleOnAThread>();
  } catch (const pyoco::Error& e) {
    refused_on_1_0.emplace_back(e.what());
  }
  registry.task("old_host_probe", old_host_probe).task("throw_sync", throw_sync, taking({"kind"}));
  old.reset();
}

}  // namespace

BOOST_AUTO_TEST_CASE(on_a_1_0_host_the_sdk_does_what_the_docs_table_says) {
  TestHost host(register_on_a_1_0_host);
  BOOST_TEST(refused_on_1_0 ==
                 (std::vector<std::string>{
                     "task 'nap' is async and needs a pyoco host with plugin ABI 1.1 or newer",
                     "task 'double_on_a_thread' is async and needs a pyoco host with plugin ABI "
                     "1.1 or newer"}),
             boost::test_tools::per_element());
  BOOST_TEST(host.task_names() == (std::vector<std::string>{"old_host_probe", "throw_sync"}),
             boost::test_tools::per_element());
  OnA10Host old;
  host.set_timeout(std::chrono::seconds(10));  // a deadline a 1.1 SDK would see
  auto r = host.run("old_host_probe");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  const Value out = r.output();
  BOOST_TEST(!out["deadline"].as<bool>());
  BOOST_TEST(host.heartbeats().empty());
  BOOST_TEST(out["on_cancel"].as<std::string>() ==
             "Context::on_cancel needs a pyoco host with plugin ABI 1.1 or newer");
  BOOST_TEST(out["after"].as<std::string>() ==
             "Context::after needs a pyoco host with plugin ABI 1.1 or newer");
  BOOST_TEST(out["compare_set"].as<std::string>() ==
             "Context::scratch_compare_set needs a pyoco host with plugin ABI 1.1 or newer");
  BOOST_TEST(out["add"].as<std::string>() == out["compare_set"].as<std::string>());
  BOOST_TEST(out["load"].as<std::string>() ==
             "Context::load_artifact needs a pyoco host with plugin ABI 1.1 or newer");
  // PermanentError and Cancelled are plain failures there.
  for (const char* kind : {"permanent", "cancelled"}) {
    BOOST_TEST_CONTEXT(kind) {
      auto thrown = host.run("throw_sync", {{"kind", kind}});
      BOOST_TEST(thrown.status() == PYOCO_ERR_TASK);
      BOOST_TEST(!thrown.permanent());
      BOOST_TEST(!thrown.cancelled());
    }
  }
}

// docs/plugins.md "Versioning": the SDK lives in an inline namespace of its
// ABI major, so code built against two SDK majors fails to link.
static_assert(std::is_same_v<pyoco::Value, pyoco::v1::Value>);
static_assert(std::is_same_v<pyoco::Task, pyoco::v1::Task>);
static_assert(PYOCO_ABI_VERSION_MAJOR == 1 && PYOCO_ABI_VERSION_MINOR == 1);

// docs/plugins.md "Errors" and "How a task ends": pyoco::Error is a
// std::runtime_error; PermanentError and Cancelled derive from it;
// Cancelled's default message is `cancelled`.
static_assert(std::is_base_of_v<std::runtime_error, pyoco::Error>);
static_assert(std::is_base_of_v<pyoco::Error, pyoco::PermanentError>);
static_assert(std::is_base_of_v<pyoco::Error, pyoco::Cancelled>);

BOOST_AUTO_TEST_CASE(cancelled_says_cancelled_by_default) {
  BOOST_TEST(std::string(pyoco::Cancelled().what()) == "cancelled");
}

// "`pyoco::Io::type` is one of any null bool int number string bytes array
// object (default `any`)".
BOOST_AUTO_TEST_CASE(an_io_is_of_type_any_unless_told) {
  const pyoco::Io io{"value"};
  BOOST_TEST(io.type == "any");
  BOOST_TEST(!io.required);
}

// ---- the test host behaves as pyoco does (docs/plugins.md "Testing") ----

namespace {

using pyoco::Completion;
using pyoco::Context;
using pyoco::Inputs;
using namespace std::chrono_literals;

// 60 lists, each holding the one below twice: 2^60 items in a few nodes.
Value dag(int levels) {
  Value v = Value::array({1});
  for (int i = 0; i < levels; ++i) {
    Value up = Value::array();
    up.push(v);
    up.push(v);
    v = up;
  }
  return v;
}
Value nested(int levels) {
  Value v = Value::array();
  for (int i = 0; i < levels; ++i) v = Value::array({v});
  return v;
}

Value save_unfit(Context& ctx, const Inputs& in) {
  const std::string what = in["what"].as<std::string>();
  const Value v = what == "dag"    ? dag(60)
                  : what == "deep" ? nested(100)
                                   : Value{{"x", std::nan("")}};
  ctx.save_artifact("v.json", v);
  return Value();
}

Value returns(Context&, const Inputs& in) {
  const std::string what = in["what"].as<std::string>();
  if (what == "string") return Value("not an int");
  if (what == "deep") return nested(100);
  if (what == "nan") return Value{{"x", std::nan("")}, {"y", INFINITY}};
  if (what == "dag") return dag(30);
  return Value(1);
}

Value texts(Context& ctx, const Inputs&) {
  const std::string s = "from a std::string";
  ctx.save_artifact("a.txt", s);  // did not compile: ambiguous with the Value overload
  ctx.save_artifact("b.txt", "from a literal");
  return Value();
}

Value misuses(Context& ctx, const Inputs& in) {
  const std::string what = in["what"].as<std::string>();
  if (what == "push_self") {
    Value a = Value::array();
    a.push(a);
  } else if (what == "set_self") {
    Value o = Value::object();
    o.set("self", o);
  } else if (what == "scratch_nan") {
    ctx.set_scratch("nan", std::nan(""));
  } else if (what == "add_past_max") {
    ctx.set_scratch("m", std::numeric_limits<std::int64_t>::max());
    ctx.scratch_add("m", 1);
  } else if (what == "bad_utf8") {
    ctx.save_artifact("bad\xff.txt", "x");
  } else if (what == "beats") {
    ctx.heartbeat(7);
    ctx.heartbeat(std::nan(""));
    ctx.heartbeat(-5);
    ctx.heartbeat(0.5);
  }
  return Value();
}

// Ends its call in start() after blocking for `ms`.
void blocks_in_start(Context&, const Inputs& in, Completion done) {
  std::this_thread::sleep_for(std::chrono::milliseconds(in["ms"].as<int>()));
  done.ok();
}

// Ends its call at once, then goes on using a copy of its context.
std::atomic<bool> kept_done{false};
void keeps_its_context(Context& ctx, const Inputs&, Completion done) {
  kept_done = false;
  std::thread([c = ctx, done] {
    done.ok();
    for (int i = 0; i < 3; ++i) {
      c.info("after the end");
      c.heartbeat(0.5);
    }
    kept_done = true;
  }).detach();
}

pyoco::TaskInfo with_what() {
  pyoco::TaskInfo info;
  info.inputs = {pyoco::Io{"what", "string"}};
  return info;
}

void register_like_the_host(pyoco::Registry& registry) {
  pyoco::TaskInfo typed = with_what();
  typed.outputs = {pyoco::Io{"n", "int"}};
  pyoco::TaskInfo blocks;
  blocks.inputs = {pyoco::Io{"ms", "int"}};
  registry.task("save_unfit", save_unfit, with_what())
      .task("typed", returns, typed)
      .task("returns", returns, with_what())
      .task("texts", texts)
      .task("misuses", misuses, with_what())
      .async_task("blocks_in_start", blocks_in_start, blocks)
      .async_task("keeps_its_context", keeps_its_context);
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_artifact_value_keeps_the_limits_every_value_keeps) {
  TestHost host(register_like_the_host);
  auto dag60 = host.run("save_unfit", {{"what", "dag"}});  // never returned
  BOOST_TEST(!dag60.ok());
  BOOST_TEST(dag60.error().find("cannot save artifact 'v.json': a value of more than 16777216 "
                                "items") == 0,
             dag60.error());
  auto deep = host.run("save_unfit", {{"what", "deep"}});
  BOOST_TEST(deep.error().find("nested more than 64 levels deep") != std::string::npos,
             deep.error());
  auto nan = host.run("save_unfit", {{"what", "nan"}});
  BOOST_TEST(nan.error() ==
             "cannot save artifact 'v.json': a number that is not finite at "
             "value.x, which JSON cannot hold");
  BOOST_TEST(host.artifacts().empty());
}

BOOST_AUTO_TEST_CASE(an_output_is_checked_as_pyoco_checks_it) {
  TestHost host(register_like_the_host);
  auto wrong = host.run("typed", {{"what", "string"}});
  BOOST_TEST(!wrong.ok());
  BOOST_TEST(wrong.permanent());
  BOOST_TEST(wrong.error() ==
             "typed returned a string, but the task declares its output 'n' as "
             "int (a bug of the task or of its declaration)");
  BOOST_TEST(host.run("typed", {{"what", "int"}}).ok());
  auto deep = host.run("returns", {{"what", "deep"}});
  BOOST_TEST(deep.error() ==
             "returns returned a value nested more than 64 levels deep, past the "
             "limit every value in pyoco keeps (a bug of the task)");
  auto nan = host.run("returns", {{"what", "nan"}});
  BOOST_TEST(nan.error().find("a number that is not finite at output.x") != std::string::npos,
             nan.error());
  auto many = host.run("returns", {{"what", "dag"}});
  BOOST_TEST(many.error().find("more than 16777216 items") != std::string::npos, many.error());
}

BOOST_AUTO_TEST_CASE(both_text_forms_of_save_artifact_compile_and_save_text) {
  TestHost host(register_like_the_host);
  auto r = host.run("texts");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  BOOST_TEST_REQUIRE(host.artifacts().size() == 2u);
  BOOST_TEST(host.artifacts()[0].media_type == "text/plain");
  std::ifstream in(host.artifacts()[1].path);
  std::stringstream text;
  text << in.rdbuf();
  BOOST_TEST(text.str() == "from a literal");  // text, not the JSON string "\"from...\""
}

BOOST_AUTO_TEST_CASE(misuses_pyoco_refuses_are_refused_here_with_the_reason) {
  TestHost host(register_like_the_host);
  auto push = host.run("misuses", {{"what", "push_self"}});
  BOOST_TEST(push.error().find("cannot push a value into itself") == 0, push.error());
  auto set = host.run("misuses", {{"what", "set_self"}});
  BOOST_TEST(set.error().find("cannot set a value into itself") == 0, set.error());
  auto nan = host.run("misuses", {{"what", "scratch_nan"}});
  BOOST_TEST(nan.error() ==
             "cannot set scratch 'nan': a number that is not finite at value, "
             "which JSON cannot hold");
  auto add = host.run("misuses", {{"what", "add_past_max"}});
  BOOST_TEST(add.error().find("cannot add 1 to scratch 'm': it holds 9223372036854775807") == 0,
             add.error());
  BOOST_TEST(host.scratch("m").as<std::int64_t>() == std::numeric_limits<std::int64_t>::max());
  auto utf8 = host.run("misuses", {{"what", "bad_utf8"}});
  const std::string why = "artifact name 'bad\\xff.txt' is not UTF-8";
  BOOST_TEST(utf8.error().size() > why.size());
  BOOST_TEST(utf8.error().substr(utf8.error().size() - why.size()) == why, utf8.error());
}

BOOST_AUTO_TEST_CASE(heartbeats_are_recorded_as_pyoco_records_them) {
  TestHost host(register_like_the_host);
  BOOST_TEST_REQUIRE(host.run("misuses", {{"what", "beats"}}).ok());
  std::vector<double> seen;
  for (const auto& b : host.heartbeats()) seen.push_back(b.progress);
  BOOST_TEST(seen == (std::vector<double>{1, -1, -1, 0.5}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(an_input_the_task_does_not_declare_is_refused_as_pyoco_check_does) {
  TestHost host(register_like_the_host);
  auto r = host.run("misuses", {{"what", "x"}, {"bogus", 1}});
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.error() == "input 'bogus' is not an input of misuses (its inputs: what)");
  auto none = host.run("texts", {{"bogus", 1}});
  BOOST_TEST(none.error() == "input 'bogus' is not an input of texts (it declares none)");
}

BOOST_AUTO_TEST_CASE(a_start_that_blocks_past_the_deadline_or_cancel_ends_as_in_pyoco) {
  {
    TestHost host(register_like_the_host);
    host.set_timeout(100ms);
    auto r = host.run("blocks_in_start", {{"ms", 300}});
    BOOST_TEST(!r.ok());
    BOOST_TEST(r.error() == "timed out");
  }
  {
    TestHost host(register_like_the_host);
    host.cancel_after(100ms);
    auto r = host.run("blocks_in_start", {{"ms", 300}});
    BOOST_TEST(r.cancelled());
  }
  {
    TestHost host(register_like_the_host);
    host.set_timeout(2000ms);
    BOOST_TEST(host.run("blocks_in_start", {{"ms", 10}}).ok());
  }
}

BOOST_AUTO_TEST_CASE(a_context_used_after_its_call_ended_is_counted_and_dropped) {
  TestHost host(register_like_the_host);
  auto r = host.run("keeps_its_context");
  BOOST_TEST_REQUIRE(r.ok(), r.error());
  // Until the thread is done with the context (a deadline only for a stuck
  // one: the host must outlive it, or this test crashes instead of failing).
  for (int i = 0; i < 30000 && !kept_done; ++i) std::this_thread::sleep_for(1ms);
  BOOST_TEST_REQUIRE(kept_done.load());
  BOOST_TEST(host.calls_after_end() == 6);
  BOOST_TEST(host.logs().empty());
  BOOST_TEST(host.heartbeats().empty());
}

BOOST_AUTO_TEST_CASE(a_flows_name_for_a_task_gets_the_bare_name_suggested) {
  TestHost host(register_like_the_host);
  auto r = host.run("acme/texts");
  BOOST_TEST(r.error() ==
             "no task 'acme/texts' was registered; the test host names a task as "
             "the plugin registers it, without the plugin's name: run(\"texts\")");
}
