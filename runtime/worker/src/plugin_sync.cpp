#include "plugin_sync.hpp"

#include <pyoco/abi.h>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/core/semver.hpp>
#include <pyoco/core/subprocess.hpp>
#include <pyoco/plugins/manifest.hpp>
#include <pyoco/plugins/package.hpp>

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace pyoco::worker {

namespace fs = std::filesystem;
namespace json = boost::json;
using cluster::LogLevel;
using cluster::PluginRelease;

namespace {

// Names and versions become paths (and the name a directory beside
// worker.lock): only what manifests allow; "" or why not. Checked before
// anything is made of them on disk.
std::string unusable(const PluginRelease& r) {
  if (std::string why = plugins::plugin_name_problem(r.name); !why.empty()) return why;
  if (std::string why = plugins::plugin_version_problem(r.version); !why.empty()) return why;
  if (std::string why = plugins::platform_field_problem("os", r.os); !why.empty()) return why;
  if (std::string why = plugins::platform_field_problem("arch", r.arch); !why.empty()) return why;
  if (r.sha256.size() != 64 || !std::all_of(r.sha256.begin(), r.sha256.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return "its sha256 '" + r.sha256.substr(0, 80) + "' is not 64 hexadecimal digits";
  }
  return "";
}

// A file system error that the release's own name or version causes (a
// path too long, a name the file system refuses), not this machine's.
bool caused_by_release(const fs::filesystem_error& e) {
  return e.code() == std::errc::filename_too_long || e.code() == std::errc::invalid_argument ||
         e.code() == std::errc::illegal_byte_sequence;
}

bool for_this_worker(const PluginRelease& r, const std::vector<std::string>& tags) {
  if (r.yanked || r.os != plugins::host_os() || r.arch != plugins::host_arch() ||
      r.abi != PYOCO_ABI_VERSION_MAJOR) {
    return false;
  }
  return r.tags.empty() || std::any_of(r.tags.begin(), r.tags.end(), [&](const std::string& t) {
           return std::find(tags.begin(), tags.end(), t) != tags.end();
         });
}

// The first error a `plugins lint --json` reports, as one line. PL032 (the
// library's compiled-in version is not the manifest's) is a warning for a
// plugin in development, an error here: the release would be mislabelled
// (runs would record a version whose code they did not run).
bool refuses(const json::value& f) {
  const json::value* severity = f.is_object() ? f.as_object().if_contains("severity") : nullptr;
  const json::value* rule = f.is_object() ? f.as_object().if_contains("rule") : nullptr;
  return (severity != nullptr && severity->is_string() && severity->as_string() == "error") ||
         (rule != nullptr && rule->is_string() && rule->as_string() == "PL032");
}

std::string first_lint_error(const std::string& out) {
  boost::system::error_code ec;
  const json::value v = json::parse(out, ec);
  if (ec || !v.is_object()) return "";
  const json::value* ps = v.as_object().if_contains("plugins");
  if (ps == nullptr || !ps->is_array()) return "";
  for (const json::value& p : ps->as_array()) {
    const json::value* fs = p.is_object() ? p.as_object().if_contains("findings") : nullptr;
    if (fs == nullptr || !fs->is_array()) continue;
    for (const json::value& f : fs->as_array()) {
      if (!refuses(f)) continue;
      return json::value_to<std::string>(f.at("rule")) + ": " +
             json::value_to<std::string>(f.at("message"));
    }
  }
  return "";
}

}  // namespace

PluginSync::PluginSync(cluster::Connection& nats, PluginSyncOptions options)
    : options_(std::move(options)), repository_(nats) {
  fs::create_directories(options_.dir);
  const fs::path lock = options_.dir / "worker.lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    throw std::runtime_error("--plugins-dir " + options_.dir.string() +
                             ": cannot open worker.lock in it: " + std::strerror(errno));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd_);
    throw std::runtime_error(
        "--plugins-dir " + options_.dir.string() +
        (err == EWOULDBLOCK ? std::string(" is in use by another worker: give each worker its own "
                                          "--plugins-dir (the default is one per --worker-id)")
                            : ": cannot lock it: " + std::string(std::strerror(err))));
  }
  clean_partial();
  failed_ = load_refused_releases(refused_file());
  // What this worker installed before (each one whole and linted: it is
  // renamed into place only then), the newest of each plugin: in use until
  // the first sync says otherwise, so a worker that starts while NATS is
  // away still runs what it ran.
  std::error_code ec;
  for (fs::directory_iterator p(options_.dir, ec), end; !ec && p != end; p.increment(ec)) {
    const std::string name = p->path().filename().string();
    if (!p->is_directory() || !plugins::is_valid_name(name)) continue;
    for (fs::directory_iterator v(p->path(), ec), vend; !ec && v != vend; v.increment(ec)) {
      const std::string leaf = v->path().filename().string();
      const std::size_t dash = leaf.rfind('-');
      if (dash == std::string::npos || !fs::exists(v->path() / "plugin.toml")) continue;
      const std::string version = leaf.substr(0, dash);
      if (!plugins::is_semver(version)) continue;
      auto it = active_.find(name);
      if (it == active_.end() || core::compare_versions(version, it->second.version) > 0) {
        active_[name] = Installed{version, "", v->path()};
      }
    }
  }
}

