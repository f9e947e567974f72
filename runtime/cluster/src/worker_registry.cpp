#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/worker_registry.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <string_view>
#include <thread>

#include <signal.h>
#include <unistd.h>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {

// worker_hidden.<worker_id>: hidden from everyone (set with auth off);
// worker_hidden_for.<tenant>.<worker_id>: from that tenant's list only (a
// tenant has no '.': [A-Za-z0-9_-]).
constexpr std::string_view kHiddenPrefix = "worker_hidden.";
constexpr std::string_view kHiddenForPrefix = "worker_hidden_for.";

std::string hidden_key(const std::string& worker_id, const std::string& tenant) {
  return tenant.empty() ? std::string(kHiddenPrefix) + worker_id
                        : std::string(kHiddenForPrefix) + tenant + "." + worker_id;
}

}  // namespace

void put_worker_record(Connection& nats, const json::object& record) {
  kvStore* kv = open_bucket(nats, "pyoco_workers");
  const std::string key(record.at("worker_id").as_string());
  const std::string body = json::serialize(record);
  const natsStatus s =
      kvStore_Put(nullptr, kv, key.c_str(), body.data(), static_cast<int>(body.size()));
  kvStore_Destroy(kv);
  if (s != NATS_OK) throw_nats("cannot write worker " + key + "'s record", s);
}

namespace {

// What a starting worker can tell of `other`, the record under the worker
// id it wants, from the record alone.
enum class Holder { Free, Unknown };

// Free: this instance's own, stopped, a process of this host (and pid
// namespace) that is gone, or silent for far longer than any clock skew
// between two hosts. Unknown otherwise: only watching its record tells.
Holder holder_of(const json::object& other, const json::object& mine,
                 std::chrono::milliseconds window) {
  auto text = [](const json::object& o, const char* key) -> std::string {
    const json::value* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto number = [](const json::object& o, const char* key) -> double {
    const json::value* v = o.if_contains(key);
    return v != nullptr && v->is_number() ? v->to_number<double>() : 0.0;
  };
  if (text(other, "instance_id") == text(mine, "instance_id")) return Holder::Free;
  if (text(other, "state") == "STOPPED_GRACEFUL") return Holder::Free;
  // Its clock and this one's: a minute apart would be a broken host.
  constexpr double kSkew = 60;
  const double silent = number(mine, "last_seen_at") - number(other, "last_seen_at");
  if (silent > std::chrono::duration<double>(window).count() + kSkew) return Holder::Free;
  const std::string host = text(other, "host"), ns = text(other, "pid_ns");
  const auto pid = static_cast<pid_t>(number(other, "pid"));
  if (!host.empty() && host == text(mine, "host") && !ns.empty() && ns == text(mine, "pid_ns") &&
      pid > 0 && (pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH))) {
    // A process of this host, gone (killed), or this very pid (so not that
    // process any more): its name is free at once.
    return Holder::Free;
  }
  return Holder::Unknown;
}

std::string holder_text(const json::object& other) {
  auto field = [&](const char* key) -> std::string {
    const json::value* v = other.if_contains(key);
    if (v == nullptr) return "?";
    return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
  };
  return "instance " + field("instance_id") + ", on " + field("host") + ", pid " + field("pid");
}

// How long a holder may go without a beat before its id is free: three of
// its beats (it says how often it beats), never less than `silent_after`.
std::chrono::milliseconds window_of(const json::object& other,
                                    std::chrono::milliseconds silent_after) {
  const json::value* v = other.if_contains("progress_interval_s");
  const double interval = v != nullptr && v->is_number() ? v->to_number<double>() : 0.0;
  // At most the longest `pyoco worker --progress-interval` (600 s).
  return std::max(silent_after, std::chrono::milliseconds(
                                    static_cast<std::int64_t>(3000 * std::min(interval, 600.0))));
}

}  // namespace

