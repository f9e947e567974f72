// The run history fed by the engine's events: it agrees with the engine's
// own records (Run::tasks), writes in batches, caps logs, keeps the newest
// runs, hears cancel requests from other processes, and ends the runs of
// processes that died.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/store/history.hpp>
#include <pyoco/trace/sinks.hpp>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "flows.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::store;
using core::TaskState;
using core::Value;
using pyoco::testing::eventually;
using pyoco::testing::Gate;
using pyoco::testing::TempDir;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;
constexpr auto json = pyoco::testing::json_value;

// Counts the batches a store is handed.
class CountingStore : public StateStore {
 public:
  explicit CountingStore(std::shared_ptr<StateStore> inner) : inner_(std::move(inner)) {}
  void write(const Batch& b) override {
    ++writes;
    inner_->write(b);
  }
  bool write_if_active(const Batch& b) override {
    ++writes;
    return inner_->write_if_active(b);
  }
  std::vector<RunRecord> runs(const RunFilter& f) const override { return inner_->runs(f); }
  std::optional<RunRecord> run(std::string_view id) const override { return inner_->run(id); }
  std::vector<std::string> ids_with_prefix(std::string_view p, std::size_t m) const override {
    return inner_->ids_with_prefix(p, m);
  }
  std::vector<TaskRecord> tasks(std::string_view id) const override { return inner_->tasks(id); }
  std::vector<LogEntry> logs(std::string_view id, const LogFilter& f) const override {
    return inner_->logs(id, f);
  }
  std::vector<OutputRecord> outputs(std::string_view id) const override {
    return inner_->outputs(id);
  }
  bool claim(const RunRecord& r) override { return inner_->claim(r); }
  void unclaim(std::string_view id) override { inner_->unclaim(id); }
  bool request_cancel(std::string_view id) override { return inner_->request_cancel(id); }
  std::size_t trim(std::size_t keep) override { return inner_->trim(keep); }

  std::atomic<int> writes{0};

 private:
  std::shared_ptr<StateStore> inner_;
};

