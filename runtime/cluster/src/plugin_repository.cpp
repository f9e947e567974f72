#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/plugin_repository.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/core/semver.hpp>
#include <pyoco/plugins/manifest.hpp>
#include <pyoco/plugins/package.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <set>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {

using core::compare_versions;
using plugins::sha256_hex;

std::string chunk_subject(const std::string& sha256) { return "pyoco.plugins.chunk." + sha256; }

// The index's own keys: a plugin's name starts with a letter, so no
// release key can start so.
constexpr std::string_view kHistory = "_history/";  // one per push, yank, refusal
constexpr std::string_view kLatest = "_latest/";    // the newest version per name and platform

bool own_key(std::string_view key) {
  return key.rfind(kHistory, 0) == 0 || key.rfind(kLatest, 0) == 0;
}

}  // namespace

std::string PluginRelease::platform() const { return plugins::platform_name(os, arch, abi); }

std::string PluginRelease::key() const { return name + "/" + platform() + "/" + version; }

json::object to_json(const PluginRelease& r) {
  return json::object{{"name", r.name},
                      {"version", r.version},
                      {"os", r.os},
                      {"arch", r.arch},
                      {"abi", r.abi},
                      {"platform", r.platform()},
                      {"sha256", r.sha256},
                      {"size", r.size},
                      {"chunks", r.chunks},
                      {"tags", json::array(r.tags.begin(), r.tags.end())},
                      {"uploaded_by", r.uploaded_by},
                      {"tenant", r.tenant},
                      {"at", r.at},
                      {"yanked", r.yanked}};
}

PluginRelease plugin_release_from_json(const json::object& o) {
  auto text = [&](const char* k) {
    const json::value* v = o.if_contains(k);
    if (v == nullptr || !v->is_string()) {
      throw NatsError(std::string("plugin release: ") + k + ": missing or not a string");
    }
    return std::string(v->as_string());
  };
  auto number = [&](const char* k) {
    const json::value* v = o.if_contains(k);
    if (v == nullptr || !v->is_number()) {
      throw NatsError(std::string("plugin release: ") + k + ": missing or not a number");
    }
    const double d = v->to_number<double>();
    if (!std::isfinite(d) || d < 0) {
      throw NatsError(std::string("plugin release: ") + k + ": not a number that can be");
    }
    return d;
  };
  PluginRelease r;
  r.name = text("name");
  r.version = text("version");
  r.os = text("os");
  r.arch = text("arch");
  // A record is anyone's who may write the bucket: its numbers are
  // checked before a worker sizes anything by them.
  const double abi = number("abi"), size = number("size"), chunks = number("chunks");
  if (abi > 1000 || size > static_cast<double>(plugins::kMaxPackageBytes)) {
    throw NatsError("plugin release: abi or size out of range");
  }
  r.abi = static_cast<std::int64_t>(abi);
  r.sha256 = text("sha256");
  r.size = static_cast<std::uint64_t>(size);
  if (chunks > static_cast<double>(plugins::kMaxPackageBytes / kPluginChunkBytes + 1)) {
    throw NatsError("plugin release: chunks out of range");
  }
  r.chunks = static_cast<std::uint32_t>(chunks);
  if (r.chunks !=
          std::max<std::uint64_t>(1, (r.size + kPluginChunkBytes - 1) / kPluginChunkBytes) ||
      r.sha256.size() != 64 ||
      r.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    throw NatsError("plugin release: its size, chunks and sha256 do not agree");
  }
  if (const json::value* t = o.if_contains("tags"); t != nullptr && t->is_array()) {
    for (const json::value& v : t->as_array())
      if (v.is_string()) r.tags.emplace_back(v.as_string());
  }
  if (const json::value* v = o.if_contains("uploaded_by"); v != nullptr && v->is_string())
    r.uploaded_by = std::string(v->as_string());
  if (const json::value* v = o.if_contains("tenant"); v != nullptr && v->is_string())
    r.tenant = std::string(v->as_string());
  r.at = number("at");
  if (const json::value* v = o.if_contains("yanked"); v != nullptr && v->is_bool())
    r.yanked = v->as_bool();
  return r;
}

PluginRelease release_of(const plugins::Manifest& m) {
  PluginRelease r;
  r.name = m.name;
  r.version = m.version;
  r.os = m.platform_os;
  r.arch = m.platform_arch;
  r.abi = m.abi;
  return r;
}

struct PluginRepository::Impl {
  Connection& nats;
  kvStore* kv = nullptr;

