// The cluster's plugin repository on a real nats-server: a package stored
// in chunks and indexed, the same or an older version refused, a download
// checked chunk by chunk and whole, yanks and the history.
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/plugin_repository.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/plugins/package.hpp>

#include <boost/test/unit_test.hpp>

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
  cluster::PluginRelease r;
  r.name = p.manifest.name;
  r.version = std::move(version);
  r.os = p.manifest.platform_os;
  r.arch = p.manifest.platform_arch;
  r.abi = p.manifest.abi;
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
