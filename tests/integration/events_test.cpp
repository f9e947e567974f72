// Events are owned and ordered (ARCHITECTURE.md §4a): one sequence per run,
// log lines included; RunStart says what the run started with; an Event
// outlives its callback and becomes JSON; listeners that do I/O sit behind an
// EventQueue, so a sink that blocks never holds the engine's control thread.
#include <pyoco/core/text.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/trace/event_queue.hpp>
#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "event_log.hpp"
#include "flows.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using core::RunStatus;
using core::Value;
using trace::EventKind;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;
constexpr auto json = pyoco::testing::json_value;

// A sink stuck on its output (a terminal nobody reads, a full disk).
class BlockedSink : public trace::EventListener {
 public:
  void on_event(const trace::RunEvent&) override { gate.wait(std::chrono::seconds(30)); }
  pyoco::testing::Gate gate;
};

const char* kChatty = R"yaml(
flow: {name: chatty, graph: "(a & b) >> c", defaults: {who: carrot}}
tasks:
  a: {use: "t/talk"}
  b: {use: "t/talk"}
  c: {use: "t/talk"}
)yaml";

TaskFn talk() {
  return [](TaskCall& call, const Value&) {
    for (int i = 0; i < 20; ++i) call.log("line " + std::to_string(i));
    return Value();
  };
}

}  // namespace

// An engine, a place for artifacts, and run options whose listener
// records every event.
struct Recorded {
  Engine engine{EngineOptions{2, {}}};
  pyoco::testing::TempDir dir;
  std::shared_ptr<pyoco::testing::EventLog> recorder = std::make_shared<pyoco::testing::EventLog>();
  // Heard by `listener` instead when given.
  RunOptions options(std::shared_ptr<trace::EventListener> listener = nullptr) const {
    RunOptions o;
    o.listener = listener ? std::move(listener) : recorder;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    return o;
  }
};

BOOST_AUTO_TEST_SUITE(events)

