// A cluster for worker tests: a nats-server with pyoco's resources (a
// short AckWait, as tests should), a flows directory, and workers started
// as `pyoco worker` processes; run records waited for with a deadline.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_records.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
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
