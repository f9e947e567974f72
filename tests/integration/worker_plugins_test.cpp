// `pyoco worker` taking its plugins from the cluster's repository, on a
// real nats-server: a release pushed while it runs is used by the runs
// after it, while a run already going finishes on the version it started
// with; a damaged release, one whose record names another package, and one
// for another platform are never used, and the refusals are in the worker's
// record and the history; a worker killed while installing leaves nothing
// half-made in use; a flow needing a newer plugin fails at once.
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/plugin_repository.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/plugins/package.hpp>

#include <nats/nats.h>

#include <signal.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "child.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "temp_dir.hpp"
#include "worker_cluster.hpp"

using namespace pyoco;
using namespace pyoco::cluster;
using namespace pyoco::testing;
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kEchoFlow = R"(flow:
  graph: say
tasks:
  say: {use: "std/echo", inputs: {value: "hi"}}
)";

// std/shell starts its command behind a guard program built into
// libpyoco_std.so: the repository packs std without the copy beside it.
constexpr const char* kShellFlow = R"(flow:
  graph: say
tasks:
  say: {use: "std/shell", inputs: {argv: [echo, hi]}}
)";

constexpr const char* kNeedsNewFlow = R"(plugins: {std: "99.0.0"}
flow:
  graph: say
tasks:
  say: {use: "std/echo", inputs: {value: "hi"}}
)";

struct Cluster : WorkerCluster {
  TempDir packages, state;
  std::unique_ptr<PluginRepository> repo;
  std::string installed_std_version;

  Cluster() {
    repo = std::make_unique<PluginRepository>(nats);
    write_text(flows.path() / "echo.yaml", kEchoFlow);
    write_text(flows.path() / "shell.yaml", kShellFlow);
    write_text(flows.path() / "needs_new.yaml", kNeedsNewFlow);
    write_text(flows.path() / "gated.yaml", gated_flow(gate()));
    installed_std_version = plugins::pack_plugin(std_dir()).manifest.version;
  }

  static fs::path std_dir() { return binary_dir() / "lib/pyoco/plugins/std"; }
  fs::path plugins_dir() const { return state.path() / "plugins"; }
  fs::path gate() const { return state.path() / "gate-open"; }
  void open_gate() const { write_text(gate(), ""); }

  // A worker taking plugins from the repository into plugins_dir().
  ChildProcess& worker(const std::string& id, int slots = 1) {
    return WorkerCluster::worker(
        id, slots, {"--plugins-dir", plugins_dir().string(), "--plugin-sync-interval", "0.5"});
  }

  // The build's std plugin packed as `version` (its plugin.toml then given
  // to `edit`), with the library built as that version when the fixtures
  // have one (tests/fixtures: std-versions/), else the build's own (whose
  // compiled-in version then differs from the manifest's: a worker refuses
  // to install it, PL032).
  plugins::PluginPackage std_package(const std::string& version,
                                     const std::function<void(std::string&)>& edit = {}) {
    return package_as(std_dir(), "std", version, edit);
  }
  // std `version` with a status no plugin may have: lint refuses it (PL006).
  plugins::PluginPackage std_package_lint_refuses(const std::string& version) {
    return std_package(version, [](std::string& toml) {
      const auto at = toml.find("status = \"");
      BOOST_REQUIRE(at != std::string::npos);
      toml.replace(at, toml.find('"', at + 10) + 1 - at, "status = \"bogus\"");
    });
  }

