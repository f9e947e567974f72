// `pyoco plugins push|remote`: plugins shipped to a cluster's workers
// through its gateway (docs/cluster.md, "Shipping plugins to workers");
// `pack` (plugin_pack_command.cpp) makes what is pushed.
#include <pyoco/plugins/package.hpp>

#include <boost/json.hpp>

#include <iostream>

#include "app.hpp"
#include "command.hpp"
#include "gateway_flags.hpp"
#include "handoff.hpp"
#include "table.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

struct DistributionArgs {
  GatewayFlags gateway;
  std::string source;  // a package or a plugin dir
  std::vector<std::string> tags;
  std::string name, version;
  int limit = 50;
  bool json = false;
};

std::string text(const json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : json::serialize(v);
}

template <class F>
int guarded(const char* verb, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    // A package or manifest refused, the gateway's answer, a file, or an
    // answer that is not what it should be: said, never a crash.
    std::cerr << "pyoco plugins " << verb << ": " << e.what() << '\n';
  }
  return kExitUsage;
}

// A package file, or a plugin directory packed on the spot.
plugins::PluginPackage package_of(const std::string& source) {
  if (fs::is_directory(source)) return plugins::pack_plugin(source);
  return plugins::read_package(source);
}

int run_push(const DistributionArgs& a) {
  return guarded("push", [&] {
    const plugins::PluginPackage p = package_of(a.source);
    std::string target = "/plugins";
    for (std::size_t i = 0; i < a.tags.size(); ++i) target += (i == 0 ? "?tags=" : ",") + a.tags[i];
    const json::value r = a.gateway.call(http::verb::post, target, p.bytes, "application/x-tar");
    if (a.json) {
      std::cout << json::serialize(r) << '\n';
    } else {
      std::cout << "pushed " << p.manifest.name << " " << p.manifest.version << " for "
                << p.platform() << " (sha256 " << p.sha256 << ")"
                << (a.tags.empty() ? "" : " to the workers of " + text(r.at("tags")))
                << "; workers take it before their next run\n";
    }
    return kExitOk;
  });
}

int run_remote_list(const DistributionArgs& a) {
  return guarded("remote list", [&] {
    const json::value r = a.gateway.call(http::verb::get, "/plugins");
    if (a.json) {
      std::cout << json::serialize(r) << '\n';
      return kExitOk;
    }
    Table t({"NAME", "VERSION", "PLATFORM", "TAGS", "SIZE", "STATE", "SHA256"});
    for (const json::value& v : r.as_array()) {
      const json::object& o = v.as_object();
      std::string tags;
      for (const json::value& tag : o.at("tags").as_array())
        tags += (tags.empty() ? "" : ",") + text(tag);
      t.add({text(o.at("name")), text(o.at("version")), text(o.at("platform")),
             tags.empty() ? "any" : tags, text(o.at("size")),
             o.at("yanked").as_bool() ? "yanked" : "available",
             text(o.at("sha256")).substr(0, 12)});
    }
    t.print(std::cout);
    if (r.as_array().empty())
      std::cout << "no plugins pushed: `pyoco plugins push DIR` ships one\n";
    return kExitOk;
  });
}

int run_remote_history(const DistributionArgs& a) {
  return guarded("remote history", [&] {
    const json::value r =
        a.gateway.call(http::verb::get, "/plugins/history?limit=" + std::to_string(a.limit));
    if (a.json) {
      std::cout << json::serialize(r) << '\n';
      return kExitOk;
    }
    Table t({"AT", "ACTION", "NAME", "VERSION", "PLATFORM", "BY"});
    for (const json::value& v : r.as_array()) {
      const json::object& o = v.as_object();
      const json::value& at = o.at("at");
      t.add({at.is_number() ? utc_time_text(at.to_number<double>()) : text(at),
             text(o.at("action")), text(o.at("name")), text(o.at("version")),
             text(o.at("platform")), o.contains("by") ? text(o.at("by")) : ""});
    }
    t.print(std::cout);
    return kExitOk;
  });
}

int run_remote_yank(const DistributionArgs& a) {
  return guarded("remote yank", [&] {
    const json::value r =
        a.gateway.call(http::verb::post, "/plugins/" + a.name + "/" + a.version + "/yank");
    if (a.json) {
      std::cout << json::serialize(r) << '\n';
    } else {
      std::cout << "yanked " << a.name << " " << a.version << " (" << r.as_array().size()
                << " platform(s)); workers go back to the newest version left\n";
    }
    return kExitOk;
  });
}

}  // namespace

void add_plugin_distribution_commands(CLI::App* plugins, CommandTable& table) {
  auto a = std::make_shared<DistributionArgs>();

  CLI::App* push = plugins->add_subcommand("push", description_of("plugins", "push"));
  push->add_option("package", a->source, "A .pyoco package or a plugin directory")->required();
  push->add_option("--tags", a->tags, "Only workers of these tags take it (default: every worker)")
      ->delimiter(',')
      ->type_name("TAG[,TAG]");
  push->add_flag("--json", a->json, "The release the gateway indexed, as JSON");
  a->gateway.add_to(push);
  table.add(push, [a] { return run_push(*a); });

  CLI::App* remote = plugins->add_subcommand("remote", description_of("plugins", "remote"));
  remote->require_subcommand(0, 1);
  CLI::App* list = remote->add_subcommand("list", "Every pushed release, newest first");
  list->add_flag("--json", a->json, "A JSON array of the releases");
  a->gateway.add_to(list);
  table.add(list, [a] { return run_remote_list(*a); });
  CLI::App* history = remote->add_subcommand("history", "Pushes and yanks, newest first");
  history->add_option("--limit", a->limit, "At most this many (default 50)");
  history->add_flag("--json", a->json, "A JSON array of the entries");
  a->gateway.add_to(history);
  table.add(history, [a] { return run_remote_history(*a); });
  CLI::App* yank = remote->add_subcommand(
      "yank", "Withdraw a version: workers stop taking it and go back to the newest one left");
  yank->add_option("name", a->name, "The plugin")->required();
  yank->add_option("version", a->version, "The version")->required();
  yank->add_flag("--json", a->json, "The yanked releases as JSON");
  a->gateway.add_to(yank);
  table.add(yank, [a] { return run_remote_yank(*a); });
}

}  // namespace pyoco::cli