  explicit Impl(Connection& n) : nats(n) { kv = open_bucket(nats, "pyoco_plugins"); }
  ~Impl() {
    changes.reset();
    kvStore_Destroy(kv);
  }
  Subscription changes;  // wait_for_change's, made at its first call

  // Every current entry whose key starts with `prefix`, read in one pass
  // rather than a request per key.
  std::vector<std::pair<std::string, json::object>> entries(std::string_view prefix) const {
    std::vector<std::pair<std::string, json::object>> out;
    for (auto& [key, value] : kv_entries(nats, "pyoco_plugins", std::string(prefix))) {
      boost::system::error_code ec;
      json::value v = json::parse(value, ec);
      if (!ec && v.is_object()) out.emplace_back(std::move(key), std::move(v.as_object()));
    }
    return out;
  }

  std::optional<json::object> get(const std::string& key) const {
    kvEntry* e = nullptr;
    const natsStatus s = kvStore_Get(&e, kv, key.c_str());
    if (s == NATS_NOT_FOUND) return std::nullopt;
    if (s != NATS_OK) throw_nats("cannot read " + key + " of the plugin index", s);
    boost::system::error_code ec;
    json::value v = json::parse(kvEntry_ValueString(e), ec);
    kvEntry_Destroy(e);
    if (ec || !v.is_object()) return std::nullopt;
    return std::move(v.as_object());
  }

  void put(const std::string& key, const json::object& o) {
    const std::string body = json::serialize(o);
    const natsStatus s =
        kvStore_Put(nullptr, kv, key.c_str(), body.data(), static_cast<int>(body.size()));
    if (s != NATS_OK) throw_nats("cannot write " + key + " of the plugin index", s);
  }

  // `by`: the key (push, yank) or worker (rejected) that acted; `by_tenant`
  // the key's tenant.
  void record(const std::string& action, const PluginRelease& r, const std::string& by,
              const std::string& by_tenant, const std::string& error = "") {
    thread_local std::mt19937_64 gen{std::random_device{}()};
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    char key[64];
    std::snprintf(key, sizeof key, "%s%020lld-%04x", std::string(kHistory).c_str(),
                  static_cast<long long>(ns), static_cast<unsigned>(gen() & 0xffff));
    json::object entry{{"action", action},
                       {"name", r.name},
                       {"version", r.version},
                       {"platform", r.platform()},
                       {"sha256", r.sha256},
                       {"tags", json::array(r.tags.begin(), r.tags.end())},
                       {"by", by},
                       {"by_tenant", by_tenant},
                       {"tenant", r.tenant},
                       {"at", epoch_now()}};
    if (!error.empty()) entry["error"] = error;
    put(key, entry);
  }