  // The plugin directory `from` packed as `name` `version`: its plugin.toml
  // says so, its library is what it is (fixtures' std-versions/<version>/
  // when `from` is std and there is one).
  plugins::PluginPackage package_as(const fs::path& from, const std::string& name,
                                    const std::string& version,
                                    const std::function<void(std::string&)>& edit = {}) {
    const fs::path dir = packages.path() / (name + "-" + version + "-" + from.filename().string());
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(from)) {
      fs::copy(e.path(), dir / e.path().filename());
    }
    const fs::path built = fixture_dir().parent_path() / "std-versions" / version;
    if (from == std_dir() && fs::exists(built / "libpyoco_std.so")) {
      fs::copy(built / "libpyoco_std.so", dir / "libpyoco_std.so",
               fs::copy_options::overwrite_existing);
    }
    std::string toml = read_text(dir / "plugin.toml");
    auto replace = [&](const std::string& key, const std::string& value) {
      const auto at = toml.find(key + " = \"");
      toml.replace(at, toml.find('"', at + key.size() + 4) + 1 - at, key + " = \"" + value + "\"");
    };
    replace("name", name);
    replace("version", version);
    if (edit) edit(toml);
    write_text(dir / "plugin.toml", toml);
    return plugins::pack_plugin(dir);
  }

  PluginRelease release_of(const plugins::PluginPackage& p) {
    PluginRelease r = cluster::release_of(p.manifest);
    r.uploaded_by = "k1";
    return r;
  }

  PluginRelease publish_std(const std::string& version) {
    const auto p = std_package(version);
    return repo->publish(p.bytes, release_of(p));
  }

  // The worker's plugins[] entry for that name and version, if any.
  std::optional<json::object> plugin_state(const std::string& id, const std::string& name,
                                           const std::string& version) {
    const auto r = worker_record(id);
    if (!r || !r->contains("plugins")) return std::nullopt;
    for (const json::value& p : r->at("plugins").as_array()) {
      if (p.at("name").as_string() == name && p.at("version").as_string() == version) {
        return p.as_object();
      }
    }
    return std::nullopt;
  }

  bool active(const std::string& id, const std::string& version) {
    const auto p = plugin_state(id, "std", version);
    return p && p->at("state").as_string() == "active";
  }

  void submit(const std::string& id, const std::string& flow, json::object params = {}) {
    RunRecords runs(nats);
    RunJob j;
    j.run_id = id;
    j.flow_name = flow;
    j.params = std::move(params);
    submit_run(nats, runs, j);
  }
};

bool terminal(const RunRecord& r) { return r.terminal(); }

std::string std_version_of(const RunRecord& r) {
  const json::value* p = r.snapshot.if_contains("plugins");
  if (p == nullptr || !p->is_object() || !p->as_object().contains("std")) return "";
  return std::string(p->at("std").as_string());
}

// Entries left half-made under the plugins directory (dot directories).
std::vector<std::string> partial_entries(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind('.', 0) == 0) out.push_back(it->path().string());
  }
  return out;
}

}  // namespace

// Point 3 and 4 of issue 17: a push reaches a running worker without a
// restart; a run going at the time finishes on (and records) the version it
// started with, a run after it records the new one; a flow needing a newer
// plugin than the worker has fails at once, saying so.
BOOST_AUTO_TEST_CASE(a_pushed_version_is_used_by_new_runs_and_started_ones_keep_theirs) {
  Cluster c;
  c.worker("w1", 2);
  BOOST_TEST_REQUIRE(eventually([&] { return c.worker_record("w1").has_value(); }));

  c.submit("before", "gated");
  const RunRecord running = c.wait_for("before", [](const RunRecord& r) {
    return r.status() == "RUNNING" && !std_version_of(r).empty();
  });
  BOOST_TEST(std_version_of(running) == c.installed_std_version);

  const PluginRelease pushed = c.publish_std("9.0.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }),
                     json::serialize(*c.worker_record("w1")));
  BOOST_TEST(c.plugin_state("w1", "std", "9.0.0")->at("sha256").as_string() == pushed.sha256);
  BOOST_TEST(c.wait_for("before", [](const RunRecord&) { return true; }).status() == "RUNNING");

  c.submit("after", "echo");
  const RunRecord after = c.wait_for("after", terminal);
  BOOST_TEST(after.status() == "COMPLETED", json::serialize(after.snapshot));
  BOOST_TEST(std_version_of(after) == "9.0.0");
  // The installed std has no guard program beside its library, and its
  // shell tasks run (behind the built-in one).
  c.submit("shell", "shell");
  const RunRecord shell = c.wait_for("shell", terminal);
  BOOST_TEST(shell.status() == "COMPLETED", json::serialize(shell.snapshot));
  BOOST_TEST(std_version_of(shell) == "9.0.0");
  BOOST_TEST(!fs::exists(c.plugins_dir() / "std" / ("9.0.0-" + pushed.sha256.substr(0, 12)) /
                         "pyoco-shell-guard"));

  c.open_gate();
  const RunRecord before = c.wait_for("before", terminal);
  BOOST_TEST(before.status() == "COMPLETED", json::serialize(before.snapshot));
  BOOST_TEST(std_version_of(before) == c.installed_std_version);

  // Installed whole where --plugins-dir says, nothing half-made beside it.
  BOOST_TEST(fs::exists(c.plugins_dir() / "std" / ("9.0.0-" + pushed.sha256.substr(0, 12)) /
                        "plugin.toml"));
  BOOST_TEST(partial_entries(c.plugins_dir()).empty());

  const auto asked = std::chrono::steady_clock::now();
  c.submit("needs-new", "needs_new");
  const RunRecord refused = c.wait_for("needs-new", terminal);
  BOOST_TEST(refused.status() == "FAILED");
  BOOST_TEST(refused.snapshot.at("error").as_string().find(
                 "flow needs plugin std >= 99.0.0; this host has 9.0.0") != std::string::npos,
             refused.snapshot.at("error"));
  BOOST_TEST(refused.snapshot.at("attempt").as_int64() == 1);  // failed at once, never retried
  BOOST_TEST((std::chrono::steady_clock::now() - asked < 20s));
}