std::int64_t us(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

struct HistoryFixture {
  Engine engine{EngineOptions{4, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  TempDir dir;
  std::shared_ptr<StateStore> store = open_sqlite_store(dir.path() / "state.db");

  std::map<std::string, TaskFn> tasks() {
    std::map<std::string, TaskFn> t;
    t["t/emit"] = [](TaskCall& call, const Value& in) {
      call.log("emitting " + core::to_json_text(in.find("value")));
      return in.find("value");
    };
    t["t/boom"] = [](TaskCall&, const Value&) -> Value {
      throw std::runtime_error("disk on fire");
    };
    t["t/flaky"] = [](TaskCall& call, const Value&) {
      call.heartbeat(call.attempt() / 4.0, "attempt " + std::to_string(call.attempt()));
      if (call.attempt() < 3) throw std::runtime_error("not yet");
      call.save_artifact("report.json", json(R"({"carrots":3})"));
      call.log("third time lucky", plugins::LogLevel::Warn);
      return json(R"({"ok":true})");
    };
    return t;
  }

  Run start(HistoryWriter& history, const std::string& yaml, std::map<std::string, TaskFn> fns) {
    RunOptions o;
    o.local_tasks = std::move(fns);
    o.params = json("{}");
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path() / "artifacts");
    o.listener = history.recorder();
    return engine.start(compile(yaml), std::move(o));
  }

  Run run(HistoryWriter& history, const std::string& yaml) {
    Run r = start(history, yaml, tasks());
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)), "the run did not finish");
    history.flush();
    return r;
  }

  // Field by field; times to the microsecond the store keeps.
  void expect_agreement(const Run& r) {
    const auto stored_run = store->run(r.id());
    BOOST_TEST_REQUIRE(stored_run.has_value());
    BOOST_TEST(core::to_string(stored_run->status) == core::to_string(r.status()));
    BOOST_TEST(stored_run->flow == r.flow_name());
    BOOST_TEST(us(stored_run->ended) >= us(stored_run->started));
    const auto engine_tasks = r.tasks();
    const auto stored = store->tasks(r.id());
    BOOST_TEST_REQUIRE(stored.size() == engine_tasks.size());
    for (std::size_t i = 0; i < stored.size(); ++i) {
      const TaskRecord& e = engine_tasks[i];
      const TaskRecord& s = stored[i];
      BOOST_TEST_CONTEXT("task " << e.node) {
        BOOST_TEST(s.node == e.node);
        BOOST_TEST(s.task == e.task);
        BOOST_TEST(core::to_string(s.state) == core::to_string(e.state));
        BOOST_TEST(s.attempts == e.attempts);
        BOOST_TEST(us(s.started) == us(e.started));
        BOOST_TEST(us(s.ended) == us(e.ended));
        BOOST_TEST(s.duration_ms == e.duration_ms);
        BOOST_TEST(s.error == e.error);
        BOOST_TEST(s.output_summary == e.output_summary);
        BOOST_TEST(s.progress == e.progress);
        BOOST_TEST(s.heartbeat == e.heartbeat);
        BOOST_TEST(us(s.heartbeat_at) == us(e.heartbeat_at));
        BOOST_TEST_REQUIRE(s.artifacts.size() == e.artifacts.size());
        for (std::size_t a = 0; a < s.artifacts.size(); ++a) {
          BOOST_TEST(s.artifacts[a].path == e.artifacts[a].path);
          BOOST_TEST(s.artifacts[a].sha256 == e.artifacts[a].sha256);
          BOOST_TEST(s.artifacts[a].size == e.artifacts[a].size);
          BOOST_TEST(s.artifacts[a].media_type == e.artifacts[a].media_type);
        }
      }
    }
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(history, HistoryFixture)

BOOST_AUTO_TEST_CASE(store_agrees_with_the_engine_on_a_completed_run) {
  HistoryWriter history(store);
  const Run r = run(history, R"(
flow:
  graph: a >> flaky >> (b & c)
tasks:
  a: {use: "t/emit", inputs: {value: 1}}
  flaky: {use: "t/flaky", retries: 3, retry_backoff: {initial_ms: 1, max_ms: 2}}
  b: {use: "t/emit", inputs: {value: "$node.flaky.output"}}
  c: {use: "t/emit", inputs: {value: "$node.a.output"}}
)");
  BOOST_TEST(core::to_string(r.status()) == "COMPLETED");
  expect_agreement(r);
  const auto run_record = *store->run(r.id());
  BOOST_TEST(run_record.flow_file.ends_with("/test.yaml"));  // from RunStart, made absolute
  BOOST_TEST(run_record.params == "{}");
  BOOST_TEST(run_record.pid == this_process().pid);
  const auto flaky = store->tasks(r.id())[1];
  BOOST_TEST(flaky.attempts == 3u);
  BOOST_TEST(flaky.progress == 0.75);  // the last heartbeat, from the third attempt
  BOOST_TEST(flaky.heartbeat == "attempt 3");
  BOOST_TEST(flaky.artifacts.size() == 1u);
  const auto logs = store->logs(r.id(), {});
  BOOST_TEST_REQUIRE(logs.size() == 4u);
  BOOST_TEST(logs[0].node == "a");
  BOOST_TEST(logs[0].message == "emitting 1");
  BOOST_TEST(logs[1].message == "third time lucky");
  BOOST_TEST((logs[1].level == trace::LogLevel::Warn));
}

BOOST_AUTO_TEST_CASE(store_agrees_with_the_engine_on_failures_skips_and_cancels) {
  HistoryWriter history(store);
  const Run isolated = run(history, R"(
flow:
  graph: ((bad >> after) & (fine >> also))
tasks:
  bad: {use: "t/boom", fail_policy: isolate}
  after: {use: "t/emit", inputs: {value: 1}}
  fine: {use: "t/emit", inputs: {value: 2}}
  also: {use: "t/emit", inputs: {value: 3}}
)");
  BOOST_TEST(core::to_string(isolated.status()) == "FAILED");
  expect_agreement(isolated);
  BOOST_TEST(store->run(isolated.id())->reason == "failed: bad");

  const Run stopped = run(history, R"(
flow:
  graph: first >> bad >> never
tasks:
  first: {use: "t/emit", inputs: {value: 1}}
  bad: {use: "t/boom"}
  never: {use: "t/emit", inputs: {value: 2}}
)");
  expect_agreement(stopped);
  BOOST_TEST(core::to_string(store->tasks(stopped.id())[2].state) == "CANCELLED");
}

BOOST_AUTO_TEST_CASE(store_agrees_with_the_engine_on_loops_and_switches) {
  HistoryWriter history(store);
  const Run r = run(history, R"(
flow:
  defaults: {items: [1, 2, 3], mode: "b"}
  graph: |
    foreach(over={{items}}, item=it, parallel=2) { each } >> switch(on={{mode}}) { a: left; b: right; }
tasks:
  each: {use: "t/emit", inputs: {value: 7}}
  left: {use: "t/emit", inputs: {value: "l"}}
  right: {use: "t/emit", inputs: {value: "r"}}
)");
  BOOST_TEST(core::to_string(r.status()) == "COMPLETED");
  expect_agreement(r);
  BOOST_TEST(store->tasks(r.id()).size() >= 6u);  // the loop, three iterations, the switch, right
}

BOOST_AUTO_TEST_CASE(ten_thousand_tasks_are_written_in_a_few_batches) {
  auto counting = std::make_shared<CountingStore>(open_memory_store());
  HistoryWriter history(counting);
  RunOptions o;
  o.local_tasks["t/nop"] = [](TaskCall&, const Value& in) { return in.find("value"); };
  o.params = json("{}");
  std::string items = "[0";
  for (int i = 1; i < 10000; ++i) items += "," + std::to_string(i);
  items += "]";
  o.params = core::from_json(boost::json::parse(R"({"items":)" + items + "}"));
  o.listener = history.recorder();
  Run r = engine.start(compile(R"(
flow:
  graph: "foreach(over={{items}}, item=it, parallel=8) { nop }"
tasks:
  nop: {use: "t/nop", inputs: {value: 1}}
)"),
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(120)));
  history.flush();
  const auto tasks = counting->tasks(r.id());
  BOOST_TEST(tasks.size() == 10001u);  // the loop node and its 10,000 iterations
  BOOST_TEST(std::all_of(tasks.begin(), tasks.end(),
                         [](const TaskRecord& t) { return t.state == TaskState::Succeeded; }));
  // ~20,000 events; one write per flush interval, not per event or task.
  BOOST_TEST(counting->writes.load() < 500, "writes: " << counting->writes.load());
}

