// The cluster quick start as users meet it: `pyoco server --with-nats
// --with-worker`, then `pyoco client`; the gateway's answers to careless
// requests; 503 while NATS is away and back by itself after.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/server/client.hpp>

#include <signal.h>

#include <sqlite3.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "child.hpp"
#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {}  // namespace

BOOST_AUTO_TEST_CASE(one_command_on_one_machine) {
  TempDir flows;
  write_text(flows.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
  write_text(flows.path() / "sleepy.yaml",
             "flow: {graph: nap}\ntasks:\n  nap: {use: std/sleep, inputs: {seconds: "
             "\"$ctx.params.seconds\"}}\n");
  Server s({"--with-nats", (flows.path() / "nats").string(), "--nats-port", "0", "--with-worker",
            "--slots", "2", "--flows", flows.path().string(), "--worker-id", "solo"});

  // --wait prints the run's trace, as a local run's, from the event stream.
  const ProcessResult yaml =
      s.client({"submit-yaml", (source_dir() / "examples/hello/flow.yaml").string(), "--wait"});
  BOOST_TEST(yaml.exit_code == 0, yaml.err);
  for (const char* line :
       {"INFO pyoco start flow=hello_pyoco run_id=", "INFO pyoco start node=fetch_data\n",
        "INFO pyoco log node=process_data 🥕 Processing: carrot\n",
        "INFO pyoco end flow=hello_pyoco status=COMPLETED\n"}) {
    BOOST_TEST(yaml.out.find(line) != std::string::npos, line << " in:\n" << yaml.out);
  }
  const std::string hello_id = [&] {
    const auto at = yaml.out.find("run_id=") + 7;
    return yaml.out.substr(at, yaml.out.find('\n', at) - at);
  }();

  // Its worker is named as --worker-id says.
  const json::value workers = json::parse(s.call(http::verb::get, "/workers").body);
  BOOST_TEST(workers.as_array().size() == 1u, workers);
  BOOST_TEST(workers.as_array().at(0).at("worker_id").as_string() == "solo", workers);

  // The plugins it ran with: in its record and in the list.
  const json::value record = json::parse(s.call(http::verb::get, "/runs/" + hello_id).body);
  BOOST_TEST(record.at("plugins").as_object().contains("hello"), record);
  const auto listed_until = std::chrono::steady_clock::now() + 20s;
  json::value item;
  do {
    const json::value runs = json::parse(s.call(http::verb::get, "/runs").body);
    for (const json::value& r : runs.as_array()) {
      if (r.at("run_id").as_string() == hello_id) item = r;
    }
    std::this_thread::sleep_for(20ms);
  } while ((item.is_null() || item.at("plugins").as_object().empty()) &&
           std::chrono::steady_clock::now() < listed_until);
  BOOST_TEST(item.at("plugins").as_object().contains("hello"), item);

  // SSE: the snapshot, then every event once; resumed after any event's id,
  // the rest follows with no gap and no duplicate.
  std::vector<server::StreamEvent> all;
  server::http_stream({s.url}, "/runs/" + hello_id + "/watch", "", [&](const auto& e) {
    all.push_back(e);
    return true;
  });
  BOOST_TEST_REQUIRE(all.size() > 5u);
  BOOST_TEST(all.front().event == "snapshot");
  BOOST_TEST(all.back().data.find("\"kind\":\"run_end\"") != std::string::npos);
  const std::size_t middle = all.size() / 2;
  std::vector<std::string> resumed;
  server::http_stream({s.url}, "/runs/" + hello_id + "/watch", all[middle].id, [&](const auto& e) {
    resumed.push_back(e.id);
    return true;
  });
  std::vector<std::string> expected;
  for (std::size_t i = middle + 1; i < all.size(); ++i) expected.push_back(all[i].id);
  BOOST_TEST(resumed == expected, boost::test_tools::per_element());
  // Its log lines: all, one task's, the last one; and from the client.
  auto logs = [&](const std::string& query) {
    return json::parse(s.call(http::verb::get, "/runs/" + hello_id + "/logs" + query).body);
  };
  const auto lines = logs("").at("items").as_array();
  BOOST_TEST_REQUIRE(lines.size() == 3u);
  BOOST_TEST(lines[0].at("node").as_string() == "fetch_data");
  BOOST_TEST(lines[1].at("message").as_string() == "🥕 Processing: carrot");
  BOOST_TEST(logs("?task=save_result").at("items").as_array().size() == 1u);
  BOOST_TEST(logs("?tail=1").at("items").as_array().at(0).at("node").as_string() == "save_result");
  // With a tail, limit does not apply, as documented (limit=0 was a 422).
  BOOST_TEST(logs("?tail=1&limit=0").at("items").as_array().size() == 1u);
  const auto next = logs("").at("next_after").to_number<std::uint64_t>();
  BOOST_TEST(logs("?after=" + std::to_string(next)).at("items").as_array().empty());
  BOOST_TEST(s.call(http::verb::get, "/runs/nope/logs").status == 404u);
  const ProcessResult client_logs = s.client({"logs", hello_id, "--follow"});
  BOOST_TEST(client_logs.exit_code == 0, client_logs.err);
  BOOST_TEST(client_logs.out ==
                 "[fetch_data] 🐰 Fetching data...\n[process_data] 🥕 Processing: "
                 "carrot\n[save_result] ✨ Saved: CARROT\n",
             client_logs.out);

  const ProcessResult watched = s.client({"watch", hello_id});
  BOOST_TEST(watched.exit_code == 0);
  BOOST_TEST(watched.out == yaml.out);
  // An error answer is one line, its detail, as for the other client commands.
  const ProcessResult unknown = s.client({"watch", "00000000-0000-0000-0000-000000000000"});
  BOOST_TEST(unknown.exit_code == 2, unknown.err);
  BOOST_TEST(unknown.err ==
                 "pyoco client watch: the gateway answered 404: run "
                 "00000000-0000-0000-0000-000000000000 not found\n",
             unknown.err);

  const ProcessResult named = s.client({"submit", "sleepy", "--param", "seconds=0.05", "--wait"});
  BOOST_TEST(named.exit_code == 0, named.err);

  // Submitted by its file's name (hello), the trace names the flow by its
  // own name (hello_pyoco) at the start and the end, as a local run's does;
  // its run_start says which file of the worker's --flows, not where that is.
  const ProcessResult by_name = s.client({"submit", "hello", "--wait"});
  BOOST_TEST(by_name.exit_code == 0, by_name.err);
  BOOST_TEST(by_name.out.find("INFO pyoco start flow=hello_pyoco run_id=") != std::string::npos,
             by_name.out);
  BOOST_TEST(
      by_name.out.find("INFO pyoco end flow=hello_pyoco status=COMPLETED\n") != std::string::npos,
      by_name.out);
  const std::string by_name_id = [&] {
    const auto at = by_name.out.find("run_id=") + 7;
    return by_name.out.substr(at, by_name.out.find('\n', at) - at);
  }();
  const ProcessResult start_event = s.client({"watch", by_name_id, "--json"});
  BOOST_TEST(start_event.out.find("\"flow_file\":\"hello.yaml\"") != std::string::npos,
             start_event.out);
  BOOST_TEST(start_event.out.find(flows.path().string()) == std::string::npos, start_event.out);

  // The same Idempotency-Key is the same run.
  const ProcessResult once = s.client({"submit", "hello", "--idempotency-key", "k1"});
  const ProcessResult twice = s.client({"submit", "hello", "--idempotency-key", "k1"});
  BOOST_TEST(once.exit_code == 0, once.err);
  BOOST_TEST(once.out == twice.out);

  // A long run, cancelled from the client: exit 0 once it ended CANCELLED,
  // as `pyoco runs cancel --wait` (it exited 130, which stopped `set -e`
  // scripts at a cancel that did what was asked).
  const ProcessResult long_run = s.client({"submit", "sleepy", "--param", "seconds=60"});
  const std::string id = long_run.out.substr(0, long_run.out.find('\n'));
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < until &&
         json::parse(s.call(http::verb::get, "/runs/" + id).body).at("status").as_string() !=
             "RUNNING") {
    std::this_thread::sleep_for(10ms);
  }
  const ProcessResult cancel = s.client({"cancel", id, "--wait"});
  BOOST_TEST(cancel.exit_code == 0, cancel.out << cancel.err);
  BOOST_TEST(cancel.out == "run " + id + " CANCELLING\nrun " + id + " CANCELLED\n", cancel.out);
  // Asked again of the ended run: its end said once (it was said twice).
  const ProcessResult again = s.client({"cancel", id, "--wait"});
  BOOST_TEST(again.out == "run " + id + " CANCELLED\n", again.out);
  BOOST_TEST(again.exit_code == 0, again.out << again.err);

  // Ctrl+C stops it all, nats-server included.
  s.child->send_signal(SIGINT);
  BOOST_TEST(s.child->wait(20s) == 0, s.child->err());
  BOOST_TEST(descendants_of(s.child->pid()).empty());
}