  // Throws RepositoryFull when PYOCO_PLUGINS has no room for `bytes` more
  // (each chunk also costs its subject and headers: a KiB is ample).
  void check_room(std::size_t bytes) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr{};
    const natsStatus s = js_GetStreamInfo(&si, nats.handles().js, "PYOCO_PLUGINS", nullptr, &jerr);
    if (s != NATS_OK) throw_nats("cannot read stream PYOCO_PLUGINS", s, jerr);
    const std::int64_t max = si->Config->MaxBytes;
    const std::uint64_t used = si->State.Bytes;
    jsStreamInfo_Destroy(si);
    const std::uint64_t need = bytes + ((bytes / kPluginChunkBytes) + 1) * 1024;
    if (max > 0 && used + need > static_cast<std::uint64_t>(max)) {
      throw RepositoryFull("the plugin repository is full (" + std::to_string(used) + " of " +
                           std::to_string(max) + " bytes used; this package needs " +
                           std::to_string(bytes) +
                           "): yank releases no worker needs any more (their chunks are purged), "
                           "or raise PYOCO_PLUGINS_MAX_BYTES and run `pyoco cluster init`");
    }
  }

  // A refused push's chunks, unless an indexed release is that package.
  void purge_unindexed_chunks(const std::string& sha256) {
    for (const auto& [key, o] : entries("")) {
      const json::value* v = o.if_contains("sha256");
      if (!own_key(key) && v != nullptr && v->is_string() && v->as_string() == sha256) return;
    }
    purge_chunks(sha256);
  }

  // `before`: only chunks stored before that stream sequence (0: all).
  void purge_chunks(const std::string& sha256, std::uint64_t before = 0) {
    const std::string subject = chunk_subject(sha256);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject.c_str();
    o.Stream.Purge.Sequence = before;
    js_PurgeStream(nats.handles().js, "PYOCO_PLUGINS", &o, nullptr);  // best effort
  }

  // Moves _latest/<name>/<platform> to `r`'s version by compare-and-set;
  // throws what `conflict` makes when a version as new is there first.
  template <class Conflict>
  void advance_latest(const PluginRelease& r, Conflict&& conflict) {
    const std::string latest = std::string(kLatest) + r.name + "/" + r.platform();
    const std::string mine = json::serialize(json::object{{"version", r.version}});
    for (int tries = 0; tries < 100; ++tries) {
      kvEntry* e = nullptr;
      natsStatus s = kvStore_Get(&e, kv, latest.c_str());
      if (s == NATS_NOT_FOUND) {
        s = kvStore_Create(nullptr, kv, latest.c_str(), mine.data(), static_cast<int>(mine.size()));
      } else if (s == NATS_OK) {
        boost::system::error_code ec;
        const json::value v = json::parse(kvEntry_ValueString(e), ec);
        const std::uint64_t at = kvEntry_Revision(e);
        kvEntry_Destroy(e);
        const json::value* there =
            ec || !v.is_object() ? nullptr : v.as_object().if_contains("version");
        if (there != nullptr && there->is_string() &&
            compare_versions(std::string(there->as_string()), r.version) >= 0) {
          throw conflict(std::string(there->as_string()));
        }
        s = kvStore_Update(nullptr, kv, latest.c_str(), mine.data(), static_cast<int>(mine.size()),
                           at);
      }
      if (s == NATS_OK) return;
      // NATS_ERR: another push moved it first (a wrong revision, or it made
      // the key): read again. Anything else is NATS itself.
      if (s != NATS_ERR) throw_nats("cannot index plugin " + r.name + " " + r.version, s);
    }
    throw NatsError("cannot index plugin " + r.name + " " + r.version +
                    ": the newest-version record kept changing (100 tries); push again");
  }

  void store_chunks(const std::string& package, const std::string& sha256) {
    const std::string subject = chunk_subject(sha256);
    const std::size_t n = (package.size() + kPluginChunkBytes - 1) / kPluginChunkBytes;
    for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) {
      const std::string_view chunk =
          std::string_view(package).substr(i * kPluginChunkBytes, kPluginChunkBytes);
      natsMsg* msg = nullptr;
      natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, chunk.data(),
                                    static_cast<int>(chunk.size()));
      const std::string index = std::to_string(i), digest = sha256_hex(chunk);
      if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Pyoco-Chunk", index.c_str());
      if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Pyoco-Chunk-Sha256", digest.c_str());
      // No message id: a push retried after a purge must store every chunk
      // again (a download keeps the first good copy of each).
      jsPubAck* ack = nullptr;
      jsErrCode jerr{};
      if (s == NATS_OK) s = js_PublishMsg(&ack, nats.handles().js, msg, nullptr, &jerr);
      natsMsg_Destroy(msg);
      jsPubAck_Destroy(ack);
      if (s != NATS_OK)
        throw_nats("cannot store chunk " + index + " of package " + sha256, s, jerr);
    }
  }
};

PluginRepository::PluginRepository(Connection& nats) : impl_(std::make_unique<Impl>(nats)) {}
PluginRepository::~PluginRepository() = default;

PluginRelease PluginRepository::publish(const std::string& package, PluginRelease release) {
  release.sha256 = sha256_hex(package);
  release.size = package.size();
  release.chunks = static_cast<std::uint32_t>(
      std::max<std::size_t>(1, (package.size() + kPluginChunkBytes - 1) / kPluginChunkBytes));
  release.at = epoch_now();
  release.yanked = false;
  auto conflict = [&](const std::string& version) {
    return VersionConflict("plugin " + release.name + " " + version + " for " + release.platform() +
                           " is in the repository already: push a version newer than " + version +
                           " (versions are never replaced)");
  };
  const std::string prefix = release.name + "/" + release.platform() + "/";
  for (const auto& [key, o] : impl_->entries(prefix)) {
    const std::string version = key.substr(prefix.size());
    if (compare_versions(version, release.version) >= 0) throw conflict(version);
  }
  sweep_orphan_chunks();
  impl_->check_room(package.size());
  try {
    impl_->store_chunks(package, release.sha256);
  } catch (const NatsError&) {
    impl_->purge_unindexed_chunks(release.sha256);
    impl_->check_room(package.size());  // full after all (another push took the room)?
    throw;
  }
  const std::string body = json::serialize(to_json(release));
  std::uint64_t revision = 0;
  natsStatus s = kvStore_Create(&revision, impl_->kv, release.key().c_str(), body.data(),
                                static_cast<int>(body.size()));
  if (s != NATS_OK) {
    impl_->purge_unindexed_chunks(release.sha256);
    if (impl_->get(release.key())) throw conflict(release.version);
    throw_nats("cannot index plugin " + release.name + " " + release.version, s);
  }
  // Two pushes that both passed the check above are put in order here: the
  // newest version per plugin and platform moves only forward, by
  // compare-and-set, and a push that finds a newer one there loses. A push
  // that fails here takes its record and chunks back.
  try {
    impl_->advance_latest(release, conflict);
  } catch (...) {
    kvStore_Delete(impl_->kv, release.key().c_str());
    impl_->purge_unindexed_chunks(release.sha256);
    throw;
  }
  impl_->record("push", release, release.uploaded_by, release.tenant);
  return release;
}