BOOST_AUTO_TEST_CASE(each_tasks_log_is_capped_with_a_visible_marker) {
  HistoryOptions options;
  options.max_log_bytes = 100;
  HistoryWriter history(store, options);
  auto fns = tasks();
  fns["t/noisy"] = [](TaskCall& call, const Value&) {
    for (int i = 0; i < 50; ++i) call.log("0123456789");  // 500 bytes
    return Value();
  };
  Run r = start(history, R"(
flow:
  graph: noisy >> quiet
tasks:
  noisy: {use: "t/noisy"}
  quiet: {use: "t/emit", inputs: {value: 1}}
)",
                fns);
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  history.flush();
  LogFilter noisy;
  noisy.node = "noisy";
  const auto lines = store->logs(r.id(), noisy);
  BOOST_TEST_REQUIRE(lines.size() == 11u);  // ten lines fit in 100 bytes, then the marker
  BOOST_TEST(lines.back().message.find("log truncated") != std::string::npos);
  BOOST_TEST(lines.back().message.find("PYOCO_MAX_LOG_BYTES=100") != std::string::npos);
  LogFilter quiet;
  quiet.node = "quiet";
  BOOST_TEST(store->logs(r.id(), quiet).size() == 1u);  // its own budget
}

BOOST_AUTO_TEST_CASE(each_runs_log_is_capped_too_so_many_tasks_cannot_flood_it) {
  HistoryOptions options;
  options.max_log_bytes = 1000;     // per task: never reached here
  options.max_run_log_bytes = 250;  // the run: 25 lines
  HistoryWriter history(store, options);
  auto fns = tasks();
  fns["t/chatty"] = [](TaskCall& call, const Value&) {
    for (int i = 0; i < 10; ++i) call.log("0123456789");  // 100 bytes a task
    return Value();
  };
  Run r = start(history, R"(
flow:
  graph: "repeat(count=5) { chatty }"
tasks:
  chatty: {use: "t/chatty"}
)",
                fns);
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST((r.status() == core::RunStatus::Completed));
  history.flush();
  const auto lines = store->logs(r.id(), {});
  BOOST_TEST_REQUIRE(lines.size() == 26u);  // 250 bytes of lines, then one marker
  BOOST_TEST(lines.back().message ==
             "[log truncated: this run's lines past PYOCO_MAX_RUN_LOG_BYTES=250 bytes are not "
             "kept]");
}

BOOST_AUTO_TEST_CASE(events_with_a_record_far_past_the_runs_are_dropped_not_allocated) {
  // The engine numbers records densely; another event source may not. A
  // record of 4 billion must cost nothing, not a table of 4 billion tasks.
  HistoryWriter history(store);
  auto recorder = history.recorder();
  trace::RunEvent e{};
  e.kind = trace::EventKind::RunStart;
  e.time = Clock::now();
  e.run_id = "far";
  e.flow = "f";
  recorder->on_event(e);
  const trace::PlannedNode planned[] = {{"a", "p/t", 0}, {"b", "p/t", 4000000000u}};
  e.kind = trace::EventKind::NodesPlanned;
  e.planned = planned;
  recorder->on_event(e);
  e.planned = {};
  for (const std::uint32_t record : {0u, 4294967295u, 4000000000u, 3000000u}) {
    e.kind = trace::EventKind::NodeDone;
    e.node = "a";
    e.task = "p/t";
    e.record = record;
    recorder->on_events(std::span<const trace::RunEvent>(&e, 1));
  }
  e.kind = trace::EventKind::RunEnd;
  e.status = core::RunStatus::Completed;
  recorder->on_event(e);
  history.flush();
  BOOST_TEST(history.last_error().empty(), history.last_error());
  const auto tasks = store->tasks("far");
  BOOST_TEST_REQUIRE(tasks.size() == 1u);
  BOOST_TEST(tasks[0].node == "a");
  BOOST_TEST(core::to_string(tasks[0].state) == "SUCCEEDED");
}

BOOST_AUTO_TEST_CASE(only_the_newest_runs_are_kept) {
  HistoryOptions options;
  options.max_runs = 3;
  HistoryWriter history(store, options);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(
        run(history, "flow: {graph: a}\ntasks: {a: {use: t/emit, inputs: {value: 1}}}\n").id());
  }
  const auto kept = store->runs({});
  BOOST_TEST_REQUIRE(kept.size() == 3u);
  BOOST_TEST(kept[0].id == ids[4]);
  BOOST_TEST(kept[1].id == ids[3]);
  BOOST_TEST(kept[2].id == ids[2]);
  BOOST_TEST(store->tasks(ids[0]).empty());
  BOOST_TEST(store->logs(ids[0], {}).empty());
}

