// `pyoco cluster init|status`: the NATS resources of cluster mode.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>

#include <boost/json.hpp>

#include <iostream>

#include "app.hpp"
#include "command.hpp"
#include "nats_flags.hpp"
#include "table.hpp"

namespace pyoco::cli {

namespace json = boost::json;

namespace {

struct ClusterOptions {
  NatsFlags nats;
  std::vector<std::string> tags;
  bool json = false;
  bool init = false;
};

json::object to_json(const cluster::ResourceState& r) {
  json::object o{{"kind", cluster::to_string(r.kind)},
                 {"name", r.name},
                 {"stream", r.stream},
                 {"exists", r.exists},
                 {"created", r.created},
                 {"replicas", r.replicas}};
  if (r.kind == cluster::ResourceState::Kind::Consumer) {
    o["pending"] = r.pending;
    o["ack_pending"] = r.ack_pending;
    o["redelivered"] = r.redelivered;
    o["waiting"] = r.waiting;
  } else {
    o["messages"] = r.messages;
    o["bytes"] = r.bytes;
  }
  return o;
}

int run_cluster(const ClusterOptions& o) {
  const char* verb = o.init ? "init" : "status";
  try {
    cluster::ResourceOptions options = cluster::resource_options_from_env();
    if (!o.tags.empty()) options.tags = o.tags;
    cluster::Connection nats(o.nats.connect_options("pyoco cluster"));
    const auto resources =
        o.init ? cluster::init_resources(nats, options) : cluster::resource_status(nats, options);
    const bool complete = std::all_of(resources.begin(), resources.end(),
                                      [](const cluster::ResourceState& r) { return r.exists; });
    if (o.json) {
      json::array list;
      for (const auto& r : resources) list.push_back(to_json(r));
      std::cout << json::serialize(json::object{{"nats", nats.connected_url()},
                                                {"complete", complete},
                                                {"resources", std::move(list)}})
                << '\n';
    } else {
      Table t({"KIND", "NAME", "STATE", "REPLICAS", "MESSAGES", "PENDING", "ACK PENDING"});
      for (const auto& r : resources) {
        const bool consumer = r.kind == cluster::ResourceState::Kind::Consumer;
        t.add({cluster::to_string(r.kind), r.name,
               !r.exists   ? "missing"
               : r.created ? "created"
                           : "ok",
               r.exists ? std::to_string(r.replicas) : "-",
               r.exists && !consumer ? std::to_string(r.messages) : "-",
               r.exists && consumer ? std::to_string(r.pending) : "-",
               r.exists && consumer ? std::to_string(r.ack_pending) : "-"});
      }
      std::cout << "NATS " << nats.connected_url() << '\n';
      t.print(std::cout);
      if (!complete) std::cout << "some resources are missing: run `pyoco cluster init`\n";
    }
    return complete ? kExitOk : kExitFailed;
  } catch (const cluster::NatsError& e) {
    std::cerr << "pyoco cluster " << verb << ": " << e.what() << '\n';
    return kExitUsage;
  }
}

void attach(CLI::App* cmd, CommandTable& table, bool init) {
  auto o = std::make_shared<ClusterOptions>();
  o->init = init;
  o->nats.add_to(cmd);
  cmd->add_option("--tags", o->tags,
                  init ? "Make a workers' consumer for each tag (default: default)"
                       : "Also show these tags' workers' consumers (default: every one that "
                         "exists, and default)")
      ->delimiter(',')
      ->type_name("TAG[,TAG]");
  cmd->add_flag("--json", o->json, "One JSON object: the server, and every resource");
  table.add(cmd, [o] { return run_cluster(*o); });
}

}  // namespace

void add_cluster_commands(CLI::App* cluster, CommandTable& table) {
  attach(cluster->add_subcommand(
             "init",
             "Create the streams, consumers and buckets cluster mode needs (what exists is kept; "
             "replicas from PYOCO_NATS_REPLICAS)"),
         table, true);
  attach(cluster->add_subcommand(
             "status", "Show the streams, consumers and buckets with message counts and lag"),
         table, false);
}

}  // namespace pyoco::cli
