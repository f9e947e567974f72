// The run protocol on a real nats-server: snapshots written only by
// compare-and-swap, idempotent submit, cancel that is never lost and never
// overwrites a terminal state, and owners fenced by attempt.
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/cluster/unqueued_runs.hpp>

#include <nats/nats.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <thread>

#include "nats_server.hpp"

using namespace pyoco;
using namespace pyoco::cluster;
using pyoco::testing::NatsServer;
namespace json = boost::json;

namespace {

// A server with the resources made, and a connection to it.
struct Cluster {
  NatsServer server;
  Connection nats{{.servers = {server.url()}}};
  Cluster() { init_resources(nats, ResourceOptions{}); }
  std::uint64_t queued() {
    const auto all = resource_status(nats, ResourceOptions{});
    return std::find_if(all.begin(), all.end(), [](auto& r) { return r.name == "PYOCO_WORK"; })
        ->messages;
  }
};

RunJob job(const std::string& id) {
  RunJob j;
  j.run_id = id;
  j.flow_name = "hello";
  j.params = json::object{{"n", 1}};
  return j;
}

// What a worker's claim writes: RUNNING, owned, at this attempt.
Owner claim(RunRecords& runs, const std::string& id, std::int64_t attempt = 1) {
  Owner me{"w1", "i1", attempt};
  for (;;) {
    RunRecord r = *runs.get(id);
    json::object next = r.snapshot;
    next["status"] = "RUNNING";
    next["attempt"] = attempt;
    next["owner"] = json::object{{"worker_id", me.worker_id}, {"instance", me.instance}};
    if (runs.replace(id, next, r.revision)) return me;
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(records_are_written_only_by_compare_and_swap) {
  Cluster c;
  RunRecords runs(c.nats);
  BOOST_TEST(!runs.get("r1").has_value());
  const auto first = runs.create("r1", json::object{{"status", "PENDING"}});
  BOOST_TEST_REQUIRE(first.has_value());
  BOOST_TEST(!runs.create("r1", json::object{{"status", "PENDING"}}).has_value());  // exists
  const RunRecord read = *runs.get("r1");
  BOOST_TEST(read.revision == *first);
  BOOST_TEST(read.status() == "PENDING");
  const auto second = runs.replace("r1", json::object{{"status", "RUNNING"}}, read.revision);
  BOOST_TEST_REQUIRE(second.has_value());
  // A write from what was read before `second` loses, and changes nothing.
  BOOST_TEST(!runs.replace("r1", json::object{{"status", "FAILED"}}, read.revision).has_value());
  BOOST_TEST(runs.get("r1")->status() == "RUNNING");
  BOOST_CHECK_THROW(runs.get("no spaces"), NatsError);
}

// Two writers, each on its own connection, add 200 each by read-modify-CAS:
// no update is lost.
BOOST_AUTO_TEST_CASE(concurrent_writers_lose_no_update) {
  Cluster c;
  RunRecords(c.nats).create("counter", json::object{{"n", 0}});
  auto add = [&] {
    Connection nats({.servers = {c.server.url()}});
    RunRecords runs(nats);
    for (int i = 0; i < 200; ++i) {
      for (;;) {
        RunRecord r = *runs.get("counter");
        json::object next = r.snapshot;
        next["n"] = next["n"].as_int64() + 1;
        if (runs.replace("counter", next, r.revision)) break;
      }
    }
  };
  std::thread a(add), b(add);
  a.join();
  b.join();
  BOOST_TEST(RunRecords(c.nats).get("counter")->snapshot.at("n").as_int64() == 400);
}

BOOST_AUTO_TEST_CASE(a_repeated_submit_is_one_run_and_one_job) {
  Cluster c;
  RunRecords runs(c.nats);
  const Submitted first = submit_run(c.nats, runs, job("run-a"));
  BOOST_TEST(first.created);
  BOOST_TEST(first.record.status() == "PENDING");
  const Submitted again = submit_run(c.nats, runs, job("run-a"));
  BOOST_TEST(!again.created);
  BOOST_TEST(again.record.revision == first.record.revision);
  BOOST_TEST(c.queued() == 1u);
  // The job carries what a worker needs.
  const RunJob back = job_from_json(to_json(job("run-a")));
  BOOST_TEST(back.flow_name == "hello");
  BOOST_TEST(back.tag == "default");
  BOOST_TEST(back.params.at("n").as_int64() == 1);
  // And the request's digest: a worker claiming the run rebuilds its record
  // from the job, which used to drop it (a reused Idempotency-Key then took
  // any request once a worker had the run).
  RunJob keyed = job("run-k");
  keyed.request_digest = "0123abcd";
  const RunJob keyed_back = job_from_json(to_json(keyed));
  BOOST_TEST(keyed_back.request_digest == "0123abcd");
  BOOST_TEST(pending_snapshot(keyed_back).at("request_sha256") == "0123abcd");
  BOOST_CHECK_THROW(job_from_json(json::object{{"run_id", "x"}}), NatsError);  // no flow_name
  // A first submit that stopped after the record (NATS went away): the
  // repeat sends what it did not, the run_submitted event too.
  BOOST_REQUIRE(runs.create("cut", pending_snapshot(job("cut"))));
  BOOST_TEST(!last_stored(c.nats, "PYOCO_EVENTS", "pyoco.ev.cut.run").has_value());
  BOOST_TEST(!submit_run(c.nats, runs, job("cut")).created);
  const auto submitted = last_stored(c.nats, "PYOCO_EVENTS", "pyoco.ev.cut.run");
  BOOST_TEST_REQUIRE(submitted.has_value());
  BOOST_TEST(submitted->data.find("\"kind\":\"run_submitted\"") != std::string::npos);
  BOOST_TEST(c.queued() == 2u);
}

BOOST_AUTO_TEST_CASE(cancel_moves_only_what_may_move) {
  Cluster c;
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, job("pending"));
  BOOST_TEST(request_cancel(c.nats, runs, "pending", "alice")->status() == "CANCELLED");

  submit_run(c.nats, runs, job("running"));
  claim(runs, "running");
  const RunRecord asked = *request_cancel(c.nats, runs, "running", "bob");
  BOOST_TEST(asked.status() == "CANCELLING");
  BOOST_TEST(asked.snapshot.at("cancel_requested_by").as_string() == "bob");
  BOOST_TEST(request_cancel(c.nats, runs, "running", "bob")->revision == asked.revision);

  submit_run(c.nats, runs, job("done"));
  const Owner me = claim(runs, "done");
  owner_write(runs, "done", me, [](json::object& s) { s["status"] = "COMPLETED"; });
  BOOST_TEST(request_cancel(c.nats, runs, "done", "carol")->status() == "COMPLETED");
  BOOST_TEST(!request_cancel(c.nats, runs, "nobody", "dave").has_value());
}

// A stale owner (an earlier attempt) never writes; nor does anyone after
// the terminal write.
BOOST_AUTO_TEST_CASE(owners_are_fenced_by_attempt) {
  Cluster c;
  RunRecords runs(c.nats);
  submit_run(c.nats, runs, job("r"));
  const Owner old = claim(runs, "r", 1);
  const Owner now = claim(runs, "r", 2);  // redelivered to another attempt
  auto set = [](const char* status) { return [status](json::object& s) { s["status"] = status; }; };
  BOOST_TEST(!owner_write(runs, "r", old, set("FAILED")).has_value());
  BOOST_TEST(owner_write(runs, "r", now, set("COMPLETED")).has_value());
  BOOST_TEST(!owner_write(runs, "r", now, set("FAILED")).has_value());
  BOOST_TEST(runs.get("r")->status() == "COMPLETED");
}

// 500 cancels racing the owner's terminal write: each run ends CANCELLED
// (the owner saw the request) or COMPLETED (it finished first); none is
// left CANCELLING, and a cancel never overwrites COMPLETED.
BOOST_AUTO_TEST_CASE(cancels_racing_completion_end_every_run) {
  Cluster c;
  constexpr int kRuns = 500;
  std::vector<Owner> owners;
  {
    RunRecords runs(c.nats);
    for (int i = 0; i < kRuns; ++i) {
      submit_run(c.nats, runs, job("race-" + std::to_string(i)));
      owners.push_back(claim(runs, "race-" + std::to_string(i)));
    }
  }
  std::thread owner([&] {
    Connection nats({.servers = {c.server.url()}});
    RunRecords runs(nats);
    for (int i = 0; i < kRuns; ++i) {
      owner_write(runs, "race-" + std::to_string(i), owners[static_cast<std::size_t>(i)],
                  [](json::object& s) {
                    s["status"] =
                        s["status"].as_string() == "CANCELLING" ? "CANCELLED" : "COMPLETED";
                  });
    }
  });
  std::thread canceller([&] {
    Connection nats({.servers = {c.server.url()}});
    RunRecords runs(nats);
    for (int i = 0; i < kRuns; ++i) request_cancel(nats, runs, "race-" + std::to_string(i), "t");
  });
  owner.join();
  canceller.join();
  RunRecords runs(c.nats);
  int cancelled = 0, completed = 0;
  for (int i = 0; i < kRuns; ++i) {
    const RunRecord r = *runs.get("race-" + std::to_string(i));
    BOOST_TEST_CONTEXT(i) { BOOST_TEST((r.status() == "CANCELLED" || r.status() == "COMPLETED")); }
    if (r.status() == "CANCELLED") ++cancelled;
    if (r.status() == "COMPLETED") {
      ++completed;
      BOOST_TEST(!r.snapshot.contains("cancel_requested_at"));  // the cancel came after: no-op
    }
  }
  BOOST_TEST(cancelled + completed == kRuns);
  BOOST_TEST_MESSAGE("cancelled " << cancelled << ", completed " << completed);
}

// A submit that NATS cut short between the record and the job: the record
// stands PENDING with no job (what a gateway answered 503 for). Once NATS
// answers again the run is queued, once; a run whose record was never
// written is dropped, not created.
BOOST_AUTO_TEST_CASE(a_run_whose_submit_was_cut_short_is_queued_when_nats_is_back) {
  Cluster c;
  RunRecords runs(c.nats);
  RunJob submitted = job("half");
  submitted.submitted_at = 1796000000.5;                            // as the first submit wrote it
  BOOST_REQUIRE(runs.create("half", pending_snapshot(submitted)));  // the record, no job
  BOOST_TEST(c.queued() == 0u);
  {
    UnqueuedRuns unqueued(c.nats, std::chrono::milliseconds(50));
    c.server.kill9();  // NATS away: the first looks fail, nothing is given up
    unqueued.add(job("half"));
    unqueued.add(job("never-written"));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several passes while away
    BOOST_TEST(unqueued.waiting() == 2u);
    // A bucket is not "missing" because NATS is away: no advice to run `cluster init`.
    BOOST_CHECK_EXCEPTION(RunRecords{c.nats}, NatsError, [](const NatsError& e) {
      return std::string(e.what()).find("cluster init") == std::string::npos;
    });
    c.server.start();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (unqueued.waiting() > 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
    }
    BOOST_TEST(unqueued.waiting() == 0u);
  }
  BOOST_TEST(c.queued() == 1u);
  // The job says when the run was submitted, not 0 (the gateway hands in
  // the request's job, which has none: a worker then wrote 1970 into the
  // run's record).
  natsMsg* queued = nullptr;
  BOOST_REQUIRE(js_GetMsg(&queued, c.nats.handles().js, "PYOCO_WORK", 1, nullptr, nullptr) ==
                NATS_OK);
  const RunJob sent = job_from_json(
      json::parse(std::string_view(natsMsg_GetData(queued), natsMsg_GetDataLength(queued)))
          .as_object());
  natsMsg_Destroy(queued);
  BOOST_TEST(sent.submitted_at == 1796000000.5);
  BOOST_TEST(!runs.get("never-written").has_value());
  // A repeat (the client submitting again with its key) is still one job.
  BOOST_TEST(!submit_run(c.nats, runs, job("half")).created);
  BOOST_TEST(c.queued() == 1u);
}

// A job no worker ever finishes (here: fetched and never acked) reaches
// MaxDeliver; the reaper makes its run FAILED, writes its dead letter and
// its one RunEnd, and removes the job from the queue.
BOOST_AUTO_TEST_CASE(the_reaper_ends_what_nats_gave_up_on) {
  NatsServer server;
  Connection nats({.servers = {server.url()}});
  ResourceOptions fast;
  fast.ack_wait = std::chrono::milliseconds(200);
  init_resources(nats, fast);
  RunRecords runs(nats);
  submit_run(nats, runs, job("stuck"));

  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  BOOST_REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
  BOOST_REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "PYOCO_WORK";
  so.Consumer = "pyoco_workers_default";
  natsSubscription* sub = nullptr;
  jsErrCode jerr{};
  BOOST_REQUIRE(js_PullSubscribe(&sub, js, "pyoco.work.default", "pyoco_workers_default", nullptr,
                                 &so, &jerr) == NATS_OK);
  int deliveries = 0;
  for (int i = 0; i < 10 && deliveries < 5; ++i) {  // a worker that dies each time
    natsMsgList list{};
    if (natsSubscription_Fetch(&list, sub, 1, 1000, nullptr) == NATS_OK) deliveries += list.Count;
    natsMsgList_Destroy(&list);
  }
  BOOST_TEST(deliveries == 5);
  // NATS gives up when it would deliver a sixth time: to a worker that asks.
  natsMsgList none{};
  BOOST_TEST(natsSubscription_Fetch(&none, sub, 1, 1000, nullptr) == NATS_TIMEOUT);
  natsMsgList_Destroy(&none);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  Reaper reaper(nats);
  reaper.start();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!runs.get("stuck")->terminal() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling, with a deadline
  }
  const RunRecord r = *runs.get("stuck");
  BOOST_TEST(r.status() == "FAILED");
  BOOST_TEST(std::string(r.snapshot.at("error").as_string()).find("max_deliver_exceeded") == 0u);
  while (reaper.reaped() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  reaper.stop();
  const auto all = resource_status(nats, ResourceOptions{});
  auto messages = [&](const char* name) {
    return std::find_if(all.begin(), all.end(), [&](auto& x) { return x.name == name; })->messages;
  };
  BOOST_TEST(messages("PYOCO_WORK") == 0u);
  BOOST_TEST(messages("PYOCO_DLQ") == 1u);
}