std::uint64_t claim_worker_id(Connection& nats, const json::object& record,
                              std::chrono::milliseconds silent_after,
                              const std::function<bool()>& stop_requested) {
  kvStore* kv = open_bucket(nats, "pyoco_workers");
  struct Close {
    kvStore* kv;
    ~Close() { kvStore_Destroy(kv); }
  } close{kv};
  const std::string key(record.at("worker_id").as_string());
  const std::string body = json::serialize(record);
  natsStatus s = NATS_OK;
  std::uint64_t written = 0;
  // A write between the read and the compare-and-set: read again (twice
  // more at most; a name fought over that hard is in use).
  for (int tries = 0; tries < 3; ++tries) {
    kvEntry* e = nullptr;
    s = kvStore_Get(&e, kv, key.c_str());
    if (s == NATS_NOT_FOUND) {
      s = kvStore_Create(&written, kv, key.c_str(), body.data(), static_cast<int>(body.size()));
      if (s == NATS_OK) return written;
      continue;
    }
    if (s != NATS_OK) break;
    std::uint64_t revision = kvEntry_Revision(e);
    boost::system::error_code ec;
    json::value other = json::parse(kvEntry_ValueString(e), ec);
    kvEntry_Destroy(e);
    if (ec || !other.is_object()) other = json::object{};  // not a worker's: free
    if (!other.as_object().empty() &&
        holder_of(other.as_object(), record, window_of(other.as_object(), silent_after)) ==
            Holder::Unknown) {
      // Live or not, its record says nothing this host's clock can be
      // trusted with: it is alive if it beats. Watched on this host's
      // steady clock for as long as it may go without a beat.
      const auto window = window_of(other.as_object(), silent_after);
      // A warning: the worker does not start for that long, and a log kept
      // at warnings must still say why.
      log(LogLevel::warning,
          "worker: worker id '" + key + "' is in another worker's record (" +
              holder_text(other.as_object()) + "); waiting up to " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(window).count()) +
              " s for a sign of life before taking it (Ctrl+C stops waiting)",
          {{"worker_id", key}});
      auto stop_if_asked = [&] {
        if (!stop_requested || !stop_requested()) return;
        throw WorkerIdWaitStopped("stopped while waiting for worker id '" + key + "', held by " +
                                  holder_text(other.as_object()) +
                                  ": this worker did not start; stop that worker first, or give "
                                  "this one its own --worker-id");
      };
      // Only time NATS answered counts: while it does not, the holder's
      // beats cannot land either, and silence then proves nothing.
      auto until = std::chrono::steady_clock::now() + window;
      bool gone = false, changed = false;
      while (std::chrono::steady_clock::now() < until) {
        stop_if_asked();
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        stop_if_asked();
        kvEntry* now = nullptr;
        const natsStatus g = kvStore_Get(&now, kv, key.c_str());
        if (g == NATS_NOT_FOUND) {
          gone = true;
          break;
        }
        if (g != NATS_OK) {
          until = std::chrono::steady_clock::now() + window;  // the watch starts again
          continue;
        }
        const std::uint64_t seen = kvEntry_Revision(now);
        if (seen != revision) {
          // Written meanwhile: by whom, and is it a live worker's?
          ec = {};
          other = json::parse(kvEntry_ValueString(now), ec);
          if (ec || !other.is_object()) other = json::object{};
          kvEntry_Destroy(now);
          const json::object& o = other.as_object();
          if (!o.empty() && holder_of(o, record, window_of(o, silent_after)) == Holder::Unknown) {
            throw WorkerIdInUse("worker id '" + key + "' is in use by a running worker (" +
                                holder_text(o) +
                                ", which wrote its record while this one watched): give each "
                                "worker its own --worker-id, or stop that one first");
          }
          changed = true;  // stopped meanwhile, or no worker's: read and take it
          break;
        }
        kvEntry_Destroy(now);
      }
      if (gone || changed) continue;
    }
    s = kvStore_Update(&written, kv, key.c_str(), body.data(), static_cast<int>(body.size()),
                       revision);
    if (s == NATS_OK) return written;
  }
  const std::string why = "cannot claim worker id '" + key +
                          "': its record changed under each of three tries (other workers "
                          "starting with it?) or NATS refused the write";
  if (s == NATS_OK) throw NatsError(why);
  throw_nats(why, s);
}