BOOST_AUTO_TEST_CASE(a_cancel_request_through_another_handle_cancels_the_run) {
  HistoryWriter history(store);
  auto fns = tasks();
  fns["t/wait"] = [](TaskCall& call, const Value&) {
    eventually([&] { return call.is_cancelled(); });
    return Value();
  };
  Run r = start(history,
                "flow: {graph: w >> after}\ntasks: {w: {use: t/wait}, after: {use: "
                "t/emit, inputs: {value: 1}}}\n",
                fns);
  history.watch_cancel(r.id(), [r]() mutable { r.cancel(); });
  // Another process's view of the same file.
  auto other = open_sqlite_store(dir.path() / "state.db");
  BOOST_TEST_REQUIRE(eventually([&] { return other->run(r.id()).has_value(); }));
  BOOST_TEST(other->request_cancel(r.id()));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)), "the run did not notice the request");
  BOOST_TEST(core::to_string(r.status()) == "CANCELLED");
  history.flush();
  BOOST_TEST(core::to_string(other->run(r.id())->status) == "CANCELLED");
  BOOST_TEST(core::to_string(other->tasks(r.id())[1].state) == "CANCELLED");
}

// state.db's write lock, held as another process writing would hold it.
class HeldWriteLock {
 public:
  explicit HeldWriteLock(const std::filesystem::path& file) {
    BOOST_TEST_REQUIRE(sqlite3_open(file.c_str(), &db_) == SQLITE_OK);
    BOOST_TEST_REQUIRE(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) ==
                       SQLITE_OK);
  }
  ~HeldWriteLock() {
    release();
    sqlite3_close(db_);
  }
  HeldWriteLock(const HeldWriteLock&) = delete;
  HeldWriteLock& operator=(const HeldWriteLock&) = delete;
  void release() {
    if (std::exchange(held_, false)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  sqlite3* db_ = nullptr;
  bool held_ = true;
};

BOOST_AUTO_TEST_CASE(the_last_flush_waits_out_a_state_db_another_process_holds) {
  // A dozen `pyoco run`s on one state.db: a run's last write could wait
  // out the store's whole wait for the lock, and the run was left
  // unrecorded (later found "interrupted"). The last flush tries again.
  auto quick = open_sqlite_store(dir.path() / "state.db", std::chrono::milliseconds(200));
  HistoryOptions options;
  options.flush_interval = std::chrono::hours(1);  // only the start's write, then flushes
  HistoryWriter history(quick, options);
  Run r = start(history,
                "flow: {graph: a >> b}\ntasks: {a: {use: t/emit, inputs: {value: 1}}, b: {use: "
                "t/emit, inputs: {value: 2}}}\n",
                tasks());
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST_REQUIRE(eventually([&] { return history.recorded(r.id()); }));

  HeldWriteLock lock(dir.path() / "state.db");
  history.flush();  // one try: refused
  BOOST_TEST(history.last_error().find("locked") != std::string::npos, history.last_error());
  int told = 0;
  std::string why;
  const bool written = history.flush(std::chrono::seconds(20), [&](const std::string& error) {
    ++told;
    why = error;
    lock.release();  // the other process commits
  });
  BOOST_TEST(written);
  BOOST_TEST(told == 1);
  BOOST_TEST(why.find("locked") != std::string::npos, why);
  // Written whole, and nothing is said to be missing any more.
  BOOST_TEST(history.last_error() == "");
  expect_agreement(r);
}

BOOST_AUTO_TEST_CASE(a_flush_gives_up_after_its_patience_and_says_why) {
  auto quick = open_sqlite_store(dir.path() / "state.db", std::chrono::milliseconds(100));
  HistoryOptions options;
  options.flush_interval = std::chrono::hours(1);
  HistoryWriter history(quick, options);
  Run r =
      start(history, "flow: {graph: a}\ntasks: {a: {use: t/emit, inputs: {value: 1}}}\n", tasks());
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST_REQUIRE(eventually([&] { return history.recorded(r.id()); }));
  HeldWriteLock lock(dir.path() / "state.db");
  const auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(!history.flush(std::chrono::milliseconds(1500)));
  BOOST_TEST((std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(1500)));
  BOOST_TEST(history.last_error().find("locked") != std::string::npos, history.last_error());
  lock.release();
  history.flush();
  BOOST_TEST(history.last_error() == "");
  expect_agreement(r);
}

BOOST_AUTO_TEST_CASE(a_run_is_written_as_soon_as_it_starts_not_at_the_interval) {
  // A process killed in a run's first moments, or whose writes wait behind
  // other processes', must leave the run in the history (to be found
  // interrupted), not nothing: its first write does not wait for the interval.
  HistoryOptions options;
  options.flush_interval = std::chrono::hours(1);
  HistoryWriter history(store, options);
  auto gate = std::make_shared<Gate>();
  auto fns = tasks();
  fns["t/hold"] = [gate](TaskCall&, const Value&) {
    gate->wait();
    return Value();
  };
  Run r = start(history,
                "flow: {graph: hold >> after}\ntasks: {hold: {use: t/hold}, after: "
                "{use: t/emit, inputs: {value: 1}}}\n",
                fns);
  auto other = open_sqlite_store(dir.path() / "state.db");
  BOOST_TEST_REQUIRE(eventually([&] { return other->run(r.id()).has_value(); }));
  BOOST_TEST(core::to_string(other->run(r.id())->status) == "RUNNING");
  gate->open();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  history.flush();
  BOOST_TEST(core::to_string(store->run(r.id())->status) == "COMPLETED");
}

BOOST_AUTO_TEST_CASE(a_state_db_deleted_mid_run_is_said_not_written_to_in_silence) {
  // SQLite went on writing to the deleted file: the run was lost, and pyoco
  // said nothing. Now the write after the deletion fails, saying so, and the
  // run no longer counts as recorded.
  HistoryWriter history(store);
  auto gate = std::make_shared<Gate>();
  auto fns = tasks();
  fns["t/hold"] = [gate](TaskCall&, const Value&) {
    gate->wait();
    return Value();
  };
  Run r = start(history, "flow: {graph: hold}\ntasks: {hold: {use: t/hold}}\n", fns);
  BOOST_TEST_REQUIRE(eventually([&] { return history.recorded(r.id()); }));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(dir.path() / (std::string("state.db") + suffix));
  }
  gate->open();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  BOOST_TEST(!history.flush(std::chrono::milliseconds(500)));
  BOOST_TEST(history.last_error() == (dir.path() / "state.db").string() +
                                         " was deleted or replaced while this process wrote to it",
             history.last_error());
  BOOST_TEST(!history.recorded(r.id()));
}