PluginSync::~PluginSync() { ::close(lock_fd_); }

void PluginSync::clean_partial() {
  // `.<dir>.partial-*` (an unpack cut short) and `.<dir>.checking` (unpacked,
  // not yet linted): a worker killed there left them; they were never used.
  std::error_code ec;
  for (fs::directory_iterator p(options_.dir, ec), end; !ec && p != end; p.increment(ec)) {
    if (!p->is_directory()) continue;
    std::vector<fs::path> stale;
    std::error_code ec2;
    for (fs::directory_iterator v(p->path(), ec2), vend; !ec2 && v != vend; v.increment(ec2)) {
      if (v->path().filename().string().rfind('.', 0) == 0) stale.push_back(v->path());
    }
    for (const fs::path& s : stale) {
      cluster::log(LogLevel::info, "worker: removed a plugin install cut short",
                   {{"path", s.string()}});
      fs::remove_all(s, ec2);
    }
  }
}

fs::path PluginSync::dir_of(const PluginRelease& r) const {
  return options_.dir / r.name / (r.version + "-" + r.sha256.substr(0, 12));
}

bool PluginSync::sync() {
  const std::vector<PluginRelease> all = repository_.releases();
  // releases() orders by name, platform, then newest first: one platform
  // left, each name's candidates come newest first.
  std::map<std::string, std::vector<const PluginRelease*>> by_name;
  for (const PluginRelease& r : all) {
    if (for_this_worker(r, options_.tags)) by_name[r.name].push_back(&r);
  }
  std::map<std::string, Installed> next;
  std::vector<Refused> refused;
  std::map<std::string, Installed> current;
  {
    std::lock_guard lock(mutex_);
    current = active_;
  }
  for (const auto& [name, candidates] : by_name) {
    bool transient = false;
    if (const PluginRelease* r = choose(candidates, refused, transient)) {
      next[name] = Installed{r->version, r->sha256, dir_of(*r)};
    } else if (auto it = current.find(name); transient && it != current.end()) {
      next[name] = it->second;  // not its fault: the version in use stays
    }
  }
  forget_refusals_of_gone(all);
  std::lock_guard lock(mutex_);
  const bool changed =
      next.size() != active_.size() ||
      !std::equal(next.begin(), next.end(), active_.begin(),
                  [](const auto& a, const auto& b) { return a.second.dir == b.second.dir; });
  for (const auto& [name, was] : active_) {
    const auto now = next.find(name);
    if (now == next.end() || now->second.dir != was.dir) previous_[name] = was.dir;
  }
  active_ = std::move(next);
  refused_ = std::move(refused);
  return changed;
}

