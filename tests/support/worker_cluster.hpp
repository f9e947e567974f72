// A cluster for worker tests: a nats-server with pyoco's resources (a
// short AckWait, as tests should), a flows directory, and workers started
// as `pyoco worker` processes; run records waited for with a deadline.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_records.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <nats/nats.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace pyoco::testing {

// A flow whose one task goes on until the test opens its gate (creates the
// file `gate`), or the gate's directory is gone, so that no shell outlives
// the test: a fixed nap a signal or a check must land within ran out first
// on a slow host (the sanitizers).
inline std::string gated_flow(const std::filesystem::path& gate) {
  return "flow:\n  graph: wait\ntasks:\n  wait: {use: \"std/shell\", inputs: {command: \"while "
         "[ ! -e '" +
         gate.string() + "' ] && [ -d '" + gate.parent_path().string() +
         "' ]; do sleep 0.05; done\"}}\n";
}

struct WorkerCluster {
  NatsServer server;
  cluster::Connection nats;
  TempDir flows;
  std::vector<std::unique_ptr<ChildProcess>> workers;

  // A nats-server as `server_options` configure it (an authorization, say),
  // which the test connects to with `credentials` (user and password, or a
  // token); its workers need theirs in the environment `worker` is given.
  explicit WorkerCluster(NatsServerOptions server_options = {},
                         cluster::ConnectOptions credentials = {})
      : server(std::move(server_options)), nats([&] {
          credentials.servers = {server.url()};
          return credentials;
        }()) {
    cluster::ResourceOptions o;
    o.ack_wait = std::chrono::seconds(2);
    cluster::init_resources(nats, o);
  }

  // `pyoco worker --worker-id id --slots slots --flows <flows>` and `more`;
  // only the build's plugins (PYOCO_PLUGIN_PATH empty) unless `env` says.
  ChildProcess& worker(const std::string& id, int slots = 1, std::vector<std::string> more = {},
                       std::map<std::string, std::string> env = {}) {
    std::vector<std::string> args{pyoco_exe().string(),
                                  "worker",
                                  "--nats",
                                  server.url(),
                                  "--worker-id",
                                  id,
                                  "--slots",
                                  std::to_string(slots),
                                  "--flows",
                                  flows.path().string(),
                                  "--progress-interval",
                                  "0.3"};
    args.insert(args.end(), more.begin(), more.end());
    env.emplace("PYOCO_PLUGIN_PATH", "");
    workers.push_back(std::make_unique<ChildProcess>(args, env, flows.path()));
    return *workers.back();
  }

  // The worker's pyoco_workers record, once it has written one.
  std::optional<boost::json::object> worker_record(const std::string& id) {
    kvStore* kv = nullptr;
    if (js_KeyValue(&kv, nats.handles().js, "pyoco_workers") != NATS_OK) return std::nullopt;
    kvEntry* e = nullptr;
    std::optional<boost::json::object> out;
    if (kvStore_Get(&e, kv, id.c_str()) == NATS_OK) {
      out = boost::json::parse(kvEntry_ValueString(e)).as_object();
      kvEntry_Destroy(e);
    }
    kvStore_Destroy(kv);
    return out;
  }

  // Waits for the run's record to satisfy `ok`; the last record read.
  cluster::RunRecord wait_for(const std::string& id,
                              const std::function<bool(const cluster::RunRecord&)>& ok,
                              std::chrono::seconds deadline = std::chrono::seconds(30)) {
    cluster::RunRecords runs(nats);
    std::optional<cluster::RunRecord> r;
    const bool got = eventually(
        [&] {
          r = runs.get(id);
          return r && ok(*r);
        },
        deadline);
    BOOST_REQUIRE_MESSAGE(got, "run " << id << " did not get there in time; last: "
                                      << (r ? boost::json::serialize(r->snapshot) : "none"));
    return *r;
  }
};

}  // namespace pyoco::testing
