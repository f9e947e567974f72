// `pyoco worker` against a real nats-server: a run submitted by flow name
// or as YAML ends COMPLETED through the worker; a flow it cannot run fails
// at once with a dead letter; a finished run delivered again is acked, not
// run again; `--slots` bounds what runs at once; a cancel ends a running
// run; a worker killed mid-run leaves its run to the next one.
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>

#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>

#include <nats/nats.h>

#include <signal.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "child.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "temp_dir.hpp"
#include "worker_cluster.hpp"

using namespace pyoco;
using namespace pyoco::cluster;
using namespace pyoco::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

// Holds the worker's only pool thread past the AckWait, ignoring cancel.
constexpr const char* kBlockFlow = R"(flow:
  graph: hold
tasks:
  hold: {use: "busy/block", inputs: {seconds: "$ctx.params.seconds"}}
)";

// As kBlockFlow, held until the file `gate` exists (or `seconds` is over).
constexpr const char* kGatedBlockFlow = R"(flow:
  graph: hold
tasks:
  hold: {use: "busy/block", inputs: {seconds: "$ctx.params.seconds", until_file: "$ctx.params.gate"}}
)";

constexpr const char* kSleepFlow = R"(flow:
  graph: nap
tasks:
  nap: {use: "std/sleep", inputs: {seconds: "$ctx.params.seconds"}}
)";

// The worker cluster with this file's flows.
struct Cluster : WorkerCluster {
  TempDir gates;

  Cluster() {
    write_text(flows.path() / "gated.yaml", gated_flow(gate()));
    write_text(flows.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
    write_text(flows.path() / "sleepy.yaml", kSleepFlow);
    write_text(flows.path() / "block.yaml", kBlockFlow);
    write_text(flows.path() / "gated_block.yaml", kGatedBlockFlow);
  }

  std::filesystem::path gate() const { return gates.path() / "gate-open"; }
  void open_gate() const { write_text(gate(), ""); }

  RunJob job(const std::string& id, const std::string& flow, json::object params = {}) {
    RunJob j;
    j.run_id = id;
    j.flow_name = flow;
    j.params = std::move(params);
    return j;
  }

  // Waits until the work queue is empty (the ack follows the terminal
  // write); the jobs left at the deadline.
  std::uint64_t queue_after_acks(std::chrono::seconds deadline = 10s) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    std::uint64_t n = messages("PYOCO_WORK");
    while (n > 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(10ms);
      n = messages("PYOCO_WORK");
    }
    return n;
  }

  std::uint64_t messages(const std::string& name) {
    for (const auto& r : resource_status(nats, ResourceOptions{})) {
      if (r.name == name) return r.messages;
    }
    return 0;
  }
};

bool terminal(const RunRecord& r) { return r.terminal(); }

// Every event PYOCO_EVENTS holds for a run, in stream order (read by an
// ephemeral consumer, as any client could).
std::vector<json::object> events_of(const std::string& url, const std::string& run_id) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  BOOST_REQUIRE(natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK);
  BOOST_REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.DeliverPolicy = js_DeliverAll;
  so.Config.AckPolicy = js_AckNone;
  natsSubscription* sub = nullptr;
  jsErrCode jerr{};
  const std::string subject = "pyoco.ev." + run_id + ".>";
  BOOST_REQUIRE(js_SubscribeSync(&sub, js, subject.c_str(), nullptr, &so, &jerr) == NATS_OK);
  std::vector<json::object> out;
  // Until the consumer has nothing pending (a deadline only if NATS is stuck).
  for (natsMsg* m = nullptr; natsSubscription_NextMsg(&m, sub, 5000) == NATS_OK;) {
    out.push_back(json::parse(std::string_view(natsMsg_GetData(m),
                                               static_cast<std::size_t>(natsMsg_GetDataLength(m))))
                      .as_object());
    jsMsgMetaData* meta = nullptr;
    std::uint64_t pending = 0;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      pending = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
    }
    natsMsg_Destroy(m);
    if (pending == 0) break;
  }
  cluster::close_subscription(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return out;
}

std::size_t count_kind(const std::vector<json::object>& events, const char* kind) {
  return static_cast<std::size_t>(std::count_if(
      events.begin(), events.end(), [&](auto& e) { return e.at("kind").as_string() == kind; }));
}

// `node`'s last event is `kind`, saying `why`, and it comes before the
// run's end: the trace shows no task left started.
void expect_ended_before_the_run(const std::vector<json::object>& events, const std::string& node,
                                 const std::string& kind, const std::string& why) {
  std::optional<std::size_t> last, end;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const std::string_view k = events[i].at("kind").as_string();
    const json::value* n = events[i].if_contains("node");
    if (k.starts_with("node_") && n != nullptr && n->is_string() && n->as_string() == node) {
      last = i;
    }
    if (k == "run_end") end = i;
  }
  BOOST_TEST_REQUIRE(last.has_value());
  BOOST_TEST_REQUIRE(end.has_value());
  BOOST_TEST(events[*last].at("kind").as_string() == kind, json::serialize(events[*last]));
  BOOST_TEST(std::string(events[*last].at("message").as_string()).find(why) != std::string::npos,
             json::serialize(events[*last]));
  BOOST_TEST(*last < *end);
}

// events_of once the run's run_end is in the stream (or 20 s have
// passed): the worker publishes it after the record's terminal write, so a
// read right after wait_for(terminal) can come before it.
std::vector<json::object> events_once_ended(const std::string& url, const std::string& run_id) {
  std::vector<json::object> events;
  eventually(
      [&] {
        events = events_of(url, run_id);
        return count_kind(events, "run_end") > 0;
      },
      20s);
  return events;
}

}  // namespace

// A node's retries are told apart in the cluster's events as in a local
// trace (retry 2/3, 3/3); which delivery of the run made an event is its
// run_attempt. The delivery attempt used to overwrite the node's.
BOOST_AUTO_TEST_CASE(a_nodes_retries_keep_their_attempt_in_the_events) {
  Cluster c;
  c.worker("w1");
  RunRecords runs(c.nats);
  RunJob j = c.job("retrying", "retrying");
  j.workflow_yaml =
      "flow: {graph: f}\ntasks:\n  f: {use: std/fail, retries: 2, retry_backoff: {initial_ms: "
      "1}}\n";
  submit_run(c.nats, runs, j);
  BOOST_TEST(c.wait_for("retrying", terminal).status() == "FAILED");
  std::vector<std::int64_t> retries;
  for (const auto& e : events_once_ended(c.server.url(), "retrying")) {
    if (e.at("kind").as_string() == "node_retry") retries.push_back(e.at("attempt").as_int64());
    if (e.contains("seq")) BOOST_TEST(e.at("run_attempt").as_int64() == 1);  // the worker's
  }
  BOOST_TEST(retries == (std::vector<std::int64_t>{2, 3}), boost::test_tools::per_element());
}

// A frame that plans more than one NATS message can hold (4,000 nodes of
// 300-character names: about 1.4 MB of nodes_planned) goes in parts that
// add up to the whole plan; it used to be refused by NATS and lost.
BOOST_AUTO_TEST_CASE(a_plan_too_large_for_one_message_goes_in_parts) {
  Cluster c;
  std::string graph, tasks;
  for (int i = 0; i < 4000; ++i) {
    const std::string name = "n" + std::to_string(i) + "_" + std::string(300, 'x');
    graph += (i == 0 ? "" : " & ") + name;
    tasks += "  " + name + ": {use: std/echo}\n";
  }
  write_text(c.flows.path() / "wide.yaml", "flow:\n  graph: \"(" + graph + ")\"\ntasks:\n" + tasks);
  c.worker("w1");
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("wide", "wide"));
  BOOST_TEST(c.wait_for("wide", terminal).status() == "COMPLETED");
  std::size_t parts = 0, planned = 0;
  for (const auto& e : events_once_ended(c.server.url(), "wide")) {
    if (e.at("kind").as_string() != "nodes_planned") continue;
    ++parts;
    planned += e.at("planned").as_array().size();
  }
  BOOST_TEST(parts > 1u);
  BOOST_TEST(planned == 4000u);
}