// A damaged release (a chunk gone), one whose record names another
// package, and one for another platform: none is used, the version before
// stays active, and the refusals are in the worker's record and the history.
BOOST_AUTO_TEST_CASE(a_release_that_does_not_check_out_is_refused_and_reported) {
  Cluster c;
  const PluginRelease good = c.publish_std("9.0.0");  // before the worker: it catches up at start
  ChildProcess& w = c.worker("w1");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));

  // Pushed while the worker is stopped, so that it sees each as it is left.
  w.send_signal(SIGSTOP);
  auto other = c.std_package("10.0.0");
  PluginRelease plan9 = c.release_of(other);
  plan9.os = "plan9";
  c.repo->publish(other.bytes, plan9);
  const PluginRelease damaged = c.publish_std("9.1.0");
  // Its second chunk deleted (found by reading its chunks' subject).
  std::uint64_t second = 0;
  {
    // Closed while chunks are still coming: the way that does not crash cnats.
    const Subscription sub = subscribe_events(c.nats, "pyoco.plugins.chunk." + damaged.sha256, 0);
    BOOST_REQUIRE(sub != nullptr);
    for (natsMsg* m = nullptr;
         second == 0 && natsSubscription_NextMsg(&m, sub.get(), 5000) == NATS_OK;) {
      const char* index = nullptr;
      jsMsgMetaData* meta = nullptr;
      if (natsMsgHeader_Get(m, "Pyoco-Chunk", &index) == NATS_OK && std::string(index) == "1" &&
          natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        second = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
      }
      natsMsg_Destroy(m);
    }
    BOOST_REQUIRE(second != 0);
    BOOST_REQUIRE(js_DeleteMsg(c.nats.handles().js, "PYOCO_PLUGINS", second, nullptr, nullptr) ==
                  NATS_OK);
  }
  // A record of 9.2.0 naming 9.0.0's package (whose chunks check out).
  {
    PluginRelease lying = good;
    lying.version = "9.2.0";
    kvStore* kv = nullptr;
    BOOST_REQUIRE(js_KeyValue(&kv, c.nats.handles().js, "pyoco_plugins") == NATS_OK);
    const std::string body = json::serialize(to_json(lying));
    BOOST_REQUIRE(kvStore_PutString(nullptr, kv, lying.key().c_str(), body.c_str()) == NATS_OK);
    kvStore_Destroy(kv);
  }
  w.send_signal(SIGCONT);

  BOOST_TEST_REQUIRE(eventually([&] {
                       const auto a = c.plugin_state("w1", "std", "9.1.0");
                       const auto b = c.plugin_state("w1", "std", "9.2.0");
                       return a && b && a->at("state").as_string() == "failed" &&
                              b->at("state").as_string() == "failed";
                     }),
                     json::serialize(*c.worker_record("w1")));
  BOOST_TEST(c.active("w1", "9.0.0"));
  BOOST_TEST(!c.plugin_state("w1", "std", "10.0.0"));  // not for this platform: not even tried
  const std::string damaged_error(c.plugin_state("w1", "std", "9.1.0")->at("error").as_string());
  BOOST_TEST(damaged_error.find("chunks are missing or damaged") != std::string::npos,
             damaged_error);
  const std::string lying_error(c.plugin_state("w1", "std", "9.2.0")->at("error").as_string());
  BOOST_TEST(lying_error.find("not the std 9.2.0") != std::string::npos, lying_error);

  // In the history, once each, by the worker.
  std::size_t rejected = 0;
  for (const json::object& h : c.repo->history()) {
    if (h.at("action").as_string() != "rejected") continue;
    ++rejected;
    BOOST_TEST(h.at("by").as_string() == "w1");
    BOOST_TEST(!h.at("error").as_string().empty());
  }
  BOOST_TEST(rejected == 2u);

  c.submit("after", "echo");
  const RunRecord after = c.wait_for("after", terminal);
  BOOST_TEST(after.status() == "COMPLETED");
  BOOST_TEST(std_version_of(after) == "9.0.0");
  // A later look at the repository (it takes 9.3.0) does not try the
  // refused ones again.
  c.publish_std("9.3.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.3.0"); }));
  std::size_t rejected_later = 0;
  for (const json::object& h : c.repo->history()) {
    rejected_later += h.at("action").as_string() == "rejected";
  }
  BOOST_TEST(rejected_later == 2u);
  BOOST_TEST(partial_entries(c.plugins_dir()).empty());
}