const PluginRelease* PluginSync::choose(const std::vector<const PluginRelease*>& candidates,
                                        std::vector<Refused>& refused, bool& transient) {
  for (const PluginRelease* r : candidates) {
    // By release and package: a record naming another release's package
    // fails, the other release does not.
    const std::string id = r->key() + "@" + r->sha256;
    if (auto it = failed_.find(id); it != failed_.end()) {
      refused.push_back(Refused{*r, it->second});
      continue;
    }
    // Whatever goes wrong with one release is that release's: the others
    // are still looked at (an error let out of here would stop every sync).
    std::string why = unusable(*r);
    if (why.empty()) {
      const fs::path dir = dir_of(*r);
      try {
        if (fs::exists(dir / "plugin.toml")) return r;
        cluster::log(LogLevel::info, "worker: installing plugin",
                     {{"plugin", r->name}, {"version", r->version}, {"sha256", r->sha256}});
        why = install(*r, dir);
      } catch (const cluster::NatsError&) {
        throw;  // NATS away: the whole sync is tried again, the set kept
      } catch (const fs::filesystem_error& e) {
        if (!caused_by_release(e)) {
          transient_failure(*r, e, refused);
          transient = true;
          return nullptr;
        }
        why = std::string("its directory cannot be made: ") + e.what();
      } catch (const std::exception& e) {
        transient_failure(*r, e, refused);
        transient = true;
        return nullptr;
      }
      if (why.empty()) {
        cluster::log(LogLevel::info, "worker: installed plugin",
                     {{"plugin", r->name}, {"version", r->version}, {"dir", dir.string()}});
        return r;
      }
    }
    cluster::log(LogLevel::warning, "worker: refused plugin",
                 {{"plugin", r->name}, {"version", r->version}, {"error", why}});
    remember_refusal(id, why);
    refused.push_back(Refused{*r, why});
    try {
      repository_.record_rejection(*r, options_.worker_id, why);
    } catch (const cluster::NatsError&) {
      // the registry record still says it
    }
  }
  return nullptr;
}

void PluginSync::remember_refusal(const std::string& id, const std::string& why) {
  failed_[id] = why;
  try {
    save_refused_releases(refused_file(), failed_);
  } catch (const std::exception& e) {
    // Still refused by this process; a restarted one tries it once more.
    cluster::log(LogLevel::warning, "worker: cannot keep a plugin refusal on disk",
                 {{"path", refused_file().string()}, {"error", e.what()}});
  }
}

void PluginSync::forget_refusals_of_gone(const std::vector<PluginRelease>& all) {
  std::set<std::string> listed;
  for (const PluginRelease& r : all) listed.insert(r.key() + "@" + r.sha256);
  const std::size_t before = failed_.size();
  std::erase_if(failed_, [&](const auto& f) { return listed.count(f.first) == 0; });
  if (failed_.size() == before) return;
  try {
    save_refused_releases(refused_file(), failed_);
  } catch (const std::exception& e) {
    cluster::log(LogLevel::warning, "worker: cannot keep plugin refusals on disk",
                 {{"path", refused_file().string()}, {"error", e.what()}});
  }
}

void PluginSync::transient_failure(const PluginRelease& r, const std::exception& e,
                                   std::vector<Refused>& refused) {
  // This machine's trouble (a full disk), not the package's: tried again at
  // the next sync, and what is installed stays in use meanwhile. The record
  // says it, the history does not (it is no verdict on the release).
  cluster::log(LogLevel::error, "worker: cannot install plugin",
               {{"plugin", r.name}, {"version", r.version}, {"error", e.what()}});
  refused.push_back(
      Refused{r, std::string("cannot install it on this machine (tried again at the next look): ") +
                     e.what()});
}

std::string PluginSync::install(const PluginRelease& r, const fs::path& dir) {
  std::string bytes;
  try {
    bytes = repository_.download(r);
  } catch (const cluster::DamagedPackage& e) {
    return e.what();
  }
  plugins::PluginPackage package;
  try {
    package = plugins::open_package(std::move(bytes));
  } catch (const plugins::PackageError& e) {
    return e.what();
  } catch (const plugins::ManifestError& e) {
    return std::string("package ") + r.sha256 + ": " + e.what();
  }
  const PluginRelease holds = cluster::release_of(package.manifest);
  if (holds.key() != r.key()) {  // name, platform and version
    return "package " + r.sha256 + " holds " + holds.name + " " + holds.version + " for " +
           holds.platform() + ", not the " + r.name + " " + r.version + " for " + r.platform() +
           " its release says";
  }
  // Linted where no search path looks, then renamed into place: a worker
  // killed before the rename leaves only a dot directory, removed at start.
  const fs::path checking = dir.parent_path() / ("." + dir.filename().string() + ".checking");
  fs::create_directories(dir.parent_path());
  fs::remove_all(checking);
  // The package was checked whole: what fails here is the disk's.
  plugins::unpack_package(package, checking);
  if (std::string why = lint(checking); !why.empty()) {
    fs::remove_all(checking);
    return why;
  }
  fs::rename(checking, dir);
  return "";
}