std::size_t PluginRepository::sweep_orphan_chunks(std::chrono::seconds grace) {
  jsOptions o;
  jsOptions_Init(&o);
  const std::string all = chunk_subject(">");
  o.Stream.Info.SubjectsFilter = all.c_str();
  jsStreamInfo* si = nullptr;
  jsErrCode jerr{};
  const natsStatus s = js_GetStreamInfo(&si, impl_->nats.handles().js, "PYOCO_PLUGINS", &o, &jerr);
  if (s != NATS_OK) throw_nats("cannot read stream PYOCO_PLUGINS", s, jerr);
  std::vector<std::string> stored;
  if (si->State.Subjects != nullptr) {
    for (int i = 0; i < si->State.Subjects->Count; ++i) {
      stored.emplace_back(si->State.Subjects->List[i].Subject);
    }
  }
  jsStreamInfo_Destroy(si);
  if (stored.empty()) return 0;
  std::set<std::string> indexed;  // the subjects of every release's chunks
  for (const auto& [key, entry] : impl_->entries("")) {
    const json::value* v = entry.if_contains("sha256");
    if (!own_key(key) && v != nullptr && v->is_string()) {
      indexed.insert(chunk_subject(std::string(v->as_string())));
    }
  }
  const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  const std::int64_t grace_ns = std::chrono::nanoseconds(grace).count();
  std::size_t purged = 0;
  for (const std::string& subject : stored) {
    if (indexed.contains(subject)) continue;
    natsMsg* last = nullptr;
    if (js_GetLastMsg(&last, impl_->nats.handles().js, "PYOCO_PLUGINS", subject.c_str(), nullptr,
                      nullptr) != NATS_OK) {
      continue;  // gone meanwhile
    }
    const std::int64_t at = natsMsg_GetTime(last);
    const std::uint64_t seq = natsMsg_GetSequence(last);
    natsMsg_Destroy(last);
    if (at == 0 || seq == 0 || now_ns - at < grace_ns) continue;  // a push may be storing it
    // What was looked at and no further: a push of the same package that
    // began since (another gateway's sweep already purged, it stores anew)
    // keeps its chunks.
    impl_->purge_chunks(subject.substr(chunk_subject("").size()), seq + 1);
    ++purged;
  }
  return purged;
}

std::vector<PluginRelease> PluginRepository::releases() const {
  std::vector<PluginRelease> out;
  for (const auto& [key, o] : impl_->entries("")) {
    if (own_key(key)) continue;
    try {
      out.push_back(plugin_release_from_json(o));
    } catch (const NatsError&) {
      // not a release of ours: left out
    }
  }
  std::sort(out.begin(), out.end(), [](const PluginRelease& a, const PluginRelease& b) {
    if (a.name != b.name) return a.name < b.name;
    if (a.platform() != b.platform()) return a.platform() < b.platform();
    return compare_versions(a.version, b.version) > 0;
  });
  return out;
}

std::vector<json::object> PluginRepository::history(std::size_t limit) const {
  auto entries = impl_->entries(kHistory);
  // The key is the time: newest first.
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  if (entries.size() > limit) entries.resize(limit);
  std::vector<json::object> out;
  for (auto& [key, o] : entries) out.push_back(std::move(o));
  return out;
}

std::vector<PluginRelease> PluginRepository::yank(const std::string& name,
                                                  const std::string& version, const std::string& by,
                                                  const std::string& by_tenant) {
  std::vector<PluginRelease> out;
  for (PluginRelease r : releases()) {
    if (r.name != name || r.version != version || r.yanked) continue;
    r.yanked = true;
    impl_->put(r.key(), to_json(r));
    // No worker takes it from now on (one that has it keeps its copy):
    // its chunks only take room. (The same bytes are the same manifest, so
    // no other release is this package.)
    impl_->purge_chunks(r.sha256);
    impl_->record("yank", r, by, by_tenant);
    out.push_back(std::move(r));
  }
  return out;
}

