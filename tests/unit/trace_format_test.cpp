// Trace lines for machines (--trace-format json): one JSON object per event,
// with millisecond fields as plain decimals, never in exponent form.
#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <sstream>
#include <string>
#include <vector>

using namespace pyoco::trace;

namespace {

RunEvent done_event(double ms) {
  RunEvent e{};
  e.kind = EventKind::NodeDone;
  e.time = std::chrono::system_clock::time_point{};
  e.run_id = "r";
  e.flow = "f";
  e.node = "a";
  e.task = "p/t";
  e.duration_ms = ms;
  return e;
}

}  // namespace

BOOST_AUTO_TEST_CASE(json_durations_are_plain_decimal_milliseconds) {
  const std::vector<std::pair<double, const char*>> table = {
      {0.088641, "0.089"}, {0.0004, "0"}, {0.0005001, "0.001"},
      {12.5, "12.5"},      {3.0, "3"},    {1234.56789, "1234.568"},
      {0.0, "0"},          {1e-9, "0"},   {250000.0, "250000"},
  };
  for (const auto& [ms, text] : table) {
    BOOST_TEST_CONTEXT(ms) {
      const std::string line = format_event(TraceFormat::Json, done_event(ms));
      BOOST_TEST(line.find(std::string("\"duration_ms\":") + text + "}") != std::string::npos,
                 line);
      const auto v = boost::json::parse(line);
      BOOST_TEST(v.at("event").as_string() == "node_done");
      BOOST_TEST(v.at("node").as_string() == "a");
    }
  }
}

BOOST_AUTO_TEST_CASE(json_retry_delay_and_message_keep_their_place) {
  RunEvent e{};
  e.kind = EventKind::NodeRetry;
  e.run_id = "r";
  e.flow = "f";
  e.node = "a";
  e.attempt = 2;
  e.max_attempts = 3;
  e.delay_ms = 0.0626;
  e.message = "said \"no\"";
  const std::string line = format_event(TraceFormat::Json, e);
  BOOST_TEST(
      line.find(R"("attempt":2,"max_attempts":3,"delay_ms":0.063,"message":"said \"no\""})") !=
          std::string::npos,
      line);
  const auto v = boost::json::parse(line);
  BOOST_TEST(v.at("message").as_string() == "said \"no\"");
  BOOST_TEST(v.at("delay_ms").as_double() == 0.063);
}

// Behind an EventQueue a sink hears batches and writes each as one record:
// the text must be the same lines, in order, as one event at a time gives,
// with events that show nothing (NodesPlanned, Heartbeat) leaving no line.
BOOST_AUTO_TEST_CASE(a_batch_writes_the_same_lines_as_one_event_at_a_time) {
  std::vector<RunEvent> batch;
  RunEvent start{};
  start.kind = EventKind::RunStart;
  start.run_id = "r-1";
  start.flow = "hello";
  batch.push_back(start);
  RunEvent planned = start;
  planned.kind = EventKind::NodesPlanned;
  batch.push_back(planned);
  batch.push_back(done_event(1.5));
  RunEvent heartbeat = done_event(0);
  heartbeat.kind = EventKind::Heartbeat;
  batch.push_back(heartbeat);
  RunEvent log = done_event(0);
  log.kind = EventKind::Log;
  log.message = "carrots: 3";
  batch.push_back(log);
  RunEvent end = start;
  end.kind = EventKind::RunEnd;
  end.status = pyoco::core::RunStatus::Failed;
  end.message = "a";
  batch.push_back(end);

  for (const TraceFormat format : {TraceFormat::Cute, TraceFormat::Plain, TraceFormat::Json}) {
    auto one_by_one = std::make_shared<std::ostringstream>();
    auto batched = std::make_shared<std::ostringstream>();
    {
      auto a = make_trace_sink(format, one_by_one);
      for (const RunEvent& e : batch) a->on_event(e);
      auto b = make_trace_sink(format, batched);
      b->on_events(batch);
      b->on_events({});  // an empty batch writes nothing
    }
    std::string expected;
    for (const RunEvent& e : batch) {
      const std::string line = format_event(format, e);
      if (!line.empty()) expected += line + "\n";
    }
    BOOST_TEST(one_by_one->str() == expected);
    BOOST_TEST(batched->str() == expected);
  }
}

