// `pyoco runs ...` as a user runs them against the history that `pyoco run`
// writes: list/show/logs/artifacts in both forms, cancel from a second
// process, kill -9, retention and log caps from the environment, two
// processes writing at once, and errors that say what to do.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "child.hpp"
#include "process.hpp"
#include "runs_fixture.hpp"
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
  // Each filter keeps the right run: by state in any case, by flow name, the newest N.
  struct Filter {
    std::vector<std::string> args;
    const char* flow;
  };
  for (const Filter& f :
       {Filter{{"--status", "completed"}, "report"}, Filter{{"--status", "FAILED"}, "fails"},
        Filter{{"--status", "Failed"}, "fails"}, Filter{{"--flow", "report"}, "report"},
        Filter{{"--flow", "fails"}, "fails"}, Filter{{"--limit", "1"}, "fails"},
        Filter{{"-n", "1"}, "fails"}}) {
    const auto only = runs_json(f.args);
    BOOST_TEST_REQUIRE(only.size() == 1u, f.args[0] << " " << f.args[1]);
    BOOST_TEST(str(only[0].at("flow")) == f.flow, f.args[0] << " " << f.args[1]);
  }
  BOOST_TEST(runs_json({"--status", "running"}).empty());
  BOOST_TEST(runs_json({"--flow", "nope"}).empty());
  // --json: full ids and UTC times.
  BOOST_TEST(str(runs[0].at("run_id")).size() == 36u);
  BOOST_TEST(str(runs[0].at("started")).ends_with("Z"), str(runs[0].at("started")));
  BOOST_TEST(str(runs[0].at("ended")).ends_with("Z"), str(runs[0].at("ended")));

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
  // The plugins its tasks came from, with their versions.
  BOOST_TEST(has(show.out, "plugins   std 0."), show.out);

  const json::object shown = show_json(id);
  BOOST_TEST(str(shown.at("status")) == "COMPLETED");
  BOOST_TEST(shown.at("plugins").as_object().size() == 1u);
  BOOST_TEST(str(shown.at("plugins").at("std")).rfind("0.", 0) == 0u);
  BOOST_TEST_REQUIRE(shown.at("tasks").as_array().size() == 2u);
  BOOST_TEST(json::serialize(shown.at("tasks").as_array()[0].at("output")) == R"({"carrots":3})");

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

