// The short form of the chaos run (tools/chaos.sh runs the long one): 150
// runs over 40 s through 2 gateways to 4 workers on a 3-node JetStream
// cluster, while the work stream's leader is killed, workers are killed, a
// gateway restarts and a NATS node is paused past the AckWait.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>

#include "chaos.hpp"

using namespace pyoco::chaos;

BOOST_AUTO_TEST_CASE(every_run_ends_once_through_every_fault) {
  ChaosOptions o;
  o.runs = 150;
  o.span = std::chrono::seconds(40);
  o.progress = [](const std::string& line) { BOOST_TEST_MESSAGE(line); };
  const ChaosReport r = run_chaos(o);
  BOOST_TEST_MESSAGE(boost::json::serialize(r.to_json()));
  for (const auto& p : r.problems) BOOST_TEST_MESSAGE("problem: " << p);
  BOOST_TEST(r.submitted == o.runs + static_cast<int>(r.faults.size()));  // the probes too
  BOOST_TEST(r.accepted == r.submitted);
  BOOST_TEST(r.not_terminal == 0);
  BOOST_TEST(r.run_end_not_once == 0);
  BOOST_TEST(r.ran_after_end == 0);
  BOOST_TEST(r.status_mismatch == 0);
  BOOST_TEST(r.metrics_runs_total == static_cast<double>(r.accepted));
  BOOST_TEST(r.faults.size() == 5u);
  for (const auto& f : r.faults) {
    BOOST_TEST(f.probe_ms >= 0, f.fault);
    BOOST_TEST(f.stranded_ms >= 0, f.fault);
  }
  std::string problems;
  for (const auto& p : r.problems) problems += "\n  " + p;
  BOOST_TEST(r.problems.empty(), "problems:" << problems);
  BOOST_TEST(r.passed());
}
