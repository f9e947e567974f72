// GET /metrics as Prometheus reads it: runs counted from the event stream by
// status (completed, failed, cancelled), durations by flow and task, queue,
// workers and dead letters, requests by route; promtool finds nothing to
// complain of; two gateways share the counting exactly, a restart included.
#include <pyoco/core/subprocess.hpp>

#include <boost/test/unit_test.hpp>

#include <regex>
#include <thread>

#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// The value of one sample (`name{labels}`, as rendered); -1 when absent.
double sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

std::string scrape(const Server& s) {
  const auto r = s.call(http::verb::get, "/metrics");
  BOOST_REQUIRE_EQUAL(r.status, 200u);
  BOOST_TEST(r.content_type.find("text/plain; version=0.0.4") == 0u);
  return r.body;
}

// Scrapes until `series` is `value` (counts and the index follow the
// stream: they may lag a moment behind the run's record).
std::string scrape_until(const Server& s, const std::string& series, double value) {
  const auto until = std::chrono::steady_clock::now() + 20s;
  std::string text = scrape(s);
  while (sample(text, series) != value && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
    text = scrape(s);
  }
  return text;
}

std::string run_id_of(const ProcessResult& r) {
  std::smatch m;
  BOOST_REQUIRE_MESSAGE(std::regex_search(r.out, m, std::regex("\"run_id\":\"([^\"]+)\"")),
                        r.out << r.err);
  return m[1];
}

struct Flows {
  TempDir dir;
  Flows() {
    write_text(dir.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
    write_text(dir.path() / "sleepy.yaml",
               "flow: {graph: nap}\ntasks:\n  nap: {use: std/sleep, inputs: {seconds: 60}}\n");
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(runs_tasks_queues_workers_and_requests_are_measured) {
  NatsServer nats;
  Flows flows;
  Server s({"--nats", nats.url(), "--with-worker", "--slots", "2", "--flows",
            flows.dir.path().string()});
  BOOST_TEST(s.client({"submit", "hello", "--wait"}).exit_code == 0);
  BOOST_TEST(s.client({"submit", "no_such_flow", "--wait"}).exit_code != 0);  // FAILED, DLQ
  const std::string sleepy = run_id_of(s.client({"submit", "sleepy", "--json"}));
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (s.call(http::verb::get, "/runs/" + sleepy).body.find("RUNNING") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  BOOST_TEST(sample(scrape_until(s, "pyoco_runs_in_progress", 1), "pyoco_runs_in_progress") == 1);
  BOOST_TEST(s.client({"cancel", sleepy, "--wait"}).exit_code == 0);  // CANCELLED

  scrape_until(s, "pyoco_runs_total{status=\"CANCELLED\"}", 1);
  scrape_until(s, "pyoco_runs_in_progress", 0);
  // The worker says it is idle in its own record, a moment after the run's
  // end is published (a CI run scraped in between).
  const std::string text = scrape_until(s, "pyoco_workers{state=\"IDLE\"}", 1);
  BOOST_TEST(sample(text, "pyoco_runs_total{status=\"COMPLETED\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_runs_total{status=\"FAILED\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_runs_total{status=\"CANCELLED\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_run_duration_seconds_count{flow=\"hello\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_run_duration_seconds_bucket{flow=\"hello\",le=\"+Inf\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_task_duration_seconds_count{task=\"hello/fetch_data\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_runs_in_progress") == 0);
  BOOST_TEST(sample(text, "pyoco_queue_pending{tag=\"default\"}") == 0);
  BOOST_TEST(sample(text, "pyoco_workers{state=\"IDLE\"}") == 1);
  BOOST_TEST(sample(text, "pyoco_dlq_messages") == 1);
  BOOST_TEST(sample(text, "pyoco_http_requests_total{route=\"/runs\",code=\"200\"}") == 3);
  BOOST_TEST(sample(text, "pyoco_http_requests_total{route=\"/runs/{id}/cancel\",code=\"200\"}") ==
             1);
  BOOST_TEST(sample(text, "pyoco_http_request_duration_seconds_count{route=\"/runs\"}") == 3);
  BOOST_TEST(text.find("pyoco_build_info{version=\"") != std::string::npos);

  const auto lint = core::run_process({"promtool", "check", "metrics"}, {.stdin_data = text});
  BOOST_TEST(lint.exit_code == 0, lint.out << lint.err);
}

// A run cancelled while it waits for a worker leaves the queue at once: it
// is not counted as waiting until some worker pulls and drops it. The other
// run's job stays.
BOOST_AUTO_TEST_CASE(a_run_cancelled_while_pending_leaves_the_queue_at_once) {
  NatsServer nats;
  Server s({"--nats", nats.url()});  // no worker: both runs wait
  const std::string kept = s.submit(R"({"flow_name": "hello"})");
  const std::string cancelled = s.submit(R"({"flow_name": "hello"})");
  BOOST_TEST(sample(scrape_until(s, "pyoco_queue_pending{tag=\"default\"}", 2),
                    "pyoco_queue_pending{tag=\"default\"}") == 2);
  const auto r = s.call(http::verb::post, "/runs/" + cancelled + "/cancel");
  BOOST_TEST(r.body.find("\"CANCELLED\"") != std::string::npos, r.body);
  // Read from NATS at the scrape: no wait.
  BOOST_TEST(sample(scrape(s), "pyoco_queue_pending{tag=\"default\"}") == 1);
  BOOST_TEST(s.call(http::verb::get, "/runs/" + kept).body.find("PENDING") != std::string::npos);
}

// Each run's end is counted by one gateway of the group: the sum over the
// gateways is the number of runs, also when one stops and comes back.
BOOST_AUTO_TEST_CASE(gateways_share_the_counting_exactly_across_a_restart) {
  NatsServer nats;
  Flows flows;
  Server worker_side({"--nats", nats.url(), "--with-worker", "--slots", "4", "--flows",
                      flows.dir.path().string()});
  auto other = std::make_unique<Server>(std::vector<std::string>{"--nats", nats.url()});
  const std::string completed = "pyoco_runs_total{status=\"COMPLETED\"}";
  auto total = [&] {
    return std::max(0.0, sample(scrape(worker_side), completed)) +
           (other ? std::max(0.0, sample(scrape(*other), completed)) : 0.0);
  };
  auto wait_total = [&](double n) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (total() < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(50ms);
    }
    return total();
  };
  for (int i = 0; i < 10; ++i) BOOST_TEST(worker_side.client({"submit", "hello"}).exit_code == 0);
  BOOST_TEST(wait_total(10) == 10);

  // One gateway stops; the other counts alone; it comes back and counts
  // nothing twice (its durable group resumes, its own counter starts at 0).
  const double share = sample(scrape(worker_side), completed);  // its part of the 10
  other.reset();
  for (int i = 0; i < 5; ++i) BOOST_TEST(worker_side.client({"submit", "hello"}).exit_code == 0);
  BOOST_TEST(sample(scrape_until(worker_side, completed, share + 5), completed) == share + 5);
  const double before_restart = share + 5;
  other = std::make_unique<Server>(std::vector<std::string>{"--nats", nats.url()});
  for (int i = 0; i < 5; ++i) BOOST_TEST(other->client({"submit", "hello"}).exit_code == 0);
  BOOST_TEST(wait_total(before_restart + 5) == before_restart + 5);
  std::this_thread::sleep_for(500ms);  // time for a double count to show, if one could
  BOOST_TEST(total() == before_restart + 5);
}
