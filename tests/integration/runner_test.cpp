// The runner library as an embedding program uses it: a flow file and its
// params loaded and checked, a run wired to a trace, a history in a SQLite
// file and an artifact directory, and the run read back from the history
// as the JSON the CLI prints with --json.
#include <pyoco/engine/engine.hpp>
#include <pyoco/runner/json_views.hpp>
#include <pyoco/runner/loaded_flow.hpp>
#include <pyoco/runner/local_run.hpp>
#include <pyoco/runner/run_history.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>

#include "flows.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco;
using pyoco::testing::TempDir;

namespace {

fs::path flow_file(const char* name) {
  return pyoco::testing::source_dir() / "tests/e2e/flows" / name;
}

std::string str(const json::value& v) { return std::string(v.as_string()); }

struct RunnerFixture {
  Engine engine{EngineOptions{2, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  TempDir dir;
  fs::path history_file = dir.path() / "state.db";

  runner::RunSetup setup(const std::string& run_id) {
    runner::RunSetup s;
    s.run_id = run_id;
    s.artifact_dir = dir.path() / "artifacts";
    s.history = runner::open_run_history(history_file);
    return s;
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(runner_library, RunnerFixture)

BOOST_AUTO_TEST_CASE(a_flow_file_runs_and_its_history_reads_back_as_json) {
  const runner::LoadedFlow flow = runner::load_flow(flow_file("artifacts.yaml"));
  BOOST_TEST(runner::check_before_run(flow, *engine.catalog()).empty());

  auto trace = std::make_shared<std::ostringstream>();
  runner::RunSetup s = setup("report-1");
  s.console = trace;
  s.trace_file = dir.path() / "trace.log";
  runner::LocalRun local(flow, std::move(s));
  Run run = local.start(engine);
  local.wait();
  BOOST_TEST(local.finish() == "");
  BOOST_TEST_REQUIRE(core::to_string(run.status()) == "COMPLETED");
  BOOST_TEST(trace->str().find("INFO pyoco end flow=report status=COMPLETED") != std::string::npos,
             trace->str());
  BOOST_TEST(pyoco::testing::read_text(dir.path() / "trace.log") == trace->str());

  // Read back as another program would: a history of its own on the file.
  const auto history = runner::open_run_history(history_file);
  const auto record = history->run("report-1");
  BOOST_TEST_REQUIRE(record.has_value());
  const auto tasks = history->tasks("report-1");
  const json::object view = runner::to_json(*record, tasks, history->outputs("report-1"));
  // `runs show --json` writes it a task at a time: the same text.
  std::ostringstream streamed;
  runner::write_json(streamed, *record, tasks, history->outputs("report-1"));
  BOOST_TEST(streamed.str() == core::to_json_text(core::from_json(view)));
  BOOST_TEST(str(view.at("run_id")) == "report-1");
  BOOST_TEST(str(view.at("flow")) == "report");
  BOOST_TEST(str(view.at("flow_file")) == flow_file("artifacts.yaml").string());
  BOOST_TEST(str(view.at("status")) == "COMPLETED");
  BOOST_TEST(str(view.at("reason")) == "");
  BOOST_TEST(view.at("ended").is_string());
  BOOST_TEST(view.at("duration_ms").is_number());

  const json::array& ts = view.at("tasks").as_array();
  BOOST_TEST_REQUIRE(ts.size() == 2u);
  BOOST_TEST(str(ts[0].at("node")) == "greet");
  BOOST_TEST(str(ts[0].at("task")) == "std/echo");
  BOOST_TEST(str(ts[0].at("state")) == "SUCCEEDED");
  // The whole output, as JSON, and the summary the table shows.
  BOOST_TEST(json::serialize(ts[0].at("output")) == R"({"carrots":3})");
  BOOST_TEST(str(ts[0].at("output_summary")) == R"({"carrots":3})");
  BOOST_TEST(ts[0].at("artifacts").as_array().empty());
  BOOST_TEST(str(ts[1].at("node")) == "save");
  BOOST_TEST(str(ts[1].at("task")) == "std/write_file");
  BOOST_TEST(str(ts[1].at("state")) == "SUCCEEDED");
  BOOST_TEST(ts[1].at("attempts").to_number<int>() == 1);

  const json::array& saved = ts[1].at("artifacts").as_array();
  BOOST_TEST_REQUIRE(saved.size() == 1u);
  const fs::path path = dir.path() / "artifacts/report-1/report.json";
  BOOST_TEST(str(saved[0].at("name")) == "report.json");
  BOOST_TEST(str(saved[0].at("path")) == path.string());
  BOOST_TEST(saved[0].at("size").to_number<std::int64_t>() == 13);
  BOOST_TEST(str(saved[0].at("sha256")) ==
             "51bfd91c62fd6b405638f59678091993eec61b903fffbf611ff60288de253f5c");
  BOOST_TEST(pyoco::testing::read_text(path) == R"({"carrots":3})");
  // The history's view of the task is the engine's own.
  BOOST_TEST(runner::to_json(run.tasks()[1]).at("artifacts") == ts[1].at("artifacts"));

  const json::array all = runner::artifacts_json(tasks);
  BOOST_TEST_REQUIRE(all.size() == 1u);
  BOOST_TEST(str(all[0].at("node")) == "save");
  BOOST_TEST(str(all[0].at("sha256")) == str(saved[0].at("sha256")));
}

BOOST_AUTO_TEST_CASE(params_come_from_a_file_and_assignments_over_the_defaults) {
  std::ofstream(dir.path() / "params.yaml") << "{greeting: hello, extra: [1, 2]}\n";
  const runner::LoadedFlow flow = runner::load_flow(
      flow_file("chain.yaml"),
      {.file = dir.path() / "params.yaml", .assignments = {"greeting=bonjour", "n=3"}});
  BOOST_TEST(core::to_json(flow.params) ==
             json::parse(R"({"greeting":"bonjour","extra":[1,2],"n":3})"));
  BOOST_TEST(runner::check_before_run(flow, *engine.catalog()).empty());

  runner::LocalRun local(flow, {});  // no trace, no history
  Run run = local.start(engine);
  local.wait();
  BOOST_TEST(local.finish() == "");
  BOOST_TEST(core::to_string(run.status()) == "COMPLETED");
  BOOST_TEST(core::to_json_text(run.output("first")) == R"("bonjour")");

  try {
    runner::load_flow(flow_file("chain.yaml"), {.assignments = {"oops"}});
    BOOST_FAIL("a param without = was taken");
  } catch (const runner::SetupError& e) {
    BOOST_TEST((e.setting() == runner::SetupError::Setting::Param));
    BOOST_TEST(e.detail() == "oops: expected KEY=VALUE");
    BOOST_TEST(std::string(e.what()) == "param oops: expected KEY=VALUE");
  }
  BOOST_CHECK_THROW(runner::load_flow(flow_file("chain.yaml"), {.file = dir.path() / "none.json"}),
                    runner::SetupError);
  BOOST_CHECK_THROW(runner::load_flow(dir.path() / "none.yaml"), core::FlowError);
}

BOOST_AUTO_TEST_CASE(a_flow_with_errors_is_stopped_before_it_runs) {
  const runner::LoadedFlow flow = runner::load_flow(flow_file("unchecked.yaml"));
  const auto errors = runner::check_before_run(flow, *engine.catalog());
  BOOST_TEST_REQUIRE(!errors.empty());
  for (const auto& e : errors) BOOST_TEST((e.severity == core::Diagnostic::Severity::Error));
  BOOST_TEST(errors[0].message.find("std/nope") != std::string::npos, errors[0].message);
  const json::object view = runner::to_json(errors[0]);
  BOOST_TEST(str(view.at("severity")) == "error");
  BOOST_TEST(str(view.at("file")) == flow_file("unchecked.yaml").string());
  // Warnings (the orphan `lonely`) are `check`'s, not reasons to refuse a run.
  BOOST_TEST(runner::check(flow, *engine.catalog()).size() > errors.size());
}

BOOST_AUTO_TEST_CASE(a_cancel_through_the_history_stops_the_run_and_its_id_stays_taken) {
  runner::LocalRun local(runner::load_flow(flow_file("sleepy.yaml")), setup("sleeper"));
  Run run = local.start(engine);
  // Another process asks, through the history, once the run is recorded.
  const auto other = runner::open_run_history(history_file);
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return other->request_cancel("sleeper"); }));
  local.check_cancel_requests();
  BOOST_TEST_REQUIRE(run.wait_for(std::chrono::seconds(20)));
  local.wait();
  BOOST_TEST(local.finish() == "");
  BOOST_TEST(core::to_string(run.status()) == "CANCELLED");
  const json::object view =
      runner::to_json(*other->run("sleeper"), other->tasks("sleeper"), other->outputs("sleeper"));
  BOOST_TEST(str(view.at("status")) == "CANCELLED");
  BOOST_TEST(view.at("cancel_requested").as_bool());
  BOOST_TEST(str(view.at("tasks").as_array()[0].at("state")) == "CANCELLED");

  try {
    runner::LocalRun again(runner::load_flow(flow_file("sleepy.yaml")), setup("sleeper"));
    BOOST_FAIL("a run id the history has was taken");
  } catch (const runner::SetupError& e) {
    BOOST_TEST((e.setting() == runner::SetupError::Setting::RunId));
    BOOST_TEST(e.detail() == "sleeper: the history already has a run with this id; choose another");
  }
  runner::RunSetup bad = setup("");
  bad.trace_file = dir.path() / "no-such-dir/trace.log";
  BOOST_CHECK_THROW(
      [&] { runner::LocalRun(runner::load_flow(flow_file("sleepy.yaml")), std::move(bad)); }(),
      runner::SetupError);
}

// `pyoco runs cancel` of a run id claimed while the flow's plugins load:
// the run starts cancelled and none of its tasks runs. A cancel() after
// start() returned came after a short run had ended (COMPLETED, the
// request dropped).
BOOST_AUTO_TEST_CASE(a_cancel_requested_before_the_run_starts_runs_nothing) {
  const auto other = runner::open_run_history(history_file);
  for (int i = 0; i < 5; ++i) {
    const std::string id = "early-" + std::to_string(i);
    runner::LocalRun local(runner::load_flow(flow_file("chain.yaml")), setup(id));
    BOOST_TEST(!local.cancel_requested_before_start());
    BOOST_TEST_REQUIRE(other->request_cancel(id));
    BOOST_TEST(local.cancel_requested_before_start());
    Run run = local.start(engine);
    BOOST_TEST_REQUIRE(run.wait_for(std::chrono::seconds(20)));
    local.wait();
    BOOST_TEST(local.finish() == "");
    BOOST_TEST(core::to_string(run.status()) == "CANCELLED");
    for (const auto& t : run.tasks()) {
      BOOST_TEST(core::to_string(t.state) == "CANCELLED", t.node);
    }
    BOOST_TEST(core::to_string(other->run(id)->status) == "CANCELLED");
  }
}

// A run id is claimed when the LocalRun is made: two made at the same
// moment with one id (two processes) both found it free, and both ran.
BOOST_AUTO_TEST_CASE(a_run_id_is_claimed_at_once) {
  runner::LocalRun first(runner::load_flow(flow_file("sleepy.yaml")), setup("twice"));
  BOOST_CHECK_THROW(runner::LocalRun(runner::load_flow(flow_file("sleepy.yaml")), setup("twice")),
                    runner::SetupError);
}

// A run id whose run never started (start() threw) is free again: it was
// kept as a run the next process recovered as interrupted.
BOOST_AUTO_TEST_CASE(a_run_id_whose_run_did_not_start_is_free_again) {
  std::ofstream(dir.path() / "unknown.yaml")
      << "flow: {name: unknown, graph: a}\ntasks:\n  a: {use: nosuch/task}\n";
  {
    runner::LocalRun local(runner::load_flow(dir.path() / "unknown.yaml"), setup("retry-me"));
    BOOST_CHECK_THROW(local.start(engine), core::FlowError);
  }
  BOOST_TEST(!runner::open_run_history(history_file)->run("retry-me").has_value());
  runner::LocalRun again(runner::load_flow(flow_file("sleepy.yaml")), setup("retry-me"));
}

// A LocalRun destroyed while its run goes cancels it and records its end
// (its history writer went with it: the run was recorded as interrupted
// although it went on).
BOOST_AUTO_TEST_CASE(a_local_run_destroyed_mid_run_records_the_run_cancelled) {
  {
    runner::LocalRun local(runner::load_flow(flow_file("sleepy.yaml")), setup("dropped"));
    local.start(engine);
  }
  const auto history = runner::open_run_history(history_file);
  const auto r = history->run("dropped");
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(core::to_string(r->status) == "CANCELLED");
  BOOST_TEST(r->reason != "interrupted");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(limits)

BOOST_AUTO_TEST_CASE(limits_read_the_environment_and_refuse_what_is_not_a_number) {
  setenv("PYOCO_MAX_TASKS", "123", 1);
  setenv("PYOCO_MAX_LOG_BYTES", "2048", 1);
  setenv("PYOCO_MAX_RUN_LOG_BYTES", "4096", 1);
  setenv("PYOCO_MAX_RUN_HISTORY", "7", 1);
  setenv("PYOCO_MAX_OUTPUT_BYTES", "512", 1);
  setenv("PYOCO_MAX_RUN_OUTPUT_BYTES", "8192", 1);
  RunLimits run;
  store::HistoryOptions history;
  runner::limits_from_env(run, history);
  BOOST_TEST(run.max_tasks == 123u);
  BOOST_TEST(history.max_log_bytes == 2048u);
  BOOST_TEST(history.max_run_log_bytes == 4096u);
  BOOST_TEST(history.max_runs == 7u);
  BOOST_TEST(history.max_output_bytes == 512u);
  BOOST_TEST(history.max_run_output_bytes == 8192u);
  for (const char* bad : {"lots", "-1", "12abc"}) {
    setenv("PYOCO_MAX_TASKS", bad, 1);
    BOOST_CHECK_EXCEPTION(runner::limits_from_env(run, history), runner::SetupError,
                          [&](const runner::SetupError& e) {
                            return e.detail() == std::string("PYOCO_MAX_TASKS=") + bad +
                                                     ": expected a whole number (digits only)";
                          });
  }
  // A whole number past what the limit can hold says so, and how far it goes.
  setenv("PYOCO_MAX_TASKS", "99999999999999999999999", 1);
  BOOST_CHECK_EXCEPTION(runner::limits_from_env(run, history), runner::SetupError,
                        [&](const runner::SetupError& e) {
                          return e.detail() ==
                                 "PYOCO_MAX_TASKS=99999999999999999999999: too large; at most "
                                 "18446744073709551615";
                        });
  setenv("PYOCO_MAX_TASKS", "", 1);  // empty: the default stays
  RunLimits defaults;
  runner::limits_from_env(defaults, history);
  BOOST_TEST(defaults.max_tasks == 500000u);
  for (const char* name :
       {"PYOCO_MAX_TASKS", "PYOCO_MAX_LOG_BYTES", "PYOCO_MAX_RUN_LOG_BYTES",
        "PYOCO_MAX_RUN_HISTORY", "PYOCO_MAX_OUTPUT_BYTES", "PYOCO_MAX_RUN_OUTPUT_BYTES"}) {
    unsetenv(name);
  }
  // Unset: the defaults docs/cli.md gives.
  RunLimits run_defaults;
  store::HistoryOptions history_defaults;
  runner::limits_from_env(run_defaults, history_defaults);
  BOOST_TEST(run_defaults.max_tasks == 500000u);
  BOOST_TEST(history_defaults.max_log_bytes == 1048576u);
  BOOST_TEST(history_defaults.max_run_log_bytes == 67108864u);
  BOOST_TEST(history_defaults.max_runs == 1000u);
  BOOST_TEST(history_defaults.max_output_bytes == 1048576u);
  BOOST_TEST(history_defaults.max_run_output_bytes == 67108864u);
}

BOOST_AUTO_TEST_SUITE_END()