// A log line of megabytes is cut to 64 KiB, note included, at a
// character's start, and says so: 40 lines of 15 MB held gigabytes and made
// another task's deadline late. Cut so, the history keeps it whole.
BOOST_FIXTURE_TEST_CASE(a_log_line_past_64_kib_is_cut_saying_so, Recorded) {
  RunOptions o = options();
  // "é" is two bytes: wherever the cut falls, it may not split one.
  std::string huge = "x";
  while (huge.size() < 3 * (std::size_t{1} << 20)) huge += "\xc3\xa9";
  o.local_tasks = {{"t/loud", [huge](TaskCall& call, const Value&) {
                      call.log(huge);
                      call.log("short");
                      return Value();
                    }}};
  Run r = engine.start(compile(R"yaml(
flow: {graph: a}
tasks:
  a: {use: "t/loud"}
)yaml"),
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  std::vector<std::string> lines;
  for (const auto& e : recorder->events()) {
    if (e.kind == EventKind::Log) lines.push_back(e.message);
  }
  BOOST_TEST_REQUIRE(lines.size() == 2u);
  const std::string suffix = " ... (cut: the line was " + std::to_string(huge.size()) +
                             " bytes, more than the 64 KiB a log line may hold)";
  BOOST_TEST_REQUIRE(lines[0].ends_with(suffix));
  BOOST_TEST(lines[0].size() <= 65536u);
  BOOST_TEST(lines[0].size() >= 65536u - suffix.size() - 1);
  const std::string kept = lines[0].substr(0, lines[0].size() - suffix.size());
  BOOST_TEST(huge.starts_with(kept));
  BOOST_TEST(core::invalid_utf8_at(lines[0]) == std::string::npos);
  BOOST_TEST(lines[1] == "short");
}

BOOST_AUTO_TEST_CASE(each_run_has_one_order_with_its_log_lines_before_its_end) {
  Engine engine(EngineOptions{2, {}});
  pyoco::testing::TempDir dir;
  auto recorder = std::make_shared<pyoco::testing::EventLog>();
  std::vector<Run> runs;
  for (int k = 0; k < 3; ++k) {  // runs side by side: each keeps its own sequence
    RunOptions o;
    o.listener = recorder;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
    o.params = json(R"({"size": 3})");
    o.local_tasks = {{"t/talk", talk()}};
    runs.push_back(engine.start(compile(kChatty), std::move(o)));
  }
  for (auto& r : runs) BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  for (const Run& r : runs) {
    std::vector<trace::Event> mine;
    for (auto& e : recorder->events()) {
      if (e.run_id == r.id()) mine.push_back(e);
    }
    BOOST_TEST_REQUIRE(mine.size() > 60u);
    for (std::size_t i = 0; i < mine.size(); ++i) {
      BOOST_TEST_REQUIRE(mine[i].seq == i + 1, "event " << i << " has seq " << mine[i].seq);
    }
    BOOST_TEST((mine.front().kind == EventKind::RunStart));
    BOOST_TEST((mine.back().kind == EventKind::RunEnd));
    std::size_t logs = 0;
    for (auto& e : mine) logs += e.kind == EventKind::Log ? 1 : 0;
    BOOST_TEST(logs == 60u);  // every line, all before RunEnd
    // RunStart says what the run started with: defaults merged with params.
    const auto params = boost::json::parse(mine.front().params).as_object();
    BOOST_TEST(params.at("who").as_string() == "carrot");
    BOOST_TEST(params.at("size").as_int64() == 3);
    BOOST_TEST(mine.front().flow_file == "test.yaml");
  }
}

BOOST_AUTO_TEST_CASE(an_event_becomes_json_with_every_field_it_has) {
  Engine engine(EngineOptions{1, {}});
  pyoco::testing::TempDir dir;
  auto recorder = std::make_shared<pyoco::testing::EventLog>();
  RunOptions o;
  o.listener = recorder;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
  o.run_id = "json-1";
  o.local_tasks = {{"t/talk", talk()}};
  Run r = engine.start(compile(kChatty), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  const auto events = recorder->events();
  bool saw_start = false, saw_done = false, saw_log = false, saw_end = false;
  for (const auto& e : events) {
    const boost::json::object j = trace::to_json(e);
    BOOST_TEST(j.at("seq").as_uint64() == e.seq);
    BOOST_TEST(j.at("run_id").as_string() == "json-1");
    BOOST_TEST(j.at("flow").as_string() == "chatty");
    BOOST_TEST(j.at("ts").as_string().ends_with("Z"));
    if (e.kind == EventKind::RunStart) {
      saw_start = true;
      BOOST_TEST(j.at("kind").as_string() == "run_start");
      BOOST_TEST(j.at("params").as_object().at("who").as_string() == "carrot");
    } else if (e.kind == EventKind::NodeDone && e.node == "c") {
      saw_done = true;
      BOOST_TEST(j.at("task").as_string() == "t/talk");
      BOOST_TEST(j.at("attempt").to_number<int>() == 1);
      BOOST_TEST(j.at("task_state").as_string() == "SUCCEEDED");
      BOOST_TEST(j.contains("duration_ms"));
    } else if (e.kind == EventKind::Log && !saw_log) {
      saw_log = true;
      BOOST_TEST(j.at("level").as_string() == "INFO");
      BOOST_TEST(j.at("message").as_string() == "line 0");
    } else if (e.kind == EventKind::RunEnd) {
      saw_end = true;
      BOOST_TEST(j.at("status").as_string() == "COMPLETED");
    }
    // The text form parses back to the same object.
    BOOST_TEST(boost::json::parse(boost::json::serialize(j)) == boost::json::value(j));
    // And back to an event that prints the same trace line (what `pyoco
    // client watch` prints from the cluster's event stream).
    const auto back = trace::event_from_json(j);
    BOOST_TEST_REQUIRE(back.has_value());
    std::vector<trace::PlannedNode> a, b;
    for (auto format : {trace::TraceFormat::Cute, trace::TraceFormat::Plain}) {
      BOOST_TEST(trace::format_event(format, back->view(a)) ==
                 trace::format_event(format, e.view(b)));
    }
  }
  BOOST_TEST(!trace::event_from_json(boost::json::object{{"kind", "nonsense"}}).has_value());
  BOOST_TEST(saw_start);
  BOOST_TEST(saw_done);
  BOOST_TEST(saw_log);
  BOOST_TEST(saw_end);
}

BOOST_AUTO_TEST_CASE(a_blocked_sink_behind_a_queue_does_not_hold_the_run) {
  Engine engine(EngineOptions{1, {}});
  pyoco::testing::TempDir dir;
  auto queue = std::make_shared<trace::EventQueue>();
  auto blocked = std::make_shared<BlockedSink>();
  auto recorder = std::make_shared<pyoco::testing::EventLog>();
  queue->add(blocked);
  queue->add(recorder);
  RunOptions o;
  o.listener = queue;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
  o.local_tasks = {{"t/talk", talk()}};
  Run r = engine.start(compile(kChatty), std::move(o));
  // The sink holds the queue's thread; the run still ends, deadlines and all.
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)), "a blocked sink held the run");
  BOOST_TEST((r.status() == RunStatus::Completed));
  BOOST_TEST(recorder->events().size() <= 1u);  // behind the blocked sink, in order
  blocked->gate.open();
  queue->flush();
  const auto events = recorder->events();
  BOOST_TEST_REQUIRE(!events.empty());
  BOOST_TEST((events.back().kind == EventKind::RunEnd));
  for (std::size_t i = 0; i < events.size(); ++i) BOOST_TEST_REQUIRE(events[i].seq == i + 1);
}

