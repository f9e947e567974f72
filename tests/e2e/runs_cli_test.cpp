// `pyoco runs ...` as a user runs them against the history that `pyoco run`
// writes: list/show/logs/artifacts in both forms, cancel from a second
// process, kill -9, retention and log caps from the environment, two
// processes writing at once, and errors that say what to do.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <fstream>
#include <thread>

#include "child.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

fs::path flow(const char* name) { return source_dir() / "tests/e2e/flows" / name; }

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

struct RunsFixture {
  TempDir dir;
  std::map<std::string, std::string> env{{"PYOCO_HOME", (dir.path() / "home").string()},
                                         {"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}};

  ProcessResult pyoco(std::vector<std::string> args) {
    ProcessOptions o;
    o.cwd = dir.path();
    o.env = env;
    return run_pyoco(std::move(args), o);
  }
  std::unique_ptr<ChildProcess> background(std::vector<std::string> args) {
    args.insert(args.begin(), pyoco_exe().string());
    auto e = env;
    e["PYOCO_PLUGIN_PATH"] = "";
    return std::make_unique<ChildProcess>(args, e, dir.path());
  }
  json::array runs_json(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"runs", "list", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ProcessResult r = pyoco(args);
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
    return json::parse(r.out).as_array();
  }
  json::object show_json(const std::string& id) {
    const ProcessResult r = pyoco({"runs", "show", id, "--json"});
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
    return json::parse(r.out).as_object();
  }
  // The id of the one run that is RUNNING, once the history has it.
  std::string running_id() {
    std::string id;
    BOOST_TEST_REQUIRE(eventually([&] {
      const auto runs = runs_json({"--status", "running"});
      if (runs.empty()) return false;
      id = std::string(runs[0].at("run_id").as_string());
      return true;
    }));
    return id;
  }
};

std::string str(const json::value& v) { return std::string(v.as_string()); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(runs_cli, RunsFixture)

BOOST_AUTO_TEST_CASE(a_finished_run_is_listed_shown_and_its_logs_and_artifacts_read) {
  BOOST_TEST_REQUIRE(pyoco({"run", flow("artifacts.yaml").string()}).exit_code == 0);
  BOOST_TEST_REQUIRE(pyoco({"run", flow("fails.yaml").string()}).exit_code == 1);

  const ProcessResult list = pyoco({"runs", "list"});
  BOOST_TEST(list.exit_code == 0, list.err);
  BOOST_TEST(has(list.out, "ID        FLOW    STATUS     STARTED"), list.out);
  BOOST_TEST(has(list.out, "report  COMPLETED"), list.out);
  BOOST_TEST(has(list.out, "fails   FAILED"), list.out);

  const auto runs = runs_json();
  BOOST_TEST_REQUIRE(runs.size() == 2u);
  BOOST_TEST(str(runs[0].at("flow")) == "fails");  // newest first
  BOOST_TEST(str(runs[0].at("reason")) == "failed: broken");
  BOOST_TEST(runs_json({"--status", "completed"}).size() == 1u);
  BOOST_TEST(runs_json({"--flow", "fails"}).size() == 1u);
  BOOST_TEST(runs_json({"--limit", "1"}).size() == 1u);

  const std::string id = str(runs[1].at("run_id"));
  const std::string prefix = id.substr(0, 6);
  const ProcessResult show = pyoco({"runs", "show", prefix});
  BOOST_TEST(show.exit_code == 0, show.err);
  BOOST_TEST(has(show.out, "run       " + id), show.out);
  BOOST_TEST(has(show.out, "status    COMPLETED"), show.out);
  BOOST_TEST(has(show.out, "flow      report  (" + flow("artifacts.yaml").string() + ")"),
             show.out);
  BOOST_TEST(has(show.out, "greet  std/echo        SUCCEEDED  1"), show.out);
  BOOST_TEST(has(show.out, "save   std/write_file  SUCCEEDED  1"), show.out);

  const json::object shown = show_json(id);
  BOOST_TEST(str(shown.at("status")) == "COMPLETED");
  BOOST_TEST_REQUIRE(shown.at("tasks").as_array().size() == 2u);
  BOOST_TEST(str(shown.at("tasks").as_array()[0].at("output")) == R"({"carrots":3})");

  const ProcessResult logs = pyoco({"runs", "logs", prefix});
  BOOST_TEST(logs.exit_code == 0, logs.err);
  BOOST_TEST(has(logs.out, "INFO greet: counting carrots"), logs.out);
  BOOST_TEST(pyoco({"runs", "logs", prefix, "--task", "save"}).out.empty());
  BOOST_TEST(has(pyoco({"runs", "logs", prefix, "--task", "nope"}).err, "has no task nope"));

  const ProcessResult artifacts = pyoco({"runs", "artifacts", prefix, "--json"});
  BOOST_TEST_REQUIRE(artifacts.exit_code == 0, artifacts.err);
  const json::array list_a = json::parse(artifacts.out).as_array();
  BOOST_TEST_REQUIRE(list_a.size() == 1u);
  const fs::path path = str(list_a[0].at("path"));
  BOOST_TEST(path == dir.path() / "a" / id / "report.json");
  BOOST_TEST(fs::exists(path));
  BOOST_TEST(list_a[0].at("size").to_number<std::int64_t>() == 13);
  BOOST_TEST(str(list_a[0].at("sha256")).size() == 64u);
  BOOST_TEST(has(pyoco({"runs", "artifacts", prefix}).out, "save  report.json  13 B"));
}

BOOST_AUTO_TEST_CASE(a_second_process_cancels_a_running_flow) {
  auto run = background({"run", flow("sleepy.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=nap"), run->out() << run->err());
  const std::string id = running_id();
  const ProcessResult cancel = pyoco({"runs", "cancel", id.substr(0, 8), "--wait"});
  BOOST_TEST(cancel.exit_code == 0, cancel.out << cancel.err);
  BOOST_TEST(has(cancel.out, "cancel requested: run " + id), cancel.out);
  BOOST_TEST(has(cancel.out, "ended CANCELLED"), cancel.out);
  BOOST_TEST(run->wait() == 130, run->out() << run->err());
  BOOST_TEST(has(run->out(), "WARN pyoco cancel flow=sleepy"), run->out());
  const json::object shown = show_json(id);
  BOOST_TEST(str(shown.at("status")) == "CANCELLED");
  BOOST_TEST(str(shown.at("tasks").as_array()[1].at("state")) == "CANCELLED");
  const ProcessResult again = pyoco({"runs", "cancel", id});
  BOOST_TEST(again.exit_code == 1);
  BOOST_TEST(has(again.err, "already ended CANCELLED"), again.err);
}

BOOST_AUTO_TEST_CASE(a_second_process_cancels_a_run_whose_workers_are_all_held) {
  for (const char* jobs : {"1", "2"}) {
    auto run = background({"run", flow("saturated.yaml").string(), "--non-cute", "--jobs", jobs,
                           "--plugin-path", (fixture_dir() / "busy").string()});
    BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=hold2"), run->out()
                                                                                << run->err());
    const std::string id = running_id();
    const ProcessResult cancel = pyoco({"runs", "cancel", id, "--wait", "--timeout", "10"});
    BOOST_TEST(cancel.exit_code == 0, jobs << ": " << cancel.out << cancel.err);
    BOOST_TEST(has(cancel.out, "ended CANCELLED"), cancel.out);
    BOOST_TEST(run->wait(std::chrono::seconds(15)) == 130, run->out() << run->err());
    const json::object shown = show_json(id);
    for (const auto& t : shown.at("tasks").as_array()) {
      BOOST_TEST(str(t.at("state")) == "CANCELLED", str(t.at("node")));
    }
  }
}

BOOST_AUTO_TEST_CASE(show_gives_a_running_task_s_last_heartbeat) {
  auto run = background({"run", flow("watching.yaml").string(), "--non-cute", "--plugin-path",
                         (fixture_dir() / "asyncy").string()});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=watch"), run->out() << run->err());
  const std::string id = running_id();
  std::string shown;
  BOOST_TEST(eventually([&] {
               shown = pyoco({"runs", "show", id}).out;
               return has(shown, "RUNNING 50% half way");
             }),
             shown);
  const json::object task = show_json(id).at("tasks").as_array()[0].as_object();
  BOOST_TEST(task.at("progress").as_double() == 0.5);
  BOOST_TEST(str(task.at("heartbeat")) == "half way");
  BOOST_TEST(str(task.at("heartbeat_at")).ends_with("Z"));
  BOOST_TEST(pyoco({"runs", "cancel", id, "--wait"}).exit_code == 0);
  BOOST_TEST(run->wait() == 130);
}

BOOST_AUTO_TEST_CASE(kill_9_leaves_a_run_that_the_next_start_marks_interrupted) {
  auto run = background({"run", flow("sleepy.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=nap"), run->out() << run->err());
  const std::string id = running_id();
  // The nap's start must be in the history before the process dies.
  BOOST_TEST_REQUIRE(eventually([&] {
    const auto tasks = show_json(id).at("tasks").as_array();
    return !tasks.empty() && str(tasks[0].at("state")) == "RUNNING";
  }));
  run->send_signal(SIGKILL);
  BOOST_TEST(run->wait() == 128 + SIGKILL);

  const auto runs = runs_json();
  BOOST_TEST_REQUIRE(runs.size() == 1u);
  BOOST_TEST(str(runs[0].at("status")) == "FAILED");
  BOOST_TEST(str(runs[0].at("reason")) == "interrupted");
  const ProcessResult show = pyoco({"runs", "show", id});
  BOOST_TEST(has(show.out, "status    FAILED  (interrupted)"), show.out);
  BOOST_TEST(has(show.out, "nap    std/sleep  FAILED     1"), show.out);
  BOOST_TEST(has(show.out, "ended while it ran"), show.out);
  // Known before it ran (the plan is recorded at start), so it is accounted for.
  BOOST_TEST(has(show.out, "after  std/echo   CANCELLED  0"), show.out);
}

BOOST_AUTO_TEST_CASE(a_running_run_shows_what_is_still_to_come) {
  auto run = background({"run", flow("sleepy.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=nap"), run->out() << run->err());
  const std::string id = running_id();
  BOOST_TEST_REQUIRE(eventually([&] {
    const auto tasks = show_json(id).at("tasks").as_array();
    return tasks.size() == 2u && str(tasks[0].at("state")) == "RUNNING";
  }));
  const auto tasks = show_json(id).at("tasks").as_array();
  BOOST_TEST(str(tasks[1].at("node")) == "after");
  BOOST_TEST(str(tasks[1].at("state")) == "PENDING");
  run->send_signal(SIGINT);
  BOOST_TEST(run->wait() == 130);
}

BOOST_AUTO_TEST_CASE(retention_and_the_log_cap_come_from_the_environment) {
  env["PYOCO_MAX_RUN_HISTORY"] = "2";
  for (int i = 0; i < 3; ++i)
    BOOST_TEST_REQUIRE(pyoco({"run", flow("chain.yaml").string()}).exit_code == 0);
  BOOST_TEST(runs_json().size() == 2u);

  env["PYOCO_MAX_LOG_BYTES"] = "8";  // per task; each of these logs 11 bytes
  BOOST_TEST_REQUIRE(pyoco({"run", flow("slow_log.yaml").string()}).exit_code == 0);
  const std::string id = str(runs_json({"--flow", "slow_log"})[0].at("run_id"));
  const ProcessResult logs = pyoco({"runs", "logs", id});
  BOOST_TEST(has(logs.out,
                 "WARN hello: [log truncated: this task's lines past "
                 "PYOCO_MAX_LOG_BYTES=8 bytes are not kept]"),
             logs.out);
  BOOST_TEST(has(logs.out, "WARN bye: [log truncated"), logs.out);
  BOOST_TEST(!has(logs.out, "hello there"), logs.out);

  // A limit that is not a number stops the run before it starts: running
  // it unrecorded, or unbounded, would be worse than a usage error.
  const std::size_t before = runs_json().size();
  env["PYOCO_MAX_RUN_HISTORY"] = "many";
  const ProcessResult bad = pyoco({"run", flow("chain.yaml").string()});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(bad.err == "pyoco run: PYOCO_MAX_RUN_HISTORY=many: expected a whole number\n");
  BOOST_TEST(bad.out.empty(), bad.out);
  env.erase("PYOCO_MAX_RUN_HISTORY");
  BOOST_TEST(runs_json().size() == before);
}

BOOST_AUTO_TEST_CASE(two_processes_record_into_one_history_at_once) {
  auto first = background({"run", flow("busy.yaml").string(), "--non-cute"});
  auto second = background({"run", flow("busy.yaml").string(), "--non-cute"});
  BOOST_TEST(first->wait() == 0, first->err());
  BOOST_TEST(second->wait() == 0, second->err());
  BOOST_TEST(first->err().empty(), first->err());
  BOOST_TEST(second->err().empty(), second->err());
  const auto runs = runs_json();
  BOOST_TEST_REQUIRE(runs.size() == 2u);
  for (const auto& r : runs) {
    BOOST_TEST(str(r.at("status")) == "COMPLETED");
    const std::string id = str(r.at("run_id"));
    BOOST_TEST(show_json(id).at("tasks").as_array().size() == 103u);  // loop + 100 + nap + done
    const ProcessResult logs = pyoco({"runs", "logs", id, "--tail", "1"});
    BOOST_TEST(has(logs.out, "INFO done: all done"), logs.out);
  }
}

BOOST_AUTO_TEST_CASE(logs_follow_prints_lines_as_they_come_until_the_run_ends) {
  auto run = background({"run", flow("slow_log.yaml").string(), "--non-cute"});
  const std::string id = running_id();
  auto follow = background({"runs", "logs", id, "--follow"});
  BOOST_TEST(follow->wait() == 0, follow->err());
  BOOST_TEST(has(follow->out(), "INFO hello: hello there"), follow->out());
  BOOST_TEST(has(follow->out(), "INFO bye: goodbye now"), follow->out());
  BOOST_TEST(run->wait() == 0);
}

BOOST_AUTO_TEST_CASE(mistakes_and_an_unusable_history_say_what_to_do) {
  ProcessResult r = pyoco({"runs", "show", "nope"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err == "pyoco runs show: no run nope in the history (see `pyoco runs list`)\n");
  r = pyoco({"runs", "list", "--status", "sleepy"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "--status sleepy: expected PENDING, RUNNING"), r.err);
  r = pyoco({"runs", "list"});
  BOOST_TEST(has(r.out, "no runs recorded yet in " + (dir.path() / "home/state.db").string()),
             r.out);

  // PYOCO_HOME names a file: the run still runs, and says it is not recorded.
  std::ofstream(dir.path() / "not-a-dir") << "x";
  env["PYOCO_HOME"] = (dir.path() / "not-a-dir").string();
  r = pyoco({"run", flow("chain.yaml").string()});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.err, "warning: this run is not recorded in the history"), r.err);
  r = pyoco({"runs", "list"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "not-a-dir"), r.err);
}

BOOST_AUTO_TEST_SUITE_END()
