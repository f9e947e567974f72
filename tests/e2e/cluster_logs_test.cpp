// The process log as an operator reads it: with PYOCO_LOG_FORMAT=json every
// line of the gateway's (and its worker's) stderr log is a JSON object; a
// request's line names its route, status, duration and run; the worker's
// name the claim and the end; a run's params never show.
#include <signal.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <sstream>

#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_CASE(json_lines_name_requests_claims_and_ends_and_never_params) {
  NatsServer nats;
  TempDir flows;
  write_text(flows.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
  Server s({"--nats", nats.url(), "--with-worker", "--flows", flows.path().string()},
           {{"PYOCO_LOG_FORMAT", "json"}, {"PYOCO_LOG_LEVEL", "info"}});
  const auto submitted = s.client({"submit", "hello", "--param", "password=hunter2", "--json"});
  BOOST_TEST_REQUIRE(submitted.exit_code == 0, submitted.err);
  const std::string run_id(json::parse(submitted.out).at("run_id").as_string());
  BOOST_TEST(s.client({"watch", run_id, "--until-terminal"}).exit_code == 0);
  BOOST_TEST(s.call(http::verb::get, "/runs/" + run_id).status == 200u);
  s.child->send_signal(SIGTERM);
  BOOST_TEST(s.child->wait(20s) == 0);

  const std::string err = s.child->err();
  BOOST_TEST(err.find("hunter2") == std::string::npos);
  std::istringstream lines(err);
  std::map<std::string, std::vector<json::object>> by_msg;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.front() != '{') continue;  // the console's own lines
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    BOOST_TEST_REQUIRE(!ec, line);
    const json::object& o = v.as_object();
    BOOST_TEST(o.at("ts").is_string());
    BOOST_TEST(o.at("level").is_string());
    by_msg[std::string(o.at("msg").as_string())].push_back(o);
  }
  auto has = [&](const std::string& msg, const std::function<bool(const json::object&)>& ok) {
    for (const auto& o : by_msg[msg])
      if (ok(o)) return true;
    return false;
  };
  BOOST_TEST(has("http", [&](const json::object& o) {
    return o.at("route") == "/runs" && o.at("method") == "POST" && o.at("status") == 200 &&
           o.at("run_id") == run_id.c_str() && o.at("duration_ms").is_number();
  }));
  BOOST_TEST(has("http", [&](const json::object& o) {
    return o.at("route") == "/runs/{id}" && o.at("method") == "GET" &&
           o.at("run_id") == run_id.c_str();
  }));
  BOOST_TEST(has("worker: claimed", [&](const json::object& o) {
    return o.at("run_id") == run_id.c_str() && o.at("attempt") == 1;
  }));
  BOOST_TEST(has("worker: ended", [&](const json::object& o) {
    return o.at("run_id") == run_id.c_str() && o.at("status") == "COMPLETED";
  }));
  BOOST_TEST(has("worker: draining", [](const json::object&) { return true; }));
}

BOOST_AUTO_TEST_CASE(a_bad_log_setting_is_refused_naming_it) {
  NatsServer nats;
  const ProcessResult r = run_pyoco({"worker", "--nats", nats.url()},
                                    {.env = {{"PYOCO_LOG_LEVEL", "loud"}}, .timeout = 20s});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("PYOCO_LOG_LEVEL=loud: debug, info, warning or error") != std::string::npos,
             r.err);
}