// docs/flows.md "The trace": every row of its table, cute and plain, as
// written there, and the JSON keys each event carries.
BOOST_AUTO_TEST_CASE(every_row_of_the_docs_trace_table) {
  auto event = [](EventKind kind) {
    RunEvent e{};
    e.kind = kind;
    e.run_id = "<id>";
    e.flow = "X";
    if (kind != EventKind::RunStart && kind != EventKind::RunCancelling &&
        kind != EventKind::RunEnd) {
      e.node = "A";
      e.task = "p/t";
    }
    return e;
  };
  struct Row {
    const char* what;
    RunEvent event;
    const char* cute;
    const char* plain;
  };
  RunEvent done = event(EventKind::NodeDone);
  done.duration_ms = 0.3;
  RunEvent error = event(EventKind::NodeError);
  error.message = "<message>";
  RunEvent retry = event(EventKind::NodeRetry);
  retry.attempt = 2;
  retry.max_attempts = 3;
  retry.delay_ms = 50;
  retry.message = "<message>";  // the failed attempt's error
  RunEvent skipped = event(EventKind::NodeSkipped);
  skipped.message = "<why>";
  RunEvent cancelled_node = event(EventKind::NodeCancelled);
  cancelled_node.message = "<why>";  // the task's own reason, or "run cancelled"...
  RunEvent log = event(EventKind::Log);
  log.message = "<message>";
  log.level = LogLevel::Warn;
  RunEvent completed = event(EventKind::RunEnd);
  completed.status = pyoco::core::RunStatus::Completed;
  RunEvent failed = event(EventKind::RunEnd);
  failed.status = pyoco::core::RunStatus::Failed;
  failed.message = "A,B";
  RunEvent cancelled = event(EventKind::RunEnd);
  cancelled.status = pyoco::core::RunStatus::Cancelled;
  RunEvent heartbeat = event(EventKind::Heartbeat);
  heartbeat.progress = 0.5;
  RunEvent two_lines = event(EventKind::Log);
  two_lines.message = "one\ntwo\x1b[2J\tthree";
  const std::vector<Row> table = {
      {"flow start", event(EventKind::RunStart), "🐇 pyoco > start flow=X run_id=<id>",
       "INFO pyoco start flow=X run_id=<id>"},
      {"node start", event(EventKind::NodeStart), "🏃 start node=A", "INFO pyoco start node=A"},
      {"node done", done, "✅ done node=A (0.30 ms)", "INFO pyoco end node=A dur_ms=0.30"},
      {"node error", error, "💥 error node=A <message>", "ERROR pyoco error node=A <message>"},
      {"retry", retry, "🔁 retry node=A attempt=2/3 in 50 ms: <message>",
       "WARN pyoco retry node=A attempt=2/3 delay_ms=50 error=<message>"},
      {"node skipped", skipped, "⏭️  skip node=A (<why>)",
       "WARN pyoco skip node=A reason=<why>"},
      {"node cancelled", cancelled_node, "🛑 cancelled node=A (<why>)",
       "WARN pyoco cancelled node=A reason=<why>"},
      {"node cancelled, no reason", event(EventKind::NodeCancelled), "🛑 cancelled node=A",
       "WARN pyoco cancelled node=A"},
      {"task log", log, "<message>", "WARN pyoco log node=A <message>"},
      {"cancel requested", event(EventKind::RunCancelling), "🛑 cancelling flow=X",
       "WARN pyoco cancel flow=X"},
      {"flow completed", completed, "🥕 done flow=X", "INFO pyoco end flow=X status=COMPLETED"},
      {"flow failed", failed, "💥 failed flow=X (A,B)",
       "ERROR pyoco end flow=X status=FAILED failed=A,B"},
      {"flow cancelled", cancelled, "🛑 cancelled flow=X",
       "WARN pyoco end flow=X status=CANCELLED"},
      // Only the JSON trace shows a heartbeat.
      {"heartbeat", heartbeat, "", ""},
      // A log line with a newline prints as one line; tabs stay.
      {"log with control characters", two_lines, "one\\ntwo\\x1b[2J\tthree",
       "INFO pyoco log node=A one\\ntwo\\x1b[2J\tthree"},
  };
  for (const Row& row : table) {
    BOOST_TEST_CONTEXT(row.what) {
      BOOST_TEST(format_event(TraceFormat::Cute, row.event) == row.cute);
      BOOST_TEST(format_event(TraceFormat::Plain, row.event) == row.plain);
    }
  }
  // <LEVEL> is DEBUG, INFO, WARN or ERROR.
  const std::vector<std::pair<LogLevel, const char*>> levels = {{LogLevel::Debug, "DEBUG"},
                                                                {LogLevel::Info, "INFO"},
                                                                {LogLevel::Warn, "WARN"},
                                                                {LogLevel::Error, "ERROR"}};
  for (const auto& [level, name] : levels) {
    log.level = level;
    BOOST_TEST(format_event(TraceFormat::Plain, log) ==
               std::string(name) + " pyoco log node=A <message>");
  }

  // JSON: ts, event, run_id, flow; node and task for node events; message
  // when there is one; and by event the fields the doc lists.
  struct JsonRow {
    RunEvent event;
    const char* name;
    std::vector<std::string> keys;
  };
  RunEvent start = event(EventKind::NodeStart);
  start.attempt = 1;
  RunEvent unknown_progress = heartbeat;
  unknown_progress.progress = -1;
  const std::vector<std::string> node_keys = {"ts", "event", "run_id", "flow", "node", "task"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> keys = node_keys;
    keys.insert(keys.end(), more.begin(), more.end());
    return keys;
  };
  const std::vector<JsonRow> json_table = {
      {event(EventKind::RunStart), "run_start", {"ts", "event", "run_id", "flow"}},
      {start, "node_start", with({"attempt"})},
      {done, "node_done", with({"duration_ms"})},
      {error, "node_error", with({"message"})},
      {retry, "node_retry", with({"attempt", "max_attempts", "delay_ms", "message"})},
      {skipped, "node_skipped", with({"message"})},
      {event(EventKind::NodeCancelled), "node_cancelled", node_keys},
      {log, "log", with({"level", "message"})},
      {heartbeat, "heartbeat", with({"attempt", "progress"})},
      {unknown_progress, "heartbeat", with({"attempt"})},
      {event(EventKind::RunCancelling), "run_cancelling", {"ts", "event", "run_id", "flow"}},
      {failed, "run_end", {"ts", "event", "run_id", "flow", "status", "message"}},
  };
  for (const JsonRow& row : json_table) {
    BOOST_TEST_CONTEXT(row.name) {
      const auto v = boost::json::parse(format_event(TraceFormat::Json, row.event)).as_object();
      BOOST_TEST(v.at("event").as_string() == row.name);
      std::vector<std::string> keys;
      for (const auto& kv : v) keys.emplace_back(kv.key());
      BOOST_TEST(keys == row.keys, boost::test_tools::per_element());
    }
  }
}
