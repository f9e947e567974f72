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

#include <mutex>

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

BOOST_AUTO_TEST_SUITE(events)

// A log line of megabytes is cut to 64 KiB, note included, at a
// character's start, and says so: 40 lines of 15 MB held gigabytes and made
// another task's deadline late. Cut so, the history keeps it whole.
BOOST_AUTO_TEST_CASE(a_log_line_past_64_kib_is_cut_saying_so) {
  Engine engine(EngineOptions{2, {}});
  pyoco::testing::TempDir dir;
  auto recorder = std::make_shared<pyoco::testing::EventLog>();
  RunOptions o;
  o.listener = recorder;
  o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path());
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

BOOST_AUTO_TEST_SUITE_END()
