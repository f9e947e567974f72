// The gateway's metrics registry: the exposition a scrape reads, label
// values bounded, label values escaped, histograms cumulative.
#include <pyoco/server/metrics.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

using pyoco::server::Metrics;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(runs_by_status_are_counted_and_the_usual_ones_shown_at_zero) {
  Metrics m;
  m.run_ended("COMPLETED", "hello", 0.2);
  m.run_ended("COMPLETED", "hello", 3);
  m.run_ended("FAILED", "hello", -1);  // no duration: counted, not observed
  const std::string text = m.render({});
  BOOST_TEST(has_line(text, "pyoco_runs_total{status=\"COMPLETED\"} 2"));
  BOOST_TEST(has_line(text, "pyoco_runs_total{status=\"FAILED\"} 1"));
  BOOST_TEST(has_line(text, "pyoco_runs_total{status=\"CANCELLED\"} 0"));
  BOOST_TEST(has_line(text, "# TYPE pyoco_runs_total counter"));
  // Cumulative buckets: 0.2 s falls in le=0.25, 3 s in le=5.
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_bucket{flow=\"hello\",le=\"0.1\"} 0"));
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_bucket{flow=\"hello\",le=\"0.25\"} 1"));
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_bucket{flow=\"hello\",le=\"5\"} 2"));
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_bucket{flow=\"hello\",le=\"+Inf\"} 2"));
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_count{flow=\"hello\"} 2"));
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_sum{flow=\"hello\"} 3.2"));
}

BOOST_AUTO_TEST_CASE(label_values_past_the_limit_fold_into_other) {
  Metrics m(2);
  m.task_done("std/echo", 0.001);
  m.task_done("std/sleep", 0.5);
  m.task_done("third/task", 0.1);
  m.task_done("fourth/task", 0.1);
  m.task_done("std/echo", 0.001);  // known: still its own
  const std::string text = m.render({});
  BOOST_TEST(has_line(text, "pyoco_task_duration_seconds_count{task=\"std/echo\"} 2"));
  BOOST_TEST(has_line(text, "pyoco_task_duration_seconds_count{task=\"std/sleep\"} 1"));
  BOOST_TEST(has_line(text, "pyoco_task_duration_seconds_count{task=\"other\"} 2"));
  BOOST_TEST(text.find("third/task") == std::string::npos);
}

// Made-up flow names (runs the workers fail) never take a flow's series:
// a flow has one once a run of it completes or is cancelled.
BOOST_AUTO_TEST_CASE(a_flow_has_a_series_once_one_of_its_runs_completes) {
  Metrics m(2);
  for (int i = 0; i < 50; ++i) m.run_ended("FAILED", "made-up-" + std::to_string(i), 0.01);
  m.run_ended("FAILED", "real", 1);  // not completed yet: other
  m.run_ended("COMPLETED", "real", 2);
  m.run_ended("FAILED", "real", 3);      // has its series now
  m.run_ended("CANCELLED", "also", 1);   // cancelled after it started: real too
  m.run_ended("COMPLETED", "third", 1);  // past the limit of 2
  const std::string text = m.render({});
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_count{flow=\"real\"} 2"), text);
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_count{flow=\"also\"} 1"), text);
  BOOST_TEST(has_line(text, "pyoco_run_duration_seconds_count{flow=\"other\"} 52"), text);
  BOOST_TEST(text.find("made-up") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(label_values_are_escaped) {
  Metrics m;
  m.run_ended("COMPLETED", "a\"b\\c\nd", 1);
  const std::string text = m.render({});
  BOOST_TEST(text.find("flow=\"a\\\"b\\\\c\\nd\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(gauges_and_requests_are_rendered) {
  Metrics m;
  m.http_request("/runs/{id}", 200, 0.002);
  m.http_request("/runs/{id}", 404, 0.001);
  m.http_request("/runs/{id}/watch", 200, std::nullopt);  // a stream: counted, not timed
  Metrics::Gauges g;
  g.runs_in_progress = 3;
  g.queue_pending = {{"default", 7}, {"gpu", 0}};
  g.workers = {{"IDLE", 2}, {"RUNNING", 1}};
  g.dlq_messages = 4;
  const std::string text = m.render(g);
  BOOST_TEST(has_line(text, "pyoco_runs_in_progress 3"));
  BOOST_TEST(has_line(text, "pyoco_queue_pending{tag=\"default\"} 7"));
  BOOST_TEST(has_line(text, "pyoco_queue_pending{tag=\"gpu\"} 0"));
  BOOST_TEST(has_line(text, "pyoco_workers{state=\"RUNNING\"} 1"));
  BOOST_TEST(has_line(text, "pyoco_dlq_messages 4"));
  BOOST_TEST(has_line(text, "pyoco_http_requests_total{route=\"/runs/{id}\",code=\"404\"} 1"));
  BOOST_TEST(has_line(text, "pyoco_http_request_duration_seconds_count{route=\"/runs/{id}\"} 2"));
  BOOST_TEST(
      has_line(text, "pyoco_http_requests_total{route=\"/runs/{id}/watch\",code=\"200\"} 1"));
  BOOST_TEST(text.find("pyoco_http_request_duration_seconds_count{route=\"/runs/{id}/watch\"}") ==
             std::string::npos);
  BOOST_TEST(text.find("pyoco_build_info{version=\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_status_not_of_ours_is_counted_as_other) {
  Metrics m;
  for (int i = 0; i < 1000; ++i) m.run_ended("MADE-UP-" + std::to_string(i), "f", -1);
  const std::string text = m.render({});
  BOOST_TEST(has_line(text, "pyoco_runs_total{status=\"other\"} 1000"));
  BOOST_TEST(text.find("MADE-UP") == std::string::npos);
}