std::string PluginRepository::download(const PluginRelease& release) const {
  const Subscription owned = subscribe_events(impl_->nats, chunk_subject(release.sha256), 0);
  natsSubscription* sub = owned.get();
  if (sub == nullptr) throw NatsError("cannot read the chunks of package " + release.sha256);
  // A whole package may wait in the client's queue: past cnats's default
  // pending limits chunks would be dropped.
  natsSubscription_SetPendingLimits(sub, 4096, static_cast<int>(2 * plugins::kMaxPackageBytes));
  std::map<std::uint32_t, std::string> chunks;  // the first good copy of each
  std::uint64_t pending = 1;                    // unknown: read until a message says none is left
  jsConsumerInfo* ci = nullptr;
  if (natsSubscription_GetConsumerInfo(&ci, sub, nullptr, nullptr) == NATS_OK) {
    pending = ci->NumPending + ci->Delivered.Consumer;  // none at all: nothing to wait for
    jsConsumerInfo_Destroy(ci);
  }
  while (pending > 0 && chunks.size() < release.chunks) {
    natsMsg* m = nullptr;
    const natsStatus s = natsSubscription_NextMsg(&m, sub, 30000);
    if (s == NATS_TIMEOUT) {
      // Slow, not damaged: tried again at the next sync.
      throw NatsError("package " + release.sha256 + ": its chunks stopped coming (timed out)");
    }
    if (s != NATS_OK) throw_nats("cannot read the chunks of package " + release.sha256, s);
    jsMsgMetaData* meta = nullptr;
    pending = 0;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      pending = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
    }
    const char* index = nullptr;
    const char* digest = nullptr;
    natsMsgHeader_Get(m, "Pyoco-Chunk", &index);
    natsMsgHeader_Get(m, "Pyoco-Chunk-Sha256", &digest);
    const std::string data(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
    if (index != nullptr && digest != nullptr && data.size() <= kPluginChunkBytes &&
        sha256_hex(data) == digest) {
      const auto i = static_cast<std::uint32_t>(std::strtoul(index, nullptr, 10));
      if (i < release.chunks) chunks.try_emplace(i, data);
    }
    natsMsg_Destroy(m);
  }
  if (chunks.size() != release.chunks) {
    throw DamagedPackage("package " + release.name + " " + release.version + " (" + release.sha256 +
                         "): " + std::to_string(release.chunks - chunks.size()) + " of its " +
                         std::to_string(release.chunks) + " chunks are missing or damaged");
  }
  std::string package;
  package.reserve(release.size);
  for (auto& [i, data] : chunks) package += data;
  if (package.size() != release.size || sha256_hex(package) != release.sha256) {
    throw DamagedPackage("package " + release.name + " " + release.version +
                         ": the chunks do not make the package indexed (its sha256 " +
                         release.sha256 + " does not match)");
  }
  return package;
}

void PluginRepository::record_rejection(const PluginRelease& release, const std::string& worker_id,
                                        const std::string& error) {
  impl_->record("rejected", release, worker_id, "", error);
}

bool PluginRepository::wait_for_change(std::chrono::milliseconds timeout) {
  if (impl_->changes == nullptr) {
    // What is written to the index from now on, headers only (that a key
    // changed is all it needs), on a subscription closed safely (a cnats
    // watcher is not: see close_subscription).
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "KV_pyoco_plugins";
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverNew;
    so.Config.HeadersOnly = true;
    natsSubscription* sub = nullptr;
    jsErrCode jerr{};
    const natsStatus s = js_SubscribeSync(&sub, impl_->nats.handles().js, "$KV.pyoco_plugins.>",
                                          nullptr, &so, &jerr);
    if (s != NATS_OK) throw_nats("cannot watch the plugin index", s, jerr);
    impl_->changes.reset(sub);
    return true;  // what changed before it was made is not known: look once
  }
  bool changed = false;
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    natsMsg* m = nullptr;
    // Once something changed, only what is already queued is taken.
    const natsStatus s = natsSubscription_NextMsg(
        &m, impl_->changes.get(), changed ? 1 : std::max<std::int64_t>(1, left.count()));
    if (s != NATS_OK) return changed;  // the timeout, or NATS away: the caller syncs by the clock
    const std::string_view subject = natsMsg_GetSubject(m);
    if (!own_key(subject.substr(std::string_view("$KV.pyoco_plugins.").size()))) changed = true;
    natsMsg_Destroy(m);
    if (!changed && std::chrono::steady_clock::now() >= until) return false;
  }
}

}  // namespace pyoco::cluster