std::uint64_t write_worker_beat(Connection& nats, const json::object& record,
                                std::uint64_t revision) {
  const std::string key(record.at("worker_id").as_string());
  // A KV put is a publish to $KV.<bucket>.<key>; with an expected last
  // sequence for the subject it is a compare-and-set (as RunRecords writes:
  // cnats 3.4's kvStore_Update reports a stale revision only as a generic
  // error, which here must not be taken for a lost id).
  const std::string subject = "$KV.pyoco_workers." + key;
  const std::string body = json::serialize(record);
  natsStatus s = NATS_OK;
  // A write between the read and the compare-and-set can only be this
  // instance's own (another instance's ends it): three tries are plenty.
  for (int tries = 0; tries < 3; ++tries) {
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.ExpectLastSubjectSeq = revision;
    jsPubAck* ack = nullptr;
    jsErrCode jerr{};
    s = js_Publish(&ack, nats.handles().js, subject.c_str(), body.data(),
                   static_cast<int>(body.size()), &opts, &jerr);
    if (s == NATS_OK) {
      const std::uint64_t written = ack->Sequence;
      jsPubAck_Destroy(ack);
      return written;
    }
    if (jerr != JSStreamWrongLastSequenceErr) {
      throw_nats("cannot write worker " + key + "'s record", s, jerr);
    }
    // Changed since this instance wrote it: whose is it now?
    kvStore* kv = open_bucket(nats, "pyoco_workers");
    kvEntry* e = nullptr;
    s = kvStore_Get(&e, kv, key.c_str());
    if (s == NATS_NOT_FOUND) {
      // Gone (the bucket's TTL) and no one has claimed it: this worker's again.
      std::uint64_t written = 0;
      s = kvStore_Create(&written, kv, key.c_str(), body.data(), static_cast<int>(body.size()));
      kvStore_Destroy(kv);
      if (s == NATS_OK) return written;
      continue;  // created by another meanwhile (or refused): read again
    }
    kvStore_Destroy(kv);
    if (s != NATS_OK) throw_nats("cannot read worker " + key + "'s record", s);
    revision = kvEntry_Revision(e);
    boost::system::error_code ec;
    json::value other = json::parse(kvEntry_ValueString(e), ec);
    kvEntry_Destroy(e);
    // Taken by any other instance that claimed it, even one that has
    // stopped since (its runs were this one's to hand back then): a record
    // that is no worker's (written by hand) is written over (compare-and-
    // set, at its revision).
    if (ec || !other.is_object()) continue;
    const json::object& o = other.as_object();
    const json::value* theirs = o.if_contains("instance_id");
    if (theirs != nullptr && *theirs != record.at("instance_id")) {
      throw WorkerIdTaken("worker id '" + key + "' is another instance's now", o);
    }
  }
  const std::string why =
      "cannot write worker " + key + "'s record: it changed under each of three tries";
  if (s == NATS_OK) throw NatsError(why);
  throw_nats(why, s);
}

struct WorkerDirectory::Impl {
  Connection& nats;
  std::chrono::milliseconds disconnect_after;
  kvStore* workers = nullptr;
  kvStore* meta = nullptr;
  mutable std::mutex mutex;
  std::map<std::string, json::object> records;
  std::map<std::string, bool> hidden;  // by hidden_key
  std::atomic<bool> stopping{false};
  std::vector<std::thread> threads;

  Impl(Connection& n, std::chrono::milliseconds d)
      : nats(n),
        disconnect_after(d),
        workers(open_bucket(n, "pyoco_workers")),
        meta(open_bucket(n, "pyoco_meta")) {}