BOOST_AUTO_TEST_CASE(careless_requests_get_clear_answers) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  auto error_of = [](const server::ClientResponse& r) {
    return std::string(json::parse(r.body).at("detail").as_string());
  };
  const auto no_name = s.call(http::verb::post, "/runs", R"({"params": {}})");
  BOOST_TEST(no_name.status == 422u);
  BOOST_TEST(error_of(no_name).find("flow_name: required") != std::string::npos);
  BOOST_TEST(s.call(http::verb::post, "/runs", "{not json").status == 422u);
  // A flow name names a file in the workers' --flows: never a path.
  const auto traversal = s.call(http::verb::post, "/runs", R"({"flow_name": "../../etc/passwd"})");
  BOOST_TEST(traversal.status == 422u);
  BOOST_TEST(error_of(traversal).find("flow_name \"../../etc/passwd\"") == 0u, traversal.body);
  const auto bad_tag = s.call(http::verb::post, "/runs", R"({"flow_name": "a", "tag": "x.y"})");
  BOOST_TEST(bad_tag.status == 422u);
  BOOST_TEST(error_of(bad_tag).find("tag: ") == 0u);
  BOOST_TEST(s.call(http::verb::post, "/runs", std::string(2 << 20, ' ')).status == 413u);
  // JSON has no infinity: a record holding one could be written, never read.
  const auto infinite =
      s.call(http::verb::post, "/runs", R"({"flow_name": "a", "params": {"x": [1, 1e999999]}})");
  BOOST_TEST(infinite.status == 422u);
  BOOST_TEST(error_of(infinite).find("params.x.1: a number too large for a double") == 0u,
             infinite.body);
  // Params nest at most 31 levels (the body 32): deeper is said to be so,
  // not that it is not JSON.
  auto nested = [](int levels) {
    std::string text = "1";
    for (int i = 0; i < levels; ++i) text = R"({"x": )" + text + "}";
    return R"({"flow_name": "a", "params": )" + text + "}";
  };
  BOOST_TEST(s.call(http::verb::post, "/runs", nested(31)).status == 200u);
  const auto deep = s.call(http::verb::post, "/runs", nested(32));
  BOOST_TEST(deep.status == 422u);
  BOOST_TEST(error_of(deep).find("the body nests arrays and objects more than 32 levels deep "
                                 "(params: at most 31 levels") == 0u,
             deep.body);
  // A record is one NATS message: params past 512 KiB could not be written
  // with the run's tasks.
  const auto heavy =
      s.call(http::verb::post, "/runs",
             R"({"flow_name": "a", "params": {"x": ")" + std::string(600 * 1024, 'x') + R"("}})");
  BOOST_TEST(heavy.status == 422u);
  BOOST_TEST(error_of(heavy).find("params: 614408 bytes as JSON, over the limit of 524288") == 0u,
             heavy.body);
  const auto bad_yaml =
      server::http_call(s.url, http::verb::post, "/runs/yaml?flow_name=x",
                        "flow: {graph: \"a >> \"}\ntasks: {}\n", "application/yaml");
  BOOST_TEST(bad_yaml.status == 422u);
  BOOST_TEST(error_of(bad_yaml).find("workflow.yaml:1:") != std::string::npos, bad_yaml.body);
  // Sent by `client submit-yaml`, the errors name the user's own file.
  write_text(
      s.dir.path() / "cycle.yaml",
      "flow: {graph: \"a >> b >> a\"}\ntasks:\n  a: {use: std/echo}\n  b: {use: std/echo}\n");
  const ProcessResult cycle = s.client({"submit-yaml", "cycle.yaml"});
  BOOST_TEST(cycle.exit_code == 2, cycle.err);
  BOOST_TEST(cycle.err.find("workflow: cycle.yaml:") != std::string::npos, cycle.err);
  // --params-file is read as `pyoco run` reads it: YAML too; a missing
  // file, or one that is neither, is named.
  write_text(s.dir.path() / "p.yaml", "who: block style\nn: 3\n");
  const ProcessResult from_yaml = s.client({"submit", "a", "--params-file", "p.yaml", "--json"});
  BOOST_TEST_REQUIRE(from_yaml.exit_code == 0, from_yaml.err);
  const std::string yaml_run(json::parse(from_yaml.out).at("run_id").as_string());
  const json::value yaml_record = json::parse(s.call(http::verb::get, "/runs/" + yaml_run).body);
  BOOST_TEST(yaml_record.at("params") == (json::object{{"who", "block style"}, {"n", 3}}),
             yaml_record);
  const ProcessResult no_file = s.client({"submit", "a", "--params-file", "none.json"});
  BOOST_TEST(no_file.exit_code == 2);
  BOOST_TEST(no_file.err.find("pyoco client submit: --params-file none.json: ") == 0u, no_file.err);
  // A key written twice is refused before anything is sent: the object the
  // client would build keeps one of the two without a word.
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--params", R"({"a": 1, "a": 2})"}, "--params: a: "},
           {{"--param", R"(a={"b": 1, "b": 2})"}, "--param a.b: "}}) {
    std::vector<std::string> argv{"submit", "a"};
    argv.insert(argv.end(), args.begin(), args.end());
    const ProcessResult twice = s.client(argv);
    BOOST_TEST(twice.exit_code == 2, twice.err);
    BOOST_TEST(twice.err.find("pyoco client submit: " + says +
                              "the key is written twice in one object; keep one of them") == 0u,
               twice.err);
  }
  BOOST_TEST(s.call(http::verb::get, "/runs/no-such-run").status == 404u);
  BOOST_TEST(s.call(http::verb::get, "/runs/a%20b").status == 404u);
  BOOST_TEST(s.call(http::verb::post, "/runs/no-such-run/cancel").status == 404u);
  BOOST_TEST(s.call(http::verb::get, "/nowhere").status == 404u);
  BOOST_TEST(s.call(http::verb::delete_, "/runs").status == 405u);
  // Numbers in queries and Last-Event-ID: digits only, in range, or 422
  // (never a wrapped -1 that NATS would then refuse as a 503).
  const std::string run =
      json::parse(s.call(http::verb::post, "/runs", R"({"flow_name": "a"})").body)
          .at("run_id")
          .as_string()
          .c_str();
  for (const std::string bad : {"-1", "12abc", "%203", "99999999999999999999",
                                "18446744073709551615", "9223372036854775807", ""}) {
    const std::string q = bad.empty() ? "%00" : bad;
    BOOST_TEST(s.call(http::verb::get, "/events?last_event_id=" + q).status == 422u, bad);
    BOOST_TEST(s.call(http::verb::get, "/runs/" + run + "/watch?last_event_id=" + q).status == 422u,
               bad);
    BOOST_TEST(s.call(http::verb::get, "/runs/" + run + "/logs?after=" + q).status == 422u, bad);
    BOOST_TEST(s.call(http::verb::get, "/workers?limit=" + q).status == 422u, bad);
    BOOST_TEST(s.call(http::verb::get, "/plugins/history?limit=" + q).status == 422u, bad);
  }
  BOOST_TEST(s.call(http::verb::get, "/workers?limit=0").status == 422u);
  BOOST_TEST(s.call(http::verb::get, "/runs/" + run + "/logs?after=0&tail=5").status == 200u);
  const ProcessResult get = s.client({"get", "no-such-run"});
  BOOST_TEST(get.exit_code == 2);
  BOOST_TEST(
      get.err.find("the gateway answered 404: run no-such-run not found") != std::string::npos,
      get.err);
}

namespace {

// A multipart/form-data body of these parts, its boundary "B".
std::string form_of(const std::vector<std::pair<std::string, std::string>>& parts) {
  std::string body;
  for (const auto& [name, value] : parts) {
    body += "--B\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n";
  }
  return body + "--B--\r\n";
}

// POST /runs of `body` is 422 invalid_request saying `detail`.
void expect_refused(const Server& s, const std::string& body, const std::string& detail) {
  const auto r = s.call(http::verb::post, "/runs", body);
  BOOST_TEST(r.status == 422u, body << ": " << r.status << " " << r.body);
  BOOST_TEST(r.body.find("\"invalid_request\"") != std::string::npos, r.body);
  BOOST_TEST(json::parse(r.body).at("detail").as_string() == detail, r.body);
}

}  // namespace

// An error's detail quotes what the client sent: bytes that are not UTF-8
// are shown as \xNN (they went raw into the JSON, which was then not
// JSON), and a NUL no longer cuts the detail short.
// What a parse into a value cannot tell afterwards, refused as the body is
// read: an integer past 64 bits (it was stored rounded, 1.2345678901234568e+29,
// where `pyoco client submit --param` refuses it) and a key sent twice in
// one object (the last one ran, where another reader may take the first).
BOOST_AUTO_TEST_CASE(oversized_integers_and_repeated_keys_in_a_body_are_refused) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  auto refused = [&](const std::string& body, const std::string& detail) {
    expect_refused(s, body, detail);
  };
  refused(R"({"flow_name": "hello", "params": {"x": 123456789012345678901234567890}})",
          "params.x: 123456789012345678901234567890: too large for a 64-bit integer; quote it "
          "to keep it as text");
  refused(R"({"flow_name": "hello", "params": {"x": {"y": [1, -9223372036854775809]}}})",
          "params.x.y.1: -9223372036854775809: too large for a 64-bit integer; quote it to keep "
          "it as text");
  // Past int64, within uint64: read exactly, but a run's values are int64.
  refused(R"({"flow_name": "hello", "params": {"n": 18446744073709551615}})",
          "params.n: 18446744073709551615: too large for a 64-bit integer; quote it to keep it "
          "as text");
  refused(R"({"flow_name": "hello", "flow_name": "mid"})",
          "flow_name: the key is sent twice in one object; send each key once");
  refused(R"({"flow_name": "hello", "params": {"a": 1, "b": [{"c": 1, "c": 2}]}})",
          "params.b.0.c: the key is sent twice in one object; send each key once");
  // Escapes are read first: "\u0061" is the key a.
  refused(R"({"flow_name": "hello", "params": {"a": 1, "\u0061": 2}})",
          "params.a: the key is sent twice in one object; send each key once");
  refused(R"({"hidden": true, "hidden": false})",
          "hidden: the key is sent twice in one object; send each key once");
  // What is fine stays fine: the edges of int64, doubles as written, the
  // same key in two objects.
  const auto fine = s.call(
      http::verb::post, "/runs",
      R"({"flow_name": "hello", "params": {"max": 9223372036854775807, "min": -9223372036854775808, "big": 1e300, "x": 1.5, "a": {"k": 1}, "b": {"k": 1}}})");
  BOOST_TEST(fine.status == 200u, fine.body);
  const std::string id(json::parse(fine.body).at("run_id").as_string());
  const auto record = s.call(http::verb::get, "/runs/" + id);
  BOOST_TEST(record.body.find("9223372036854775807") != std::string::npos, record.body);
}

// A query parameter given twice is refused naming it, as a JSON key sent
// twice is: the first one counted, where another reader may take the last.
// A name encoded (flow%5Fname) is the same name.
BOOST_AUTO_TEST_CASE(a_query_parameter_given_twice_is_refused) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::string yaml = "flow: {graph: a}\ntasks:\n  a: {use: std/echo}\n";
  auto refused = [&](http::verb verb, const std::string& target, const std::string& body,
                     const std::string& name) {
    const auto r = s.call(verb, target, body);
    BOOST_TEST(r.status == 400u, target << ": " << r.status << " " << r.body);
    BOOST_TEST(json::parse(r.body).at("detail").as_string() ==
                   "the query parameter " + name + " is given twice; give each parameter once",
               r.body);
  };
  refused(http::verb::post, "/runs/yaml?flow_name=a&flow_name=b", yaml, "flow_name");
  refused(http::verb::post, "/runs/yaml?flow_name=a&flow%5Fname=b", yaml, "flow_name");
  refused(http::verb::get, "/runs?limit=1&limit=abc", "", "limit");
  refused(http::verb::get, "/runs?status=CANCELLED&status=COMPLETED", "", "status");
  refused(http::verb::get, "/workers?state=IDLE&state=IDLE", "", "state");
  // Each once is fine, and so is one parameter beside another.
  BOOST_TEST(s.call(http::verb::get, "/runs?limit=1&status=COMPLETED").status == 200u);
  const auto ok = s.call(http::verb::post, "/runs/yaml?flow_name=a&tag=default", yaml);
  BOOST_TEST(ok.status == 200u, ok.body);
}

BOOST_AUTO_TEST_CASE(error_details_are_valid_json_whatever_the_request_holds) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::string yaml = "flow: {graph: a}\ntasks:\n  a: {use: std/echo}\n";
  auto detail_of = [](const server::ClientResponse& r) {
    BOOST_TEST(core::invalid_utf8_at(r.body) == std::string::npos, r.body);
    json::value v;
    try {
      v = json::parse(r.body);
    } catch (const std::exception& e) {
      BOOST_TEST(false, "not JSON (" << e.what() << "): " << r.body);
      return std::string();
    }
    return std::string(v.at("detail").as_string());
  };
  const auto query = server::http_call(s.url, http::verb::post, "/runs/yaml?flow_name=%ff%fe", yaml,
                                       "application/yaml");
  BOOST_TEST(query.status == 422u);
  BOOST_TEST(detail_of(query).find(R"(flow_name "\xff\xfe")") == 0u, query.body);
  const auto tag =
      server::http_call(s.url, http::verb::post, "/runs/yaml?tag=x%c3", yaml, "application/yaml");
  BOOST_TEST(tag.status == 422u);
  BOOST_TEST(detail_of(tag).find(R"(tag: tag "x\xc3")") == 0u, tag.body);
  const std::string form = form_of({{"workflow", yaml}, {"flow_name", "q\xff"}});
  const auto multipart = server::http_call(s.url, http::verb::post, "/runs/yaml", form,
                                           "multipart/form-data; boundary=B");
  BOOST_TEST(multipart.status == 422u);
  BOOST_TEST(detail_of(multipart).find(R"(flow_name "q\xff")") == 0u, multipart.body);
  const auto nul = s.call(http::verb::post, "/runs", R"({"flow_name":"quick\u0000x"})");
  BOOST_TEST(nul.status == 422u);
  BOOST_TEST(detail_of(nul).find(R"(flow_name "quick\x00x": 1 to 128)") == 0u, nul.body);
  // Valid UTF-8 is shown as it is.
  const auto carrot = s.call(http::verb::post, "/runs", R"({"flow_name":"🥕"})");
  BOOST_TEST(detail_of(carrot).find("flow_name \"🥕\"") == 0u, carrot.body);
}