BOOST_AUTO_TEST_CASE(abandoning_a_run_records_it_cancelled_at_once) {
  HistoryWriter history(store);
  auto gate = std::make_shared<Gate>();
  std::atomic<bool> started{false};
  auto fns = tasks();
  fns["t/hold"] = [gate, &started](TaskCall&, const Value&) {
    started = true;
    gate->wait();
    return Value();
  };
  Run r = start(history, "flow: {graph: hold}\ntasks: {hold: {use: t/hold}}\n", fns);
  BOOST_TEST_REQUIRE(eventually([&] { return started.load(); }));
  history.abandon(r.id(), core::RunStatus::Cancelled, "interrupted twice");
  const auto stored = store->run(r.id());
  BOOST_TEST_REQUIRE(stored.has_value());
  BOOST_TEST(core::to_string(stored->status) == "CANCELLED");
  BOOST_TEST(stored->reason == "interrupted twice");
  BOOST_TEST(core::to_string(store->tasks(r.id())[0].state) == "CANCELLED");
  gate->open();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  history.flush();
  BOOST_TEST(core::to_string(store->run(r.id())->status) == "CANCELLED");  // first word stands
}

// A store whose first write of tasks waits for `gate`: the writer falls
// behind the run while it waits.
class HeldStore : public CountingStore {
 public:
  using CountingStore::CountingStore;
  void write(const Batch& b) override {
    if (!b.tasks.empty() && !held.exchange(true)) gate.wait();
    CountingStore::write(b);
  }
  std::atomic<bool> held{false};
  Gate gate;
};

// `pyoco run`'s second Ctrl+C with the writer behind a busy run: abandon()
// waits no longer than it is told, then the run's own end (COMPLETED) is
// written alone, the events still queued skipped, and the reason says so.
BOOST_AUTO_TEST_CASE(abandoning_a_run_the_writer_is_behind_writes_its_end_alone) {
  auto held = std::make_shared<HeldStore>(store);
  HistoryWriter history(held);
  auto go = std::make_shared<Gate>();
  auto fns = tasks();
  fns["t/wait"] = [go](TaskCall&, const Value&) {
    go->wait();
    return Value();
  };
  Run r = start(history,
                "flow: {graph: a >> b >> c}\ntasks: {a: {use: t/wait}, b: {use: t/emit, inputs: "
                "{value: 1}}, c: {use: t/emit, inputs: {value: 2}}}\n",
                fns);
  BOOST_TEST_REQUIRE(eventually([&] { return held->held.load(); }));
  go->open();  // the rest of the run queues behind the held write
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  BOOST_TEST(core::to_string(r.status()) == "COMPLETED");
  BOOST_TEST(!history.abandon(r.id(), core::RunStatus::Cancelled, "interrupted twice",
                              std::chrono::milliseconds(200)));
  held->gate.open();
  BOOST_TEST_REQUIRE(eventually([&] {
    const auto stored = store->run(r.id());
    return stored && stored->status == core::RunStatus::Completed;
  }));
  BOOST_TEST(store->run(r.id())->reason ==
             "interrupted twice while its history was written: its tasks are recorded only in "
             "part");
  history.flush();  // writes nothing more: b's and c's ends were skipped
  // Not left RUNNING or PENDING forever under a COMPLETED run: said unrecorded.
  const auto stored = store->tasks(r.id());
  BOOST_TEST_REQUIRE(stored.size() == 3u);
  for (const TaskRecord& t : stored) {
    if (t.node == "a") continue;
    BOOST_TEST_CONTEXT("task " << t.node) {
      BOOST_TEST(core::to_string(t.state) == "CANCELLED");
      BOOST_TEST(t.error == "not recorded: pyoco was interrupted twice while writing its history");
    }
  }
}

