// The cluster's plugin repository (docs/cluster.md, "Plugins"): packages
// stored in 128 KiB chunks on `pyoco.plugins.chunk.<sha256>` in the
// PYOCO_PLUGINS stream, an index of releases in the `pyoco_plugins` bucket
// under `<name>/<os>-<arch>-abi<N>/<version>`, and every push and yank in
// its history (`_history/<time>` in the same bucket; `_latest/<name>/<platform>`
// orders racing pushes). A worker downloads a
// release by its sha256 and checks every chunk and the whole.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pyoco::plugins {
struct Manifest;
}

namespace pyoco::cluster {

struct PluginRelease {
  std::string name;
  std::string version;
  std::string os, arch;
  std::int64_t abi = 0;
  std::string sha256;  // of the package
  std::uint64_t size = 0;
  std::uint32_t chunks = 0;
  std::vector<std::string> tags;  // the workers' tags it is for; empty: every worker
  std::string uploaded_by;        // the API key id ("" without keys)
  std::string tenant;
  double at = 0;        // epoch seconds
  bool yanked = false;  // withdrawn: workers no longer take it

  std::string platform() const;  // "linux-x86_64-abi1"
  std::string key() const;       // its index key
};

boost::json::object to_json(const PluginRelease& r);
// Throws NatsError naming a missing or mistyped field.
PluginRelease plugin_release_from_json(const boost::json::object& o);

// What a package's manifest says it is: name, version, os, arch, ABI (the
// rest, its digest, size, who and when, the push fills in).
PluginRelease release_of(const plugins::Manifest& manifest);

// A push refused because the index has this or a newer version (409).
class VersionConflict : public NatsError {
 public:
  using NatsError::NatsError;
};

// A push that would take PYOCO_PLUGINS past its bound (507): yanked
// releases' chunks are purged, which frees room.
class RepositoryFull : public NatsError {
 public:
  using NatsError::NatsError;
};

// A download that does not check out (a chunk missing or damaged, a
// whole that does not hash to the release's sha256).
class DamagedPackage : public NatsError {
 public:
  using NatsError::NatsError;
};

class PluginRepository {
 public:
  // The stream and bucket must exist (`pyoco cluster init`); throws NatsError.
  explicit PluginRepository(Connection& nats);
  ~PluginRepository();
  PluginRepository(const PluginRepository&) = delete;
  PluginRepository& operator=(const PluginRepository&) = delete;

  // Stores a checked package (its bytes; `release` says what it is: name,
  // version, platform, sha256, size, tags, who) in chunks, then indexes it
  // and records the push. Throws VersionConflict when the index holds the
  // same or a newer version of it for that platform (yanked ones count),
  // RepositoryFull when PYOCO_PLUGINS has no room for it.
  PluginRelease publish(const std::string& package, PluginRelease release);

  // Chunks no indexed release is made of, whose newest chunk is older than
  // `grace`: left by a push whose gateway died (or lost NATS) between its
  // chunks and its index entry. They only take room, so they are purged;
  // publish() sweeps them first. A push in progress stores a chunk every
  // few milliseconds: the grace keeps its chunks. Returns how many
  // packages' chunks were purged. Throws NatsError when NATS is away.
  static constexpr std::chrono::seconds kOrphanChunkGrace{600};
  std::size_t sweep_orphan_chunks(std::chrono::seconds grace = kOrphanChunkGrace);

  // Every release, newest first per name and platform.
  std::vector<PluginRelease> releases() const;
  // Pushes and yanks, newest first, at most `limit`.
  std::vector<boost::json::object> history(std::size_t limit = 200) const;
  // Marks every platform's release of that version yanked (workers drop to
  // the newest one left); returns them, none when there is no such version.
  // `by` is the key that yanked, `by_tenant` its tenant (the history shows
  // the key only to that tenant).
  std::vector<PluginRelease> yank(const std::string& name, const std::string& version,
                                  const std::string& by, const std::string& by_tenant = "");
  // The package's bytes, checked chunk by chunk and whole. Throws
  // DamagedPackage, or NatsError when NATS is away.
  std::string download(const PluginRelease& release) const;

  // A worker's refusal of a release (damaged, not what its record says,
  // failed lint), in the history as action "rejected", by the worker.
  void record_rejection(const PluginRelease& release, const std::string& worker_id,
                        const std::string& error);
  // Waits up to `timeout` for a release to be pushed or yanked (a watch on
  // the index, history left out); true when one was. For one thread at a
  // time. Throws NatsError when the watch cannot be made.
  bool wait_for_change(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

inline constexpr std::size_t kPluginChunkBytes = 128 * 1024;

}  // namespace pyoco::cluster
