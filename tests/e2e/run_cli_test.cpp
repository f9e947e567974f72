// `pyoco run | check | graph` as a user runs them: exit codes, the trace
// (golden, with run id and durations masked), JSON forms, Ctrl+C.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <fstream>
#include <regex>

#include "child.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

fs::path flow(const char* name) { return source_dir() / "tests/e2e/flows" / name; }
fs::path hello() { return source_dir() / "examples/hello/flow.yaml"; }

struct RunFixture {
  TempDir dir;
  ProcessResult pyoco(std::vector<std::string> args) {
    ProcessOptions o;
    o.cwd = dir.path();
    o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "artifacts").string();
    o.unset_env = {"PYOCO_CUTE"};
    return run_pyoco(std::move(args), o);
  }
};

std::string mask(std::string s) {
  s = std::regex_replace(
      s, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
      "<run_id>");
  s = std::regex_replace(s, std::regex("dur_ms=[0-9.]+"), "dur_ms=<ms>");
  s = std::regex_replace(s, std::regex("\\([0-9.]+ ms\\)"), "(<ms> ms)");
  return s;
}

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(run_cli, RunFixture)

BOOST_AUTO_TEST_CASE(hello_plain_trace_is_golden) {
  const ProcessResult r = pyoco({"run", hello().string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(mask(r.out) == R"(INFO pyoco start flow=hello_pyoco run_id=<run_id>
INFO pyoco start node=fetch_data
INFO pyoco log node=fetch_data 🐰 Fetching data...
INFO pyoco end node=fetch_data dur_ms=<ms>
INFO pyoco start node=process_data
INFO pyoco log node=process_data 🥕 Processing: carrot
INFO pyoco end node=process_data dur_ms=<ms>
INFO pyoco start node=save_result
INFO pyoco log node=save_result ✨ Saved: CARROT
INFO pyoco end node=save_result dur_ms=<ms>
INFO pyoco end flow=hello_pyoco status=COMPLETED
)");
}

BOOST_AUTO_TEST_CASE(hello_cute_trace_is_the_seed_readme) {
  const ProcessResult r = pyoco({"run", hello().string(), "--cute"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(mask(r.out) == R"(🐇 pyoco > start flow=hello_pyoco run_id=<run_id>
🏃 start node=fetch_data
🐰 Fetching data...
✅ done node=fetch_data (<ms> ms)
🏃 start node=process_data
🥕 Processing: carrot
✅ done node=process_data (<ms> ms)
🏃 start node=save_result
✨ Saved: CARROT
✅ done node=save_result (<ms> ms)
🥕 done flow=hello_pyoco
)");
}

BOOST_AUTO_TEST_CASE(pyoco_cute_0_and_a_pipe_mean_plain) {
  ProcessOptions o;
  o.env["PYOCO_CUTE"] = "0";
  const ProcessResult r = run_pyoco({"run", hello().string(), "--cute"}, o);
  // --cute wins over the environment; without it PYOCO_CUTE=0 gives plain.
  BOOST_TEST(has(r.out, "🐇 pyoco > start"));
  const ProcessResult plain = run_pyoco({"run", hello().string()}, o);
  BOOST_TEST(has(plain.out, "INFO pyoco start flow=hello_pyoco"));
}

BOOST_AUTO_TEST_CASE(json_trace_is_one_object_per_line) {
  const ProcessResult r = pyoco({"run", flow("chain.yaml").string(), "--trace-format", "json"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  std::vector<std::string> events;
  std::istringstream lines(r.out);
  std::string run_id;
  for (std::string line; std::getline(lines, line);) {
    const json::value v = json::parse(line);
    events.emplace_back(v.at("event").as_string());
    if (run_id.empty()) run_id = std::string(v.at("run_id").as_string());
    BOOST_TEST(v.at("run_id").as_string() == run_id);
    BOOST_TEST(v.at("ts").as_string().size() == 27u);  // 2026-11-22T16:21:39.123456Z
  }
  const std::vector<std::string> expected = {"run_start",  "node_start", "node_done",
                                             "node_start", "log",        "node_done",
                                             "node_start", "node_done",  "run_end"};
  BOOST_TEST(events == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(trace_file_gets_plain_lines_too) {
  const fs::path file = dir.path() / "trace.log";
  const ProcessResult r = pyoco({"run", hello().string(), "--cute", "--trace-file", file.string()});
  BOOST_TEST(r.exit_code == 0);
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  BOOST_TEST(has(text.str(), "INFO pyoco end flow=hello_pyoco status=COMPLETED"), text.str());
  BOOST_TEST(has(r.out, "🥕 done flow=hello_pyoco"));
}

BOOST_AUTO_TEST_CASE(params_override_defaults) {
  const ProcessResult r =
      pyoco({"run", flow("chain.yaml").string(), "--non-cute", "--param", "greeting=[1,2]"});
  BOOST_TEST(r.exit_code == 0, r.err);
  const ProcessResult bad = pyoco({"run", flow("chain.yaml").string(), "--param", "oops"});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(has(bad.err, "--param oops: expected KEY=VALUE"), bad.err);
}

BOOST_AUTO_TEST_CASE(a_failed_run_exits_1_and_names_the_node) {
  const ProcessResult r = pyoco({"run", flow("fails.yaml").string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.out, "ERROR pyoco error node=broken disk on fire (call 1)"), r.out);
  BOOST_TEST(has(r.out, "WARN pyoco cancelled node=never"), r.out);
  BOOST_TEST(has(r.out, "ERROR pyoco end flow=fails status=FAILED failed=broken"), r.out);
}

BOOST_AUTO_TEST_CASE(a_broken_flow_exits_2_with_file_line_and_column) {
  const ProcessResult r = pyoco({"run", flow("broken.yaml").string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "broken.yaml:4:7: a lone '>': use '>>' to chain steps"), r.err);
  BOOST_TEST(r.out.empty());
}

BOOST_AUTO_TEST_CASE(a_flow_that_fails_check_runs_nothing) {
  const ProcessResult r = pyoco({"run", flow("unchecked.yaml").string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "unchecked.yaml:4:3: error: task 'a' uses \"std/nope\""), r.err);
  BOOST_TEST(has(r.err, "nothing ran"));
  BOOST_TEST(r.out.empty());
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_a_usage_error) {
  const ProcessResult r = pyoco({"run", "nope.yaml"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "nope.yaml: no such file"), r.err);
}

BOOST_AUTO_TEST_CASE(toml_flows_and_loops_run) {
  const ProcessResult r = pyoco({"run", flow("loops.toml").string(), "--trace-format", "json"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.out, R"("node":"echo[1]")"), r.out);
  BOOST_TEST(has(r.out, R"("event":"run_end")"));
}

BOOST_AUTO_TEST_CASE(dry_run_prints_the_plan_and_runs_nothing) {
  const ProcessResult r = pyoco({"run", hello().string(), "--dry-run"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == R"(plan for flow hello_pyoco:
  1. fetch_data  hello/fetch_data
  2. process_data  hello/process_data  (after fetch_data)
  3. save_result  hello/save_result  (after process_data)
)");
}

BOOST_AUTO_TEST_CASE(first_ctrl_c_cancels_and_exits_130) {
  ChildProcess p({pyoco_exe().string(), "run", flow("sleepy.yaml").string(), "--non-cute"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=nap"), p.out() << p.err());
  p.send_signal(SIGINT);
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  const std::string out = p.out();
  BOOST_TEST(has(out, "WARN pyoco cancel flow=sleepy"), out);
  BOOST_TEST(has(out, "WARN pyoco cancelled node=after"), out);
  BOOST_TEST(has(out, "WARN pyoco end flow=sleepy status=CANCELLED"), out);
}

BOOST_AUTO_TEST_CASE(first_ctrl_c_ends_the_run_at_once_even_with_a_stubborn_task) {
  // The task ignores SIGTERM; the run does not wait for it, and pyoco stops
  // the command it left before exiting.
  ChildProcess p(
      {pyoco_exe().string(), "run", flow("stubborn.yaml").string(), "--non-cute", "--jobs", "1"},
      {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}}, dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
  std::vector<int> pids;  // the shell and its sleep
  BOOST_TEST_REQUIRE(eventually([&] { return (pids = descendants_of(p.pid())).size() >= 2; }));
  p.send_signal(SIGINT);
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=hold"), p.out());
  BOOST_TEST(has(p.out(), "WARN pyoco end flow=stubborn status=CANCELLED"), p.out());
  for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
}

BOOST_AUTO_TEST_CASE(second_ctrl_c_kills_what_the_tasks_started_and_exits) {
  ChildProcess p({pyoco_exe().string(), "run", flow("stubborn.yaml").string(), "--non-cute"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
  std::vector<int> pids;  // the shell and its sleep
  BOOST_TEST_REQUIRE(eventually([&] { return (pids = descendants_of(p.pid())).size() >= 2; }));
  p.send_signal(SIGINT);
  BOOST_TEST_REQUIRE(p.wait_for_output("WARN pyoco cancel flow=stubborn"), p.out());
  p.send_signal(SIGINT);  // while pyoco still gives the command its grace
  BOOST_TEST(p.wait() == 130);
  BOOST_TEST(has(p.err(), "interrupted again; killed what the tasks started"), p.err());
  for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
}

// ---- with every worker busy (ARCHITECTURE.md §4a) ----------------------------

const std::string kBusyPath = (fixture_dir() / "busy").string();

BOOST_AUTO_TEST_CASE(a_deadline_fires_while_every_worker_is_held) {
  for (const char* jobs : {"1", "2"}) {
    const ProcessResult r = pyoco({"run", flow("saturated_timeout.yaml").string(), "--non-cute",
                                   "--jobs", jobs, "--plugin-path", kBusyPath});
    BOOST_TEST(r.exit_code == 1, jobs << ": " << r.out << r.err);
    // t's 0.1 s deadline ends it long before the holders' 1.5 s ones: it did
    // not wait for a worker to come free.
    const auto t_failed = r.out.find("ERROR pyoco error node=t timed out after 0.1 s");
    const auto hold_failed = r.out.find("ERROR pyoco error node=hold1 timed out after 1.5 s");
    BOOST_TEST_REQUIRE(t_failed != std::string::npos, jobs << ": " << r.out);
    BOOST_TEST_REQUIRE(hold_failed != std::string::npos, jobs << ": " << r.out);
    BOOST_TEST(t_failed < hold_failed, jobs << ": " << r.out);
    BOOST_TEST(has(r.out, "ERROR pyoco error node=hold2 timed out after 1.5 s"), r.out);
    BOOST_TEST(has(r.out, "status=FAILED"), r.out);
  }
}

BOOST_AUTO_TEST_CASE(ctrl_c_cancels_while_every_worker_is_held) {
  for (const char* jobs : {"1", "2"}) {
    ChildProcess p({pyoco_exe().string(), "run", flow("saturated.yaml").string(), "--non-cute",
                    "--jobs", jobs, "--plugin-path", kBusyPath},
                   {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}}, dir.path());
    BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold2"), p.out() << p.err());
    p.send_signal(SIGINT);
    // The holders ignore cancellation for 60 s; the run ends without them.
    BOOST_TEST(p.wait(std::chrono::seconds(15)) == 130, jobs << ": " << p.out() << p.err());
    BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=hold1"), p.out());
    BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=hold2"), p.out());
    BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=after"), p.out());
    BOOST_TEST(has(p.out(), "WARN pyoco end flow=saturated status=CANCELLED"), p.out());
  }
}

BOOST_AUTO_TEST_CASE(run_id_names_the_run_once) {
  const ProcessResult first = pyoco({"run", hello().string(), "--non-cute", "--run-id", "demo-1"});
  BOOST_TEST(first.exit_code == 0, first.err);
  BOOST_TEST(has(first.out, "INFO pyoco start flow=hello_pyoco run_id=demo-1\n"), first.out);
  const ProcessResult again = pyoco({"run", hello().string(), "--non-cute", "--run-id", "demo-1"});
  BOOST_TEST(again.exit_code == 2);
  BOOST_TEST(has(again.err, "--run-id demo-1: the history already has a run with this id"),
             again.err);
  BOOST_TEST(!has(again.out, "start node="), again.out);  // nothing ran
  const ProcessResult bad = pyoco({"run", hello().string(), "--run-id", "../x"});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(has(bad.err, "run id '../x' is not allowed"), bad.err);
}

BOOST_AUTO_TEST_CASE(check_reports_every_problem_with_its_line) {
  const ProcessResult r = pyoco({"check", flow("unchecked.yaml").string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err, "unchecked.yaml:4:3: error: task 'a' uses \"std/nope\""), r.err);
  BOOST_TEST(
      has(r.err, "unchecked.yaml:5:33: error: input 'value': '$node.c.output' names node 'c'"),
      r.err);
  BOOST_TEST(has(r.err, "unchecked.yaml:6:3: warning: task 'lonely' is never used"), r.err);
  BOOST_TEST(has(r.err, "2 errors"), r.err);
}

BOOST_AUTO_TEST_CASE(check_json_for_machines) {
  const ProcessResult r = pyoco({"check", flow("unchecked.yaml").string(), "--json"});
  BOOST_TEST(r.exit_code == 1);
  const json::value v = json::parse(r.out);
  BOOST_TEST(!v.at("ok").as_bool());
  BOOST_TEST(v.at("errors").as_int64() == 2);
  BOOST_TEST(v.at("warnings").as_int64() == 1);
  const auto& first = v.at("diagnostics").at(0);
  BOOST_TEST(first.at("severity").as_string() == "error");
  BOOST_TEST(first.at("line").as_int64() == 4);
  BOOST_TEST(first.at("column").as_int64() == 3);

  const ProcessResult ok = pyoco({"check", hello().string(), "--json", "--dry-run"});
  BOOST_TEST(ok.exit_code == 0);
  const json::value okv = json::parse(ok.out);
  BOOST_TEST(okv.at("ok").as_bool());
  BOOST_TEST(has(std::string(okv.at("plan").as_string()), "2. process_data"));
}

BOOST_AUTO_TEST_CASE(check_of_a_syntax_error_names_line_and_column) {
  const ProcessResult r = pyoco({"check", flow("broken.yaml").string(), "--json"});
  BOOST_TEST(r.exit_code == 1);
  const json::value v = json::parse(r.out);
  BOOST_TEST(v.at("diagnostics").at(0).at("line").as_int64() == 4);
  BOOST_TEST(v.at("diagnostics").at(0).at("column").as_int64() == 7);
}

BOOST_AUTO_TEST_CASE(check_accepts_loop_references_in_a_loop_body) {
  const ProcessResult r = pyoco({"check", flow("loop_refs.yaml").string()});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(!has(r.err, "error"), r.err);
}

BOOST_AUTO_TEST_CASE(run_resolves_loop_references) {
  const ProcessResult r = pyoco({"run", flow("loop_refs.yaml").string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(has(r.out, "INFO pyoco log node=echo[0] x"), r.out);
  BOOST_TEST(has(r.out, "INFO pyoco log node=echo[1] y"), r.out);
  BOOST_TEST(has(r.out, "INFO pyoco end flow=loop_refs status=COMPLETED"), r.out);
}

BOOST_AUTO_TEST_CASE(check_rejects_a_loop_reference_outside_a_loop) {
  const ProcessResult r = pyoco({"check", flow("loop_ref_outside.yaml").string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err,
                 "loop_ref_outside.yaml:6:36: error: input 'message': '$loop.it' is "
                 "outside a loop"),
             r.err);
  const ProcessResult run = pyoco({"run", flow("loop_ref_outside.yaml").string()});
  BOOST_TEST(run.exit_code == 2);
  BOOST_TEST(run.out.empty());
}

BOOST_AUTO_TEST_CASE(a_directory_is_not_a_flow_file) {
  const ProcessResult r = pyoco({"run", dir.path().string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, dir.path().string() +
                            ": is a directory, not a flow file (give a flow.yaml or flow.toml)"),
             r.err);
  BOOST_TEST(!has(r.err, "empty"), r.err);
}

BOOST_AUTO_TEST_CASE(jobs_must_be_a_whole_number_of_at_least_one) {
  for (const char* bad : {"0", "-1", "two", "1.5"}) {
    BOOST_TEST_CONTEXT(bad) {
      const ProcessResult r = pyoco({"run", hello().string(), "--jobs", bad});
      BOOST_TEST(r.exit_code == 2);
      BOOST_TEST(has(r.err, "--jobs: expected a whole number >= 1"), r.err);
      BOOST_TEST(r.err.size() < 200u, r.err);  // no 300-digit bound
      BOOST_TEST(r.out.empty());
    }
  }
  const ProcessResult ok = pyoco({"run", hello().string(), "--jobs", "1", "--non-cute"});
  BOOST_TEST(ok.exit_code == 0, ok.err);
}

BOOST_AUTO_TEST_CASE(a_missing_plugin_path_is_a_warning_not_silence) {
  const fs::path missing = dir.path() / "no-such-plugins";
  const ProcessResult r =
      pyoco({"run", hello().string(), "--non-cute", "--plugin-path", missing.string()});
  BOOST_TEST(r.exit_code == 0, r.err);  // it goes on
  BOOST_TEST(has(r.err, "warning: --plugin-path " + missing.string() + ": no such directory"),
             r.err);
  BOOST_TEST(has(r.out, "status=COMPLETED"), r.out);
  const ProcessResult c = pyoco({"check", hello().string(), "--plugin-path", missing.string()});
  BOOST_TEST(c.exit_code == 0, c.err);
  BOOST_TEST(has(c.err, "no such directory"), c.err);
}

BOOST_AUTO_TEST_CASE(json_trace_durations_are_plain_decimals) {
  const ProcessResult r = pyoco({"run", flow("chain.yaml").string(), "--trace-format", "json"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  std::istringstream lines(r.out);
  int done = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!has(line, "\"node_done\"")) continue;
    ++done;
    BOOST_TEST(std::regex_search(line, std::regex(R"("duration_ms":[0-9]+(\.[0-9]{1,3})?[,}])")),
               line);
    BOOST_TEST(!std::regex_search(line, std::regex(R"("duration_ms":[^,}]*[eE])")), line);
    BOOST_TEST(json::parse(line).at("duration_ms").is_number());
  }
  BOOST_TEST(done == 3);
}

BOOST_AUTO_TEST_CASE(graph_prints_dot_and_mermaid) {
  const ProcessResult dot = pyoco({"graph", hello().string()});
  BOOST_TEST(dot.exit_code == 0);
  BOOST_TEST(dot.out == R"(digraph "hello_pyoco" {
  rankdir=LR;
  node [shape=box];
  "fetch_data" [label="fetch_data\nhello/fetch_data"];
  "process_data" [label="process_data\nhello/process_data"];
  "fetch_data" -> "process_data";
  "save_result" [label="save_result\nhello/save_result"];
  "process_data" -> "save_result";
}
)");
  const ProcessResult mermaid = pyoco({"graph", hello().string(), "--format", "mermaid"});
  BOOST_TEST(mermaid.out == R"(flowchart LR
  fetch_data["fetch_data<br/>hello/fetch_data"]
  process_data["process_data<br/>hello/process_data"]
  fetch_data --> process_data
  save_result["save_result<br/>hello/save_result"]
  process_data --> save_result
)");
}

BOOST_AUTO_TEST_SUITE_END()