// A task that beats in a tight loop (an outside tester's 3 million took a
// run to 522 MB): only the latest heartbeat waits for the strand, one event
// a task each 50 ms at most is published, and the last one before the task
// ends; its record holds the latest.
BOOST_FIXTURE_TEST_CASE(a_task_beating_in_a_loop_publishes_the_latest_only, Recorded) {
  RunOptions o = options();
  constexpr int kBeats = 300000;
  o.local_tasks = {{"t/beats", [](TaskCall& call, const Value&) {
                      for (int i = 1; i <= kBeats; ++i) {
                        call.heartbeat(double(i) / kBeats, "beat " + std::to_string(i));
                      }
                      return Value();
                    }}};
  Run r =
      engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/beats\"}\n"), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(60)));
  BOOST_TEST((r.status() == RunStatus::Completed));
  const auto events = recorder->events();
  std::size_t beats = 0, last_beat = 0, done = 0;
  for (std::size_t k = 0; k < events.size(); ++k) {
    if (events[k].kind == EventKind::Heartbeat) beats++, last_beat = k;
    if (events[k].kind == EventKind::NodeDone) done = k;
  }
  BOOST_TEST(beats >= 1u);
  BOOST_TEST(beats < 2000u, beats << " heartbeat events for " << kBeats << " beats");
  BOOST_TEST_REQUIRE(beats >= 1u);
  BOOST_TEST(last_beat < done);  // the last one, before the task's end
  BOOST_TEST(events[last_beat].message == "beat " + std::to_string(kBeats));
  BOOST_TEST(events[last_beat].progress == 1.0);
  const auto tasks = r.tasks();
  BOOST_TEST_REQUIRE(tasks.size() == 1u);
  BOOST_TEST(tasks[0].heartbeat == "beat " + std::to_string(kBeats));
}

// A heartbeat's message is cut at 4 KiB, saying so (one of 20 MB went whole
// into the trace, the history and `runs show --json`).
BOOST_FIXTURE_TEST_CASE(a_heartbeat_message_past_4_kib_is_cut_saying_so, Recorded) {
  RunOptions o = options();
  const std::string big(20000, 'h');
  o.local_tasks = {{"t/big", [big](TaskCall& call, const Value&) {
                      call.heartbeat(0.5, big);
                      return Value();
                    }}};
  Run r = engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/big\"}\n"), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(20)));
  const auto beats = recorder->of(EventKind::Heartbeat);
  BOOST_TEST_REQUIRE(beats.size() == 1u);
  const std::string note =
      " ... (cut: the message was 20000 bytes, more than the 4 KiB a heartbeat's message may hold)";
  BOOST_TEST(beats[0].message.size() == 4096u);
  BOOST_TEST(beats[0].message.ends_with(note), beats[0].message.substr(4000));
  BOOST_TEST(r.tasks()[0].heartbeat == beats[0].message);
}