// A log line too long for one NATS message is cut once, at a character,
// to what fits even escaped (2 MB of backslashes is 4 MB of JSON), and
// says so; it used to be refused whole (and, while this was written, cut
// over and over: every cut still escaped past the limit).
BOOST_AUTO_TEST_CASE(a_log_line_too_long_for_one_message_is_cut_once_and_says_so) {
  Cluster c;
  const std::string line = "\xC3\xA9" + std::string(2'000'000, '\\');  // é, then backslashes
  {
    EventPublisher events(c.nats);
    trace::RunEvent e{};
    e.kind = trace::EventKind::Log;
    e.seq = 1;
    e.time = std::chrono::system_clock::now();
    e.run_id = "chatty";
    e.flow = "chatty";
    e.node = "say";
    e.message = line;
    events.on_event(e);
    BOOST_TEST(events.flush("chatty", 10s));
  }
  const auto stored = events_of(c.server.url(), "chatty");
  BOOST_TEST_REQUIRE(stored.size() == 1u);
  const std::string message(stored[0].at("message").as_string());
  BOOST_TEST(message.starts_with("\xC3\xA9\\\\"));
  BOOST_TEST(message.ends_with("(cut: the line was 2000002 bytes, more than an event may hold)"));
  BOOST_TEST(message.size() < 200'000u);
}

BOOST_AUTO_TEST_CASE(runs_by_name_and_as_yaml_complete_on_a_worker) {
  Cluster c;
  c.worker("w1");
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("by-name", "hello"));
  RunJob inline_yaml = c.job("as-yaml", "sleepy", json::object{{"seconds", 0.01}});
  inline_yaml.workflow_yaml = kSleepFlow;
  submit_run(c.nats, runs, inline_yaml);

  const RunRecord done = c.wait_for("by-name", terminal);
  BOOST_TEST(done.status() == "COMPLETED", json::serialize(done.snapshot));
  BOOST_TEST(done.snapshot.at("attempt").as_int64() == 1);
  BOOST_TEST(done.snapshot.at("owner").at("worker_id").as_string() == "w1");
  BOOST_TEST(done.snapshot.at("tasks").as_object().size() == 3u);
  for (const auto& [node, state] : done.snapshot.at("tasks").as_object()) {
    BOOST_TEST_CONTEXT(node) { BOOST_TEST(state.as_string() == "SUCCEEDED"); }
  }
  BOOST_TEST(c.wait_for("as-yaml", terminal).status() == "COMPLETED");
  BOOST_TEST(c.queue_after_acks() == 0u);  // acked: gone from the queue

  // Its events, in order, each once; one RunEnd, after the record was terminal.
  const auto events = events_once_ended(c.server.url(), "by-name");
  BOOST_TEST_REQUIRE(!events.empty());
  BOOST_TEST(events.front().at("kind").as_string() == "run_submitted");  // by the submitter
  BOOST_TEST(events.at(1).at("kind").as_string() == "run_start");
  BOOST_TEST(events.back().at("kind").as_string() == "run_end");
  BOOST_TEST(events.back().at("status").as_string() == "COMPLETED");
  BOOST_TEST(count_kind(events, "run_end") == 1u);
  BOOST_TEST(count_kind(events, "node_done") == 3u);
  std::int64_t last = 0;
  for (const auto& e : events) {
    // One clock format in one stream, the submitter's and the record's
    // events too (they were epoch numbers; the dashboard showed no time).
    BOOST_TEST(e.at("ts").is_string(), json::serialize(e));
    BOOST_TEST(e.at("ts").as_string().ends_with("Z"), json::serialize(e));
    if (!e.contains("seq")) continue;  // the RunEnd the record's end writes
    BOOST_TEST(e.at("seq").as_int64() > last);
    BOOST_TEST(e.at("attempt").as_int64() == 1);
    BOOST_TEST(e.at("run_attempt").as_int64() == 1);
    last = e.at("seq").as_int64();
  }
}

// std/write_file's artifacts go to --artifact-dir/<run id>/<name>; without
// it, under the worker's state home (PYOCO_HOME), not its working directory.
BOOST_AUTO_TEST_CASE(artifacts_go_to_the_artifact_dir_or_the_state_home) {
  Cluster c;
  write_text(c.flows.path() / "save.yaml",
             "flow: {graph: save}\ntasks:\n  save: {use: std/write_file, inputs: {name: "
             "report.txt, content: hi}}\n");
  TempDir artifacts, home;
  RunRecords runs(c.nats);
  ChildProcess& first = c.worker("w1", 1, {"--artifact-dir", artifacts.path().string()});
  submit_run(c.nats, runs, c.job("given", "save"));
  BOOST_TEST(c.wait_for("given", terminal).status() == "COMPLETED");
  BOOST_TEST(read_text(artifacts.path() / "given" / "report.txt") == "hi");
  first.send_signal(SIGTERM);
  BOOST_TEST_REQUIRE(first.wait(10s) == 0, first.err());

  c.worker("w2", 1, {}, {{"PYOCO_HOME", home.path().string()}});
  submit_run(c.nats, runs, c.job("default", "save"));
  BOOST_TEST(c.wait_for("default", terminal).status() == "COMPLETED");
  BOOST_TEST(read_text(home.path() / "worker-artifacts" / "w2" / "default" / "report.txt") == "hi");
  BOOST_TEST(!std::filesystem::exists(c.flows.path() / ".pyoco"));  // the working directory
}

BOOST_AUTO_TEST_CASE(a_flow_the_worker_cannot_run_fails_at_once_with_a_dead_letter) {
  Cluster c;
  c.worker("w1");
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("nowhere", "no_such_flow"));
  RunJob broken = c.job("broken", "broken");
  broken.workflow_yaml = "flow: {graph: \"a >> \"}\ntasks: {a: {use: std/echo}}\n";
  submit_run(c.nats, runs, broken);
  RunJob unknown_task = c.job("unknown-task", "t");
  unknown_task.workflow_yaml = "flow: {graph: a}\ntasks: {a: {use: nope/nothing}}\n";
  submit_run(c.nats, runs, unknown_task);
  for (const char* id : {"nowhere", "broken", "unknown-task"}) {
    BOOST_TEST_CONTEXT(id) {
      const RunRecord r = c.wait_for(id, terminal);
      BOOST_TEST(r.status() == "FAILED");
      BOOST_TEST(r.snapshot.at("attempt").as_int64() == 1);  // never redelivered
      BOOST_TEST(!r.snapshot.at("error").as_string().empty());
    }
  }
  BOOST_TEST(c.wait_for("nowhere", terminal)
                 .snapshot.at("error")
                 .as_string()
                 .find("flow \"no_such_flow\" is not in") != std::string::npos);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (c.messages("PYOCO_DLQ") < 3 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  BOOST_TEST(c.messages("PYOCO_DLQ") == 3u);
  BOOST_TEST(c.queue_after_acks() == 0u);
  for (const char* id : {"nowhere", "broken", "unknown-task"}) {
    BOOST_TEST(count_kind(events_once_ended(c.server.url(), id), "run_end") == 1u, id);
  }
}

// `--flows-only`: a flow sent whole fails at once, naming why, and never
// runs; a flow of the worker's directory still does.
BOOST_AUTO_TEST_CASE(a_flows_only_worker_refuses_a_flow_sent_whole) {
  Cluster c;
  c.worker("w1", 1, {"--flows-only"});
  RunRecords runs(c.nats);
  RunJob sent = c.job("sent", "t");
  sent.workflow_yaml = "flow: {graph: a}\ntasks: {a: {use: std/echo}}\n";
  submit_run(c.nats, runs, sent);
  submit_run(c.nats, runs, c.job("named", "hello"));
  const RunRecord refused = c.wait_for("sent", terminal);
  BOOST_TEST(refused.status() == "FAILED");
  BOOST_TEST(refused.snapshot.at("error").as_string().find("--flows-only") != std::string::npos,
             refused.snapshot.at("error"));
  BOOST_TEST(count_kind(events_of(c.server.url(), "sent"), "node_start") == 0u);
  BOOST_TEST(c.wait_for("named", terminal).status() == "COMPLETED");
}