// A run for a tag no worker's queue exists for is refused, naming the
// command that makes it (it was accepted and stayed PENDING for ever, its
// job left in PYOCO_WORK); once made, the same gateway takes it.
BOOST_AUTO_TEST_CASE(a_run_for_a_tag_without_a_workers_queue_is_refused) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::string body = R"({"flow_name": "quick", "tag": "nosuch"})";
  const auto refused = s.call(http::verb::post, "/runs", body);
  BOOST_TEST(refused.status == 422u);
  const std::string detail(json::parse(refused.body).at("detail").as_string());
  BOOST_TEST(detail.find("tag nosuch: ") == 0u, detail);
  BOOST_TEST(detail.find("`pyoco cluster init --tags nosuch`") != std::string::npos, detail);
  const auto yaml =
      server::http_call(s.url, http::verb::post, "/runs/yaml?tag=nosuch",
                        "flow: {graph: a}\ntasks:\n  a: {use: std/echo}\n", "application/yaml");
  BOOST_TEST(yaml.status == 422u, yaml.body);
  {
    cluster::Connection c({.servers = {nats.url()}});
    jsStreamInfo* si = nullptr;
    BOOST_TEST_REQUIRE(js_GetStreamInfo(&si, c.handles().js, "PYOCO_WORK", nullptr, nullptr) ==
                       NATS_OK);
    BOOST_TEST(si->State.Msgs == 0u);  // no job queued
    jsStreamInfo_Destroy(si);
  }
  BOOST_TEST(s.call(http::verb::post, "/runs", R"({"flow_name": "quick"})").status == 200u);
  const ProcessResult init =
      run_pyoco({"cluster", "init", "--nats", nats.url(), "--tags", "nosuch"});
  BOOST_TEST_REQUIRE(init.exit_code == 0, init.err);
  const auto taken = s.call(http::verb::post, "/runs", body);
  BOOST_TEST(taken.status == 200u, taken.body);
}

// NATS frozen (SIGSTOP: the connection stays up, nothing answers): /health
// says degraded within seconds (it said ok for as long as the connection
// held, while every other route was 503), and ok again once NATS answers.
BOOST_AUTO_TEST_CASE(health_is_degraded_while_nats_does_not_answer) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  auto health = [&] {
    // Answered from memory on the I/O thread: at once, frozen NATS or not.
    const auto r =
        server::http_call(s.url, http::verb::get, "/health", {}, "application/json", {}, 2s);
    return std::pair(r.status, std::string(json::parse(r.body).at("status").as_string()));
  };
  BOOST_TEST_REQUIRE(health().first == 200u);
  BOOST_TEST_REQUIRE(::kill(nats.pid(), SIGSTOP) == 0);
  auto until = std::chrono::steady_clock::now() + 20s;
  std::pair<unsigned, std::string> h;
  while ((h = health()).first == 200u && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  ::kill(nats.pid(), SIGCONT);
  BOOST_TEST(h.first == 503u);
  BOOST_TEST(h.second == "degraded");
  until = std::chrono::steady_clock::now() + 20s;
  while ((h = health()).first != 200u && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  BOOST_TEST(h.first == 200u);
  BOOST_TEST(h.second == "ok");
}

BOOST_AUTO_TEST_CASE(nats_away_is_503_and_the_gateway_recovers_by_itself) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::string id = s.submit(R"({"flow_name": "hello"})");

  BOOST_TEST(s.call(http::verb::get, "/runs").stale.empty());

  nats.kill9();
  // The gateway learns of it from its connection (a moment, longer on a
  // slow host): /health says so within seconds, then the rest does too.
  unsigned health = 0;
  const auto noticed = std::chrono::steady_clock::now() + 10s;
  while ((health = s.call(http::verb::get, "/health").status) != 503u &&
         std::chrono::steady_clock::now() < noticed) {
    std::this_thread::sleep_for(50ms);
  }
  BOOST_TEST(health == 503u);
  const auto down = s.call(http::verb::get, "/runs/" + id);
  BOOST_TEST(down.status == 503u, down.body);
  // What the gateway holds itself it still answers, saying it may be out of date.
  for (const char* held : {"/runs", "/stats", "/workers"}) {
    const auto r = s.call(http::verb::get, held);
    BOOST_TEST(r.status == 200u, held << ": " << r.body);
    BOOST_TEST(r.stale.find("NATS is away") != std::string::npos, held);
  }
  const auto listed = s.client({"list"});
  BOOST_TEST(listed.exit_code == 0, listed.err);
  BOOST_TEST(listed.out.find(id) != std::string::npos, listed.out);
  BOOST_TEST(listed.err.find("answered from memory (NATS is away") != std::string::npos,
             listed.err);

  nats.start();  // same port, same store
  unsigned status = 0;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (status != 200 && std::chrono::steady_clock::now() < until) {
    status = s.call(http::verb::get, "/runs/" + id).status;
    if (status != 200) std::this_thread::sleep_for(50ms);
  }
  BOOST_TEST(status == 200u);
  BOOST_TEST(s.call(http::verb::get, "/health").status == 200u);
}

// A nats-server that stops answering (frozen here; a link cut without a
// reset looks the same) leaves the connection up for minutes: what the
// gateway answers from memory says so within seconds all the same, and
// stops saying it once NATS answers again.
BOOST_AUTO_TEST_CASE(a_frozen_nats_is_said_as_away_by_what_answers_from_memory) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  BOOST_TEST(s.call(http::verb::get, "/runs").stale.empty());
  ::kill(nats.pid(), SIGSTOP);
  struct Thaw {  // whatever the checks below do, nats-server is not left stopped
    int pid;
    ~Thaw() { ::kill(pid, SIGCONT); }
  } thaw{nats.pid()};
  auto stale_within = [&](std::chrono::seconds limit, bool want) {
    std::string stale;
    const auto until = std::chrono::steady_clock::now() + limit;
    while ((stale = s.call(http::verb::get, "/runs").stale).empty() == want &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(100ms);
    }
    return stale;
  };
  const std::string frozen = stale_within(30s, true);
  BOOST_TEST(frozen.find("NATS is away (not answering)") == 0u, frozen);
  BOOST_TEST(s.call(http::verb::get, "/health").status == 503u);
  ::kill(nats.pid(), SIGCONT);
  BOOST_TEST(stale_within(30s, false).empty());
}