// Log lines a task writes faster than the run can record them wait for the
// run's strand up to 4 MiB; past that, when nothing moves for a second,
// they are dropped, and a line says how many (2,000 lines of a megabyte
// took a run to 542 MB). Here the strand is held by a listener until the
// task has written 32 MiB.
BOOST_FIXTURE_TEST_CASE(log_lines_past_4_mib_waiting_are_dropped_saying_so, Recorded) {
  class HoldsFirstLine : public trace::EventListener {
   public:
    void on_event(const trace::RunEvent& e) override {
      if (e.kind == EventKind::Log && !held_) {
        held_ = true;
        gate.wait(std::chrono::seconds(30));
      }
      log.on_event(e);
    }
    pyoco::testing::Gate gate;
    pyoco::testing::EventLog log;

   private:
    bool held_ = false;  // the run's strand only
  };
  auto listener = std::make_shared<HoldsFirstLine>();
  RunOptions o = options(listener);
  constexpr int kLines = 512;  // of 64 KiB: 32 MiB
  o.local_tasks = {{"t/loud", [listener](TaskCall& call, const Value&) {
                      const std::string line(std::size_t{64} << 10, 'l');
                      call.log("first");
                      for (int i = 0; i < kLines; ++i) call.log(line);
                      listener->gate.open();
                      return Value();
                    }}};
  Run r = engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/loud\"}\n"), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(60)));
  const auto lines = listener->log.of(EventKind::Log);
  // "first", the 64 KiB lines that fit in 4 MiB beside it, and the note.
  BOOST_TEST_REQUIRE(lines.size() >= 3u);
  BOOST_TEST(lines.size() <= 66u, lines.size());
  BOOST_TEST(lines[0].message == "first");
  // Said where the first line went missing: after the lines before it.
  const std::string& note = lines.back().message;
  BOOST_TEST(note.starts_with("pyoco: "), note);
  BOOST_TEST(note.find(" log lines (") != std::string::npos, note);
  BOOST_TEST(note.ends_with(" bytes) dropped: the run's tasks logged faster than it could record "
                            "(4 MiB of lines were waiting)"),
             note);
  BOOST_TEST((lines.back().level == trace::LogLevel::Warn));
  // Every line either recorded or counted as dropped.
  const std::size_t dropped = std::stoul(note.substr(7));
  BOOST_TEST(lines.size() - 2 + dropped == std::size_t{kLines}, note);
}

// Two beats 50 ms apart at most, then minutes of work: the second is
// published once 50 ms have passed, not at the task's end (it was shown
// only then, and lost if the process died meanwhile).
BOOST_FIXTURE_TEST_CASE(a_heartbeat_held_back_is_published_within_50_ms, Recorded) {
  RunOptions o = options();
  auto seen_while_running = std::make_shared<std::atomic<bool>>(false);
  // Polled, with a deadline: whether the run published `message` yet.
  auto wait_for_beat = [recorder = recorder](const std::string& message) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      for (const auto& e : recorder->of(EventKind::Heartbeat)) {
        if (e.message == message) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  };
  o.local_tasks = {{"t/stages", [wait_for_beat, seen_while_running](TaskCall& call, const Value&) {
                      call.heartbeat(0.1, "stage 1");
                      if (!wait_for_beat("stage 1")) return Value();
                      // Within 50 ms of the first: held back, then published
                      // by the run's timer while this task still works.
                      call.heartbeat(0.2, "stage 2");
                      seen_while_running->store(wait_for_beat("stage 2"));
                      return Value();
                    }}};
  Run r =
      engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/stages\"}\n"), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST(seen_while_running->load());
  const auto beats = recorder->of(EventKind::Heartbeat);
  BOOST_TEST_REQUIRE(beats.size() == 2u);  // each once: the end publishes nothing again
  BOOST_TEST(beats[0].message == "stage 1");
  BOOST_TEST(beats[1].message == "stage 2");
}