  // Follows a bucket for ever (it resumes by itself after a NATS outage).
  void watch(kvStore* kv, const char* keys, bool is_meta) {
    while (!stopping) {
      kvWatcher* w = nullptr;
      if (kvStore_Watch(&w, kv, keys, nullptr) != NATS_OK) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // NATS away: try again
        continue;
      }
      while (!stopping) {
        kvEntry* e = nullptr;
        const natsStatus s = kvWatcher_Next(&e, w, 500);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) break;
        if (e == nullptr) continue;  // the initial values are all there
        apply(e, is_meta);
        kvEntry_Destroy(e);
      }
      kvWatcher_Stop(w);
      kvWatcher_Destroy(w);
    }
  }

  void apply(kvEntry* e, bool is_meta) {
    const std::string key = kvEntry_Key(e);
    const bool put = kvEntry_Operation(e) == kvOp_Put;
    std::lock_guard lock(mutex);
    if (is_meta) {
      if (key.rfind(kHiddenPrefix, 0) != 0 && key.rfind(kHiddenForPrefix, 0) != 0) return;
      if (put) {
        hidden[key] = std::string_view(kvEntry_ValueString(e)) == "true";
      } else {
        hidden.erase(key);
      }
      return;
    }
    if (!put) {
      records.erase(key);
      return;
    }
    boost::system::error_code ec;
    json::value v = json::parse(kvEntry_ValueString(e), ec);
    if (!ec && v.is_object()) records[key] = std::move(v.as_object());
  }

  // Whether NATS has dropped the record by now (its max age passed since
  // its last write): an expiry is not a delete, so the watch never hears
  // of it, and a gateway would list the worker for as long as it runs.
  static bool expired(const json::object& r) {
    const json::value* seen = r.if_contains("last_seen_at");
    const double last = seen != nullptr && seen->is_number() ? seen->to_number<double>() : 0;
    return epoch_now() - last > std::chrono::duration<double>(kWorkerRecordTtl).count();
  }

  // The record as `tenant` is shown it: with `hidden` (its own flag, else
  // everyone's), and DISCONNECTED for a worker silent past the timeout.
  json::object shown(const json::object& r, const std::string& tenant) const {
    json::object out = r;
    const std::string id(r.at("worker_id").as_string());
    auto h = tenant.empty() ? hidden.end() : hidden.find(hidden_key(id, tenant));
    if (h == hidden.end()) h = hidden.find(hidden_key(id, ""));
    out["hidden"] = h != hidden.end() && h->second;
    const json::value* seen = r.if_contains("last_seen_at");
    const double last = seen != nullptr && seen->is_number() ? seen->to_number<double>() : 0;
    const std::string state = r.contains("state") ? std::string(r.at("state").as_string()) : "IDLE";
    const double timeout = std::chrono::duration<double>(disconnect_after).count();
    const bool disconnected = state != "STOPPED_GRACEFUL" && epoch_now() - last > timeout;
    out["state"] = disconnected ? "DISCONNECTED" : state;
    // Its last heartbeat's runs are no longer its: their leases run out and
    // the next worker claims them (their records say who runs them now).
    if (disconnected) out["running"] = json::array{};
    out["heartbeat_at"] = last;
    return out;
  }
};

WorkerDirectory::WorkerDirectory(Connection& nats, std::chrono::milliseconds disconnect_after)
    : impl_(std::make_unique<Impl>(nats, disconnect_after)) {
  Impl* i = impl_.get();
  i->threads.emplace_back([i] { i->watch(i->workers, ">", false); });
  i->threads.emplace_back([i] { i->watch(i->meta, ">", true); });
}

WorkerDirectory::~WorkerDirectory() {
  impl_->stopping = true;
  for (auto& t : impl_->threads) t.join();
  kvStore_Destroy(impl_->workers);
  kvStore_Destroy(impl_->meta);
}

std::vector<json::object> WorkerDirectory::list(const std::string& state, bool include_hidden,
                                                std::size_t limit,
                                                const std::string& tenant) const {
  std::vector<json::object> out;
  std::lock_guard lock(impl_->mutex);
  for (const auto& [id, r] : impl_->records) {
    if (Impl::expired(r)) continue;
    json::object s = impl_->shown(r, tenant);
    if (!include_hidden && s.at("hidden").as_bool()) continue;
    if (!state.empty() && s.at("state").as_string() != state) continue;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const json::object& a, const json::object& b) {
    return a.at("heartbeat_at").to_number<double>() > b.at("heartbeat_at").to_number<double>();
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::optional<json::object> WorkerDirectory::find(const std::string& worker_id,
                                                  const std::string& tenant) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->records.find(worker_id);
  if (it == impl_->records.end() || Impl::expired(it->second)) return std::nullopt;
  return impl_->shown(it->second, tenant);
}

bool WorkerDirectory::set_hidden(const std::string& worker_id, bool hidden,
                                 const std::string& tenant) {
  if (!find(worker_id)) return false;
  const std::string key = hidden_key(worker_id, tenant);
  const natsStatus s =
      kvStore_PutString(nullptr, impl_->meta, key.c_str(), hidden ? "true" : "false");
  if (s != NATS_OK) throw_nats("cannot write worker " + worker_id + "'s hidden flag", s);
  std::lock_guard lock(impl_->mutex);
  impl_->hidden[key] = hidden;  // at once here; other gateways hear it from the watch
  return true;
}

}  // namespace pyoco::cluster