// A run reads the worker's environment with $env, but not its PYOCO_*
// settings: NATS credentials and secrets never reach a run's output.
BOOST_AUTO_TEST_CASE(runs_read_the_environment_but_not_the_worker_s_settings) {
  Cluster c;
  c.worker("w1", 1, {}, {{"VISIBLE_TO_RUNS", "seen"}, {"PYOCO_WEBHOOK_SECRET", "hunter2"}});
  RunRecords runs(c.nats);
  RunJob plain = c.job("plain", "p");
  plain.workflow_yaml =
      "flow: {graph: a}\ntasks: {a: {use: std/echo, inputs: {value: "
      "\"$env.VISIBLE_TO_RUNS\"}}}\n";
  RunJob secret = c.job("secret", "s");
  secret.workflow_yaml =
      "flow: {graph: a}\ntasks: {a: {use: std/echo, inputs: {value: "
      "\"$env.PYOCO_WEBHOOK_SECRET\"}}}\n";
  submit_run(c.nats, runs, plain);
  submit_run(c.nats, runs, secret);
  BOOST_TEST(c.wait_for("plain", terminal).status() == "COMPLETED");
  const RunRecord r = c.wait_for("secret", terminal);
  BOOST_TEST(r.status() == "FAILED");
  const std::string all = json::serialize(r.snapshot);
  BOOST_TEST(all.find("hunter2") == std::string::npos);
  BOOST_TEST(all.find("environment variable PYOCO_WEBHOOK_SECRET is not set") != std::string::npos,
             all);
}

// What a task starts inherits the worker's environment but none of its
// PYOCO_* settings: the worker removed them once read (and blanked them in
// /proc/<worker>/environ), so a std/shell command finds neither the NATS
// password nor the token the worker connected with, while a variable of
// the worker's own and one of the task's `env` reach it (an empty
// environment would fail too).
BOOST_AUTO_TEST_CASE(a_task_s_processes_do_not_inherit_the_worker_s_nats_credentials) {
  const std::string password = "right-horse-battery-staple-0123";
  const std::string token = "t0ken-of-32-chars-or-more-here";
  // Its lines for PYOCO_*, MY_VAR and FROM_INPUT; then how many lines of
  // its environment, and of the worker's as /proc shows it (one line),
  // hold either secret or a PYOCO_ name (grep -c prints 0 and fails when
  // none does).
  const std::string flow =
      "flow: {graph: a}\ntasks:\n  a:\n    use: std/shell\n    inputs:\n      command: \"env "
      "| grep -e '^PYOCO_' -e '^MY_VAR=' -e '^FROM_INPUT=' | sort; { env; cat /proc/$PPID/environ; "
      "echo; } | grep -c -a -F -e PYOCO_ -e '" +
      password + "' -e '" + token + "' || true\"\n      env: {FROM_INPUT: given}\n";
  struct Case {
    const char* name;
    std::string config;
    cluster::ConnectOptions credentials;
    std::map<std::string, std::string> env;
    std::string userinfo;  // in the URL events_of connects with
  };
  const std::vector<Case> cases{
      {"user and password",
       "authorization { user: \"pyoco\", password: \"" + password + "\" }\n",
       {.user = "pyoco", .password = password},
       {{"PYOCO_NATS_USER", "pyoco"}, {"PYOCO_NATS_PASSWORD", password}},
       "pyoco:" + password},
      {"token",
       "authorization { token: \"" + token + "\" }\n",
       {.token = token},
       {{"PYOCO_NATS_TOKEN", token}},
       token}};
  for (const Case& k : cases) {
    BOOST_TEST_CONTEXT(k.name) {
      WorkerCluster c({.config = k.config}, k.credentials);
      std::map<std::string, std::string> env = k.env;
      env["MY_VAR"] = "1";
      c.worker("w1", 1, {}, env);
      RunRecords runs(c.nats);
      RunJob job;
      job.run_id = "shell";
      job.flow_name = "shell";
      job.workflow_yaml = flow;
      submit_run(c.nats, runs, job);
      const RunRecord r = c.wait_for("shell", terminal);
      BOOST_TEST_REQUIRE(r.status() == "COMPLETED", json::serialize(r.snapshot));

      const std::string url =
          "nats://" + k.userinfo + "@127.0.0.1:" + std::to_string(c.server.port());
      std::string output;
      for (const auto& e : events_once_ended(url, "shell")) {
        if (e.at("kind").as_string() == "node_done") output = e.at("output").as_string().c_str();
      }
      BOOST_TEST_REQUIRE(!output.empty());
      boost::system::error_code ec;
      const json::value outputs = json::parse(output, ec);  // a summary cut at 200 is no JSON
      BOOST_TEST_REQUIRE(!ec, output);
      BOOST_TEST(outputs.at("stdout").as_string() == "FROM_INPUT=given\nMY_VAR=1\n0\n", output);
    }
  }
}

// A crash after the terminal write and before the ack delivers the job
// again: the worker acks it and does not run it again.
BOOST_AUTO_TEST_CASE(a_finished_run_delivered_again_is_not_run_again) {
  Cluster c;
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("finished", "hello"));
  RunRecord r = *runs.get("finished");
  json::object done = r.snapshot;
  done["status"] = "COMPLETED";
  const std::uint64_t revision = *runs.replace("finished", done, r.revision);
  c.worker("w1");
  BOOST_TEST(c.queue_after_acks(10s) == 0u);
  BOOST_TEST(runs.get("finished")->revision == revision);  // not touched
  // Its end is published (it may have been lost with the crash), once.
  const auto events = events_once_ended(c.server.url(), "finished");
  BOOST_TEST(count_kind(events, "run_end") == 1u);
  BOOST_TEST(count_kind(events, "node_start") == 0u);
}

BOOST_AUTO_TEST_CASE(slots_bound_the_runs_at_once_and_a_cancel_ends_a_running_run) {
  Cluster c;
  c.worker("w1", 4);
  RunRecords runs(c.nats);
  constexpr int kNaps = 8;
  for (int i = 0; i < kNaps; ++i) {
    submit_run(c.nats, runs, c.job("nap-" + std::to_string(i), "sleepy", {{"seconds", 0.4}}));
  }
  // Each run's span on the worker, [start_time, end_time] (its claim and
  // its terminal write, on the worker's clock): the most that overlap is
  // the most it ran at once (reading records one by one while they change
  // would count a run that ended and one that began after it together).
  std::vector<std::pair<double, int>> edges;
  for (int i = 0; i < kNaps; ++i) {
    const RunRecord r = c.wait_for("nap-" + std::to_string(i), terminal);
    BOOST_TEST(r.status() == "COMPLETED");
    edges.emplace_back(r.snapshot.at("start_time").to_number<double>(), +1);
    edges.emplace_back(r.snapshot.at("end_time").to_number<double>(), -1);
  }
  std::sort(edges.begin(), edges.end());  // an end before a start at the same instant
  int running = 0, most = 0;
  for (const auto& [at, step] : edges) most = std::max(most, running += step);
  BOOST_TEST(most <= 4);
  BOOST_TEST(most >= 2);  // it does run several at once

  submit_run(c.nats, runs, c.job("long", "sleepy", {{"seconds", 60}}));
  c.wait_for("long", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  const auto asked = std::chrono::steady_clock::now();
  request_cancel(c.nats, runs, "long", "test");
  BOOST_TEST(c.wait_for("long", terminal).status() == "CANCELLED");
  BOOST_TEST((std::chrono::steady_clock::now() - asked < 5s));
  const auto events = events_once_ended(c.server.url(), "long");
  BOOST_TEST(count_kind(events, "run_end") == 1u);
  BOOST_TEST(count_kind(events, "run_cancelling") == 1u);  // the request's, not the worker's too
}

// A cancel of a run whose worker is dead: the run shows CANCELLING at once
// (its run_cancelling comes from the request, not the worker, which shows
// it no more), and the next worker handed the run ends it CANCELLED without
// running it again.
BOOST_AUTO_TEST_CASE(a_run_whose_worker_is_dead_shows_cancelling_at_once) {
  Cluster c;
  ChildProcess& first = c.worker("w1");
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("stranded", "sleepy", {{"seconds", 60}}));
  // Its record shows the task under way (the worker's progress write).
  c.wait_for("stranded", [](const RunRecord& r) {
    const auto* tasks = r.snapshot.if_contains("tasks");
    return r.status() == "RUNNING" && tasks != nullptr && tasks->is_object() &&
           tasks->as_object().contains("nap") && tasks->as_object().at("nap") == "RUNNING";
  });
  first.send_signal(SIGKILL);
  first.wait(10s);
  BOOST_TEST(request_cancel(c.nats, runs, "stranded", "ops")->status() == "CANCELLING");
  const auto asked = events_of(c.server.url(), "stranded");
  BOOST_TEST_REQUIRE(count_kind(asked, "run_cancelling") == 1u);
  const auto cancelling = std::find_if(asked.begin(), asked.end(), [](auto& e) {
    return e.at("kind").as_string() == "run_cancelling";
  });
  BOOST_TEST(cancelling->at("by").as_string() == "ops");
  BOOST_TEST(cancelling->at("status").as_string() == "CANCELLING");
  BOOST_TEST(cancelling->at("flow").as_string() == "sleepy");
  BOOST_TEST(count_kind(asked, "run_end") == 0u);

  c.worker("w2");
  const RunRecord r = c.wait_for("stranded", terminal, 30s);
  BOOST_TEST(r.status() == "CANCELLED");
  // No task of a finished run is shown under way (an outside tester saw
  // the dead attempt's RUNNING kept for good).
  BOOST_TEST(r.snapshot.at("tasks").at("nap").as_string() == "CANCELLED");
  const json::object& counts = r.snapshot.at("task_counts").as_object();
  BOOST_TEST(!counts.contains("RUNNING"));
  BOOST_TEST(!counts.contains("PENDING"));
  BOOST_TEST(counts.at("CANCELLED").as_int64() == 1);
  const auto events = events_once_ended(c.server.url(), "stranded");
  BOOST_TEST(count_kind(events, "run_cancelling") == 1u);
  BOOST_TEST(count_kind(events, "run_end") == 1u);
  expect_ended_before_the_run(events, "nap", "node_cancelled", "cancelled while its worker w1");
}