// The same while the run still goes (a second Ctrl+C during the run): it
// is recorded CANCELLED with the reason given, its tasks' events queued
// behind the held write are skipped, and every task is CANCELLED with it.
BOOST_AUTO_TEST_CASE(abandoning_a_running_run_the_writer_is_behind_records_it_cancelled) {
  auto held = std::make_shared<HeldStore>(store);
  HistoryWriter history(held);
  auto talk = std::make_shared<Gate>(), go = std::make_shared<Gate>();
  auto talked = std::make_shared<std::atomic<bool>>(false);
  auto fns = tasks();
  fns["t/chatty"] = [talk, go, talked](TaskCall& call, const Value&) {
    talk->wait();
    for (int i = 0; i < 100; ++i) call.log("line " + std::to_string(i));
    *talked = true;
    go->wait();
    return Value();
  };
  Run r = start(history,
                "flow: {graph: a >> b >> c}\ntasks: {a: {use: t/chatty}, b: {use: t/emit, inputs: "
                "{value: 1}}, c: {use: t/emit, inputs: {value: 2}}}\n",
                fns);
  BOOST_TEST_REQUIRE(eventually([&] { return held->held.load(); }));
  talk->open();  // its lines queue behind the held write
  BOOST_TEST_REQUIRE(eventually([&] { return talked->load(); }));
  BOOST_TEST(!history.abandon(r.id(), core::RunStatus::Cancelled, "interrupted twice",
                              std::chrono::milliseconds(200)));
  held->gate.open();
  BOOST_TEST_REQUIRE(eventually([&] {
    const auto stored = store->run(r.id());
    return stored && stored->status == core::RunStatus::Cancelled;
  }));
  BOOST_TEST(store->run(r.id())->reason ==
             "interrupted twice; its tasks are recorded only in part");
  go->open();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  history.flush();  // writes nothing more
  BOOST_TEST(core::to_string(store->run(r.id())->status) == "CANCELLED");
  const auto stored = store->tasks(r.id());
  BOOST_TEST_REQUIRE(stored.size() == 3u);
  for (const TaskRecord& t : stored) {
    BOOST_TEST_CONTEXT("task " << t.node) {
      BOOST_TEST(core::to_string(t.state) == "CANCELLED");
      BOOST_TEST(t.error == "interrupted twice");
    }
  }
  BOOST_TEST(store->logs(r.id(), {}).empty());  // skipped, not written after the end
}

// A store on a slow disk: its first write of log lines waits for `gate`,
// every write of lines takes `per_line` a line, and `writing_lines` says
// a write of lines after the first has begun.
class SlowLinesStore : public CountingStore {
 public:
  using CountingStore::CountingStore;
  void write(const Batch& b) override {
    if (!b.logs.empty()) {
      if (!held.exchange(true)) {
        gate.wait(std::chrono::seconds(60));
      } else {
        writing_lines = true;
      }
      std::this_thread::sleep_for(per_line * b.logs.size());
    }
    CountingStore::write(b);
  }
  std::chrono::microseconds per_line{0};
  std::atomic<bool> held{false}, writing_lines{false};
  Gate gate;
};

// Events as the engine hands them to a recorder: the run's start, `lines`
// log lines of `bytes` each from task `node`, and (`end`) its end.
void start_event(trace::EventListener& recorder, const std::string& id) {
  trace::RunEvent e{};
  e.kind = trace::EventKind::RunStart;
  e.time = Clock::now();
  e.run_id = id;
  e.flow = "f";
  recorder.on_event(e);
}
void log_events(trace::EventListener& recorder, int lines, std::size_t bytes,
                std::atomic<int>* done = nullptr) {
  const std::string text(bytes, 'x');
  trace::RunEvent e{};
  e.kind = trace::EventKind::Log;
  e.node = "chatty";
  e.message = text;
  for (int i = 0; i < lines; ++i) {
    e.time = Clock::now();
    recorder.on_event(e);
    if (done != nullptr) ++*done;
  }
}
void end_event(trace::EventListener& recorder) {
  trace::RunEvent e{};
  e.kind = trace::EventKind::RunEnd;
  e.time = Clock::now();
  e.status = core::RunStatus::Completed;
  recorder.on_event(e);
}

// docs/flows.md, Limits: what waits for the history's writer is bounded
// (16 MiB). A run's recorder waits while the writer is behind (held in a
// write here), and so the run's event queue, and then its tasks' log
// calls: tasks logging faster than the history folds held gigabytes.
BOOST_AUTO_TEST_CASE(a_writer_behind_holds_its_recorder_not_everything_logged) {
  auto slow = std::make_shared<SlowLinesStore>(store);
  HistoryOptions options;
  options.max_log_bytes = options.max_run_log_bytes = std::size_t{1} << 30;
  HistoryWriter history(slow, options);
  auto recorder = history.recorder();
  start_event(*recorder, "busy");
  log_events(*recorder, 1, 10);
  BOOST_TEST_REQUIRE(eventually([&] { return slow->held.load(); }));
  constexpr int kLines = 3000;  // of 16 KiB: 47 MiB
  std::atomic<int> pushed{0};
  std::thread logger([&] {
    log_events(*recorder, kLines, 16 << 10, &pushed);
    end_event(*recorder);
  });
  // It stops, well short of all: the queue's bound, not the lines, is held.
  int last = -1;
  BOOST_TEST(eventually([&] {
    const int now = pushed.load();
    const bool still = now == last;
    last = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return still && now > 0;
  }));
  BOOST_TEST(pushed.load() < kLines / 2, pushed.load() << " lines queued of " << kLines);
  slow->gate.open();
  logger.join();
  history.flush();
  BOOST_TEST(history.last_error().empty(), history.last_error());
  BOOST_TEST(store->logs("busy", {}).size() == static_cast<std::size_t>(kLines + 1));
}

