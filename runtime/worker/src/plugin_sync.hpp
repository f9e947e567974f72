// Internal: a worker's plugins from the cluster's repository (docs/cluster.md,
// "Plugins from the repository"). For each plugin, the newest release for
// this host's os, arch and ABI major and the worker's tags (not yanked) is
// downloaded (every chunk and the whole checked), opened (SHA256SUMS
// checked), unpacked atomically and linted in a child process, then kept
// under <dir>/<name>/<version>-<sha256 prefix>/. A release that fails any
// of it is never used, never tried again by this worker (even restarted:
// refused_releases.hpp), and reported.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/plugin_repository.hpp>

#include <boost/json/array.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "refused_releases.hpp"

namespace pyoco::worker {

struct PluginSyncOptions {
  std::filesystem::path dir;      // the state directory, this worker's alone
  std::string worker_id;          // who a rejection in the history is by
  std::vector<std::string> tags;  // a release with tags is for workers with one of them
  // `pyoco plugins lint`, to which the directory and --json are appended.
  std::vector<std::string> lint_command;
  std::chrono::milliseconds lint_timeout{std::chrono::seconds(60)};
};

class PluginSync {
 public:
  // Removes what a killed worker left half-made in `dir` (it was never
  // used); throws cluster::NatsError when the repository's bucket is missing.
  // Throws std::runtime_error when another worker uses options.dir.
  PluginSync(cluster::Connection& nats, PluginSyncOptions options);
  ~PluginSync();
  PluginSync(const PluginSync&) = delete;
  PluginSync& operator=(const PluginSync&) = delete;

  // One pass over the repository. True when the plugins to use changed
  // (active_dirs()). Throws cluster::NatsError when NATS is away (what is
  // installed stays in use).
  bool sync();
  // Each plugin's directory to use, in name order: what goes in front of
  // the worker's own search path.
  std::vector<std::filesystem::path> active_dirs() const;
  // For the registry record: {name, version, sha256, state: active|failed,
  // error} of each plugin in use and each newer release refused.
  boost::json::array status() const;
  // Removes the installed versions of each plugin but the one in use, the
  // newest other (the one before, for a yank or a run that bound the set
  // just before it changed) and those `in_use` names (name -> versions that
  // runs going on this worker bound): --plugins-dir keeps at most two
  // versions a plugin, and more only while runs use them. What it removed.
  std::vector<std::filesystem::path> prune(
      const std::map<std::string, std::set<std::string>>& in_use);

  // Waits up to `timeout` for a push or yank (false: the timeout).
  bool wait_for_change(std::chrono::milliseconds timeout);

 private:
  // An flock on <dir>/worker.lock, held while this worker lives: two workers
  // would remove each other's installs in progress.
  int lock_fd_ = -1;

  struct Installed {
    std::string version, sha256;
    std::filesystem::path dir;
  };
  struct Refused {
    cluster::PluginRelease release;
    std::string error;
  };

  // The newest usable release of one plugin, installing it if need be;
  // the refused ones newer than it go to `refused`.
  // `transient`: none was chosen for a reason of this machine's (a full
  // disk), not the packages'.
  const cluster::PluginRelease* choose(const std::vector<const cluster::PluginRelease*>& candidates,
                                       std::vector<Refused>& refused, bool& transient);
  // Logs a release this machine could not install, and lists it in the
  // record: tried again at the next sync.
  void transient_failure(const cluster::PluginRelease& r, const std::exception& e,
                         std::vector<Refused>& refused);
  // Downloads, checks, unpacks and lints a release; "" or why not.
  std::string install(const cluster::PluginRelease& r, const std::filesystem::path& dir);
  std::string lint(const std::filesystem::path& dir) const;
  std::filesystem::path dir_of(const cluster::PluginRelease& r) const;
  void clean_partial();
  // Adds a refusal to failed_ and to refused.json.
  void remember_refusal(const std::string& id, const std::string& why);
  // Drops the refusals of releases no longer in the repository (`all`), so
  // that refused.json does not grow for ever.
  void forget_refusals_of_gone(const std::vector<cluster::PluginRelease>& all);
  std::filesystem::path refused_file() const { return options_.dir / "refused.json"; }

  PluginSyncOptions options_;
  cluster::PluginRepository repository_;
  // key@sha256 -> why: never tried again, by this process or the next
  // (kept in <dir>/refused.json).
  RefusedReleases failed_;

  mutable std::mutex mutex_;  // guards what status() and active_dirs() read
  std::map<std::string, Installed> active_;
  // Per plugin, the directory that was active before the current one (a
  // yank goes back to it; a run may have bound it just before the change).
  std::map<std::string, std::filesystem::path> previous_;
  std::vector<Refused> refused_;
};

}  // namespace pyoco::worker