// The same, with the worker killed before its first progress write: its
// record held no tasks, and the run ended with `tasks: {}` while its trace
// showed `nap` started for good (an outside tester). The next worker reads
// the run's node events for what started and ends it, in both.
BOOST_AUTO_TEST_CASE(a_task_started_by_a_worker_that_died_before_saving_it_is_ended_too) {
  Cluster c;
  // Its first progress write 1.5 s after the claim: the kill comes first.
  ChildProcess first({pyoco_exe().string(), "worker", "--nats", c.server.url(), "--worker-id", "w1",
                      "--flows", c.flows.path().string(), "--progress-interval", "1.5"},
                     {{"PYOCO_PLUGIN_PATH", ""}}, c.flows.path());
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("unsaved", "sleepy", {{"seconds", 60}}));
  BOOST_TEST_REQUIRE(eventually(
      [&] { return count_kind(events_of(c.server.url(), "unsaved"), "node_start") == 1u; }, 30s));
  first.send_signal(SIGKILL);
  first.wait(10s);
  const std::optional<RunRecord> at_kill = runs.get("unsaved");
  BOOST_TEST_REQUIRE(at_kill.has_value());
  const json::value* saved = at_kill->snapshot.if_contains("tasks");
  BOOST_WARN_MESSAGE(saved == nullptr || !saved->is_object() || saved->as_object().empty(),
                     "the host was slow: the worker saved its tasks before the kill, so this "
                     "ran the saved path");
  BOOST_TEST(request_cancel(c.nats, runs, "unsaved", "ops")->status() == "CANCELLING");

  c.worker("w2");
  const RunRecord r = c.wait_for("unsaved", terminal, 30s);
  BOOST_TEST(r.status() == "CANCELLED");
  BOOST_TEST(r.snapshot.at("tasks").at("nap").as_string() == "CANCELLED");
  BOOST_TEST(r.snapshot.at("task_counts").at("CANCELLED").as_int64() == 1);
  BOOST_TEST(r.snapshot.at("tasks_omitted").as_int64() == 0);
  const auto events = events_once_ended(c.server.url(), "unsaved");
  expect_ended_before_the_run(events, "nap", "node_cancelled", "cancelled while its worker w1");
}

// kill -9 of the worker mid-run: NATS delivers the job again after
// AckWait, the next worker claims attempt 2, and the run ends once.
BOOST_AUTO_TEST_CASE(a_worker_killed_mid_run_leaves_the_run_to_the_next) {
  Cluster c;
  ChildProcess& first = c.worker("w1");
  RunRecords runs(c.nats);
  // Gated: attempt 1 cannot end before the kill however slow the host.
  submit_run(c.nats, runs, c.job("orphan", "gated"));
  c.wait_for("orphan", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  first.send_signal(SIGKILL);
  first.wait(10s);
  c.worker("w2");
  c.wait_for("orphan", [](const RunRecord& r) { return r.snapshot.at("attempt").as_int64() == 2; });
  c.open_gate();
  const RunRecord r = c.wait_for("orphan", terminal, 30s);
  BOOST_TEST(r.status() == "COMPLETED");
  BOOST_TEST(r.snapshot.at("attempt").as_int64() == 2);
  BOOST_TEST(r.snapshot.at("owner").at("worker_id").as_string() == "w2");
  BOOST_TEST(c.queue_after_acks(10s) == 0u);
  // Both attempts' events are kept (attempt 1's up to the kill); one end.
  const auto events = events_once_ended(c.server.url(), "orphan");
  BOOST_TEST(count_kind(events, "run_end") == 1u);
  BOOST_TEST(std::any_of(events.begin(), events.end(), [](auto& e) {
    return e.contains("run_attempt") && e.at("run_attempt").is_int64() &&
           e.at("run_attempt").as_int64() == 2;
  }));
}

// A plugin whose task calls exit(0): it ended the worker with exit code 0
// and no word, and NATS delivered the run again to the next worker, which
// the same task ended too. Now the worker records the run FAILED, saying
// why, terminates its job (no attempt 2) and exits 1.
BOOST_AUTO_TEST_CASE(a_plugin_that_exits_fails_its_run_and_not_the_next_worker) {
  Cluster c;
  write_text(c.flows.path() / "quits.yaml",
             "flow: {name: quits, graph: a}\ntasks:\n  a: {use: \"hostile/calm\"}\n");
  ChildProcess& w = c.worker("w1", 1, {"--plugin-path", (fixture_dir() / "hostile").string()},
                             {{"HOSTILE_TASK", "task_exit"}});
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("quits", "quits"));
  BOOST_TEST_REQUIRE(w.wait(30s) == 1, w.err());
  BOOST_TEST(w.err().find("pyoco worker: a plugin called exit(0) in worker w1; failing the runs "
                          "it held") != std::string::npos,
             w.err());
  const RunRecord r = c.wait_for("quits", terminal, 10s);
  BOOST_TEST(r.status() == "FAILED");
  BOOST_TEST(r.snapshot.at("error").as_string() ==
             "a plugin called exit(0) in worker w1, ending it: the run cannot go on");
  BOOST_TEST(r.snapshot.at("attempt").as_int64() == 1);
  BOOST_TEST(c.queue_after_acks(10s) == 0u);  // acked: no other worker gets it
  const auto events = events_once_ended(c.server.url(), "quits");
  BOOST_TEST(count_kind(events, "run_end") == 1u);
}