// Lines past a task's budget (PYOCO_MAX_LOG_BYTES) are dropped by the
// recorder, not queued for the writer to drop: a task logging millions of
// them does not wait for a writer that is behind.
BOOST_AUTO_TEST_CASE(lines_past_a_tasks_budget_never_wait_for_the_writer) {
  auto slow = std::make_shared<SlowLinesStore>(store);
  HistoryOptions options;
  options.max_log_bytes = 100;
  HistoryWriter history(slow, options);
  auto recorder = history.recorder();
  start_event(*recorder, "past");
  log_events(*recorder, 1, 10);
  BOOST_TEST_REQUIRE(eventually([&] { return slow->held.load(); }));
  std::atomic<int> pushed{0};
  std::thread logger([&] { log_events(*recorder, 200000, 10, &pushed); });
  BOOST_TEST(eventually([&] { return pushed.load() == 200000; }, std::chrono::seconds(10)),
             pushed.load() << " lines of 200000 taken while the writer was held");
  slow->gate.open();
  logger.join();
  end_event(*recorder);
  history.flush();
  const auto lines = store->logs("past", {});
  BOOST_TEST_REQUIRE(lines.size() == 11u);  // 100 bytes, then the marker
  BOOST_TEST(lines.back().message ==
             "[log truncated: this task's lines past PYOCO_MAX_LOG_BYTES=100 bytes are not kept]");
}

// `pyoco run`'s second Ctrl+C while the writer writes a backlog of fifty
// thousand lines: the lines go a bounded number at a time, so
// abandon() has the run's end written within its patience, not after the
// whole backlog (it left the run RUNNING, found FAILED "interrupted" later).
BOOST_AUTO_TEST_CASE(abandoning_a_run_while_its_lines_are_written_records_its_end_in_time) {
  auto slow = std::make_shared<SlowLinesStore>(store);
  slow->per_line = std::chrono::microseconds(100);  // 5 s for the backlog in one write
  HistoryWriter history(slow);
  auto recorder = history.recorder();
  start_event(*recorder, "behind");
  log_events(*recorder, 1, 10);
  BOOST_TEST_REQUIRE(eventually([&] { return slow->held.load(); }));
  log_events(*recorder, 50000, 8);  // all kept, and within what may wait for the writer
  end_event(*recorder);
  slow->gate.open();
  BOOST_TEST_REQUIRE(eventually([&] { return slow->writing_lines.load(); }));
  // `pyoco run` gives it a second; three here, for the sanitizers' builds
  // (a write of a bounded number of lines takes about one here).
  const auto status = history.abandon("behind", core::RunStatus::Cancelled, "interrupted twice",
                                      std::chrono::seconds(3));
  BOOST_TEST_REQUIRE(status.has_value(), "the run's end was not written within 3 s");
  BOOST_TEST(core::to_string(*status) == "COMPLETED");
  BOOST_TEST(core::to_string(store->run("behind")->status) == "COMPLETED");
}

// A second Ctrl+C once the run is written whole (its slot forgotten): the
// run's recorded status, not nothing (which `pyoco run` says as "leaving
// without writing the rest").
BOOST_AUTO_TEST_CASE(abandoning_a_run_written_whole_says_its_status) {
  HistoryWriter history(store);
  std::string id;
  {
    Run r = run(history, "flow: {graph: a}\ntasks: {a: {use: t/emit, inputs: {value: 1}}}\n");
    id = r.id();
  }
  history.flush();  // its recorder gone, the written run is forgotten
  const auto status = history.abandon(id, core::RunStatus::Cancelled, "interrupted twice",
                                      std::chrono::seconds(10));
  BOOST_TEST_REQUIRE(status.has_value());
  BOOST_TEST(core::to_string(*status) == "COMPLETED");
  BOOST_TEST(store->run(id)->reason == "");
}

// Another process holds state.db: a write of this process waits for it,
// holding the store's connection, and so would any read. A signal
// watcher's read (SIGURG while the plugins load) must not wait: the
// Ctrl+C handled on its thread would queue behind it.
BOOST_AUTO_TEST_CASE(a_read_without_waiting_fails_at_once_while_a_write_waits) {
  std::atomic<bool> waiting{false};
  auto patient =
      open_sqlite_store(dir.path() / "state.db", std::chrono::seconds(30), [&] { waiting = true; });
  std::optional<HeldWriteLock> lock(std::in_place, dir.path() / "state.db");
  RunRecord claim;
  claim.id = "some-run";
  claim.flow = "f";
  claim.params = "{}";
  claim.started = std::chrono::system_clock::now();
  std::thread write([&] { patient->claim(claim); });
  BOOST_TEST_REQUIRE(eventually([&] { return waiting.load(); }));
  auto read = std::async(std::launch::async, [&] {
    try {
      return patient->run_without_waiting("some-run") ? std::string("found") : "not found";
    } catch (const StoreError& e) {
      return std::string(e.transient() ? "busy" : e.what());
    }
  });
  const bool answered = read.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  lock.reset();  // the other process commits
  write.join();
  BOOST_TEST_REQUIRE(answered);
  BOOST_TEST(read.get() == "busy");
  const auto found = patient->run_without_waiting("some-run");
  BOOST_TEST_REQUIRE(found.has_value());
  BOOST_TEST(found->flow == "f");
}