// A package that checks out but fails lint (here: a status lint refuses)
// is never used: the version before stays, and the refusal says why.
BOOST_AUTO_TEST_CASE(a_release_that_fails_lint_is_refused_and_reported) {
  Cluster c;
  c.publish_std("9.0.0");
  c.worker("w1");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));
  const auto bad = c.std_package_lint_refuses("9.4.0");
  c.repo->publish(bad.bytes, c.release_of(bad));
  BOOST_TEST_REQUIRE(eventually([&] {
                       const auto p = c.plugin_state("w1", "std", "9.4.0");
                       return p && p->at("state").as_string() == "failed";
                     }),
                     json::serialize(*c.worker_record("w1")));
  const std::string error(c.plugin_state("w1", "std", "9.4.0")->at("error").as_string());
  BOOST_TEST(error.find("lint") != std::string::npos, error);
  BOOST_TEST(error.find("PL006") != std::string::npos, error);
  BOOST_TEST(c.active("w1", "9.0.0"));
  c.submit("after", "echo");
  BOOST_TEST(std_version_of(c.wait_for("after", terminal)) == "9.0.0");
  BOOST_TEST(partial_entries(c.plugins_dir()).empty());
}

// A refusal outlives the worker: restarted on the same --plugins-dir, it
// neither installs (lints) the refused release again nor writes a second
// `rejected` entry; a damaged refused.json is said once and forgotten.
BOOST_AUTO_TEST_CASE(a_refused_release_stays_refused_after_a_restart) {
  Cluster c;
  c.publish_std("9.0.0");
  ChildProcess* w = &c.worker("w1");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));
  const auto bad = c.std_package_lint_refuses("9.4.0");
  c.repo->publish(bad.bytes, c.release_of(bad));
  auto rejections = [&] {
    std::size_t n = 0;
    for (const json::object& h : c.repo->history()) n += h.at("action").as_string() == "rejected";
    return n;
  };
  // Each start of the worker: its record, once it says 9.4.0 is refused.
  auto refused_by_new_instance = [&](const std::string& before) {
    return eventually([&] {
      const auto r = c.worker_record("w1");
      const auto p = c.plugin_state("w1", "std", "9.4.0");
      return r && r->at("instance_id").as_string() != before &&
             r->at("state").as_string() != "STOPPED_GRACEFUL" && p &&
             p->at("state").as_string() == "failed" && c.active("w1", "9.0.0");
    });
  };
  // Whether the worker began to install (download and lint) 9.4.0.
  auto installed_bad = [](const std::string& err) {
    std::istringstream lines(err);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("worker: installing plugin") != std::string::npos &&
          line.find("9.4.0") != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  auto restart = [&] {
    const std::string before(c.worker_record("w1")->at("instance_id").as_string());
    w->send_signal(SIGTERM);
    BOOST_TEST_REQUIRE(w->wait(20s) == 0, w->err());
    w = &c.worker("w1");
    BOOST_TEST_REQUIRE(refused_by_new_instance(before), w->err());
  };
  BOOST_TEST_REQUIRE(refused_by_new_instance(""), w->err());
  BOOST_TEST(installed_bad(w->err()), w->err());
  BOOST_TEST(rejections() == 1u);
  BOOST_TEST(fs::exists(c.plugins_dir() / "refused.json"));

  restart();
  BOOST_TEST(!installed_bad(w->err()), w->err());
  BOOST_TEST(rejections() == 1u);
  const std::string error(c.plugin_state("w1", "std", "9.4.0")->at("error").as_string());
  BOOST_TEST(error.find("PL006") != std::string::npos, error);

  // Damaged: said once, and the release is tried (and refused) once more.
  write_text(c.plugins_dir() / "refused.json", "{\"refused\": [");
  restart();
  const std::string err = w->err();
  const auto said = err.find("refused.json is unreadable or damaged");
  BOOST_TEST(said != std::string::npos, err);
  BOOST_TEST(err.find("refused.json is unreadable or damaged", said + 1) == std::string::npos, err);
  BOOST_TEST(installed_bad(err), err);
  BOOST_TEST(rejections() == 2u);
}

