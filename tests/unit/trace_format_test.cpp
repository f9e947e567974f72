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