BOOST_AUTO_TEST_CASE(runs_of_dead_processes_become_failed_interrupted) {
  const ProcessIdentity me = this_process();
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // its pid now names nobody

  auto active = [&](const std::string& id, std::int64_t pid, std::int64_t start,
                    const std::string& host) {
    RunRecord r;
    r.id = id;
    r.flow = "f";
    r.params = "{}";
    r.status = core::RunStatus::Running;
    r.started = Clock::now() - std::chrono::seconds(5);
    r.host = host;
    r.pid = pid;
    r.pid_start = start;
    return r;
  };
  Batch b;
  b.runs.push_back(active("dead", child, 0, me.host));
  b.runs.push_back(active("alive", me.pid, me.start, me.host));
  b.runs.push_back(active("reused-pid", me.pid, me.start + 1, me.host));
  // Its writer noted, while it ran, that it had run 2.5 s: it ended no earlier.
  b.runs.back().duration_ms = 2500;
  b.runs.push_back(active("elsewhere", child, 0, "another-host"));
  auto task = [](const char* node, TaskState state) {
    TaskRecord t;
    t.node = node;
    t.task = "std/echo";
    t.state = state;
    if (state != TaskState::Pending) t.started = Clock::now() - std::chrono::seconds(4);
    if (core::is_terminal(state)) t.ended = Clock::now() - std::chrono::seconds(3);
    return t;
  };
  std::vector<TaskRecord> table{task("done", TaskState::Succeeded),
                                task("busy", TaskState::Running),
                                task("waiting", TaskState::Pending)};
  // The busy task's heartbeat is the last thing heard of the run: its end
  // (it was the busy task's start, 3 s too early).
  const Clock::time_point last_heard = Clock::now() - std::chrono::seconds(1);
  table[1].progress = 0.5;
  table[1].heartbeat = "half way";
  table[1].heartbeat_at = last_heard;
  b.tasks.push_back(TaskPages::all("dead", table));
  store->write(b);

  auto recovered = recover_interrupted_runs(*store);
  std::sort(recovered.begin(), recovered.end());
  BOOST_TEST(recovered == (std::vector<std::string>{"dead", "reused-pid"}),
             boost::test_tools::per_element());
  const RunRecord dead = *store->run("dead");
  BOOST_TEST(core::to_string(dead.status) == "FAILED");
  BOOST_TEST(dead.reason == "interrupted");
  BOOST_TEST(us(dead.ended) > us(dead.started));
  BOOST_TEST(us(dead.ended) == us(last_heard));
  const auto ts = store->tasks("dead");
  BOOST_TEST(core::to_string(ts[0].state) == "SUCCEEDED");
  BOOST_TEST(core::to_string(ts[1].state) == "FAILED");
  BOOST_TEST(ts[1].error.find("interrupted") != std::string::npos);
  BOOST_TEST(us(ts[1].ended) == us(last_heard));  // it ran until then, at least
  BOOST_TEST(ts[1].duration_ms > 2500);
  const RunRecord reused = *store->run("reused-pid");
  BOOST_TEST(us(reused.ended) - us(reused.started) == 2'500'000);
  BOOST_TEST(reused.duration_ms == 2500);
  BOOST_TEST(core::to_string(ts[2].state) == "CANCELLED");
  BOOST_TEST(core::to_string(store->run("alive")->status) == "RUNNING");
  BOOST_TEST(core::to_string(store->run("elsewhere")->status) == "RUNNING");
  BOOST_TEST(recover_interrupted_runs(*store).empty());  // nothing twice
}

// A store whose list of active runs was read just before a run's own
// process wrote its end and exited (the race `pyoco runs list` ran into
// beside runs ending): recovery finds that process gone, yet the end stands.
class ListReadEarlier : public CountingStore {
 public:
  using CountingStore::CountingStore;
  std::vector<RunRecord> runs(const RunFilter&) const override { return earlier; }
  std::vector<RunRecord> earlier;
};

BOOST_FIXTURE_TEST_CASE(a_run_that_ended_after_the_list_was_read_keeps_its_end, HistoryFixture) {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // the run's process: ended, after writing its end
  RunRecord r;
  r.id = "done";
  r.flow = "f";
  r.params = "{}";
  r.status = core::RunStatus::Running;
  r.started = Clock::now() - std::chrono::seconds(2);
  r.host = this_process().host;
  r.pid = child;
  ListReadEarlier stale(store);
  stale.earlier = {r};
  r.status = core::RunStatus::Completed;
  r.ended = Clock::now();
  Batch b;
  b.runs.push_back(r);
  store->write(b);

  BOOST_TEST(recover_interrupted_runs(stale).empty());
  BOOST_TEST(core::to_string(store->run("done")->status) == "COMPLETED");
  BOOST_TEST(store->run("done")->reason.empty());
}

BOOST_AUTO_TEST_SUITE_END()