// A watch open while nats-server is killed and started again goes on by
// itself: the gateway follows again from the last event it sent, and the
// client sees every event of the run once, in order, to its RunEnd, on the
// one stream it opened.
// A gateway killed and started again on its port: the client's watch,
// logs --follow and submit --wait say so on stderr, follow on after the
// last event they saw, and end with the run (they used to exit 2 at once,
// and a script would submit again).
BOOST_AUTO_TEST_CASE(the_clients_that_follow_a_run_ride_out_a_gateway_restart) {
  NatsServer nats;
  TempDir flows;
  // b goes on until the restarted gateway is up (a fixed 4 s could end
  // before the kill on a slow host, and no client would be mid-stream).
  const std::filesystem::path gate = flows.path() / "gate-open";
  write_text(flows.path() / "ticks.yaml",
             "flow: {graph: a >> b >> c}\ntasks:\n"
             "  a: {use: std/echo, inputs: {value: 1, message: before}}\n"
             "  b: {use: std/shell, inputs: {command: \"while [ ! -e '" +
                 gate.string() + "' ] && [ -d '" + flows.path().string() +
                 "' ]; do sleep 0.05; done\"}}\n"
                 "  c: {use: std/echo, inputs: {value: 1, message: after}}\n");
  std::optional<Server> s(std::in_place, std::vector<std::string>{"--nats", nats.url()});
  const std::string url = s->url;
  const std::string port = url.substr(url.rfind(':') + 1);
  ChildProcess worker(
      {pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w1", "--flows",
       flows.path().string(), "--progress-interval", "0.2", "--slots", "2"},
      {{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  const std::string id = s->submit(R"({"flow_name": "ticks"})");
  auto client = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {pyoco_exe().string(), "client"});
    args.insert(args.begin() + 3, {"--server", url});
    return std::make_unique<ChildProcess>(args, std::map<std::string, std::string>{}, flows.path());
  };
  auto watch = client({"watch", id});
  auto logs = client({"logs", id, "--follow"});
  auto waits = client({"submit", "ticks", "--wait"});
  // Both runs in b (held by the gate) when the gateway goes: every client is mid-stream.
  BOOST_TEST_REQUIRE(watch->wait_for_output("start node=b"), watch->out() << watch->err());
  BOOST_TEST_REQUIRE(waits->wait_for_output("start node=b"), waits->out() << waits->err());
  BOOST_TEST_REQUIRE(logs->wait_for_output("[a] before"), logs->out() << logs->err());
  s->child->send_signal(SIGKILL);
  s->child->wait();
  s.reset();
  std::this_thread::sleep_for(1500ms);  // the outage itself: their reconnects are refused
  ChildProcess again(
      {pyoco_exe().string(), "server", "--listen", "127.0.0.1:" + port, "--nats", nats.url()},
      {{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  BOOST_TEST_REQUIRE(again.wait_for_output("\n", 60s), again.out() << again.err());
  write_text(gate, "");  // b ends now, with the gateway back
  for (auto* p : {watch.get(), logs.get(), waits.get()}) {
    BOOST_TEST(p->wait(std::chrono::seconds(60)) == 0, p->out() << p->err());
    BOOST_TEST(p->err().find("lost the gateway") != std::string::npos, p->err());
  }
  BOOST_TEST(watch->out().find("end flow=ticks status=COMPLETED") != std::string::npos,
             watch->out());
  BOOST_TEST(waits->out().find("end flow=ticks status=COMPLETED") != std::string::npos,
             waits->out());
  BOOST_TEST(logs->out().find("[c] after") != std::string::npos, logs->out());
}

BOOST_AUTO_TEST_CASE(a_watch_rides_out_a_nats_restart) {
  NatsServer nats;
  TempDir flows;
  write_text(flows.path() / "ticks.yaml",
             "flow: {graph: a >> b >> c}\ntasks:\n"
             "  a: {use: std/sleep, inputs: {seconds: 1}}\n"
             "  b: {use: std/sleep, inputs: {seconds: 1.5}}\n"
             "  c: {use: std/echo, inputs: {message: after}}\n");
  Server s({"--nats", nats.url()});
  ChildProcess worker({pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w1",
                       "--flows", flows.path().string(), "--progress-interval", "0.2"},
                      {{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  const std::string id = s.submit(R"({"flow_name": "ticks"})");

  std::mutex m;
  std::vector<server::StreamEvent> seen;
  std::atomic<bool> ended{false};
  std::thread watch([&] {
    try {
      server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
        std::lock_guard lock(m);
        seen.push_back(e);
        return true;
      });
    } catch (const std::exception& e) {
      BOOST_TEST_MESSAGE("the watch broke: " << e.what());
    }
    ended = true;
  });
  auto count_seen = [&] {
    std::lock_guard lock(m);
    return seen.size();
  };
  // The run has started (snapshot, then its first events) when NATS goes.
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (count_seen() < 3 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  BOOST_TEST_REQUIRE(count_seen() >= 3u);
  nats.kill9();
  std::this_thread::sleep_for(1s);  // the outage itself
  nats.start();
  const auto end_by = std::chrono::steady_clock::now() + 60s;
  while (!ended && std::chrono::steady_clock::now() < end_by) std::this_thread::sleep_for(20ms);
  BOOST_TEST_REQUIRE(ended.load());
  watch.join();

  // One stream, the snapshot first, ids strictly increasing, the RunEnd
  // last; the same events a new watch from the start gets (no gap).
  BOOST_TEST_REQUIRE(seen.size() > 3u);
  BOOST_TEST(seen.front().event == "snapshot");
  BOOST_TEST(seen.back().data.find("\"kind\":\"run_end\"") != std::string::npos);
  std::vector<std::string> ids;
  for (std::size_t i = 1; i < seen.size(); ++i) {
    BOOST_TEST(seen[i].event != "error", seen[i].data);
    if (i > 1) BOOST_TEST(std::stoull(seen[i].id) > std::stoull(seen[i - 1].id));
    ids.push_back(seen[i].id);
  }
  std::vector<std::string> again;
  server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
    if (e.event != "snapshot") again.push_back(e.id);
    return true;
  });
  BOOST_TEST(ids == again, boost::test_tools::per_element());
}

// A record anyone with NATS access could forge: a submission time no clock
// gives is not used to find the run's events (it would overflow the
// nanoseconds NATS takes); the watch follows them from the first.
BOOST_AUTO_TEST_CASE(a_watch_of_a_forged_submission_time_still_follows) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::string id = s.submit(R"({"flow_name": "nobody_runs_it"})");
  {
    cluster::Connection c({.servers = {nats.url()}});
    cluster::RunRecords runs(c);
    auto r = runs.get(id);
    BOOST_TEST_REQUIRE(r.has_value());
    json::object forged = r->snapshot;
    forged["submitted_at"] = 1e300;
    BOOST_TEST_REQUIRE(runs.replace(id, forged, r->revision).has_value());
  }
  std::vector<std::string> kinds;
  server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
    kinds.push_back(e.event);
    return e.event == "snapshot";  // the snapshot, then its first stored event
  });
  BOOST_TEST_REQUIRE(kinds.size() == 2u);
  BOOST_TEST(kinds[1] == "run");  // run_submitted, found from the stream's start
}

// A watch of a finished run resumed at or past its RunEnd has nothing left
// to send: it ends at once (it pinged for as long as the client stayed,
// holding one of the gateway's stream threads).
BOOST_AUTO_TEST_CASE(a_watch_resumed_past_a_finished_runs_end_ends_at_once) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::string id = s.submit(R"({"flow_name": "nobody_runs_it"})");
  BOOST_TEST_REQUIRE(s.call(http::verb::post, "/runs/" + id + "/cancel").status == 200u);
  std::vector<server::StreamEvent> all;
  server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
    all.push_back(e);
    return true;
  });
  BOOST_TEST_REQUIRE(all.size() >= 2u);
  BOOST_TEST_REQUIRE(all.back().data.find("\"kind\":\"run_end\"") != std::string::npos);
  const std::string end_id = all.back().id;
  // The pings come every 15 s: an answer within 10 s is the stream ending.
  auto resumed = [&](const std::string& target, const std::string& last_event_id) {
    std::map<std::string, std::string> headers;
    if (!last_event_id.empty()) headers["Last-Event-ID"] = last_event_id;
    return server::http_call(s.url, http::verb::get, target, {}, "application/json", headers, 10s);
  };
  for (const std::string& last : {end_id, std::string("999999999")}) {
    const server::ClientResponse r = resumed("/runs/" + id + "/watch", last);
    BOOST_TEST(r.status == 200u, last);
    BOOST_TEST(r.body.find("event:") == std::string::npos, r.body);
  }
  const server::ClientResponse q = resumed("/runs/" + id + "/watch?last_event_id=" + end_id, "");
  BOOST_TEST(q.status == 200u);
  BOOST_TEST(q.body.find("event:") == std::string::npos, q.body);
  // Resumed before its end, it still gets the end.
  const server::ClientResponse before = resumed("/runs/" + id + "/watch", all[1].id);
  BOOST_TEST(before.body.find("\"kind\":\"run_end\"") != std::string::npos, before.body);
}

// A worker that lost its run (stopped past its lease) may still have
// events on their way when it resumes: stored after those of the attempt
// that took the run over. A watch skips an event of an attempt older than
// one it has sent, both read back from the stream and live.
BOOST_AUTO_TEST_CASE(a_watch_skips_the_events_of_an_attempt_older_than_one_it_sent) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  cluster::Connection c({.servers = {nats.url()}});
  int seq = 0;
  const auto publish = [&](const std::string& id, int run_attempt, const std::string& node) {
    const std::string body = R"({"kind":"node_start","run_id":")" + id + R"(","node":")" + node +
                             R"(","seq":)" + std::to_string(++seq) +
                             R"(,"ts":"2026-12-02T10:00:00Z","run_attempt":)" +
                             std::to_string(run_attempt) + "}";
    const std::string subject = "pyoco.ev." + id + ".node";
    BOOST_TEST_REQUIRE(js_Publish(nullptr, c.handles().js, subject.c_str(), body.data(),
                                  static_cast<int>(body.size()), nullptr, nullptr) == NATS_OK);
  };
  const auto publish_all = [&](const std::string& id) {
    publish(id, 1, "a1");
    publish(id, 2, "a2");
    publish(id, 1, "stale");  // attempt 1's, after attempt 2's
    publish(id, 2, "b2");
    BOOST_TEST_REQUIRE(s.call(http::verb::post, "/runs/" + id + "/cancel").status == 200u);
  };
  // Until the run's end; `opened` once the snapshot came.
  const auto watch = [&](const std::string& id, std::atomic<bool>* opened) {
    std::vector<std::string> nodes;
    server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
      if (e.event == "snapshot" && opened != nullptr) opened->store(true);
      const json::value v = json::parse(e.data);
      if (const json::value* n = v.as_object().if_contains("node")) {
        nodes.emplace_back(n->as_string());
      }
      return true;
    });
    return nodes;
  };
  const std::vector<std::string> expected{"a1", "a2", "b2"};
  // Read back: everything was stored before the watch.
  const std::string stored_id = s.submit(R"({"flow_name": "nobody_runs_it"})");
  publish_all(stored_id);
  const std::vector<std::string> stored = watch(stored_id, nullptr);
  BOOST_TEST(stored == expected, boost::test_tools::per_element());
  // Live: the watch is open before the first event.
  const std::string live_id = s.submit(R"({"flow_name": "nobody_runs_it"})");
  std::atomic<bool> opened{false};
  auto live = std::async(std::launch::async, [&] { return watch(live_id, &opened); });
  BOOST_TEST_REQUIRE(eventually([&] { return opened.load(); }));
  publish_all(live_id);
  BOOST_TEST_REQUIRE((live.wait_for(30s) == std::future_status::ready), "the watch did not end");
  const std::vector<std::string> followed = live.get();
  BOOST_TEST(followed == expected, boost::test_tools::per_element());

  // `pyoco client watch` says where attempt 2 begins: two start lines
  // alone read as one run starting twice.
  const std::string again_id = s.submit(R"({"flow_name": "nobody_runs_it"})");
  for (int attempt : {1, 2}) {
    const std::string body =
        R"({"kind":"run_start","run_id":")" + again_id +
        R"(","flow":"again","seq":1,"ts":"2026-12-02T10:00:00Z","run_attempt":)" +
        std::to_string(attempt) + "}";
    const std::string subject = "pyoco.ev." + again_id + ".run";
    BOOST_TEST_REQUIRE(js_Publish(nullptr, c.handles().js, subject.c_str(), body.data(),
                                  static_cast<int>(body.size()), nullptr, nullptr) == NATS_OK);
  }
  BOOST_TEST_REQUIRE(s.call(http::verb::post, "/runs/" + again_id + "/cancel").status == 200u);
  const ProcessResult watched = s.client({"watch", again_id});
  const std::string start = "INFO pyoco start flow=again run_id=" + again_id + "\n";
  BOOST_TEST(watched.out.find(start +
                              "WARN pyoco attempt=2 the run starts again from the "
                              "beginning (attempt 1's worker stopped, was drained or "
                              "lost the run)\n" +
                              start) != std::string::npos,
             watched.out);
}