BOOST_AUTO_TEST_CASE(cancel_wait_returns_once_the_runs_process_and_commands_are_gone) {
  // A command that ignores SIGTERM: the run ends CANCELLED at once, and its
  // pyoco run kills the command a second later. --wait said "ended" while
  // both still ran: a script restarting the job met the old command.
  std::ofstream(dir.path() / "deaf.yaml")
      << "flow: {name: deaf, graph: sh}\ntasks:\n  sh: {use: std/shell, inputs: {command: \"trap "
         "'' TERM; exec sleep 100\"}}\n";
  auto run = background({"run", (dir.path() / "deaf.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=sh"), run->out() << run->err());
  std::vector<int> commands;
  BOOST_TEST_REQUIRE(eventually([&] {
    commands = descendants_of(run->pid());
    return std::any_of(commands.begin(), commands.end(),
                       [](int pid) { return process_name(pid) == "sleep"; });
  }));
  const std::string id = running_id();
  const ProcessResult cancel = pyoco({"runs", "cancel", id, "--wait"});
  BOOST_TEST(cancel.exit_code == 0, cancel.out << cancel.err);
  BOOST_TEST(has(cancel.out, "run " + id + " ended CANCELLED\n"), cancel.out);
  BOOST_TEST(!has(cancel.out, "goes on"), cancel.out);
  // Gone already (a zombie until this test reaps it), and so are its commands.
  BOOST_TEST(process_gone(run->pid()));
  for (int pid : commands) BOOST_TEST(process_gone(pid), pid);
  BOOST_TEST(run->wait() == 130, run->out() << run->err());
}

BOOST_AUTO_TEST_CASE(a_second_process_cancels_a_running_flow) {
  auto run = background({"run", flow("sleepy.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=nap"), run->out() << run->err());
  const std::string id = running_id();
  const ProcessResult cancel = pyoco({"runs", "cancel", id.substr(0, 8), "--wait"});
  BOOST_TEST(cancel.exit_code == 0, cancel.out << cancel.err);
  BOOST_TEST(cancel.out == "cancel requested: run " + id + " (flow sleepy, pid " +
                               std::to_string(run->pid()) + ")\nrun " + id + " ended CANCELLED\n",
             cancel.out);
  BOOST_TEST(run->wait() == 130, run->out() << run->err());
  BOOST_TEST(has(run->out(), "WARN pyoco cancel flow=sleepy"), run->out());
  const json::object shown = show_json(id);
  BOOST_TEST(str(shown.at("status")) == "CANCELLED");
  // The nap was running and was stopped; `after` never started.
  const ProcessResult show = pyoco({"runs", "show", id});
  BOOST_TEST(has(show.out, "status    CANCELLED\n"), show.out);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  BOOST_TEST(has(show.out, "process   pid " + std::to_string(run->pid()) + " on " + host + "\n"),
             show.out);
  BOOST_TEST(
      std::regex_search(show.out, std::regex(R"(\nnap +std/sleep +CANCELLED +1 +[0-9.]+ m?s +)"
                                             R"(run cancelled\n)")),
      show.out);
  BOOST_TEST(std::regex_search(
                 show.out, std::regex(R"(\nafter +std/echo +CANCELLED +0 +- +run cancelled\n)")),
             show.out);
  BOOST_TEST(!has(run->out(), "start node=after"), run->out());
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
  // What is tested is how long the run is found to have run: let it run
  // 4.5 s, so that its writer (about one note a second, later on a slow
  // host) has noted 1.5 s and more well before the kill.
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  run->send_signal(SIGKILL);
  BOOST_TEST(run->wait() == 128 + SIGKILL);

  const auto runs = runs_json();
  BOOST_TEST_REQUIRE(runs.size() == 1u);
  BOOST_TEST(str(runs[0].at("status")) == "FAILED");
  BOOST_TEST(str(runs[0].at("reason")) == "interrupted");
  // It ran 4.5 s and more; its writer noted that about each second. (Its
  // end used to be its last task's start: a few milliseconds.)
  BOOST_TEST(runs[0].at("duration_ms").to_number<double>() >= 1500.0);
  const auto nap = show_json(id).at("tasks").as_array()[0].as_object();
  BOOST_TEST(nap.at("duration_ms").to_number<double>() >= 1500.0);
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
  for (const char* id : {"keep-1", "keep-2", "keep-3"}) {
    BOOST_TEST_REQUIRE(pyoco({"run", flow("artifacts.yaml").string(), "--run-id", id}).exit_code ==
                       0);
  }
  const auto kept = runs_json();
  BOOST_TEST_REQUIRE(kept.size() == 2u);
  BOOST_TEST(str(kept[0].at("run_id")) == "keep-3");  // the newest are kept
  BOOST_TEST(str(kept[1].at("run_id")) == "keep-2");
  BOOST_TEST(pyoco({"runs", "logs", "keep-1"}).exit_code == 2);  // gone whole
  // The artifact files of a deleted run stay where they are.
  BOOST_TEST(fs::exists(dir.path() / "a/keep-1/report.json"));

  env["PYOCO_MAX_LOG_BYTES"] = "8";  // per task; `second` logs 13 bytes
  const ProcessResult capped = pyoco({"run", flow("chain.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(capped.exit_code == 0);
  // The console is not capped: only the history is.
  BOOST_TEST(has(capped.out, "INFO pyoco log node=second passing it on"), capped.out);
  const std::string id = str(runs_json({"--flow", "chain"})[0].at("run_id"));
  const ProcessResult logs = pyoco({"runs", "logs", id});
  BOOST_TEST(logs.out.ends_with(" WARN second: [log truncated: this task's lines past "
                                "PYOCO_MAX_LOG_BYTES=8 bytes are not kept]\n"),
             logs.out);
  BOOST_TEST(!has(logs.out, "passing it on"), logs.out);
  env.erase("PYOCO_MAX_LOG_BYTES");

  // Per run, all its tasks together: echo[0] logs 1 byte, the cap; echo[1]'s
  // line would pass it, so a marker stands where it would have been.
  env["PYOCO_MAX_RUN_LOG_BYTES"] = "1";
  BOOST_TEST_REQUIRE(
      pyoco({"run", flow("loop_refs.yaml").string(), "--run-id", "run-cap"}).exit_code == 0);
  env.erase("PYOCO_MAX_RUN_LOG_BYTES");
  const ProcessResult cut = pyoco({"runs", "logs", "run-cap"});
  BOOST_TEST(std::count(cut.out.begin(), cut.out.end(), '\n') == 2, cut.out);
  BOOST_TEST(has(cut.out, " INFO echo[0]: x\n"), cut.out);
  BOOST_TEST(cut.out.ends_with(" WARN echo[1]: [log truncated: this run's lines past "
                               "PYOCO_MAX_RUN_LOG_BYTES=1 bytes are not kept]\n"),
             cut.out);

  // A limit that is not a number stops the run before it starts: running
  // it unrecorded, or unbounded, would be worse than a usage error.
  const std::size_t before = runs_json().size();
  env["PYOCO_MAX_RUN_HISTORY"] = "many";
  const ProcessResult bad = pyoco({"run", flow("chain.yaml").string()});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(bad.err ==
             "pyoco run: PYOCO_MAX_RUN_HISTORY=many: expected a whole number (digits only)\n");
  BOOST_TEST(bad.out.empty(), bad.out);
  // 0 would keep no run at all: the history would be emptied, this run's
  // record included.
  env["PYOCO_MAX_RUN_HISTORY"] = "0";
  const ProcessResult none = pyoco({"run", flow("chain.yaml").string()});
  BOOST_TEST(none.exit_code == 2);
  BOOST_TEST(none.err == "pyoco run: PYOCO_MAX_RUN_HISTORY=0: must be at least 1\n");
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
    BOOST_TEST(std::count(logs.out.begin(), logs.out.end(), '\n') == 1, logs.out);
    BOOST_TEST(logs.out.ends_with(" INFO done: all done\n"), logs.out);
  }
}

BOOST_AUTO_TEST_CASE(logs_follow_prints_lines_as_they_come_until_the_run_ends) {
  // gated.yaml waits for the file `gate` in its working directory, ours.
  struct Gate {
    fs::path file;
    void open() const { std::ofstream(file) << "open"; }
    ~Gate() { open(); }  // a failed test must not leave the run waiting
  } gate{dir.path() / "gate"};
  auto run = background({"run", flow("gated.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=wait"), run->out() << run->err());
  const std::string id = running_id();
  auto follow = background({"runs", "logs", id, "--follow"});
  BOOST_TEST_REQUIRE(follow->wait_for_output("INFO hello: hello there\n"), follow->out());
  // The run is still waiting at the gate: follow keeps going, with nothing newer yet.
  BOOST_TEST(!process_gone(follow->pid()), follow->out() << follow->err());
  BOOST_TEST(!has(follow->out(), "goodbye"), follow->out());
  gate.open();
  BOOST_TEST(follow->wait() == 0, follow->err());  // it ends with the run
  BOOST_TEST(run->wait() == 0, run->out() << run->err());
  const std::string out = follow->out();
  BOOST_TEST(std::count(out.begin(), out.end(), '\n') == 2, out);  // each line once
  BOOST_TEST(has(out, " INFO hello: hello there\n"), out);
  BOOST_TEST(out.ends_with(" INFO bye: goodbye now\n"), out);  // written after follow started

  // -f on a run that has ended prints what it logged and exits at once.
  const ProcessResult ended = pyoco({"runs", "logs", id, "-f"});
  BOOST_TEST(ended.exit_code == 0, ended.err);
  BOOST_TEST(ended.out == out);
}

// docs/history.md: a line is "TIME LEVEL NODE: MESSAGE"; --task keeps one
// task's lines (a loop iteration's too, or a body node's every iteration),
// --tail N the last N.
BOOST_AUTO_TEST_CASE(logs_keep_one_task_s_lines_or_the_last_ones) {
  BOOST_TEST_REQUIRE(
      pyoco({"run", flow("loop_refs.yaml").string(), "--run-id", "loop"}).exit_code == 0);
  const std::string time = R"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3})";
  const ProcessResult all = pyoco({"runs", "logs", "loop"});
  BOOST_TEST(all.exit_code == 0, all.err);
  BOOST_TEST(std::regex_match(all.out, std::regex(time + " INFO echo\\[0\\]: x\n" + time +
                                                  " INFO echo\\[1\\]: y\n")),
             all.out);
  const auto lines_of = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"runs", "logs", "loop"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ProcessResult r = pyoco(args);
    BOOST_TEST(r.exit_code == 0, r.err);
    std::vector<std::string> lines;
    std::istringstream in(r.out);
    // What follows the time: "INFO node: message".
    for (std::string line; std::getline(in, line);) lines.push_back(line.substr(24));
    return lines;
  };
  using Lines = std::vector<std::string>;
  struct Case {
    std::vector<std::string> args;
    Lines expected;
  };
  const std::vector<Case> table = {
      {{"--task", "echo[1]"}, Lines{"INFO echo[1]: y"}},
      {{"--task", "echo[0]"}, Lines{"INFO echo[0]: x"}},
      {{"--tail", "1"}, Lines{"INFO echo[1]: y"}},
      {{"--tail", "2"}, Lines{"INFO echo[0]: x", "INFO echo[1]: y"}},
      {{"--tail", "5"}, Lines{"INFO echo[0]: x", "INFO echo[1]: y"}},
      {{"--task", "echo[0]", "--tail", "1"}, Lines{"INFO echo[0]: x"}},
      // The body's node without its iteration: every iteration, in order.
      {{"--task", "echo"}, Lines{"INFO echo[0]: x", "INFO echo[1]: y"}},
      {{"--task", "echo", "--tail", "1"}, Lines{"INFO echo[1]: y"}},
      {{"--task", "done"}, Lines{}},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.args[0] << " " << c.args[1]) {
      BOOST_TEST(lines_of(c.args) == c.expected, boost::test_tools::per_element());
    }
  }
  // Loop iterations are rows of their own in `runs show`, like in the trace.
  const ProcessResult show = pyoco({"runs", "show", "loop"});
  for (const char* row :
       {R"(\nforeach_1 +foreach +SUCCEEDED)", R"(\necho\[0\] +std/echo +SUCCEEDED)",
        R"(\necho\[1\] +std/echo +SUCCEEDED)", R"(\ndone +std/echo +SUCCEEDED)"}) {
    BOOST_TEST(std::regex_search(show.out, std::regex(row)), row << "\n" << show.out);
  }
  const ProcessResult none = pyoco({"runs", "logs", "loop", "--task", "done"});
  BOOST_TEST(none.err == "run loop: no log lines from task done\n", none.err);
}

BOOST_AUTO_TEST_CASE(mistakes_and_an_unusable_history_say_what_to_do) {
  ProcessResult r = pyoco({"runs", "show", "nope"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err == "pyoco runs show: no run nope in the history (see `pyoco runs list`)\n");
  for (const char* command : {"logs", "cancel", "artifacts"}) {
    r = pyoco({"runs", command, "nope"});
    BOOST_TEST(r.exit_code == 2, command);
    BOOST_TEST(r.err == std::string("pyoco runs ") + command +
                            ": no run nope in the history (see `pyoco runs list`)\n",
               r.err);
  }
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
  BOOST_TEST(r.err == "pyoco run: warning: this run is not recorded in the history: " +
                          (dir.path() / "not-a-dir").string() +
                          ": cannot create the directory for the run history: Not a directory "
                          "(set PYOCO_HOME to a writable directory)\n",
             r.err);  // once, saying what to do
  BOOST_TEST(has(r.out, "status=COMPLETED"), r.out);
  r = pyoco({"runs", "list"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "not-a-dir"), r.err);
}

BOOST_AUTO_TEST_CASE(list_shows_the_newest_20_unless_asked) {
  // Ids given with --run-id are shown whole: these share their first eight
  // characters (`runs list` showed "nightly-" for every one).
  for (int i = 0; i <= 20; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "nightly-run-%02d", i);
    BOOST_TEST_REQUIRE(pyoco({"run", flow("chain.yaml").string(), "--run-id", id}).exit_code == 0);
  }
  const ProcessResult list = pyoco({"runs", "list"});
  BOOST_TEST(list.exit_code == 0, list.err);
  std::vector<std::string> ids;
  std::istringstream lines(list.out);
  std::string line;
  std::getline(lines, line);  // the header
  while (std::getline(lines, line)) ids.push_back(line.substr(0, line.find(' ')));
  BOOST_TEST_REQUIRE(ids.size() == 20u, list.out);
  BOOST_TEST(ids.front() == "nightly-run-20");  // newest first
  BOOST_TEST(ids.back() == "nightly-run-01");   // nightly-run-00 is the 21st
  BOOST_TEST(runs_json().size() == 20u);
  BOOST_TEST(runs_json({"-n", "21"}).size() == 21u);
  BOOST_TEST(runs_json({"--limit", "3"}).size() == 3u);
  for (const char* bad : {"-1", "0", "5abc"}) {  // -1 was read as the largest number: all runs
    const ProcessResult r = pyoco({"runs", "list", "-n", bad});
    BOOST_TEST(r.exit_code == 2, bad);
    BOOST_TEST(has(r.err, "--limit: expected a whole number from 1 to 1000000"), r.err);
  }
}

// --tail -1 was read as the largest number (every line); --timeout -1 gave
// up at once, 1e300 overflowed the wait.
BOOST_AUTO_TEST_CASE(tail_and_timeout_take_only_numbers_in_their_range) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> table = {
      {{"runs", "logs", "x", "--tail", "-1"}, "--tail: expected a whole number from 1 to 1000000"},
      {{"runs", "logs", "x", "--tail", "0"}, "--tail: expected a whole number from 1 to 1000000"},
      {{"runs", "cancel", "x", "--wait", "--timeout", "-1"},
       "--timeout: expected seconds, more than 0 and at most 86400 (a day)"},
      {{"runs", "cancel", "x", "--wait", "--timeout", "1e300"},
       "--timeout: expected seconds, more than 0 and at most 86400 (a day)"},
      {{"runs", "cancel", "x", "--wait", "--timeout", "nan"},
       "--timeout: expected seconds, more than 0 and at most 86400 (a day)"},
  };
  for (const auto& [args, says] : table) {
    BOOST_TEST_CONTEXT(args.back()) {
      const ProcessResult r = pyoco(args);
      BOOST_TEST(r.exit_code == 2);
      BOOST_TEST(has(r.err, says), r.err);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_prefix_two_runs_share_is_refused_naming_both) {
  for (const char* id : {"twin-a", "twin-b"}) {
    BOOST_TEST_REQUIRE(pyoco({"run", flow("chain.yaml").string(), "--run-id", id}).exit_code == 0);
  }
  const ProcessResult r = pyoco({"runs", "show", "twin"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err ==
                 "pyoco runs show: run id prefix twin is ambiguous (twin-a, twin-b); give more of "
                 "the id\n",
             r.err);
  BOOST_TEST(has(pyoco({"runs", "show", "twin-b"}).out, "run       twin-b\n"));
  BOOST_TEST(has(pyoco({"runs", "show", "twin-"}).err, "ambiguous"));
}

// Another process holds state.db for longer than a write waits (10 s): the
// run still runs, then says it waits for the history and writes it when
// the lock goes (the run was left out of the history, found "interrupted"
// later, when a dozen runs shared state.db).
BOOST_AUTO_TEST_CASE(a_run_waits_for_a_locked_history_and_is_recorded_when_it_frees) {
  BOOST_TEST_REQUIRE(pyoco({"run", flow("chain.yaml").string()}).exit_code == 0);  // makes state.db
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open((dir.path() / "home/state.db").c_str(), &db) == SQLITE_OK);
  BOOST_TEST_REQUIRE(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  {
    // One Ctrl+C while it waits leaves at once, as the message says (it
    // never wrote: the history does not have it).
    auto impatient = background({"run", flow("chain.yaml").string(), "--non-cute"});
    BOOST_TEST_REQUIRE(
        eventually([&] { return has(impatient->err(), "interrupt to leave without it"); },
                   std::chrono::seconds(40)),
        impatient->err());
    impatient->send_signal(SIGINT);
    BOOST_TEST(impatient->wait(std::chrono::seconds(5)) == 0, impatient->err());
    BOOST_TEST(has(impatient->err(),
                   "interrupted; leaving without writing the rest of the run "
                   "history"),
               impatient->err());
  }
  // A --run-id cannot be claimed while another process holds the lock: the
  // run does not start (two runs given one id both ran, one of them lost).
  auto named =
      background({"run", flow("chain.yaml").string(), "--non-cute", "--run-id", "held-id"});
  auto run = background({"run", flow("chain.yaml").string(), "--non-cute"});
  BOOST_TEST(named->wait(std::chrono::seconds(40)) == 2, named->out() << named->err());
  BOOST_TEST(has(named->err(), "held-id: cannot claim this run id in the history ("), named->err());
  BOOST_TEST(has(named->err(), "nothing ran: try again once the history is free"), named->err());
  BOOST_TEST(!has(named->out(), "start node="), named->out());
  const bool waits =
      eventually([&] { return has(run->err(), "the run history cannot be written yet"); },
                 std::chrono::seconds(40));
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  BOOST_TEST_REQUIRE(waits, run->err());
  // A wait past a second is told at once, not only when the run ends.
  BOOST_TEST(has(run->err(), "state.db is locked by another process; waiting for it up to 10 s"),
             run->err());
  BOOST_TEST(
      has(run->err(), "locked); trying again for up to 60 s (interrupt to leave without it)"),
      run->err());
  BOOST_TEST(run->wait(std::chrono::seconds(40)) == 0, run->err());
  BOOST_TEST(has(run->out(), "status=COMPLETED"), run->out());
  BOOST_TEST(!has(run->err(), "warning"), run->err());
  const auto runs = runs_json();
  BOOST_TEST_REQUIRE(runs.size() == 2u);  // both runs, the second whole; not held-id
  BOOST_TEST(str(runs[0].at("status")) == "COMPLETED");
  BOOST_TEST(show_json(str(runs[0].at("run_id"))).at("tasks").as_array().size() == 3u);
}

// A damaged state.db stays damaged: the run warns at its end at once. It
// was tried again for a minute, as a locked one is, after every run.
BOOST_AUTO_TEST_CASE(a_damaged_history_is_reported_without_waiting) {
  for (int i = 0; i < 3; ++i)
    BOOST_TEST_REQUIRE(pyoco({"run", flow("chain.yaml").string()}).exit_code == 0);
  const fs::path db = dir.path() / "home/state.db";
  {
    sqlite3* c = nullptr;
    BOOST_TEST_REQUIRE(sqlite3_open(db.c_str(), &c) == SQLITE_OK);
    BOOST_TEST_REQUIRE(
        sqlite3_exec(c, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(c);
  }
  {
    // Page 12 is the first page of the task pages' table: the run opens the
    // history (it reads only the runs' table then) and fails to write.
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(11 * 4096);
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>(i * 7));
    BOOST_TEST_REQUIRE(f.good());
  }
  const auto began = std::chrono::steady_clock::now();
  const ProcessResult r = pyoco({"run", flow("chain.yaml").string(), "--non-cute"});
  const auto took = std::chrono::steady_clock::now() - began;
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.out, "status=COMPLETED"), r.out);
  BOOST_TEST(has(r.err, "database disk image is malformed (move the file away"), r.err);
  BOOST_TEST(!has(r.err, "trying again"), r.err);
  BOOST_TEST((took < std::chrono::seconds(20)));
}

// A state.db that is a directory says so.
BOOST_AUTO_TEST_CASE(a_history_that_is_a_directory_says_so) {
  fs::create_directories(dir.path() / "home/state.db");
  const ProcessResult r = pyoco({"run", flow("chain.yaml").string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.err,
                 "state.db: cannot open the run history: unable to open database file (it is a "
                 "directory: move it away, or point PYOCO_HOME elsewhere)"),
             r.err);
}

// docs/cli.md: PYOCO_HOME, else $XDG_STATE_HOME/pyoco, else ~/.local/state/pyoco.
BOOST_AUTO_TEST_CASE(the_history_defaults_to_xdg_state_home_then_home) {
  const fs::path xdg = dir.path() / "xdg", home = dir.path() / "h", own = dir.path() / "own";
  struct Case {
    std::map<std::string, std::string> set;
    std::vector<std::string> unset;
    fs::path file;
  };
  const std::vector<Case> table = {
      {{{"PYOCO_HOME", own.string()}, {"XDG_STATE_HOME", xdg.string()}}, {}, own / "state.db"},
      {{{"XDG_STATE_HOME", xdg.string()}, {"HOME", home.string()}},
       {"PYOCO_HOME"},
       xdg / "pyoco/state.db"},
      {{{"HOME", home.string()}},
       {"PYOCO_HOME", "XDG_STATE_HOME"},
       home / ".local/state/pyoco/state.db"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.file) {
      ProcessOptions o;
      o.cwd = dir.path();
      o.env = c.set;
      o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "a").string();
      o.unset_env = c.unset;
      BOOST_TEST(!fs::exists(c.file));
      BOOST_TEST_REQUIRE(run_pyoco({"run", flow("chain.yaml").string()}, o).exit_code == 0);
      BOOST_TEST(fs::is_regular_file(c.file));
      const ProcessResult list = run_pyoco({"runs", "list", "--json"}, o);
      BOOST_TEST(list.exit_code == 0, list.err);
      BOOST_TEST(json::parse(list.out).as_array().size() == 1u, list.out);  // its own file
    }
  }
}

// docs/cli.md: each PYOCO_MAX_* is a whole number; unset or empty, the
// default; anything else stops `pyoco run` before it starts, with exit 2.
BOOST_AUTO_TEST_CASE(every_limit_must_be_a_whole_number) {
  for (const char* name : {"PYOCO_MAX_RUN_HISTORY", "PYOCO_MAX_LOG_BYTES",
                           "PYOCO_MAX_RUN_LOG_BYTES", "PYOCO_MAX_TASKS"}) {
    for (const char* bad : {"lots", "-1", "1.5", "12abc"}) {
      BOOST_TEST_CONTEXT(name << "=" << bad) {
        env[name] = bad;
        const ProcessResult r = pyoco({"run", flow("chain.yaml").string()});
        BOOST_TEST(r.exit_code == 2);
        BOOST_TEST(r.err == std::string("pyoco run: ") + name + "=" + bad +
                                ": expected a whole number (digits only)\n",
                   r.err);
        BOOST_TEST(r.out.empty(), r.out);
      }
    }
    env[name] = "";  // empty: the default
    const ProcessResult r = pyoco({"run", flow("chain.yaml").string()});
    BOOST_TEST(r.exit_code == 0, name << ": " << r.err);
    env.erase(name);
  }
  BOOST_TEST(runs_json().size() == 4u);  // only the runs with every limit valid
}

// docs/history.md: paths are absolute, resolved when `pyoco run` starts:
// --artifact-dir, else PYOCO_ARTIFACT_DIR, else .pyoco/artifacts.
BOOST_AUTO_TEST_CASE(artifact_paths_are_absolute_wherever_they_go) {
  struct Case {
    const char* id;
    std::optional<std::string> env_dir;
    std::vector<std::string> flags;
    fs::path expected;
  };
  const std::vector<Case> table = {
      {"default", std::nullopt, {}, dir.path() / ".pyoco/artifacts/default/report.json"},
      {"from-env", "env-out", {}, dir.path() / "env-out/from-env/report.json"},
      {"flag", "env-out", {"--artifact-dir", "flag-out"}, dir.path() / "flag-out/flag/report.json"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.id) {
      env.erase("PYOCO_ARTIFACT_DIR");
      if (c.env_dir) env["PYOCO_ARTIFACT_DIR"] = *c.env_dir;
      std::vector<std::string> args{"run", flow("artifacts.yaml").string(), "--run-id", c.id};
      args.insert(args.end(), c.flags.begin(), c.flags.end());
      BOOST_TEST_REQUIRE(pyoco(args).exit_code == 0);
      BOOST_TEST(fs::is_regular_file(c.expected));
      const ProcessResult r = pyoco({"runs", "artifacts", c.id, "--json"});
      BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
      const json::array listed = json::parse(r.out).as_array();
      BOOST_TEST_REQUIRE(listed.size() == 1u, r.out);
      BOOST_TEST(fs::path(str(listed[0].at("path"))) == c.expected);
      BOOST_TEST(str(listed[0].at("node")) == "save");
      const std::string sha = str(listed[0].at("sha256"));
      BOOST_TEST(std::regex_match(sha, std::regex("[0-9a-f]{64}")), sha);
      const ProcessResult text = pyoco({"runs", "artifacts", c.id});
      BOOST_TEST(text.out ==
                     "NODE  NAME         SIZE  MEDIA TYPE        SHA256        PATH\n"
                     "save  report.json  13 B  application/json  " +
                         sha.substr(0, 12) + "  " + c.expected.string() + "\n",
                 text.out);
    }
  }
}

// docs/history.md: `--wait` gives up after --timeout SECONDS, and exits 1
// when the run ends some other way than CANCELLED.
BOOST_AUTO_TEST_CASE(cancel_wait_gives_up_in_time_and_reports_another_end) {
  auto run = background({"run", flow("sleepy.yaml").string(), "--non-cute"});
  BOOST_TEST_REQUIRE(run->wait_for_output("INFO pyoco start node=nap"), run->out() << run->err());
  const std::string id = running_id();
  run->send_signal(SIGSTOP);  // it cannot act on a request now
  const ProcessResult late = pyoco({"runs", "cancel", id, "--wait", "--timeout", "0.3"});
  BOOST_TEST(late.exit_code == 1, late.out << late.err);
  BOOST_TEST(has(late.out, "cancel requested: run " + id), late.out);
  // Its process is stopped, not its tasks slow: the message says so (it
  // blamed the tasks, which a run does not wait for).
  const std::string pid = std::to_string(run->pid());
  BOOST_TEST(late.err == "pyoco runs cancel: run " + id +
                             " has not ended after 0.3 s; its process (pid " + pid +
                             ") is stopped (SIGSTOP, Ctrl+Z or a debugger): it acts on the "
                             "request once it goes on (kill -CONT " +
                             pid + ")\n",
             late.err);
  // The process dies instead of cancelling: --wait says how the run ended.
  auto waiter = background({"runs", "cancel", id, "--wait"});
  BOOST_TEST_REQUIRE(waiter->wait_for_output("cancel requested: run " + id), waiter->err());
  run->send_signal(SIGKILL);
  BOOST_TEST(run->wait() == 128 + SIGKILL);
  BOOST_TEST(waiter->wait() == 1, waiter->out() << waiter->err());
  BOOST_TEST(has(waiter->out(), "run " + id + " ended FAILED\n"), waiter->out());
}

// docs/history.md: the history is plain SQLite of the schema version it names; a page of
// tasks is a JSON array of task objects, and the query shown there reads it.
BOOST_AUTO_TEST_CASE(the_history_can_be_read_by_hand) {
  BOOST_TEST_REQUIRE(
      pyoco({"run", flow("fails.yaml").string(), "--run-id", "549fb4ce-by-hand"}).exit_code == 1);
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open((dir.path() / "home/state.db").c_str(), &db) == SQLITE_OK);
  std::string rows;
  const auto collect = [](void* out, int n, char** values, char**) {
    std::string& text = *static_cast<std::string*>(out);
    for (int i = 0; i < n; ++i) text += std::string(i ? "|" : "") + (values[i] ? values[i] : "");
    text += '\n';
    return 0;
  };
  // The schema version the page names.
  std::ifstream doc(source_dir() / "docs/history.md");
  std::stringstream text;
  text << doc.rdbuf();
  std::smatch version;
  const std::string history_md = text.str();
  BOOST_TEST_REQUIRE(std::regex_search(history_md, version,
                                       std::regex(R"(plain SQLite \(schema version (\d+)\))")));
  BOOST_TEST(sqlite3_exec(db, "PRAGMA user_version", collect, &rows, nullptr) == SQLITE_OK);
  BOOST_TEST(rows == version[1].str() + "\n");
  rows.clear();
  const char* query =
      "SELECT j.value->>'node', j.value->>'state' FROM task_pages, json_each(tasks) j\n"
      "     WHERE run_id LIKE '549f%' ORDER BY page, j.key";
  BOOST_TEST(sqlite3_exec(db, query, collect, &rows, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  BOOST_TEST(rows == "ok|SUCCEEDED\nbroken|FAILED\nnever|CANCELLED\n");
  sqlite3_close(db);
}

// docs/history.md: `runs cancel` works as a first Ctrl+C would, also on a
// run whose plugins still load (its --run-id shows PENDING meanwhile). The
// request was taken ("cancel requested", exit 0) and dropped: every task
// ran and the run ended COMPLETED.
BOOST_AUTO_TEST_CASE(a_cancel_while_the_plugins_load_cancels_the_run_as_it_starts) {
  const fs::path loaded = dir.path() / "loaded";
  std::ofstream(dir.path() / "slow.yaml")
      << "flow: {name: slow, graph: a >> b >> c}\ntasks:\n  a: {use: \"hostile/calm\"}\n"
         "  b: {use: std/echo, inputs: {value: 1}}\n  c: {use: std/echo, inputs: {value: 2}}\n";
  // Its library loads until `loaded` exists.
  env["PYOCO_FIXTURE_HOSTILE"] = "wait:" + loaded.string();
  auto run = background({"run", (dir.path() / "slow.yaml").string(), "--non-cute", "--run-id",
                         "slow-load", "--plugin-path", (fixture_dir() / "hostile").string()});
  env.erase("PYOCO_FIXTURE_HOSTILE");
  BOOST_TEST_REQUIRE(maps_library(run->pid(), "libpyoco_hostile.so"));
  BOOST_TEST_REQUIRE(str(show_json("slow-load").at("status")) == "PENDING");
  auto cancel = background({"runs", "cancel", "slow-load", "--wait"});
  BOOST_TEST_REQUIRE(cancel->wait_for_output("cancel requested: run slow-load"), cancel->err());
  // Heard while loading (SIGURG), not only once the run goes.
  const bool heard = eventually([&] {
    return has(run->err(),
               "pyoco run: cancel requested (pyoco runs cancel) while the flow's "
               "plugins load; the run is cancelled as soon as it starts\n");
  });
  BOOST_TEST(heard, run->err());
  std::ofstream{loaded};
  BOOST_TEST(run->wait() == 130, run->out() << run->err());
  BOOST_TEST(has(run->out(), "WARN pyoco end flow=slow status=CANCELLED"), run->out());
  BOOST_TEST(!has(run->out(), "start node=c"), run->out());
  BOOST_TEST(cancel->wait() == 0, cancel->out() << cancel->err());
  BOOST_TEST(has(cancel->out(), "run slow-load ended CANCELLED\n"), cancel->out());
  const json::object shown = show_json("slow-load");
  BOOST_TEST(str(shown.at("status")) == "CANCELLED");
  BOOST_TEST(shown.at("cancel_requested").as_bool());

  // Interrupted while it loads, the run never starts and its id is freed:
  // the waiting cancel says so, not that the process is gone.
  const fs::path never = dir.path() / "never";
  env["PYOCO_FIXTURE_HOSTILE"] = "wait:" + never.string();
  auto left = background({"run", (dir.path() / "slow.yaml").string(), "--non-cute", "--run-id",
                          "left-early", "--plugin-path", (fixture_dir() / "hostile").string()});
  env.erase("PYOCO_FIXTURE_HOSTILE");
  BOOST_TEST_REQUIRE(maps_library(left->pid(), "libpyoco_hostile.so"));
  auto waiting = background({"runs", "cancel", "left-early", "--wait"});
  BOOST_TEST_REQUIRE(waiting->wait_for_output("cancel requested: run left-early"), waiting->err());
  BOOST_TEST_REQUIRE(eventually([&] { return has(left->err(), "the run is cancelled as soon"); }),
                     left->err());
  ::kill(left->pid(), SIGINT);
  BOOST_TEST(left->wait() == 130, left->err());
  BOOST_TEST(waiting->wait() == 0, waiting->out() << waiting->err());
  BOOST_TEST(has(waiting->out(),
                 "run left-early never started: its process stopped before the run "
                 "began, and the history keeps no record of it\n"),
             waiting->out() << waiting->err());
}

BOOST_AUTO_TEST_SUITE_END()