// A package whose manifest lies about what its library is: named std but
// holding the hello plugin's library (which says hello 0.1.0 through the
// ABI), or std 9.5.0 holding a library built as another version. Neither is
// used: std stays the version before on the worker, and runs using std/*
// go on working; the refusal names what the library says.
BOOST_AUTO_TEST_CASE(a_release_whose_library_is_not_what_its_manifest_says_is_refused) {
  Cluster c;
  c.publish_std("9.0.0");
  c.worker("w1");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));

  // The build's std library (its own version) under a manifest saying 9.5.0
  // (pushed first: a push must be newer than every version there is).
  const auto stale = c.std_package("9.5.0");
  c.repo->publish(stale.bytes, c.release_of(stale));
  BOOST_TEST_REQUIRE(eventually([&] {
                       const auto p = c.plugin_state("w1", "std", "9.5.0");
                       return p && p->at("state").as_string() == "failed";
                     }),
                     json::serialize(*c.worker_record("w1")));
  const std::string stale_error(c.plugin_state("w1", "std", "9.5.0")->at("error").as_string());
  BOOST_TEST(stale_error.find("PL032") != std::string::npos, stale_error);
  BOOST_TEST(stale_error.find("the library says std " + c.installed_std_version +
                              ", plugin.toml says std 9.5.0") != std::string::npos,
             stale_error);
  BOOST_TEST(c.active("w1", "9.0.0"));

  const fs::path hello = binary_dir() / "lib/pyoco/plugins/hello";
  const auto impostor = c.package_as(hello, "std", "9.9.9");
  c.repo->publish(impostor.bytes, c.release_of(impostor));
  BOOST_TEST_REQUIRE(eventually([&] {
                       const auto p = c.plugin_state("w1", "std", "9.9.9");
                       return p && p->at("state").as_string() == "failed";
                     }),
                     json::serialize(*c.worker_record("w1")));
  const std::string error(c.plugin_state("w1", "std", "9.9.9")->at("error").as_string());
  BOOST_TEST(error.find("PL035") != std::string::npos, error);
  BOOST_TEST(error.find("is plugin 'hello'") != std::string::npos, error);
  BOOST_TEST(c.active("w1", "9.0.0"));

  c.submit("after", "echo");
  const RunRecord after = c.wait_for("after", terminal);
  BOOST_TEST(after.status() == "COMPLETED", json::serialize(after.snapshot));
  BOOST_TEST(std_version_of(after) == "9.0.0");
  BOOST_TEST(partial_entries(c.plugins_dir()).empty());
}