// A watch whose client stopped reading falls behind (past the 10,000 events
// a watch may hold) and comes back through the gateway's one subscription:
// what it missed is read by message gets from where it was, not by a
// consumer of its own. Sixty of those on the gateway's connection made NATS
// cut it off as a slow consumer, losing what was on its way to every one
// of them, and held 1.7 GB. Every event still comes, in order, once.
BOOST_AUTO_TEST_CASE(a_watch_that_fell_behind_comes_back_through_the_hub_missing_nothing) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  cluster::Connection c({.servers = {nats.url()}});
  const std::string id = s.submit(R"({"flow_name": "nobody_runs_it"})");
  // Consumers that read this run's events alone (a watch's own). The
  // gateway's follow every run ("pyoco.ev.>"), and its hub's ordered
  // consumer is made again after a gap, the old one deleted after: counting
  // all of them saw one more now and then on a loaded host.
  const auto consumers = [&] {
    jsConsumerInfoList* list = nullptr;
    BOOST_REQUIRE(js_Consumers(&list, c.handles().js, "PYOCO_EVENTS", nullptr, nullptr) == NATS_OK);
    int n = 0;
    for (int k = 0; k < list->Count; ++k) {
      if (list->List[k]->Config == nullptr) continue;
      const char* filter = list->List[k]->Config->FilterSubject;
      if (filter != nullptr && std::string_view(filter).find(id) != std::string_view::npos) ++n;
    }
    jsConsumerInfoList_Destroy(list);
    return n;
  };
  // Listed: the index knows its first event, so the watch is the hub's.
  BOOST_TEST_REQUIRE(eventually([&] {
    return s.call(http::verb::get, "/runs?limit=10").body.find(id) != std::string::npos;
  }));
  constexpr int kEvents = 15000;  // 15 MB: past the socket's buffers and the watch's 10,000
  Gate published;
  std::atomic<bool> opened{false};
  std::vector<std::uint64_t> ids;
  std::vector<int> numbers;
  auto watch = std::async(std::launch::async, [&] {
    server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
      if (e.event == "snapshot") {
        opened.store(true);
        published.wait(120s);  // reads nothing until every event is stored
        return true;
      }
      ids.push_back(std::stoull(e.id));
      const json::object v = json::parse(e.data).as_object();
      if (const json::value* n = v.if_contains("node")) {
        numbers.push_back(std::stoi(std::string(n->as_string()).substr(1)));
      }
      return v.at("kind").as_string() != "run_end";
    });
  });
  BOOST_TEST_REQUIRE(eventually([&] { return opened.load(); }));
  const int before = consumers();
  BOOST_TEST(before == 0);
  const std::string pad(1000, 'x');
  // Published without waiting for each ack: the stalled stream is cut after
  // 30 s, a sanitizer build included.
  for (int i = 0; i < kEvents; ++i) {
    const std::string body = R"({"kind":"log","run_id":")" + id + R"(","node":"n)" +
                             std::to_string(i) + R"(","message":")" + pad + R"(","seq":)" +
                             std::to_string(i + 1) + R"(,"ts":"2026-12-02T10:00:00Z"})";
    const std::string subject = "pyoco.ev." + id + ".log";
    BOOST_TEST_REQUIRE(js_PublishAsync(c.handles().js, subject.c_str(), body.data(),
                                       static_cast<int>(body.size()), nullptr) == NATS_OK);
  }
  BOOST_TEST_REQUIRE(js_PublishAsyncComplete(c.handles().js, nullptr) == NATS_OK);
  BOOST_TEST_REQUIRE(s.call(http::verb::post, "/runs/" + id + "/cancel").status == 200u);
  // While it reads what it missed, no consumer is made for it.
  std::atomic<bool> reading{true};
  std::atomic<int> most{before};
  std::thread counting([&] {
    while (reading.load()) {
      most.store(std::max(most.load(), consumers()));
      std::this_thread::sleep_for(20ms);
    }
  });
  published.open();
  const bool ended = watch.wait_for(120s) == std::future_status::ready;
  reading.store(false);
  counting.join();
  BOOST_TEST_REQUIRE(ended, "the watch did not end");
  watch.get();
  BOOST_TEST(most.load() == before);
  // It did fall behind (else this would prove nothing), and came back.
  BOOST_TEST(
      s.child->err().find("a watch fell behind; reading what it missed") != std::string::npos,
      s.child->err());
  BOOST_TEST_REQUIRE(numbers.size() == static_cast<std::size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) {
    if (numbers[i] != i) {
      BOOST_TEST(numbers[i] == i, "event " << i);
      break;
    }
  }
  BOOST_TEST(std::is_sorted(ids.begin(), ids.end()));
  BOOST_TEST((std::adjacent_find(ids.begin(), ids.end()) == ids.end()));  // no event twice
}

// Many watches of running runs at once share the gateway's one
// subscription to every run's events: no consumer per watch (nats-server
// makes a connection's consumers one after another, each a scan of the
// stream). Each still gets its run's stored events, then the live ones, in
// order, up to its RunEnd; the same a watch opened afterwards gets.
BOOST_AUTO_TEST_CASE(watches_share_one_subscription_and_miss_nothing) {
  NatsServer nats;
  TempDir flows;
  write_text(flows.path() / "naps.yaml",
             "flow: {graph: a >> b}\ntasks:\n"
             "  a: {use: std/sleep, inputs: {seconds: 2}}\n"
             "  b: {use: std/echo, inputs: {message: awake}}\n");
  Server s({"--nats", nats.url()});
  constexpr int kRuns = 24;
  ChildProcess worker({pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w1",
                       "--slots", std::to_string(kRuns), "--flows", flows.path().string()},
                      {{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  std::vector<std::string> ids;
  for (int i = 0; i < kRuns; ++i) {
    ids.push_back(s.submit(R"({"flow_name": "naps"})"));
  }
  // Listed (the index has seen them): their watches start from the index.
  const auto listed_by = std::chrono::steady_clock::now() + 20s;
  while (json::parse(s.call(http::verb::get, "/runs?limit=100").body).as_array().size() <
             static_cast<std::size_t>(kRuns) &&
         std::chrono::steady_clock::now() < listed_by) {
    std::this_thread::sleep_for(20ms);
  }
  std::mutex m;
  std::map<std::string, std::vector<server::StreamEvent>> seen;
  std::atomic<int> live{0};
  std::vector<std::thread> watches;
  for (const std::string& id : ids) {
    watches.emplace_back([&, id] {
      bool counted = false;
      try {
        server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
          std::lock_guard lock(m);
          seen[id].push_back(e);
          if (!counted && e.event != "snapshot") {
            counted = true;
            ++live;
          }
          return true;
        });
      } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE("watch of " << id << " broke: " << e.what());
      }
    });
  }
  const auto live_by = std::chrono::steady_clock::now() + 20s;
  while (live < kRuns && std::chrono::steady_clock::now() < live_by) {
    std::this_thread::sleep_for(10ms);
  }
  BOOST_TEST(live.load() == kRuns);
  // Every watch open and its runs still sleeping: the consumers of the
  // event stream are the gateway's few, not one per watch.
  {
    cluster::Connection c({.servers = {nats.url()}});
    jsStreamInfo* si = nullptr;
    BOOST_TEST_REQUIRE(js_GetStreamInfo(&si, c.handles().js, "PYOCO_EVENTS", nullptr, nullptr) ==
                       NATS_OK);
    BOOST_TEST_MESSAGE("consumers of PYOCO_EVENTS with "
                       << kRuns << " watches open: " << si->State.Consumers);
    BOOST_TEST(si->State.Consumers < 8);
    jsStreamInfo_Destroy(si);
  }
  for (auto& t : watches) t.join();
  for (const std::string& id : ids) {
    const auto& events = seen[id];
    BOOST_TEST_REQUIRE(events.size() > 2u, id);
    BOOST_TEST(events.front().event == "snapshot");
    BOOST_TEST(events.back().data.find("\"kind\":\"run_end\"") != std::string::npos, id);
    std::vector<std::string> got, again;
    for (std::size_t i = 1; i < events.size(); ++i) got.push_back(events[i].id);
    server::http_stream({s.url}, "/runs/" + id + "/watch", "", [&](const auto& e) {
      if (e.event != "snapshot") again.push_back(e.id);
      return true;
    });
    BOOST_TEST(got == again, boost::test_tools::per_element());
  }
}

// The registry as the gateway shows it: a worker IDLE, then RUNNING with
// its run; hidden and shown again; STOPPED_GRACEFUL after SIGTERM (exit 0,
// busy or idle), DISCONNECTED after kill -9 and the disconnect timeout,
// with no run of its own any more.
BOOST_AUTO_TEST_CASE(workers_are_listed_hidden_and_their_end_shown) {
  NatsServer nats;
  TempDir flows;
  write_text(flows.path() / "sleepy.yaml",
             "flow: {graph: nap}\ntasks:\n  nap: {use: std/sleep, inputs: {seconds: "
             "\"$ctx.params.seconds\"}}\n");
  // 5 s, not 1 s: with beats every 0.2 s, a live worker stalled under a
  // slow host for a second showed DISCONNECTED where RUNNING was checked.
  Server s({"--nats", nats.url()}, {{"PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC", "5"}});
  auto start_worker = [&](const std::string& id) {
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{pyoco_exe().string(), "worker", "--nats", nats.url(),
                                 "--worker-id", id, "--flows", flows.path().string(),
                                 "--progress-interval", "0.2"},
        std::map<std::string, std::string>{{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  };
  auto worker_state = [&](const std::string& id, const std::string& query = "") {
    const auto list = json::parse(s.call(http::verb::get, "/workers" + query).body).as_array();
    for (const auto& w : list) {
      if (w.at("worker_id").as_string() == id) return w.as_object();
    }
    return json::object{};
  };
  auto wait_state = [&](const std::string& id, const std::string& state) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
      const auto w = worker_state(id, "?include_hidden=true");
      if (w.contains("state") && w.at("state").as_string() == state) return w;
      std::this_thread::sleep_for(20ms);
    }
    BOOST_FAIL("worker " << id << " never got to " << state);
    return json::object{};
  };

  auto w1 = start_worker("w1");
  wait_state("w1", "IDLE");
  const std::string run = s.submit(R"({"flow_name": "sleepy", "params": {"seconds": 30}})");
  const auto running = wait_state("w1", "RUNNING");
  BOOST_TEST(running.at("running").as_array().at(0).as_string() == run);
  BOOST_TEST(running.at("slots").as_int64() == 1);

  const ProcessResult table = s.client({"workers"});
  BOOST_TEST(table.exit_code == 0, table.err);
  BOOST_TEST(table.out.find("w1") != std::string::npos, table.out);
  BOOST_TEST(table.out.find("RUNNING") != std::string::npos, table.out);

  BOOST_TEST(s.call(http::verb::patch, "/workers/w1", R"({"hidden": true})").status == 200u);
  BOOST_TEST(worker_state("w1").empty());  // hidden from the default list
  BOOST_TEST(worker_state("w1", "?include_hidden=true").at("hidden").as_bool());
  BOOST_TEST(s.call(http::verb::patch, "/workers/w1", R"({"hidden": false})").status == 200u);
  BOOST_TEST(!worker_state("w1").empty());
  BOOST_TEST(s.call(http::verb::patch, "/workers/nobody", R"({"hidden": true})").status == 404u);
  BOOST_TEST(s.call(http::verb::patch, "/workers/w1", R"({"hidden": "yes"})").status == 422u);
  BOOST_TEST(s.call(http::verb::get, "/workers?state=SLEEPING").status == 422u);
  // Any case, as a run's status in GET /runs.
  const json::value running_lower =
      json::parse(s.call(http::verb::get, "/workers?state=running").body);
  BOOST_TEST(running_lower.as_array().size() == 1u, running_lower);

  s.call(http::verb::post, "/runs/" + run + "/cancel");
  w1->send_signal(SIGTERM);
  const int code = w1->wait(20s);
  BOOST_TEST(code == 0, "exit " << code << ": " << w1->err());
  wait_state("w1", "STOPPED_GRACEFUL");

  // One that never ran a run stops as cleanly (cnats 3.4 crashed it at exit).
  auto w2 = start_worker("w2");
  const auto first = wait_state("w2", "IDLE");
  // A second worker with a running one's id is refused, naming it; the
  // registry keeps the first.
  auto twin = start_worker("w2");
  BOOST_TEST(twin->wait(20s) == 2, twin->out() << twin->err());
  BOOST_TEST(
      twin->err().find("pyoco worker: worker id 'w2' is in use by a running worker "
                       "(instance " +
                       std::string(first.at("instance_id").as_string())) != std::string::npos,
      twin->err());
  BOOST_TEST(twin->err().find("give each worker its own --worker-id") != std::string::npos,
             twin->err());
  BOOST_TEST(worker_state("w2").at("instance_id") == first.at("instance_id"));
  w2->send_signal(SIGTERM);
  const int idle_code = w2->wait(20s);
  BOOST_TEST(idle_code == 0, "exit " << idle_code << ": " << w2->err());
  wait_state("w2", "STOPPED_GRACEFUL");

  // Killed mid-run: once DISCONNECTED its run is no longer listed as its
  // own (it goes to the next worker when its lease runs out).
  auto w3 = start_worker("w3");
  wait_state("w3", "IDLE");
  const std::string lost = s.submit(R"({"flow_name": "sleepy", "params": {"seconds": 30}})");
  const auto taken = wait_state("w3", "RUNNING");
  BOOST_TEST(taken.at("running").as_array().at(0).as_string() == lost);
  w3->send_signal(SIGKILL);
  w3->wait(10s);
  const auto gone = wait_state("w3", "DISCONNECTED");
  BOOST_TEST(gone.at("running").as_array().empty(), gone);
}