// A worker drained (SIGTERM) with a run it cannot finish in its grace hands
// the run back at once: its lease given up and its job nak'd, so the next
// worker claims it now, not after the AckWait and then the lease (about 35 s
// at the defaults). The run was not cancelled, only moved: no
// run_cancelling or node_cancelled of the first attempt reaches a watcher
// or the gateways' index (which showed it CANCELLING).
BOOST_AUTO_TEST_CASE(a_drained_worker_hands_its_run_back_at_once) {
  Cluster c;
  // A tag of its own with the default AckWait (30 s), not the tests' 2 s:
  // a run left to the AckWait would not be claimed again within 20 s.
  ResourceOptions slow;
  slow.tags = {"slow"};
  init_resources(c.nats, slow);
  ChildProcess& first = c.worker("w1", 1, {"--tags", "slow", "--drain-timeout", "0"});
  RunRecords runs(c.nats);
  // Gated: the run is still going when the drain ends, however slow the host.
  RunJob job = c.job("moved", "gated");
  job.tag = "slow";
  submit_run(c.nats, runs, job);
  c.wait_for("moved", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  first.send_signal(SIGTERM);
  BOOST_TEST_REQUIRE(first.wait(10s) == 0, first.err());
  // Its log says so: handed back, not an end and not CANCELLED.
  BOOST_TEST(first.err().find("worker: handed back") != std::string::npos, first.err());
  BOOST_TEST(first.err().find("given up") == std::string::npos, first.err());
  BOOST_TEST(first.err().find("CANCELLED") == std::string::npos, first.err());
  const RunRecord given_up = *runs.get("moved");
  BOOST_TEST(given_up.status() == "RUNNING");
  BOOST_TEST(given_up.lease_until() <= epoch_now());

  const auto handed = std::chrono::steady_clock::now();
  c.worker("w2", 1, {"--tags", "slow"});
  const RunRecord claimed = c.wait_for(
      "moved", [](const RunRecord& r) { return r.snapshot.at("attempt").as_int64() == 2; }, 20s);
  BOOST_TEST(claimed.snapshot.at("owner").at("worker_id").as_string() == "w2");
  BOOST_TEST((std::chrono::steady_clock::now() - handed < 20s));
  c.open_gate();
  const RunRecord r = c.wait_for("moved", terminal, 30s);
  BOOST_TEST(r.status() == "COMPLETED");
  const auto events = events_once_ended(c.server.url(), "moved");
  BOOST_TEST(count_kind(events, "run_cancelling") == 0u);
  BOOST_TEST(count_kind(events, "node_cancelled") == 0u);
  BOOST_TEST(count_kind(events, "run_end") == 1u);
}

// Two workers holding one run: w1 stops (SIGSTOP) past the AckWait, NATS
// gives the job to w2 (attempt 2), which finishes it; w1, resumed, finds
// it has lost the run and writes nothing. One terminal write, one RunEnd.
BOOST_AUTO_TEST_CASE(two_workers_holding_one_run_write_one_end) {
  Cluster c;
  ChildProcess& first = c.worker("w1");
  RunRecords runs(c.nats);
  // Gated: attempt 1 cannot end before w1 is stopped and the job is w2's,
  // however slow the host (SIGSTOP stops w1, not its shell: the gate, not
  // w1's stop, keeps attempt 1 going). The gate opens with w1 still
  // stopped, so that w1, run again, has an end to write for a run it no
  // longer holds, and w2 must complete attempt 2.
  submit_run(c.nats, runs, c.job("shared", "gated"));
  c.wait_for("shared", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  first.send_signal(SIGSTOP);
  c.worker("w2");
  c.wait_for("shared", [](const RunRecord& r) { return r.snapshot.at("attempt").as_int64() == 2; });
  c.open_gate();
  first.send_signal(SIGCONT);  // w1 runs again, still holding attempt 1
  const RunRecord r = c.wait_for("shared", terminal, 30s);
  BOOST_TEST(r.status() == "COMPLETED");
  BOOST_TEST(r.snapshot.at("owner").at("worker_id").as_string() == "w2");
  std::this_thread::sleep_for(1s);  // time for a stale write to land, if one could
  BOOST_TEST(runs.get("shared")->revision == r.revision);
  BOOST_TEST(count_kind(events_once_ended(c.server.url(), "shared"), "run_end") == 1u);
}

// A worker that lost its run while it was stopped (SIGSTOP past its lease:
// the run is w2's, attempt 2) publishes nothing more of it and starts
// nothing more when it runs again. Its first task ends while it is stopped
// (the gate opens; its shell was not stopped), and it runs again while
// NATS does not answer (nats-server stopped too), so that it cannot learn
// at once that it lost the run: it used to publish node_done a and
// node_start b of attempt 1 (stored once NATS answered, after attempt 2's
// events) and run b (a second line in the marker). Its lease, read by its
// own clock, has run out: now nothing goes out and b waits, until NATS
// answers and the run is found another's.
BOOST_AUTO_TEST_CASE(a_worker_that_lost_its_run_publishes_and_starts_nothing_more) {
  Cluster c;
  const std::filesystem::path marker = c.gates.path() / "b-ran";
  write_text(
      c.flows.path() / "two_steps.yaml",
      "flow:\n  graph: a >> b\ntasks:\n  a: {use: \"std/shell\", inputs: {command: \"while [ ! "
      "-e '" +
          c.gate().string() + "' ] && [ -d '" + c.gates.path().string() +
          "' ]; do sleep 0.05; done\"}}\n  b: {use: \"std/shell\", inputs: {command: \"echo "
          "b >> '" +
          marker.string() + "'\"}}\n");
  ChildProcess& first = c.worker("w1");
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("stale", "two_steps"));
  // a has started on w1 (its events stored): stopped with its run going.
  BOOST_TEST_REQUIRE(eventually([&] {
    for (const auto& e : events_of(c.server.url(), "stale")) {
      if (e.at("kind").as_string() == "node_start") return true;
    }
    return false;
  }));
  first.send_signal(SIGSTOP);
  ChildProcess& second = c.worker("w2");
  c.wait_for("stale", [](const RunRecord& r) { return r.snapshot.at("attempt").as_int64() == 2; });
  c.open_gate();  // both attempts' a end; w1 is still stopped
  const RunRecord r = c.wait_for("stale", terminal, 30s);
  BOOST_TEST(r.status() == "COMPLETED");
  auto b_lines = [&] {
    const std::string text = read_text(marker);
    return std::count(text.begin(), text.end(), '\n');
  };
  BOOST_TEST_REQUIRE(b_lines() == 1);  // w2's
  BOOST_TEST_REQUIRE(::kill(c.server.pid(), SIGSTOP) == 0);
  first.send_signal(SIGCONT);  // w1 runs again, its a ended, b next; NATS silent
  // b does not start on w1 (it did at once); a second's grace to show it.
  BOOST_TEST(!eventually([&] { return b_lines() > 1; }, 1s), "w1 ran b of a run it had lost");
  BOOST_TEST_REQUIRE(::kill(c.server.pid(), SIGCONT) == 0);
  BOOST_TEST_REQUIRE(
      eventually([&] { return first.err().find("worker: given up") != std::string::npos; }, 20s),
      first.err());
  BOOST_TEST(b_lines() == 1);
  // Attempt 1 made what it made before the stop (its run_start, its plan,
  // a's start, all stored by then), and nothing once attempt 2 had begun:
  // not a's end, not b's start, not its cancellation.
  const auto events = events_once_ended(c.server.url(), "stale");
  std::string second_began;  // attempt 2's run_start, by the host's clock
  for (const auto& e : events) {
    if (e.contains("run_attempt") && e.at("run_attempt").as_int64() == 2 &&
        e.at("kind").as_string() == "run_start") {
      second_began = std::string(e.at("ts").as_string());
    }
  }
  BOOST_TEST_REQUIRE(!second_began.empty());
  for (const auto& e : events) {
    if (!e.contains("run_attempt") || e.at("run_attempt").as_int64() != 1) continue;
    const std::string kind(e.at("kind").as_string());
    BOOST_TEST((kind == "run_start" || kind == "nodes_planned" ||
                (kind == "node_start" && e.at("node").as_string() == "a")),
               json::serialize(e));
    BOOST_TEST(std::string(e.at("ts").as_string()) < second_began,
               second_began << ": " << json::serialize(e));
  }
  // And in the stream's order: nothing of attempt 1 after attempt 2's first.
  bool second_seen = false;
  for (const auto& e : events) {
    if (!e.contains("run_attempt")) continue;
    if (e.at("run_attempt").as_int64() == 2) second_seen = true;
    BOOST_TEST(!(second_seen && e.at("run_attempt").as_int64() == 1), json::serialize(e));
  }
  BOOST_TEST(!process_gone(second.pid()), second.err());
}

// A worker silent past the 15 s a claim waits (SIGSTOP) has its id claimed
// by another. Resumed, its beats find the record the other instance's and
// never write over it (a compare-and-set on the revision it last wrote): it
// takes no new run, hands back the run it still holds as a drain does (its
// lease given up), says who took its id, and exits 3. The new worker
// watches the record for the real 15 s (no setting shortens it) before it
// takes the id: about 20 s.
BOOST_AUTO_TEST_CASE(a_worker_whose_id_was_taken_while_it_was_stopped_stops) {
  Cluster c;
  ChildProcess& first = c.worker("w1");
  RunRecords runs(c.nats);
  // A run it holds when it is stopped, gated so that it cannot end before.
  submit_run(c.nats, runs, c.job("held", "gated"));
  c.wait_for("held", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  std::optional<json::object> record;
  BOOST_TEST_REQUIRE(eventually([&] { return (record = c.worker_record("w1")).has_value(); }));
  const std::string stopped(record->at("instance_id").as_string());
  first.send_signal(SIGSTOP);
  // Its record still (a beat may have been on its way as it was stopped):
  // the same over a second.
  BOOST_TEST_REQUIRE(eventually(
      [&] {
        const auto before = c.worker_record("w1");
        std::this_thread::sleep_for(1s);
        const auto after = c.worker_record("w1");
        return before && after && before->at("last_seen_at") == after->at("last_seen_at");
      },
      30s));
  // On another tag, so that the run stays the stopped worker's to hand
  // back; and not the stopped one's --plugins-dir (one per worker id, on
  // this host: its lock is the stopped worker's).
  ResourceOptions other;
  other.ack_wait = 2s;
  other.tags = {"other"};
  init_resources(c.nats, other);
  ChildProcess& second = c.worker("w1", 1, {"--tags", "other", "--no-plugin-sync"});
  // It watches the stopped one's record for 15 s first: a minute, for a slow host.
  std::string taker;
  BOOST_TEST_REQUIRE(eventually(
                         [&] {
                           record = c.worker_record("w1");
                           if (record && record->at("instance_id").as_string() != stopped) {
                             taker = record->at("instance_id").as_string();
                           }
                           return !taker.empty();
                         },
                         60s),
                     second.err());

  // The record now, then every one written from here on, as any reader of
  // the bucket sees them.
  std::mutex m;
  std::vector<std::string> writers;
  std::atomic<bool> watching{true};
  kvStore* kv = open_bucket(c.nats, "pyoco_workers");
  kvWatcher* watcher = nullptr;
  BOOST_TEST_REQUIRE(kvStore_Watch(&watcher, kv, "w1", nullptr) == NATS_OK);
  std::thread watch([&] {
    while (watching) {
      kvEntry* e = nullptr;
      if (kvWatcher_Next(&e, watcher, 100) != NATS_OK || e == nullptr) continue;
      // A delete or purge marker has no record: not a write of a worker's.
      const char* text = kvEntry_ValueString(e);
      boost::system::error_code ec;
      const json::value v = json::parse(text != nullptr ? text : "", ec);
      kvEntry_Destroy(e);
      const json::value* who = v.is_object() ? v.as_object().if_contains("instance_id") : nullptr;
      if (ec || who == nullptr || !who->is_string()) continue;
      std::lock_guard lock(m);
      writers.emplace_back(who->as_string());
    }
  });

  first.send_signal(SIGCONT);
  const int code = first.wait(20s);
  // The new one's beats go on after the old one has gone.
  const std::size_t seen_at_exit = [&] {
    std::lock_guard lock(m);
    return writers.size();
  }();
  BOOST_TEST(eventually([&] {
    std::lock_guard lock(m);
    return writers.size() > seen_at_exit;
  }));
  watching = false;
  watch.join();
  kvWatcher_Destroy(watcher);
  kvStore_Destroy(kv);

  BOOST_TEST(code == 3, "exit " << code << ": " << first.err());
  const std::string err = first.err();
  BOOST_TEST(err.find("worker id w1 was taken over by instance " + taker + " on host ") !=
                 std::string::npos,
             err);
  BOOST_TEST(
      err.find(" pid " + std::to_string(second.pid()) + " after this worker") != std::string::npos,
      err);
  BOOST_TEST(err.find("was silent for ") != std::string::npos, err);
  BOOST_TEST(err.find("; this worker stops") != std::string::npos, err);
  {
    std::lock_guard lock(m);
    BOOST_TEST(std::count(writers.begin(), writers.end(), stopped) == 0,
               "the stopped worker wrote its record over the new one's");
    BOOST_TEST(std::count(writers.begin(), writers.end(), taker) == writers.size());
  }
  record = c.worker_record("w1");
  BOOST_TEST_REQUIRE(record.has_value());
  BOOST_TEST(record->at("instance_id").as_string() == taker);
  BOOST_TEST(record->at("pid").as_int64() == second.pid());
  // The run it held is handed back, not left to its lease: given up (its
  // lease ends when it was written) by the instance that held it.
  const RunRecord handed = *runs.get("held");
  BOOST_TEST(handed.snapshot.at("owner").at("instance").as_string() == stopped);
  BOOST_TEST(handed.lease_until() <= handed.snapshot.at("updated_at").to_number<double>(),
             json::serialize(handed.snapshot));
  BOOST_TEST(err.find("worker: handed back run_id=held") != std::string::npos, err);
  // And it ends once, on the next worker of its tag.
  c.worker("w2");
  c.wait_for("held", [](const RunRecord& r) { return r.snapshot.at("attempt").as_int64() >= 2; });
  c.open_gate();
  const RunRecord r = c.wait_for("held", terminal, 30s);
  BOOST_TEST(r.status() == "COMPLETED");
  BOOST_TEST(r.snapshot.at("owner").at("worker_id").as_string() == "w2");
  BOOST_TEST(count_kind(events_once_ended(c.server.url(), "held"), "run_end") == 1u);
  BOOST_TEST(!process_gone(second.pid()), second.err());
}

// The outage of point 8: nats-server is killed (-9) and restarted while 200
// runs are being submitted to 2 workers with 2 slots each. The submitter
// retries what failed with the same run id (submit is idempotent), as a
// client must; every run then ends exactly once, none is lost.
BOOST_AUTO_TEST_CASE(every_run_ends_once_across_a_nats_kill_and_restart) {
  Cluster c;
  c.worker("w1", 2);
  c.worker("w2", 2);
  constexpr int kRuns = 200;  // each naps 50 ms: 2 x 2 slots take 2.5 s at least
  std::atomic<int> submitted{0};
  std::atomic<int> retries{0};
  // Half the runs go in before the kill, the rest after it: the submitter
  // waits here after its 100th until the test has killed NATS (on a slow
  // host it could otherwise have submitted them all before the kill).
  Gate killed;
  std::mutex odd_mutex;
  std::vector<std::string> odd;  // errors other than NATS away, as the client saw them
  std::thread submitter([&] {
    try {
      // A connection of its own, as a client has; it rides out the outage.
      Connection nats{{.servers = {c.server.url()}}};
      RunRecords runs(nats);
      for (int i = 0; i < kRuns; ++i) {
        const auto until = std::chrono::steady_clock::now() + 60s;
        for (;;) {
          try {
            submit_run(nats, runs,
                       c.job("storm-" + std::to_string(i), "sleepy", {{"seconds", 0.05}}));
            break;
          } catch (const std::exception& e) {
            // NATS away, or coming back: a client retries (submit is idempotent).
            if (dynamic_cast<const NatsError*>(&e) == nullptr) {
              std::lock_guard lock(odd_mutex);
              odd.emplace_back(e.what());
            }
            ++retries;
            if (std::chrono::steady_clock::now() > until) return;
            std::this_thread::sleep_for(100ms);  // a client's back-off while NATS is away
          }
        }
        ++submitted;
        if (i + 1 == kRuns / 2) killed.wait(120s);
        std::this_thread::sleep_for(5ms);  // a steady stream, so that the outage falls amid it
      }
    } catch (const std::exception& e) {  // never std::terminate: the test says what it was
      std::lock_guard lock(odd_mutex);
      odd.emplace_back(std::string("submitter stopped: ") + e.what());
    }
  });
  // Whatever ends this test early, the submitter is let go and joined.
  struct JoinSubmitter {
    std::thread& t;
    Gate& killed;
    ~JoinSubmitter() {
      killed.open();
      if (t.joinable()) t.join();
    }
  } join_submitter{submitter, killed};
  // Kill NATS once the workers have ended some runs, with more in flight.
  for (int i = 0; i < 20; ++i) c.wait_for("storm-" + std::to_string(i), terminal, 30s);
  BOOST_TEST(submitted <= kRuns / 2);  // the rest come amid the outage
  c.server.kill9();
  killed.open();
  std::this_thread::sleep_for(1s);  // the outage itself
  c.server.start();
  // A gateway's reaper, sweeping often: a kill -9 can bring acked jobs back
  // (their deletes lost) and could lose a terminal write.
  Reaper reaper(c.nats);
  reaper.sweep_every = 500ms;
  reaper.start();
  submitter.join();
  for (const std::string& e : odd) BOOST_TEST_MESSAGE("the submitter saw: " << e);
  BOOST_TEST_REQUIRE(submitted == kRuns);
  BOOST_TEST_MESSAGE("submit retries during the outage: " << retries);

  std::map<std::string, int> statuses;
  for (int i = 0; i < kRuns; ++i) {
    const std::string id = "storm-" + std::to_string(i);
    const RunRecord r = c.wait_for(id, terminal, 90s);
    ++statuses[r.status() + " at attempt " + std::to_string(r.snapshot.at("attempt").as_int64())];
    BOOST_TEST(r.status() == "COMPLETED", id << ": " << json::serialize(r.snapshot));
  }
  for (const auto& [status, n] : statuses) BOOST_TEST_MESSAGE(status << ": " << n);
  BOOST_TEST(c.queue_after_acks(30s) == 0u);  // nothing left behind, acked or not
  // One RunEnd each, read from the stream as any client would.
  for (int i = 0; i < kRuns; ++i) {
    const std::string id = "storm-" + std::to_string(i);
    BOOST_TEST(count_kind(events_once_ended(c.server.url(), id), "run_end") == 1u, id);
  }
}

// ARCHITECTURE.md §4a on a worker: with its one pool thread held by a body
// that ignores cancel for longer than the AckWait, the run's progress acks
// and the worker's heartbeats still go out on time (no redelivery, the
// record stays fresh), and a cancel of a run whose body is still queued
// ends it at once.
BOOST_AUTO_TEST_CASE(a_saturated_pool_starves_neither_progress_nor_cancel) {
  Cluster c;
  c.worker("w1", 2, {"--jobs", "1", "--plugin-path", (fixture_dir() / "busy").string()});
  RunRecords runs(c.nats);
  // The holder holds the one thread until the test opens its gate (past
  // the 2 s AckWait by then): a fixed hold could run out before the checks
  // on a slow host. The queued body would hold it 30 s if it ever ran.
  const std::filesystem::path gate = c.flows.path() / "holder-gate";
  submit_run(c.nats, runs,
             c.job("holder", "gated_block", {{"seconds", 120}, {"gate", gate.string()}}));
  c.wait_for("holder", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  submit_run(c.nats, runs, c.job("queued", "block", {{"seconds", 30}}));
  c.wait_for("queued", [](const RunRecord& r) { return r.status() == "RUNNING"; });

  // The worker's record is kept fresh while its pool is held.
  const auto heartbeat_at = [&] {
    kvEntry* e = nullptr;
    kvStore* kv = nullptr;
    BOOST_REQUIRE(js_KeyValue(&kv, c.nats.handles().js, "pyoco_workers") == NATS_OK);
    BOOST_REQUIRE(kvStore_Get(&e, kv, "w1") == NATS_OK);
    const auto v = json::parse(std::string_view(static_cast<const char*>(kvEntry_Value(e)),
                                                static_cast<std::size_t>(kvEntry_ValueLen(e))));
    kvEntry_Destroy(e);
    kvStore_Destroy(kv);
    return v.at("last_seen_at").to_number<double>();
  };
  const double first = heartbeat_at();
  std::this_thread::sleep_for(2500ms);  // longer than AckWait, with the thread held
  BOOST_TEST(heartbeat_at() > first);

  const auto asked = std::chrono::steady_clock::now();
  request_cancel(c.nats, runs, "queued", "test");
  BOOST_TEST(c.wait_for("queued", terminal).status() == "CANCELLED");
  const auto took = std::chrono::steady_clock::now() - asked;
  // Ended at once, not after the holder: that one holds until the gate opens.
  BOOST_TEST((took < 3s), std::chrono::duration<double>(took).count() << " s");
  BOOST_TEST(!runs.get("holder")->terminal());

  write_text(gate, "");
  const RunRecord held = c.wait_for("holder", terminal, 30s);
  BOOST_TEST(held.status() == "COMPLETED");
  BOOST_TEST(held.snapshot.at("attempt").as_int64() == 1);  // progress acks held it
  BOOST_TEST(count_kind(events_once_ended(c.server.url(), "queued"), "run_end") == 1u);
  // The cancelled run's queued body never ran: the one thread is free for
  // the next run at once (it would be held 30 s more otherwise).
  const auto next = std::chrono::steady_clock::now();
  submit_run(c.nats, runs, c.job("next", "hello"));
  BOOST_TEST(c.wait_for("next", terminal, 60s).status() == "COMPLETED");
  const auto next_took = std::chrono::steady_clock::now() - next;
  BOOST_TEST((next_took < 10s), std::chrono::duration<double>(next_took).count() << " s");
}

// A worker whose every engine thread is held by a body its run gave up on
// (a task deaf to its cancel) went on taking runs: each waited for a thread
// while another worker stood idle (57 s for a two-echo run). Now it shows
// STALLED, says why, takes nothing until the body returns, and the next
// worker runs the run; once the body returns it takes runs again.
BOOST_AUTO_TEST_CASE(a_worker_whose_threads_are_all_held_takes_no_run_until_one_is_free) {
  Cluster c;
  ChildProcess& w1 =
      c.worker("w1", 2, {"--jobs", "1", "--plugin-path", (fixture_dir() / "busy").string()});
  RunRecords runs(c.nats);
  const std::filesystem::path gate = c.flows.path() / "deaf-gate";
  submit_run(c.nats, runs,
             c.job("deaf", "gated_block", {{"seconds", 120}, {"gate", gate.string()}}));
  c.wait_for("deaf", [](const RunRecord& r) { return r.status() == "RUNNING"; });
  request_cancel(c.nats, runs, "deaf", "test");
  BOOST_TEST(c.wait_for("deaf", terminal).status() == "CANCELLED");
  const auto state_of = [&](const char* id) {
    const auto r = c.worker_record(id);
    return r ? std::string(r->at("state").as_string()) : std::string();
  };
  BOOST_TEST_REQUIRE(eventually([&] { return state_of("w1") == "STALLED"; }, 20s), w1.err());
  const auto held = c.worker_record("w1");
  BOOST_TEST(held->at("held_threads").to_number<int>() == 1);
  BOOST_TEST(held->at("jobs").to_number<int>() == 1);
  BOOST_TEST(w1.err().find("no run is taken until one does") != std::string::npos, w1.err());

  submit_run(c.nats, runs, c.job("next", "hello"));
  ChildProcess& w2 = c.worker("w2");
  const RunRecord next = c.wait_for("next", terminal, 60s);
  BOOST_TEST(next.status() == "COMPLETED");
  BOOST_TEST(next.snapshot.at("owner").at("worker_id").as_string() == "w2");
  BOOST_TEST(state_of("w1") == "STALLED");
  // w1 never claimed it (a poll of its on its way as it stalled hands the
  // job back unclaimed): every event is of the attempt w2 ran.
  for (const json::object& e : events_once_ended(c.server.url(), "next")) {
    if (const json::value* a = e.if_contains("run_attempt")) {
      BOOST_TEST(a->as_int64() == next.snapshot.at("attempt").as_int64());
    }
  }

  write_text(gate, "");  // the deaf body returns
  BOOST_TEST_REQUIRE(eventually([&] { return state_of("w1") == "IDLE"; }, 20s), w1.err());
  BOOST_TEST(c.worker_record("w1")->at("held_threads").to_number<int>() == 0);
  BOOST_TEST(w1.err().find("an engine thread is free again") != std::string::npos, w1.err());
  // And takes runs again: with w2 gone, the next run is w1's.
  w2.send_signal(SIGTERM);
  BOOST_TEST_REQUIRE(w2.wait(30s) == 0, w2.err());
  submit_run(c.nats, runs, c.job("again", "hello"));
  const RunRecord again = c.wait_for("again", terminal, 60s);
  BOOST_TEST(again.status() == "COMPLETED");
  BOOST_TEST(again.snapshot.at("owner").at("worker_id").as_string() == "w1");
}

// A delivery of a run whose record shows another live owner (its lease not
// run out: NATS restarted, or an ack was late) is handed back with a delay,
// not taken over; once the lease has run out, the run is claimed.
BOOST_AUTO_TEST_CASE(a_run_another_owner_holds_is_left_until_its_lease_runs_out) {
  Cluster c;
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("leased", "hello"));
  const RunRecord pending = *runs.get("leased");
  json::object held = pending.snapshot;
  const double lease_until = epoch_now() + 3;
  held["status"] = "RUNNING";
  held["attempt"] = 1;
  held["start_time"] = epoch_now();
  held["owner"] =
      json::object{{"worker_id", "ghost"}, {"instance", "elsewhere"}, {"lease_until", lease_until}};
  const std::uint64_t revision = *runs.replace("leased", held, pending.revision);
  c.worker("w1");
  std::this_thread::sleep_for(1500ms);  // the worker has had the job for a while by now
  BOOST_TEST(runs.get("leased")->revision == revision);  // untouched while the lease holds
  const RunRecord r = c.wait_for("leased", terminal);
  BOOST_TEST(r.status() == "COMPLETED");
  BOOST_TEST(r.snapshot.at("owner").at("worker_id").as_string() == "w1");
  // Kept from the first start (to the precision a JSON double keeps).
  BOOST_TEST(
      r.snapshot.at("start_time").to_number<double>() == held.at("start_time").to_number<double>(),
      boost::test_tools::tolerance(1e-6));
  BOOST_TEST(r.snapshot.at("end_time").to_number<double>() >= lease_until);
}

// A job NATS delivered and never delivers again (nats-server 2.9 can lose
// a consumer's pending redeliveries across a leader change; here: a claim
// whose worker vanished while no worker pulls): once no lease holds its run
// and its record has not changed for an AckWait and a margin, the reaper
// queues it again, and a worker claims it as the next attempt.
BOOST_AUTO_TEST_CASE(a_job_never_delivered_again_is_queued_again_by_the_reaper) {
  Cluster c;
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, c.job("stranded", "hello"));
  // A worker's delivery and claim, then nothing: no ack, no more pulls.
  natsSubscription* sub = nullptr;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "PYOCO_WORK";
  so.Consumer = "pyoco_workers_default";
  jsErrCode jerr{};
  BOOST_REQUIRE(js_PullSubscribe(&sub, c.nats.handles().js, "pyoco.work.default",
                                 "pyoco_workers_default", nullptr, &so, &jerr) == NATS_OK);
  natsMsgList list{};
  BOOST_REQUIRE(natsSubscription_Fetch(&list, sub, 1, 5000, &jerr) == NATS_OK);
  BOOST_REQUIRE(list.Count == 1);
  jsMsgMetaData* meta = nullptr;
  BOOST_REQUIRE(natsMsg_GetMetaData(&meta, list.Msgs[0]) == NATS_OK);
  const std::uint64_t first_seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  natsMsgList_Destroy(&list);
  natsSubscription_Destroy(sub);
  const RunRecord pending = *runs.get("stranded");
  json::object held = pending.snapshot;
  const auto lease = 5s;
  held["status"] = "RUNNING";
  held["attempt"] = 1;
  held["start_time"] = epoch_now();
  held["owner"] =
      json::object{{"worker_id", "ghost"},
                   {"instance", "vanished"},
                   {"lease_until", epoch_now() + std::chrono::duration<double>(lease).count()}};
  const std::uint64_t revision = *runs.replace("stranded", held, pending.revision);
  const auto claimed = std::chrono::steady_clock::now();

  Reaper reaper(c.nats);
  // While the lease holds, the job is its owner's however long it waits.
  BOOST_TEST(reaper.requeue_stranded() == 0u);
  std::this_thread::sleep_until(claimed + lease - 500ms);
  BOOST_TEST(reaper.requeue_stranded() == 0u);
  // Past it: a first look, then (AckWait 2 s + a 2 s margin later) the second.
  std::this_thread::sleep_until(claimed + lease + 100ms);
  BOOST_TEST(reaper.requeue_stranded() == 0u);
  std::this_thread::sleep_for(3500ms);
  BOOST_TEST(reaper.requeue_stranded() == 0u);  // not yet: the margin is not over
  std::this_thread::sleep_for(1s);
  BOOST_TEST(reaper.requeue_stranded() == 1u);
  BOOST_TEST(runs.get("stranded")->revision == revision);  // the record is the claim's to change
  // The copy replaced the job: one job, a later one.
  BOOST_TEST(c.messages("PYOCO_WORK") == 1u);
  natsMsg* gone = nullptr;
  BOOST_TEST(js_GetMsg(&gone, c.nats.handles().js, "PYOCO_WORK", first_seq, nullptr, &jerr) !=
             NATS_OK);

  c.worker("w1");
  const RunRecord r = c.wait_for("stranded", terminal);
  BOOST_TEST(r.status() == "COMPLETED");
  BOOST_TEST(r.snapshot.at("attempt").as_int64() == 2);  // the copy's first delivery, attempt 2
  BOOST_TEST(r.snapshot.at("owner").at("worker_id").as_string() == "w1");
  BOOST_TEST(c.queue_after_acks(10s) == 0u);
  const auto events = events_once_ended(c.server.url(), "stranded");
  BOOST_TEST(count_kind(events, "run_end") == 1u);
  BOOST_TEST(count_kind(events, "node_done") >= 1u);
  // Every event the worker published names the second delivery (ids of their own).
  BOOST_TEST(std::all_of(events.begin(), events.end(), [](auto& e) {
    return !e.contains("seq") ||
           (e.at("run_attempt").is_int64() && e.at("run_attempt").as_int64() == 2);
  }));
  // A look after the end finds nothing to do.
  BOOST_TEST(reaper.requeue_stranded() == 0u);
}

// With fewer slots than tags, the tags take turns at the slot: a run on
// either starts promptly (no tag's polls keep the slot from another's).
BOOST_AUTO_TEST_CASE(tags_take_turns_at_a_single_slot) {
  Cluster c;
  ResourceOptions tagged;
  tagged.ack_wait = 2s;
  tagged.tags = {"a", "b"};
  init_resources(c.nats, tagged);
  ChildProcess& w = c.worker("w1", 1, {"--tags", "a,b"});
  // The worker is up (pulling: its record is written earlier, before it
  // subscribes) before the first submit: what is bounded below is how long
  // a run waits for the slot, not how long the worker takes to start
  // (seconds under the sanitizers).
  BOOST_TEST_REQUIRE(
      eventually([&] { return w.err().find(": pulling ") != std::string::npos; }, 60s), w.err());
  RunRecords runs(c.nats);
  for (int round = 0; round < 3; ++round) {
    for (const char* tag : {"a", "b"}) {
      RunJob j = c.job(std::string("turn-") + tag + std::to_string(round), "hello");
      j.tag = tag;
      submit_run(c.nats, runs, j);
      const RunRecord r = c.wait_for(j.run_id, terminal);
      BOOST_TEST(r.status() == "COMPLETED");
      // Its claim delay (submit to claim, both on this host's clock): a tag
      // kept from the slot by the other's polls waits far longer (its turn
      // never comes while the other is polled).
      const double waited = r.snapshot.at("start_time").to_number<double>() -
                            r.snapshot.at("submitted_at").to_number<double>();
      BOOST_TEST(waited < 3.0, j.run_id << ": claimed " << waited << " s after its submit");
    }
  }
}
