// `pyoco cluster init|status` against a real nats-server started by the
// test: every resource made once and kept, counts and lag read back, a
// stream pyoco did not make left alone, replicas a single server cannot
// keep refused, a server with too little room for the plugin store and an
// unreachable NATS said plainly.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>

#include <nats/nats.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>

#include "errors.hpp"
#include "nats_server.hpp"
#include "process.hpp"

using namespace pyoco;
using namespace pyoco::testing;
using cluster::ResourceState;

namespace {

cluster::ResourceOptions options(std::vector<std::string> tags = {"default"}) {
  cluster::ResourceOptions o;
  o.tags = std::move(tags);
  return o;
}

const ResourceState& find(const std::vector<ResourceState>& all, const std::string& name) {
  const auto it =
      std::find_if(all.begin(), all.end(), [&](const ResourceState& r) { return r.name == name; });
  if (it == all.end()) throw std::runtime_error("no resource " + name);
  return *it;
}

std::string error_of(const std::function<void()>& f) {
  return testing::error_of<cluster::NatsError>(f);
}

// A plain cnats client beside pyoco's: what another program on the same
// NATS does (publish jobs, make streams of its own).
struct Raw {
  explicit Raw(const std::string& url) {
    BOOST_REQUIRE(natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK);
    BOOST_REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  }
  ~Raw() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
};

// Publishes `count` jobs to a tag's subject, as a gateway would.
void publish_jobs(const std::string& url, const std::string& tag, int count) {
  Raw raw(url);
  for (int i = 0; i < count; ++i) {
    const std::string subject = "pyoco.work." + tag;
    const std::string body = "job " + std::to_string(i);
    jsPubAck* ack = nullptr;
    jsErrCode jerr{};
    BOOST_REQUIRE(js_Publish(&ack, raw.js, subject.c_str(), body.data(),
                             static_cast<int>(body.size()), nullptr, &jerr) == NATS_OK);
    jsPubAck_Destroy(ack);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(init_makes_every_resource_once_and_keeps_them) {
  NatsServer server;
  cluster::Connection nats({.servers = {server.url()}});
  const auto before = cluster::resource_status(nats, options());
  BOOST_TEST(std::none_of(before.begin(), before.end(), [](auto& r) { return r.exists; }));

  const auto made = cluster::init_resources(nats, options({"default", "gpu"}));
  for (const char* name :
       {"PYOCO_WORK", "PYOCO_EVENTS", "PYOCO_ADVISORIES", "PYOCO_DLQ", "PYOCO_PLUGINS",
        "pyoco_workers_default", "pyoco_workers_gpu", "pyoco_reaper", "pyoco_metrics_runs",
        "pyoco_metrics_tasks", "pyoco_runs", "pyoco_workers", "pyoco_auth", "pyoco_plugins",
        "pyoco_meta"}) {
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(find(made, name).exists);
      BOOST_TEST(find(made, name).created);
      BOOST_TEST(find(made, name).replicas == 1);
    }
  }
  const auto again = cluster::init_resources(nats, options({"default", "gpu"}));
  BOOST_TEST(std::none_of(again.begin(), again.end(), [](auto& r) { return r.created; }));
  BOOST_TEST(std::all_of(again.begin(), again.end(), [](auto& r) { return r.exists; }));
  // status finds the gpu workers' consumer without being told the tag
  BOOST_TEST(find(cluster::resource_status(nats, options()), "pyoco_workers_gpu").exists);
  // Buckets are read from their leader only: a replica that restarted
  // behind would answer with an older record ("direct" gets, cnats's default).
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  BOOST_REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
  BOOST_REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  for (const char* bucket : {"KV_pyoco_runs", "KV_pyoco_workers", "KV_pyoco_auth",
                             "KV_pyoco_plugins", "KV_pyoco_meta"}) {
    jsStreamInfo* si = nullptr;
    BOOST_REQUIRE(js_GetStreamInfo(&si, js, bucket, nullptr, nullptr) == NATS_OK);
    BOOST_TEST(!si->Config->AllowDirect, bucket);
    jsStreamInfo_Destroy(si);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

BOOST_AUTO_TEST_CASE(status_reads_message_counts_and_consumer_lag) {
  NatsServer server;
  cluster::Connection nats({.servers = {server.url()}});
  cluster::init_resources(nats, options());
  publish_jobs(server.url(), "default", 3);
  const auto status = cluster::resource_status(nats, options());
  BOOST_TEST(find(status, "PYOCO_WORK").messages == 3u);
  BOOST_TEST(find(status, "pyoco_workers_default").pending == 3u);
  BOOST_TEST(find(status, "pyoco_workers_default").ack_pending == 0);
  BOOST_TEST(find(status, "PYOCO_EVENTS").messages == 0u);
}

// What pyoco did not make it never uses or changes.
BOOST_AUTO_TEST_CASE(a_stream_pyoco_did_not_make_is_refused_and_left_alone) {
  NatsServer server;
  cluster::Connection nats({.servers = {server.url()}});
  Raw raw(server.url());
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = "PYOCO_EVENTS";
  cfg.Description = "billing events";
  const char* subjects[] = {"billing.>"};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr{};
  BOOST_REQUIRE(js_AddStream(&si, raw.js, &cfg, nullptr, &jerr) == NATS_OK);
  jsStreamInfo_Destroy(si);

  const std::string error = error_of([&] { cluster::init_resources(nats, options()); });
  BOOST_TEST(error.find("stream PYOCO_EVENTS exists on this NATS but pyoco did not make it "
                        "(its description is \"billing events\")") != std::string::npos,
             error);
  BOOST_TEST(error_of([&] { cluster::resource_status(nats, options()); }) == error);
  si = nullptr;
  BOOST_REQUIRE(js_GetStreamInfo(&si, raw.js, "PYOCO_EVENTS", nullptr, &jerr) == NATS_OK);
  BOOST_TEST(std::string(si->Config->Subjects[0]) == "billing.>");
  jsStreamInfo_Destroy(si);
}

BOOST_AUTO_TEST_CASE(replicas_a_single_server_cannot_keep_are_refused) {
  NatsServer server;
  cluster::Connection nats({.servers = {server.url()}});
  cluster::ResourceOptions three = options();
  three.replicas = 3;
  const std::string error = error_of([&] { cluster::init_resources(nats, three); });
  BOOST_TEST(error.find("PYOCO_NATS_REPLICAS=3 needs a JetStream cluster of at least that many "
                        "servers") != std::string::npos,
             error);
}

BOOST_AUTO_TEST_CASE(the_resources_outlive_a_nats_crash) {
  NatsServer server;
  {
    cluster::Connection nats({.servers = {server.url()}});
    cluster::init_resources(nats, options());
    publish_jobs(server.url(), "default", 2);
  }
  server.kill9();
  server.start();  // same port, same store
  cluster::Connection nats({.servers = {server.url()}});
  const auto status = cluster::resource_status(nats, options());
  BOOST_TEST(std::all_of(status.begin(), status.end(), [](auto& r) { return r.exists; }));
  BOOST_TEST(find(status, "PYOCO_WORK").messages == 2u);
}

BOOST_AUTO_TEST_CASE(addresses_tags_and_an_unreachable_nats_are_said_plainly) {
  BOOST_TEST(cluster::nats_servers("a:4222, nats://b:4222") ==
                 (std::vector<std::string>{"nats://a:4222", "nats://b:4222"}),
             boost::test_tools::per_element());
  BOOST_TEST(error_of([] { cluster::nats_servers("a:1,,b:2"); }).find("has an empty entry") !=
             std::string::npos);
  BOOST_TEST(error_of([] { cluster::nats_servers("http://a:1"); }).find("the scheme is nats://") !=
             std::string::npos);
  BOOST_TEST(error_of([] { cluster::check_tag("gpu.large"); }).find("a tag is 1 to 64 letters") !=
             std::string::npos);

  const auto start = std::chrono::steady_clock::now();
  const std::string error = error_of([] {
    cluster::Connection nats(
        {.servers = {"nats://127.0.0.1:1"}, .timeout = std::chrono::milliseconds(500)});
  });
  BOOST_TEST(error.find("cannot reach NATS at nats://127.0.0.1:1") != std::string::npos, error);
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::seconds(5)));
}

// The command: a table or JSON, exit 1 while anything is missing.
BOOST_AUTO_TEST_CASE(the_cluster_commands) {
  NatsServer server;
  const ProcessResult missing = run_pyoco({"cluster", "status", "--nats", server.url()});
  BOOST_TEST(missing.exit_code == 1, missing.err);
  BOOST_TEST(missing.out.find("run `pyoco cluster init`") != std::string::npos, missing.out);

  const ProcessResult init = run_pyoco({"cluster", "init", "--nats", server.url(), "--json"});
  BOOST_TEST_REQUIRE(init.exit_code == 0, init.err);
  const auto report = boost::json::parse(init.out).as_object();
  BOOST_TEST(report.at("complete").as_bool());
  BOOST_TEST(report.at("nats").as_string() == server.url());
  BOOST_TEST(report.at("resources").as_array().size() == 14u);

  const ProcessResult status =
      run_pyoco({"cluster", "status"}, {.env = {{"PYOCO_NATS_URL", server.url()}}});
  BOOST_TEST(status.exit_code == 0, status.err);
  BOOST_TEST(status.out.find("pyoco_workers_default  ok") != std::string::npos, status.out);

  const ProcessResult replicas = run_pyoco({"cluster", "init", "--nats", server.url()},
                                           {.env = {{"PYOCO_NATS_REPLICAS", "9"}}});
  BOOST_TEST(replicas.exit_code == 2);
  BOOST_TEST(replicas.err.find("PYOCO_NATS_REPLICAS=9: give 1 to 5") != std::string::npos,
             replicas.err);
}

// JetStream reserves the plugin store's whole bound when it makes it: a
// server with less room (a small disk, or a small max_file_store) refuses
// init, and the error says which bound and what to change.
BOOST_AUTO_TEST_CASE(a_nats_with_less_room_than_the_plugin_store_says_what_to_change) {
  NatsServer server({.max_file_store = "256MB"});
  const ProcessResult refused = run_pyoco({"cluster", "init", "--nats", server.url()});
  BOOST_TEST(refused.exit_code == 2);
  BOOST_TEST(refused.err.find("cannot create stream PYOCO_PLUGINS") != std::string::npos,
             refused.err);
  BOOST_TEST(
      refused.err.find("reserves PYOCO_PLUGINS_MAX_BYTES=4294967296 bytes") != std::string::npos,
      refused.err);
  BOOST_TEST(refused.err.find("set PYOCO_PLUGINS_MAX_BYTES lower") != std::string::npos,
             refused.err);

  const ProcessResult fits = run_pyoco({"cluster", "init", "--nats", server.url()},
                                       {.env = {{"PYOCO_PLUGINS_MAX_BYTES", "134217728"}}});
  BOOST_TEST(fits.exit_code == 0, fits.err);
}