// A worker on another host whose clock is behind this one's: its record
// looks 30 s silent, yet it beats. A worker started with its id watches
// the record (no two hosts' clocks compared) and, seeing a beat, is
// refused; it used to take the id at once, and the other stopped.
BOOST_AUTO_TEST_CASE(a_live_worker_whose_clock_is_behind_keeps_its_id) {
  NatsServer nats;
  TempDir flows;
  Server s({"--nats", nats.url()});  // the buckets
  cluster::Connection c({.servers = {nats.url()}});
  std::atomic<bool> beating{true};
  std::thread elsewhere([&] {
    while (beating) {
      const double behind = cluster::epoch_now() - 30;
      cluster::put_worker_record(c, json::object{{"worker_id", "w7"},
                                                 {"instance_id", "far-away-1"},
                                                 {"host", "far-away"},
                                                 {"pid", 4242},
                                                 {"state", "IDLE"},
                                                 {"progress_interval_s", 1.0},
                                                 {"last_seen_at", behind},
                                                 {"updated_at", behind},
                                                 {"started_at", behind - 60}});
      std::this_thread::sleep_for(500ms);
    }
  });
  ChildProcess w({pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w7",
                  "--flows", flows.path().string()},
                 {{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  const int code = w.wait(40s);
  beating = false;
  elsewhere.join();
  BOOST_TEST(code == 2, w.err());
  BOOST_TEST(w.err().find("pyoco worker: worker id 'w7' is in use by a running worker (instance "
                          "far-away-1, on far-away, pid 4242, which wrote its record while this "
                          "one watched)") != std::string::npos,
             w.err());
}

// A flow `pyoco run` runs may have a name a cluster run cannot have ("my
// flow"): submitted as YAML, it was refused with a message about files in
// the workers' --flows directory. Now it says to name the run.
BOOST_AUTO_TEST_CASE(a_yaml_flow_whose_name_cannot_name_a_run_says_to_give_one) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  TempDir dir;
  write_text(dir.path() / "space.yaml",
             "flow: {name: \"my flow\", graph: a}\ntasks:\n  a: {use: std/echo}\n");
  const ProcessResult refused = s.client({"submit-yaml", (dir.path() / "space.yaml").string()});
  BOOST_TEST(refused.exit_code == 2, refused.err);
  BOOST_TEST(refused.err.find("the flow's name \"my flow\" cannot name a cluster run (1 to 128 "
                              "letters, digits, '-', '_' and '.', not first): give the run a "
                              "flow_name field (`pyoco client submit-yaml --flow-name NAME`)") !=
                 std::string::npos,
             refused.err);
  const ProcessResult named =
      s.client({"submit-yaml", (dir.path() / "space.yaml").string(), "--flow-name", "my_flow"});
  BOOST_TEST(named.exit_code == 0, named.err);
}

// A run id goes into the request's path: "../../x" reached another route
// ("no route /runs/../../x"), "a?b" would have been a query. The client
// refuses what no run is named, before asking the gateway.
BOOST_AUTO_TEST_CASE(client_commands_refuse_a_run_id_no_run_has) {
  for (const std::string cmd : {"get", "logs", "watch", "cancel"}) {
    for (const std::string id : {"../../x", "a?b", "a#b", "a/b"}) {
      const ProcessResult r = run_pyoco({"client", cmd, id, "--server", "http://127.0.0.1:1"});
      BOOST_TEST(r.exit_code == 2, cmd << " " << id << ": " << r.err);
      BOOST_TEST(r.err.find("run id '" + id + "' is not allowed") != std::string::npos, r.err);
    }
  }
}

// NATS drops a worker's record 120 s after its last write, without a
// delete a watch would hear: a gateway listed such a worker (and counted
// it DISCONNECTED in pyoco_workers) for as long as the gateway ran.
BOOST_AUTO_TEST_CASE(a_worker_record_past_the_buckets_age_is_no_longer_listed) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  cluster::Connection c({.servers = {nats.url()}});
  const double now = cluster::epoch_now();
  for (const auto& [id, seen] : {std::pair{"silent", now - 60}, std::pair{"expired", now - 200}}) {
    cluster::put_worker_record(c, json::object{{"worker_id", id},
                                               {"instance_id", std::string("i-") + id},
                                               {"host", "elsewhere"},
                                               {"pid", 4242},
                                               {"state", "RUNNING"},
                                               {"last_seen_at", seen},
                                               {"updated_at", seen},
                                               {"started_at", seen - 60}});
  }
  std::string listed;
  BOOST_TEST_REQUIRE(eventually([&] {
    listed = s.call(http::verb::get, "/workers").body;
    return listed.find("\"silent\"") != std::string::npos;
  }));
  BOOST_TEST(listed.find("\"expired\"") == std::string::npos, listed);
  const std::string metrics = s.call(http::verb::get, "/metrics").body;
  BOOST_TEST(metrics.find("pyoco_workers{state=\"DISCONNECTED\"} 1\n") != std::string::npos,
             metrics);
}

// A worker waiting for an id another host's live worker holds (up to 30 min
// for a worker that beats every 10 min) stops at once on Ctrl+C, saying
// why; it used to ignore it until the watch ended.
BOOST_AUTO_TEST_CASE(a_worker_waiting_for_a_held_id_stops_on_ctrl_c) {
  NatsServer nats;
  TempDir flows;
  Server s({"--nats", nats.url()});  // the buckets
  cluster::Connection c({.servers = {nats.url()}});
  // Its beat just now; the next is not due for 10 min: the watch waits.
  const double now = cluster::epoch_now();
  cluster::put_worker_record(c, json::object{{"worker_id", "w8"},
                                             {"instance_id", "far-away-2"},
                                             {"host", "far-away"},
                                             {"pid", 4343},
                                             {"state", "IDLE"},
                                             {"progress_interval_s", 600.0},
                                             {"last_seen_at", now},
                                             {"updated_at", now},
                                             {"started_at", now - 60}});
  ChildProcess w({pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w8",
                  "--flows", flows.path().string()},
                 {{"PYOCO_PLUGIN_PATH", ""}, {"PYOCO_LOG_LEVEL", "warning"}}, flows.path());
  // Said once, at a warning (so with the log kept at warnings), and for how long.
  BOOST_TEST_REQUIRE(
      eventually([&] { return w.err().find("waiting up to 1800 s") != std::string::npos; }),
      w.err());
  w.send_signal(SIGINT);
  const int code = w.wait(5s);
  BOOST_TEST(code == 130, "exit " << code << ": " << w.err());
  BOOST_TEST(w.err().find("pyoco worker: stopped while waiting for worker id 'w8', held by "
                          "instance far-away-2, on far-away, pid 4343: this worker did not "
                          "start") != std::string::npos,
             w.err());
  const std::string err = w.err();
  const auto first = err.find("waiting up to");
  BOOST_TEST(err.find("waiting up to", first + 1) == std::string::npos, err);
  BOOST_TEST(err.find(": pulling ") == std::string::npos, err);
}

// A worker killed on this host gives its name back at once: started again
// right away (its record a moment old, well within the 15 s a worker
// elsewhere would have to be silent), it is not refused.
BOOST_AUTO_TEST_CASE(a_worker_killed_here_gives_its_id_back_at_once) {
  NatsServer nats;
  TempDir flows;
  Server s({"--nats", nats.url()});
  auto start_worker = [&] {
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{pyoco_exe().string(), "worker", "--nats", nats.url(),
                                 "--worker-id", "w9", "--flows", flows.path().string(),
                                 "--progress-interval", "0.2"},
        std::map<std::string, std::string>{{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  };
  auto instance_of_w9 = [&] {
    const json::value list = json::parse(s.call(http::verb::get, "/workers").body);
    for (const auto& w : list.as_array()) {
      if (w.at("worker_id").as_string() == "w9")
        return std::string(w.at("instance_id").as_string());
    }
    return std::string();
  };
  auto first = start_worker();
  std::string killed;
  BOOST_TEST_REQUIRE(eventually([&] { return !(killed = instance_of_w9()).empty(); }));
  first->send_signal(SIGKILL);
  first->wait(10s);
  auto again = start_worker();
  BOOST_TEST(eventually([&] { return again->err().find(": pulling ") != std::string::npos; }),
             again->err());
  BOOST_TEST(eventually([&] { return instance_of_w9() != killed; }));
  BOOST_TEST(!process_gone(again->pid()), again->err());
}

// GET /runs from the gateway's index: newest first, filters, pages that
// neither skip nor repeat, and the same runs after a restart from its file.
BOOST_AUTO_TEST_CASE(runs_are_listed_from_the_index) {
  NatsServer nats;
  TempDir state;
  const std::string index = (state.path() / "runs.db").string();
  std::vector<std::string> ids;
  {
    Server s({"--nats", nats.url(), "--index", index});
    for (int i = 0; i < 5; ++i) {
      ids.push_back(
          s.submit(R"({"flow_name": ")" + std::string(i % 2 == 0 ? "even" : "odd") + R"("})"));
    }
    s.call(http::verb::post, "/runs/" + ids[0] + "/cancel");  // pending: CANCELLED at once
    auto listed = [&](const std::string& query) {
      return json::parse(s.call(http::verb::get, "/runs" + query).body);
    };
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (listed("").as_array().size() < 5 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(20ms);
    }
    BOOST_TEST_REQUIRE(listed("").as_array().size() == 5u);
    while (listed("?status=CANCELLED").as_array().empty() &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(20ms);
    }
    const auto all = listed("").as_array();  // after the cancel: nothing changes any more
    const auto cancelled = listed("?status=CANCELLED").as_array();
    BOOST_TEST_REQUIRE(cancelled.size() == 1u);
    BOOST_TEST(cancelled[0].at("run_id").as_string() == ids[0]);
    BOOST_TEST(all[0].at("run_id").as_string() == ids[0]);  // its cancel is the newest update
    BOOST_TEST(listed("?flow=odd").as_array().size() == 2u);
    BOOST_TEST(listed("?status=PENDING&flow=even").as_array().size() == 2u);
    BOOST_TEST(listed("?status=cancelled").as_array().size() == 1u);  // any case
    // A misspelt status or a number that is not one is refused, not an empty list.
    for (const char* bad : {"?status=CANCELED", "?limit=5abc", "?limit=0", "?limit=201",
                            "?updated_after=nan", "?updated_after=1x"}) {
      const server::ClientResponse r = s.call(http::verb::get, std::string("/runs") + bad);
      BOOST_TEST(r.status == 422u, bad << " " << r.body);
    }

    // Pages of 2: every run once, while the list stays as it is (a list
    // that changes between pages may repeat or skip a run, as any cursor
    // does: then the pages are read again, and the lists are shown).
    std::vector<std::string> paged, expected;
    std::string before, after;
    for (int attempt = 0; attempt < 3; ++attempt) {
      before = json::serialize(listed(""));
      paged.clear();
      std::string cursor;
      for (int page = 0; page < 5; ++page) {
        const auto p =
            listed("?limit=2&updated_after=1" + (cursor.empty() ? "" : "&cursor=" + cursor));
        for (const auto& r : p.at("items").as_array()) {
          paged.emplace_back(r.at("run_id").as_string());
        }
        if (p.at("next_cursor").is_null()) break;
        cursor = std::string(p.at("next_cursor").as_string());
      }
      after = json::serialize(listed(""));
      if (before == after) break;
    }
    const json::value final_list = json::parse(after);
    for (const auto& r : final_list.as_array()) expected.emplace_back(r.at("run_id").as_string());
    BOOST_TEST(before == after, "the list kept changing:\n" << before << "\n" << after);
    BOOST_TEST(paged == expected, boost::test_tools::per_element());
    BOOST_TEST(all.size() == expected.size());
    BOOST_TEST(s.call(http::verb::get, "/runs?limit=500").status == 422u);
    BOOST_TEST(s.call(http::verb::get, "/runs?cursor=nonsense").status == 422u);

    const ProcessResult table = s.client({"list", "--flow", "odd"});
    BOOST_TEST(table.exit_code == 0, table.err);
    BOOST_TEST(table.out.find(ids[1]) != std::string::npos, table.out);
    BOOST_TEST(table.out.find(ids[2]) == std::string::npos, table.out);
  }
  // A new gateway on the same index file lists the same runs at once.
  Server again({"--nats", nats.url(), "--index", index});
  BOOST_TEST(json::parse(again.call(http::verb::get, "/runs").body).as_array().size() == 5u);
}

// An index file an older gateway wrote (no tenants: user_version 0) is
// dropped and rebuilt from the event stream, not refused or half used.
BOOST_AUTO_TEST_CASE(an_index_of_an_older_layout_is_rebuilt) {
  NatsServer nats;
  TempDir state;
  const std::string index = (state.path() / "runs.db").string();
  std::vector<std::string> ids;
  {
    Server s({"--nats", nats.url()});
    for (int i = 0; i < 2; ++i) {
      ids.emplace_back(json::parse(s.call(http::verb::post, "/runs", R"({"flow_name":"x"})").body)
                           .at("run_id")
                           .as_string());
    }
  }
  sqlite3* db = nullptr;
  BOOST_REQUIRE(sqlite3_open(index.c_str(), &db) == SQLITE_OK);
  BOOST_REQUIRE(sqlite3_exec(db,
                             "CREATE TABLE runs (run_id TEXT PRIMARY KEY, flow_name TEXT, tag "
                             "TEXT, status TEXT, submitted_at REAL, start_time REAL, end_time "
                             "REAL, updated_at REAL, error TEXT);"
                             "CREATE TABLE applied (one INTEGER PRIMARY KEY CHECK (one = 1), seq "
                             "INTEGER); INSERT INTO applied VALUES (1, 999999);"
                             "INSERT INTO runs VALUES ('stale', 'x', 'default', 'PENDING', 1, "
                             "NULL, NULL, 1, NULL);",
                             nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  Server again({"--nats", nats.url(), "--index", index});
  std::string listed;
  const auto until = std::chrono::steady_clock::now() + 20s;
  do {
    listed = again.call(http::verb::get, "/runs").body;
    if (json::parse(listed).as_array().size() == 2u) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < until);
  BOOST_TEST(json::parse(listed).as_array().size() == 2u, listed);
  for (const std::string& id : ids) BOOST_TEST(listed.find(id) != std::string::npos);
  BOOST_TEST(listed.find("stale") == std::string::npos);
}

// A run's logs come a page at a time, however much it logged: at most
// `limit` lines and about 4 MB a page, `more` until the last; `tail` the
// last lines that fit; the client reads every page. Its record (one NATS
// message) shows 2,000 of its tasks and counts them all.
BOOST_AUTO_TEST_CASE(a_large_run_has_a_bounded_record_and_its_logs_come_a_page_at_a_time) {
  NatsServer nats;
  TempDir flows;
  write_text(flows.path() / "chatty.yaml",
             "flow:\n"
             "  defaults: {items: [1], line: x}\n"
             "  graph: \"foreach(over={{items}}, item=it, parallel=8) { say }\"\n"
             "tasks:\n"
             "  say: {use: std/echo, inputs: {value: 1, message: \"$ctx.params.line\"}}\n");
  write_text(flows.path() / "chatty_then_fails.yaml",
             "flow:\n"
             "  defaults: {items: [1]}\n"
             "  graph: \"foreach(over={{items}}, item=it, parallel=8) { say } >> broken\"\n"
             "tasks:\n"
             "  say: {use: std/echo, inputs: {value: 1}}\n"
             "  broken: {use: std/fail}\n");
  Server s({"--nats", nats.url(), "--with-worker", "--flows", flows.path().string()});
  auto run_with = [&](int lines, const std::string& line) {
    json::array items;
    for (int i = 0; i < lines; ++i) items.push_back(i);
    const std::string id = s.submit(json::serialize(json::object{
        {"flow_name", "chatty"}, {"params", json::object{{"items", items}, {"line", line}}}}));
    // 2,500 tasks on one worker: minutes under the sanitizers.
    const ProcessResult w = s.client({"watch", id, "--until-terminal"}, 300s);
    BOOST_REQUIRE_MESSAGE(w.exit_code == 0, w.err);
    return id;
  };
  auto page = [&](const std::string& id, const std::string& query) {
    const server::ClientResponse r = s.call(http::verb::get, "/runs/" + id + "/logs?" + query);
    BOOST_REQUIRE_MESSAGE(r.status == 200u, r.status << " " << r.body);
    return json::parse(r.body).as_object();
  };
  // Every page from the first: the ids of all lines, each page's size.
  auto all_pages = [&](const std::string& id, std::vector<std::size_t>& sizes) {
    std::vector<std::uint64_t> ids;
    std::uint64_t after = 0;
    for (bool more = true; more;) {
      const json::object p = page(id, "after=" + std::to_string(after));
      sizes.push_back(p.at("items").as_array().size());
      for (const json::value& line : p.at("items").as_array()) {
        ids.push_back(line.at("id").to_number<std::uint64_t>());
      }
      after = p.at("next_after").to_number<std::uint64_t>();
      more = p.at("more").as_bool();
      BOOST_REQUIRE(sizes.size() < 100);
    }
    return ids;
  };

  const std::string many = run_with(2500, "chat");
  const json::value tasks = json::parse(s.call(http::verb::get, "/runs/" + many + "/tasks").body);
  BOOST_TEST(tasks.at("status") == "COMPLETED");
  BOOST_TEST(tasks.at("tasks").as_object().size() == 2000u);
  BOOST_TEST(tasks.at("task_counts") == (json::object{{"SUCCEEDED", 2501}}), tasks);
  BOOST_TEST(tasks.at("tasks_omitted") == 501, tasks);
  // What did not succeed is shown first: the failed task after 2,100 that did.
  json::array items;
  for (int i = 0; i < 2100; ++i) items.push_back(i);
  const std::string failed = s.submit(json::serialize(json::object{
      {"flow_name", "chatty_then_fails"}, {"params", json::object{{"items", items}}}}));
  BOOST_TEST(s.client({"watch", failed, "--until-terminal"}, 300s).exit_code == 1);
  const json::value shown = json::parse(s.call(http::verb::get, "/runs/" + failed + "/tasks").body);
  BOOST_TEST(shown.at("tasks").at("broken") == "FAILED", shown.at("tasks_omitted"));
  BOOST_TEST(shown.at("task_counts") == (json::object{{"SUCCEEDED", 2101}, {"FAILED", 1}}));
  std::vector<std::size_t> sizes;
  const std::vector<std::uint64_t> ids = all_pages(many, sizes);
  BOOST_TEST(ids.size() == 2500u);
  BOOST_TEST(std::is_sorted(ids.begin(), ids.end()));
  BOOST_TEST((std::adjacent_find(ids.begin(), ids.end()) == ids.end()));
  BOOST_TEST(sizes == (std::vector<std::size_t>{1000, 1000, 500}),
             boost::test_tools::per_element());
  BOOST_TEST(page(many, "limit=10000").at("items").as_array().size() == 2500u);
  BOOST_TEST(page(many, "limit=10000").at("more").as_bool() == false);
  BOOST_TEST(page(many, "tail=3").at("truncated") == false);
  const json::array last3 = page(many, "tail=3").at("items").as_array();
  BOOST_REQUIRE(last3.size() == 3u);
  BOOST_TEST(last3.at(2).at("id").to_number<std::uint64_t>() == ids.back());
  BOOST_TEST(last3.at(0).at("id").to_number<std::uint64_t>() == ids.at(ids.size() - 3));
  // A tail is read backwards from the run's last line, in growing windows:
  // a long one, and one of a task that logged early, come out whole.
  const json::array last1500 = page(many, "tail=1500").at("items").as_array();
  BOOST_REQUIRE(last1500.size() == 1500u);
  for (std::size_t k = 0; k < last1500.size(); ++k) {
    BOOST_TEST(last1500[k].at("id").to_number<std::uint64_t>() == ids.at(1000 + k));
  }
  const json::array early = page(many, "tail=2&task=say%5B7%5D").at("items").as_array();
  BOOST_TEST_REQUIRE(early.size() == 1u);
  BOOST_TEST(early.at(0).at("node") == "say[7]");
  BOOST_TEST(
      page(many, "tail=5&after=" + std::to_string(ids.back())).at("items").as_array().empty());
  for (const char* bad : {"tail=10001", "limit=0", "limit=10001", "limit=x"}) {
    BOOST_TEST(s.call(http::verb::get, "/runs/" + many + "/logs?" + bad).status == 422u, bad);
  }
  // Query values as clients encode them: say%5B7%5D is say[7].
  const json::array seventh = page(many, "task=say%5B7%5D").at("items").as_array();
  BOOST_TEST_REQUIRE(seventh.size() == 1u);
  BOOST_TEST(seventh.at(0).at("node") == "say[7]");
  // A task's log line is shown, never played, on the reader's terminal.
  const std::string escapes = run_with(1, "\x1b]0;pwned\x07 one\ntwo");
  const ProcessResult played = s.client({"logs", escapes});
  BOOST_TEST(played.out == "[say[0]] \\x1b]0;pwned\\x07 one\\ntwo\n", played.out);
  const ProcessResult printed = s.client({"logs", many});
  BOOST_TEST(printed.exit_code == 0, printed.err);
  BOOST_TEST(std::count(printed.out.begin(), printed.out.end(), '\n') == 2500);

  // 100 lines of 60 KB (a line is at most 64 KiB): a page stops at about
  // 4 MB, and so does a tail.
  const std::string big = run_with(100, std::string(60000, 'x'));
  sizes.clear();
  BOOST_TEST(all_pages(big, sizes).size() == 100u);
  BOOST_REQUIRE(sizes.size() >= 2u);
  BOOST_TEST(sizes.front() >= 58u);
  BOOST_TEST(sizes.front() <= 75u);
  BOOST_TEST(page(big, "tail=100").at("truncated") == true);  // fewer than 100 fit
  const json::array tail = page(big, "tail=100").at("items").as_array();
  BOOST_TEST(tail.size() >= 58u);
  BOOST_TEST(tail.size() <= 75u);
}

#include <sys/socket.h>
#include <unistd.h>

#include "ports.hpp"

// What a submit must not guess at is refused naming it: a flow name of the
// wrong type, an Idempotency-Key sent twice, a multipart field sent twice.
// A submit NATS cut short says how to check on the run without a key, with
// its id as a field and Retry-After.
BOOST_AUTO_TEST_CASE(ambiguous_submits_are_refused_and_a_cut_short_one_names_its_run) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  auto error_of = [](const server::ClientResponse& r) {
    return std::string(json::parse(r.body).at("detail").as_string());
  };
  const auto number = s.call(http::verb::post, "/runs", R"({"flow_name": 5})");
  BOOST_TEST(number.status == 422u);
  BOOST_TEST(error_of(number).find("flow_name: must be a string") == 0u, number.body);

  // Two Idempotency-Key headers: which one counts is not the gateway's to guess.
  const int port = std::stoi(s.url.substr(s.url.rfind(':') + 1));
  const int fd = connect_loopback(port);
  BOOST_TEST_REQUIRE(fd >= 0);
  timeval limit{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  const std::string body = R"({"flow_name": "hello"})";
  const std::string twice =
      "POST /runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
      "application/json\r\nIdempotency-Key: k2\r\nIdempotency-Key: k3\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  BOOST_TEST_REQUIRE(::send(fd, twice.data(), twice.size(), MSG_NOSIGNAL) ==
                     static_cast<ssize_t>(twice.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  BOOST_TEST(answer.rfind("HTTP/1.1 400 ", 0) == 0u, answer);
  BOOST_TEST(answer.find("Idempotency-Key is sent more than once") != std::string::npos, answer);

  const std::string flow = read_text(source_dir() / "examples/hello/flow.yaml");
  auto part = [](const std::string& name, const std::string& text) {
    return "--b0undary\r\nContent-Disposition: form-data; name=\"" + name +
           "\"; filename=\"f.yaml\"\r\n\r\n" + text + "\r\n";
  };
  const auto two_flows =
      server::http_call(s.url, http::verb::post, "/runs/yaml",
                        part("workflow", flow) + part("workflow", flow) + "--b0undary--\r\n",
                        "multipart/form-data; boundary=b0undary");
  BOOST_TEST(two_flows.status == 400u, two_flows.body);
  BOOST_TEST(error_of(two_flows).find("workflow") != std::string::npos, two_flows.body);
  BOOST_TEST(error_of(two_flows).find("sent twice") != std::string::npos, two_flows.body);

  s.submit(R"({"flow_name": "hello"})");  // its tag known: the next gets as far as the submit
  nats.kill9();
  const auto cut = s.call(http::verb::post, "/runs", R"({"flow_name": "hello"})");
  BOOST_TEST_REQUIRE(cut.status == 503u, cut.body);
  const json::object refused = json::parse(cut.body).as_object();
  BOOST_TEST(refused.at("error") == "nats_unavailable");
  BOOST_TEST_REQUIRE(refused.contains("run_id"), cut.body);
  const std::string id(refused.at("run_id").as_string());
  BOOST_TEST(error_of(cut).find("GET /runs/" + id) != std::string::npos, cut.body);
  BOOST_TEST(error_of(cut).find("same Idempotency-Key") == std::string::npos, cut.body);
  BOOST_TEST(cut.retry_after == "5", cut.body);
  BOOST_TEST(s.call(http::verb::get, "/runs/" + id).retry_after == "5");
}

// A query parameter a route does not read is refused naming it and the
// ones it reads: a misspelt filter answered every run (an outside tester's
// `GET /runs?state=FAILED`).
BOOST_AUTO_TEST_CASE(a_query_parameter_a_route_does_not_read_is_refused) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  auto detail_of = [&](const std::string& target, unsigned status) {
    const auto r = server::http_call(s.url, http::verb::get, target);
    BOOST_TEST(r.status == status, target << ": " << r.body);
    return status == 200u ? std::string()
                          : std::string(json::parse(r.body).at("detail").as_string());
  };
  BOOST_TEST(detail_of("/runs?state=FAILED", 422u) ==
             "state: not a query parameter of GET /runs (status, flow, tag, updated_after, "
             "cursor, limit, include, workflow_yaml_sha256)");
  BOOST_TEST(detail_of("/runs?status=FAILED&flow_name=x", 422u).starts_with("flow_name: "));
  BOOST_TEST(detail_of("/workers?status=zzz", 422u) ==
             "status: not a query parameter of GET /workers (state, include_hidden, limit, scope)");
  BOOST_TEST(detail_of("/runs/some-run/logs?taks=x", 422u) ==
             "taks: not a query parameter of GET /runs/{id}/logs (task, tail, after, limit)");
  BOOST_TEST(detail_of("/runs/some-run/tasks?status=FAILED", 422u) ==
             "status: not a query parameter of GET /runs/{id}/tasks (it reads none)");
  // Names are read decoded, as values are; what a route reads still works.
  BOOST_TEST(detail_of("/runs?st%61te=x", 422u).starts_with("state: "));
  detail_of("/runs?status=FAILED&limit=1&fl%6Fw=hello", 200u);
  detail_of("/workers?include_hidden=true&state=IDLE", 200u);
  detail_of("/health?probe=1", 200u);
  // What pyoco-server's client sends is taken (and not used).
  detail_of("/runs?include=full&workflow_yaml_sha256=ab", 200u);
  detail_of("/workers?scope=all", 200u);
}

// A field a run does not have is refused naming it: a misspelt "parmas"
// ran without its params, and a params part of a sent flow was dropped
// (an outside tester). A param name no $ctx.params reference can read is
// refused as `pyoco run -p` refuses it, by the client and the gateway.
BOOST_AUTO_TEST_CASE(unknown_fields_and_unreadable_param_names_are_refused) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  auto refused = [&](const std::string& body, const std::string& detail) {
    expect_refused(s, body, detail);
  };
  refused(R"({"flow_name": "hello", "parmas": {"who": "x"}})",
          "parmas: not a field of a run (flow_name, params, tag, tags)");
  refused(R"({"flow_name": "hello", "tgs": ["a"]})",
          "tgs: not a field of a run (flow_name, params, tag, tags)");
  refused(R"({"flow_name": "hello", "params": {"a.b": 1}})",
          "params.a.b: a param name holds no '.' ($ctx.params.a.b reads key 'b' of param 'a')");
  refused(R"({"flow_name": "hello", "params": {"": 1}})",
          "params.\"\": a param name is never empty (no $ctx.params reference reads \"\")");
  // An empty name is said as empty, not as missing; a body that is not
  // JSON says where, and why when it is not even UTF-8 (an outside tester
  // got a bare "syntax error").
  refused(R"({"flow_name": ""})",
          "flow_name: empty; give the name of a flow the workers have (--flows)");
  refused("{\"flow_name\": \"hello\",\n \"params\": {\"who\": }}",
          "the body is not JSON: syntax error at 2:20");
  refused("{\"flow_name\": \"h\xC3\x28llo\"}",
          "the body is not JSON: byte 17 (at 1:17) is not UTF-8; send the body as UTF-8");

  const std::string flow = read_text(source_dir() / "examples/hello/flow.yaml");
  const std::string form = form_of({{"workflow", flow}, {"params", "{\"a\": 1}"}});
  const auto with_params = server::http_call(s.url, http::verb::post, "/runs/yaml", form,
                                             "multipart/form-data; boundary=B");
  BOOST_TEST(with_params.status == 422u, with_params.body);
  BOOST_TEST(
      json::parse(with_params.body)
          .at("detail")
          .as_string()
          .starts_with(
              "params: not a field of a run of a sent flow (workflow, flow_name, tag); such a "
              "run takes its flow's defaults as its params"),
      with_params.body);
  // As a query's names: a misspelt tag ran on the default one.
  const auto query = server::http_call(s.url, http::verb::post, "/runs/yaml?flow_name=q&tga=gpu",
                                       flow, "application/yaml");
  BOOST_TEST(query.status == 422u, query.body);
  BOOST_TEST(json::parse(query.body).at("detail").as_string() ==
                 "tga: not a field of a run of a sent flow (flow_name, tag)",
             query.body);
  // Beside a form, a query parameter would be read by nobody.
  const auto both =
      server::http_call(s.url, http::verb::post, "/runs/yaml?tag=gpu",
                        form_of({{"workflow", flow}}), "multipart/form-data; boundary=B");
  BOOST_TEST(both.status == 422u, both.body);
  BOOST_TEST(json::parse(both.body).at("detail").as_string().starts_with(
                 "tag: a query parameter beside a multipart body; send it as a part"),
             both.body);
  // A part with no name would be dropped without a word; a name= inside a
  // quoted filename is no name.
  const std::string nameless =
      "--B\r\nContent-Disposition: form-data; filename=\"x; name=\\\"tag\\\"\"\r\n\r\n" + flow +
      "\r\n--B--\r\n";
  const auto no_name = server::http_call(s.url, http::verb::post, "/runs/yaml", nameless,
                                         "multipart/form-data; boundary=B");
  BOOST_TEST(no_name.status == 422u, no_name.body);
  BOOST_TEST(json::parse(no_name.body)
                 .at("detail")
                 .as_string()
                 .starts_with("a multipart part has no name"),
             no_name.body);
  // The file is read as the workers read it (YAML), whatever the sender
  // named it; the name is only in the message.
  const std::string toml_named =
      "--B\r\nContent-Disposition: form-data; name=\"workflow\"; "
      "filename=\"flow.toml\"\r\n\r\n" +
      flow + "\r\n--B--\r\n";
  const auto as_yaml = server::http_call(s.url, http::verb::post, "/runs/yaml", toml_named,
                                         "multipart/form-data; boundary=B");
  BOOST_TEST(as_yaml.status == 200u, as_yaml.body);
  refused(R"({"flow_name": "hello", "tags": "gpu"})",
          "tags: a list of strings (pyoco-server's labels; the run goes to \"tag\")");
  // pyoco-server's client sends `tags` (labels): taken, as it was.
  const auto labelled =
      s.call(http::verb::post, "/runs", R"({"flow_name": "hello", "tags": ["nightly"]})");
  BOOST_TEST(labelled.status == 200u, labelled.body);
  const auto no_boundary = server::http_call(s.url, http::verb::post, "/runs/yaml", flow,
                                             "multipart/form-data; boundary=B");
  BOOST_TEST(no_boundary.status == 422u, no_boundary.body);
  BOOST_TEST(json::parse(no_boundary.body).at("detail").as_string() ==
                 "the multipart body holds no part: its boundary (B, from Content-Type) is "
                 "nowhere in it",
             no_boundary.body);

  // The client refuses them before it asks, in the words of `pyoco run -p`.
  const ProcessResult dotted = s.client({"submit", "hello", "--param", "a.b=1"});
  BOOST_TEST(dotted.exit_code == 2, dotted.err);
  BOOST_TEST(dotted.err.find("--param a.b: a param name holds no '.'") != std::string::npos,
             dotted.err);
  const ProcessResult empty = s.client({"submit", "hello", "--params", R"({"": 1})"});
  BOOST_TEST(empty.exit_code == 2, empty.err);
  BOOST_TEST(empty.err.find("--params: \"\": a param name is never empty") != std::string::npos,
             empty.err);
  const ProcessResult bad = s.client({"submit", "hello", "--params", "{bad"});
  BOOST_TEST(bad.exit_code == 2, bad.err);
  BOOST_TEST(bad.err.find("--params:1:2: not JSON") != std::string::npos, bad.err);
}