// --plugins-dir keeps a plugin's version in use and the one before, and an
// older one only while a run that bound it goes on.
BOOST_AUTO_TEST_CASE(old_versions_are_removed_once_no_run_uses_them) {
  Cluster c;
  c.publish_std("9.0.0");
  c.worker("w1", 2);
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));
  c.submit("long", "gated");
  c.wait_for("long", [](const RunRecord& r) { return std_version_of(r) == "9.0.0"; });
  c.publish_std("9.3.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.3.0"); }));
  c.publish_std("9.6.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.6.0"); }));
  auto versions = [&] {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(c.plugins_dir() / "std")) {
      const std::string leaf = e.path().filename().string();
      if (leaf[0] != '.') out.insert(leaf.substr(0, leaf.rfind('-')));
    }
    return out;
  };
  // 9.0.0 is older than the one before, but the long run uses it.
  std::this_thread::sleep_for(1500ms);  // a few syncs
  BOOST_TEST((versions() == std::set<std::string>{"9.0.0", "9.3.0", "9.6.0"}));
  c.open_gate();
  BOOST_TEST(c.wait_for("long", terminal).status() == "COMPLETED");
  BOOST_TEST_REQUIRE(eventually([&] {
    return versions() == std::set<std::string>{"9.3.0", "9.6.0"};
  }));
  c.publish_std("9.7.0");
  BOOST_TEST_REQUIRE(eventually([&] {
    return versions() == std::set<std::string>{"9.6.0", "9.7.0"};
  }));
  c.submit("after", "echo");
  BOOST_TEST(std_version_of(c.wait_for("after", terminal)) == "9.7.0");
}

// The version kept besides the active one is the one active before, not
// only the newest other: after a yank they differ, and the one the worker
// went back to was removed when the next came.
BOOST_AUTO_TEST_CASE(the_version_active_before_is_kept_after_a_yank) {
  Cluster c;
  c.publish_std("9.0.0");
  c.worker("w1", 2);
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));
  c.publish_std("9.3.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.3.0"); }));
  c.publish_std("9.6.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.6.0"); }));
  BOOST_TEST_REQUIRE(!c.repo->yank("std", "9.6.0", "k1").empty());
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.3.0"); }));
  c.publish_std("9.7.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.7.0"); }));
  std::this_thread::sleep_for(1500ms);  // a few syncs, each pruning
  std::set<std::string> versions;
  for (const auto& e : fs::directory_iterator(c.plugins_dir() / "std")) {
    const std::string leaf = e.path().filename().string();
    if (leaf[0] != '.') versions.insert(leaf.substr(0, leaf.rfind('-')));
  }
  // 9.7.0 active, 9.6.0 the newest other, 9.3.0 the one active before.
  BOOST_TEST((versions == std::set<std::string>{"9.3.0", "9.6.0", "9.7.0"}));
}

// kill -9 while a package is being installed (unpacked, being linted):
// what it left is never used, the next start removes it and installs the
// release whole.
BOOST_AUTO_TEST_CASE(a_worker_killed_while_installing_leaves_nothing_half_made_in_use) {
  Cluster c;
  const PluginRelease r = c.publish_std("9.0.0");
  // What an older crash left: an unpack cut short and an unlinted install.
  fs::create_directories(c.plugins_dir() / "std" / ".9.0.0-x.checking.partial-1");
  fs::create_directories(c.plugins_dir() / "std" / ".9.0.0-x.checking");
  write_text(c.plugins_dir() / "std" / ".9.0.0-x.checking" / "plugin.toml", "broken");

  ChildProcess& first = c.worker("w1");
  const fs::path checking =
      c.plugins_dir() / "std" / (".9.0.0-" + r.sha256.substr(0, 12) + ".checking");
  BOOST_TEST_REQUIRE(eventually([&] { return fs::exists(checking); }, 30s));
  first.send_signal(SIGKILL);
  first.wait(10s);
  BOOST_TEST(!fs::exists(c.plugins_dir() / "std" / ("9.0.0-" + r.sha256.substr(0, 12))));

  c.worker("w1");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));
  BOOST_TEST(partial_entries(c.plugins_dir()).empty());

  // A second worker given the same --plugins-dir would remove the first's
  // installs in progress: it refuses to start, and says why.
  ChildProcess& second = c.worker("w2");
  BOOST_TEST(second.wait(20s) == 2);
  BOOST_TEST(second.err().find("is in use by another worker") != std::string::npos, second.err());

  c.submit("after", "echo");
  const RunRecord after = c.wait_for("after", terminal);
  BOOST_TEST(after.status() == "COMPLETED");
  BOOST_TEST(std_version_of(after) == "9.0.0");
}

