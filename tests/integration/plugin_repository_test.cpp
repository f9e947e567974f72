// The cluster's plugin repository on a real nats-server: a package stored
// in chunks and indexed, the same or an older version refused, a download
// checked chunk by chunk and whole, yanks and the history.
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/plugin_repository.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/plugins/package.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "nats_server.hpp"
#include "process.hpp"

using namespace pyoco;
using namespace pyoco::testing;

namespace {

struct Repo {
  NatsServer server;
  cluster::Connection nats{cluster::ConnectOptions{.servers = {server.url()}}};
  std::unique_ptr<cluster::PluginRepository> repo;
  Repo() {
    cluster::init_resources(nats, {});
    repo = std::make_unique<cluster::PluginRepository>(nats);
  }
};

cluster::PluginRelease release_of(const plugins::PluginPackage& p, std::string version) {
  cluster::PluginRelease r = cluster::release_of(p.manifest);
  r.version = std::move(version);
  r.uploaded_by = "k1";
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_package_round_trips_and_versions_only_go_up) {
  Repo c;
  const auto package = plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/std");
  BOOST_REQUIRE(package.bytes.size() > cluster::kPluginChunkBytes);  // several chunks
  const cluster::PluginRelease r =
      c.repo->publish(package.bytes, release_of(package, package.manifest.version));
  BOOST_TEST(r.sha256 == package.sha256);
  BOOST_TEST(r.chunks ==
             (package.bytes.size() + cluster::kPluginChunkBytes - 1) / cluster::kPluginChunkBytes);
  BOOST_TEST(c.repo->download(r) == package.bytes);

  BOOST_CHECK_THROW(c.repo->publish(package.bytes, release_of(package, package.manifest.version)),
                    cluster::VersionConflict);
  BOOST_CHECK_THROW(c.repo->publish(package.bytes, release_of(package, "0.0.1")),
                    cluster::VersionConflict);
  const auto releases = c.repo->releases();
  BOOST_REQUIRE(releases.size() == 1u);
  BOOST_TEST(releases[0].key() == "std/" + r.platform() + "/" + r.version);

  const auto yanked = c.repo->yank("std", r.version, "k2");
  BOOST_REQUIRE(yanked.size() == 1u);
  BOOST_TEST(c.repo->releases()[0].yanked);
  BOOST_CHECK_THROW(c.repo->publish(package.bytes, release_of(package, r.version)),
                    cluster::VersionConflict);  // a yanked version is never pushed again
  const auto history = c.repo->history();
  BOOST_REQUIRE(history.size() == 2u);
  BOOST_TEST(history[0].at("action").as_string() == "yank");
  BOOST_TEST(history[1].at("action").as_string() == "push");
}

BOOST_AUTO_TEST_CASE(a_download_with_a_chunk_gone_is_refused) {
  Repo c;
  const auto package = plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/std");
  const cluster::PluginRelease r =
      c.repo->publish(package.bytes, release_of(package, package.manifest.version));
  // The second chunk deleted from the stream (its sequence: the second message).
  jsCtx* js = c.nats.handles().js;
  BOOST_REQUIRE(js_DeleteMsg(js, "PYOCO_PLUGINS", 2, nullptr, nullptr) == NATS_OK);
  try {
    c.repo->download(r);
    BOOST_ERROR("a package with a chunk gone was downloaded");
  } catch (const cluster::DamagedPackage& e) {
    BOOST_TEST(std::string(e.what()).find("chunks are missing or damaged") != std::string::npos,
               e.what());
  }
  // A release whose sha256 its chunks do not make.
  cluster::PluginRelease wrong = r;
  wrong.sha256 = std::string(64, '0');
  BOOST_CHECK_THROW(c.repo->download(wrong), cluster::DamagedPackage);
}

// Pushes of many versions at once: each is taken or refused with a
// VersionConflict, the newest always taken; what the index ends with is
// consistent (the newest is what it says is newest, every release taken is
// whole) and a refused push leaves no chunks behind.
BOOST_AUTO_TEST_CASE(pushes_at_once_are_put_in_order_and_losers_leave_nothing) {
  Repo c;
  const auto package = plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/std");
  constexpr int kPushes = 8;
  std::vector<std::string> bytes(kPushes);
  for (int i = 0; i < kPushes; ++i) {
    // Another package each (three chunks), so each loser's chunks are its own.
    bytes[i] = std::string(2 * cluster::kPluginChunkBytes + 100, static_cast<char>('a' + i));
  }
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  std::vector<int> outcome(kPushes, -1);  // 1 taken, 0 refused, 2 another error
  std::vector<std::string> sha(kPushes);
  for (int i = 0; i < kPushes; ++i) {
    threads.emplace_back([&, i] {
      cluster::Connection own{cluster::ConnectOptions{.servers = {c.server.url()}}};
      cluster::PluginRepository repo(own);
      ++ready;
      while (ready.load() < kPushes) std::this_thread::yield();
      try {
        sha[i] = repo.publish(bytes[i], release_of(package, "1.0." + std::to_string(i))).sha256;
        outcome[i] = 1;
      } catch (const cluster::VersionConflict&) {
        outcome[i] = 0;
      } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE(e.what());
        outcome[i] = 2;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  BOOST_TEST(outcome[kPushes - 1] == 1);  // nothing newer can beat the newest
  const auto releases = c.repo->releases();
  std::set<std::string> indexed;
  for (const auto& r : releases) indexed.insert(r.version);
  for (int i = 0; i < kPushes; ++i) {
    const std::string version = "1.0." + std::to_string(i);
    BOOST_TEST(outcome[i] != 2, version);
    BOOST_TEST((outcome[i] == 1) == (indexed.count(version) == 1), version);
    const std::string digest = plugins::sha256_hex(bytes[i]);
    std::size_t chunks = 0;
    const cluster::Subscription sub =
        cluster::subscribe_events(c.nats, "pyoco.plugins.chunk." + digest, 0);
    BOOST_REQUIRE(sub != nullptr);
    cluster::read_stored(sub.get(), [&](natsMsg*) { return ++chunks > 0; });
    BOOST_TEST(chunks == (outcome[i] == 1 ? 3u : 0u), version);
  }
  for (const auto& r : releases) BOOST_TEST(c.repo->download(r).size() == r.size);
  // Versions only go up from here too.
  BOOST_CHECK_THROW(c.repo->publish(bytes[0], release_of(package, "1.0.3")),
                    cluster::VersionConflict);
}

// PYOCO_PLUGINS is bounded: a push past the bound is refused whole
// (RepositoryFull, the gateway's 507) and stores nothing; a yank purges the
// release's chunks, which makes room again.
// A gateway that died between a push's chunks and its index entry left
// chunks no release is made of: the sweep purges them once they are older
// than its grace, and leaves every indexed release's chunks (and a push
// still in progress, younger than the grace) alone.
BOOST_AUTO_TEST_CASE(chunks_of_a_push_that_never_got_indexed_are_swept) {
  Repo c;
  const auto package = plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/std");
  const cluster::PluginRelease r =
      c.repo->publish(package.bytes, release_of(package, package.manifest.version));
  jsCtx* js = c.nats.handles().js;
  const std::string orphan(64, 'a');  // a package's sha256, never indexed
  for (int i = 0; i < 3; ++i) {
    jsPubAck* ack = nullptr;
    BOOST_REQUIRE(js_Publish(&ack, js, ("pyoco.plugins.chunk." + orphan).c_str(), "part", 4,
                             nullptr, nullptr) == NATS_OK);
    jsPubAck_Destroy(ack);
  }
  auto stored = [&](const std::string& sha) {
    natsMsg* m = nullptr;
    const bool there =
        js_GetLastMsg(&m, js, "PYOCO_PLUGINS", ("pyoco.plugins.chunk." + sha).c_str(), nullptr,
                      nullptr) == NATS_OK;
    natsMsg_Destroy(m);
    return there;
  };
  BOOST_TEST(c.repo->sweep_orphan_chunks() == 0u);  // younger than the grace: maybe in progress
  BOOST_TEST(stored(orphan));
  BOOST_TEST(c.repo->sweep_orphan_chunks(std::chrono::seconds(0)) == 1u);
  BOOST_TEST(!stored(orphan));
  BOOST_TEST(stored(r.sha256));
  BOOST_TEST(c.repo->download(r) == package.bytes);
}

BOOST_AUTO_TEST_CASE(a_full_repository_refuses_a_push_and_a_yank_makes_room) {
  NatsServer server;
  cluster::Connection nats{cluster::ConnectOptions{.servers = {server.url()}}};
  cluster::ResourceOptions options;
  options.plugins_max_bytes = 1 << 20;
  cluster::init_resources(nats, options);
  cluster::PluginRepository repo(nats);
  const auto package = plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/std");
  auto bytes = [](char fill) { return std::string(400 * 1024, fill); };
  const auto first = repo.publish(bytes('a'), release_of(package, "1.0.0"));
  repo.publish(bytes('b'), release_of(package, "1.0.1"));
  try {
    repo.publish(bytes('c'), release_of(package, "1.0.2"));
    BOOST_ERROR("a push past the bound was taken");
  } catch (const cluster::RepositoryFull& e) {
    BOOST_TEST(std::string(e.what()).find("PYOCO_PLUGINS_MAX_BYTES") != std::string::npos);
  }
  BOOST_TEST(repo.releases().size() == 2u);
  repo.yank("std", "1.0.0", "k1");
  std::size_t left = 0;
  const cluster::Subscription sub =
      cluster::subscribe_events(nats, "pyoco.plugins.chunk." + first.sha256, 0);
  cluster::read_stored(sub.get(), [&](natsMsg*) { return ++left > 0; });
  BOOST_TEST(left == 0u);  // the yanked release's chunks are gone
  BOOST_TEST(repo.publish(bytes('c'), release_of(package, "1.0.2")).version == "1.0.2");
}