// A body abandoned at its deadline that beats on while the run goes on
// (another branch): the run is done with that attempt, so its record keeps
// the last beat from before, and no heartbeat event says the late one.
BOOST_FIXTURE_TEST_CASE(a_heartbeat_after_the_attempt_was_given_up_changes_nothing, Recorded) {
  RunOptions o = options();
  auto late_beat_sent = std::make_shared<pyoco::testing::Gate>();
  o.local_tasks = {{"t/deaf",
                    [late_beat_sent](TaskCall& call, const Value&) {
                      call.heartbeat(0.5, "before");
                      const auto until =
                          std::chrono::steady_clock::now() + std::chrono::seconds(10);
                      while (!call.is_cancelled() && std::chrono::steady_clock::now() < until) {
                        std::this_thread::sleep_for(std::chrono::milliseconds(2));
                      }
                      call.heartbeat(0.9, "after the deadline");
                      late_beat_sent->open();
                      return Value();
                    }},
                   // Keeps the run going until the late beat is sent, then
                   // logs: the strand runs that line after the beat's handler.
                   {"t/waits", [late_beat_sent](TaskCall& call, const Value&) {
                      late_beat_sent->wait(std::chrono::seconds(20));
                      call.log("after the late beat");
                      return Value();
                    }}};
  Run r = engine.start(compile("flow: {graph: \"(a & b)\"}\ntasks:\n"
                               "  a: {use: \"t/deaf\", timeout_sec: 0.2, fail_policy: isolate}\n"
                               "  b: {use: \"t/waits\"}\n"),
                       std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)));
  BOOST_TEST_REQUIRE(recorder->logged("b", "after the late beat"));
  const auto tasks = r.tasks();
  const auto a = std::find_if(tasks.begin(), tasks.end(), [](auto& t) { return t.node == "a"; });
  BOOST_TEST_REQUIRE((a != tasks.end()));
  BOOST_TEST((a->state == core::TaskState::Failed));
  BOOST_TEST(a->heartbeat == "before");
  for (const auto& e : recorder->of(EventKind::Heartbeat)) {
    BOOST_TEST(e.message != "after the deadline");
  }
}

// A task that logs faster than a slow (but moving) listener takes its
// lines waits for room and loses none: 200 lines of 64 KiB, 12.5 MiB,
// three times what may wait, through a listener that takes a millisecond
// a line. (A worker's trace to NATS lost 22 lines of 100 this way.)
BOOST_FIXTURE_TEST_CASE(a_task_logging_faster_than_a_moving_listener_loses_nothing, Recorded) {
  class Slow : public trace::EventListener {
   public:
    void on_event(const trace::RunEvent& e) override {
      if (e.kind == EventKind::Log) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      log.on_event(e);
    }
    pyoco::testing::EventLog log;
  };
  auto slow = std::make_shared<Slow>();
  RunOptions o = options(slow);
  constexpr int kLines = 200;
  o.local_tasks = {{"t/loud", [](TaskCall& call, const Value&) {
                      const std::string line(std::size_t{64} << 10, 'l');
                      for (int i = 0; i < kLines; ++i) call.log(line);
                      return Value();
                    }}};
  Run r = engine.start(compile("flow: {graph: a}\ntasks:\n  a: {use: \"t/loud\"}\n"), std::move(o));
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(60)));
  const auto lines = slow->log.of(EventKind::Log);
  BOOST_TEST(lines.size() == std::size_t{kLines});
  for (const auto& l : lines) BOOST_TEST(!l.message.starts_with("pyoco: "), l.message);
}

// An EventQueue counts the log text it holds (backlog_bytes), which the
// run adds to its own: a sink stuck on its output makes the run drop lines
// rather than hold them all; the count is back to 0 once handed on.
BOOST_AUTO_TEST_CASE(an_event_queue_counts_the_log_text_it_holds) {
  auto stuck = std::make_shared<BlockedSink>();
  auto queue = std::make_shared<trace::EventQueue>();
  queue->add(stuck);
  trace::RunEvent e{};
  e.kind = EventKind::Log;
  e.run_id = "r";
  e.message = "twelve bytes";
  for (int i = 0; i < 3; ++i) queue->on_event(e);
  e.kind = EventKind::NodeStart;  // not log text
  queue->on_event(e);
  BOOST_TEST(queue->backlog_bytes() == 3 * (12 + trace::EventListener::kLogLineOverhead));
  stuck->gate.open();
  queue->flush();
  BOOST_TEST(queue->backlog_bytes() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