// Releases a worker cannot install under their name and version (indexed
// as a gateway without limits took them: a 250-character pre-release, a
// 300-character name; the directory would be
// past 255 bytes) or whose name is no plugin's (worker.lock, the lock
// file's name): each is refused and reported like a release that fails
// lint, and none stops the sync: a release pushed after them is taken, and
// a worker started while they are there takes the rest.
BOOST_AUTO_TEST_CASE(a_release_that_cannot_be_installed_does_not_stop_the_others) {
  Cluster c;
  const PluginRelease good = c.publish_std("9.0.0");
  c.worker("w1");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.0.0"); }));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"gamma", "0.7.0-" + std::string(250, 'a')},
      {std::string(300, 'x'), "1.0.0"},
      {"worker.lock", "1.0.0"}};
  {
    kvStore* kv = nullptr;
    BOOST_REQUIRE(js_KeyValue(&kv, c.nats.handles().js, "pyoco_plugins") == NATS_OK);
    for (const auto& [name, version] : bad) {
      PluginRelease r = good;  // naming 9.0.0's package, whose chunks check out
      r.name = name;
      r.version = version;
      const std::string body = json::serialize(to_json(r));
      BOOST_REQUIRE(kvStore_PutString(nullptr, kv, r.key().c_str(), body.c_str()) == NATS_OK);
    }
    kvStore_Destroy(kv);
  }
  c.publish_std("9.3.0");
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w1", "9.3.0"); }),
                     json::serialize(*c.worker_record("w1")));
  BOOST_TEST_REQUIRE(eventually([&] {
    for (const auto& [name, version] : bad) {
      const auto p = c.plugin_state("w1", name, version);
      if (!p || p->at("state").as_string() != "failed") return false;
    }
    return true;
  }));
  const auto error_of = [&](const std::size_t i) {
    return std::string(c.plugin_state("w1", bad[i].first, bad[i].second)->at("error").as_string());
  };
  BOOST_TEST(error_of(0).find("is 256 characters long: at most 64") != std::string::npos,
             error_of(0));
  BOOST_TEST(error_of(1).find("is 300 characters long: at most 64") != std::string::npos,
             error_of(1));
  BOOST_TEST(error_of(2).find("is not [a-z][a-z0-9_]*") != std::string::npos, error_of(2));
  std::size_t rejected = 0;
  for (const json::object& h : c.repo->history()) {
    rejected += h.at("action").as_string() == "rejected" && h.at("by").as_string() == "w1";
  }
  BOOST_TEST(rejected == 3u);
  BOOST_TEST(!fs::exists(c.plugins_dir() / "worker.lock" / "1.0.0"));

  // A worker that starts now takes std too.
  ChildProcess& w2 = c.WorkerCluster::worker(
      "w2", 1,
      {"--plugins-dir", (c.state.path() / "plugins-w2").string(), "--plugin-sync-interval", "0.5"});
  BOOST_TEST_REQUIRE(eventually([&] { return c.active("w2", "9.3.0"); }, 60s), w2.err());
  c.submit("after", "echo");
  const RunRecord after = c.wait_for("after", terminal);
  BOOST_TEST(after.status() == "COMPLETED");
  BOOST_TEST(std_version_of(after) == "9.3.0");
}