std::string PluginSync::lint(const fs::path& dir) const {
  if (options_.lint_command.empty()) return "";
  std::vector<std::string> argv = options_.lint_command;
  argv.push_back(dir.string());
  argv.emplace_back("--json");
  core::ProcessOptions po;
  po.timeout = options_.lint_timeout;
  const core::ProcessResult r = core::run_process(argv, po);
  if (std::string why = first_lint_error(r.out); !why.empty()) return "lint: " + why;
  if (r.exit_code == 0) return "";
  if (r.timed_out) return "lint: did not finish in time";
  std::string err = r.err.substr(0, r.err.find('\n'));
  return "lint failed (" +
         (r.exit_code >= 0 ? "exit " + std::to_string(r.exit_code)
                           : "signal " + std::to_string(r.signal)) +
         (err.empty() ? ")" : "): " + err);
}

std::vector<fs::path> PluginSync::prune(
    const std::map<std::string, std::set<std::string>>& in_use) {
  std::map<std::string, Installed> active;
  std::map<std::string, fs::path> previous;
  {
    std::lock_guard lock(mutex_);
    active = active_;
    previous = previous_;
  }
  std::vector<fs::path> removed;
  std::error_code ec;
  for (fs::directory_iterator p(options_.dir, ec), end; !ec && p != end; p.increment(ec)) {
    const std::string name = p->path().filename().string();
    if (!p->is_directory() || !plugins::is_valid_name(name)) continue;
    const auto a = active.find(name);
    if (a == active.end()) continue;  // not in use at all: left as it is (it may come back)
    // Installed versions (never the dot directories of an install going on).
    std::vector<std::pair<std::string, fs::path>> installed;
    std::error_code ec2;
    for (fs::directory_iterator v(p->path(), ec2), vend; !ec2 && v != vend; v.increment(ec2)) {
      const std::string leaf = v->path().filename().string();
      const std::size_t dash = leaf.rfind('-');
      if (leaf.rfind('.', 0) == 0 || dash == std::string::npos) continue;
      const std::string version = leaf.substr(0, dash);
      if (!plugins::is_semver(version) || !fs::exists(v->path() / "plugin.toml")) continue;
      installed.emplace_back(version, v->path());
    }
    std::sort(installed.begin(), installed.end(), [](const auto& x, const auto& y) {
      return core::compare_versions(x.first, y.first) > 0;
    });
    const auto used = in_use.find(name);
    const auto before = previous.find(name);
    bool kept_newest = false;
    for (const auto& [version, dir] : installed) {
      if (dir == a->second.dir) continue;
      // The one active before (not the newest by version: after a yank they
      // differ), and the newest other, where a yank of the active one goes.
      if (!kept_newest) {
        kept_newest = true;
        continue;
      }
      if (before != previous.end() && dir == before->second) continue;
      if (used != in_use.end() && used->second.count(version) != 0) continue;
      fs::remove_all(dir, ec2);
      if (!ec2) {
        cluster::log(LogLevel::info, "worker: removed an old plugin version",
                     {{"plugin", name}, {"version", version}, {"dir", dir.string()}});
        removed.push_back(dir);
      }
    }
  }
  return removed;
}

std::vector<fs::path> PluginSync::active_dirs() const {
  std::lock_guard lock(mutex_);
  std::vector<fs::path> out;
  for (const auto& [name, p] : active_) out.push_back(p.dir);
  return out;
}

json::array PluginSync::status() const {
  std::lock_guard lock(mutex_);
  json::array out;
  for (const auto& [name, p] : active_) {
    out.push_back(json::object{{"name", name},
                               {"version", p.version},
                               {"sha256", p.sha256},
                               {"state", "active"},
                               {"error", ""}});
  }
  for (const Refused& r : refused_) {
    out.push_back(json::object{{"name", r.release.name},
                               {"version", r.release.version},
                               {"sha256", r.release.sha256},
                               {"state", "failed"},
                               {"error", r.error}});
  }
  return out;
}

bool PluginSync::wait_for_change(std::chrono::milliseconds timeout) {
  return repository_.wait_for_change(timeout);
}

}  // namespace pyoco::worker
