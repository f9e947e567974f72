// What `pyoco cluster init|status` makes and reads: the streams, consumers
// and buckets of docs/cluster.md, each described as ours with the schema
// version, so that a stream someone else made is never taken over.
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/core/text.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string_view>

#include <pyoco/cluster/nats_handles.hpp>

namespace pyoco::cluster {

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;  // NATS durations are nanoseconds
constexpr std::int64_t kDay = 86'400 * kSecond;

struct StreamDef {
  const char* name;
  const char* what;
  std::vector<const char*> subjects;
  jsRetentionPolicy retention = js_LimitsPolicy;
  std::int64_t max_age = 0;
  std::int64_t duplicates = 2 * 60 * kSecond;
  std::int64_t max_msgs = -1;
  jsDiscardPolicy discard = js_DiscardOld;
  bool plugin_store = false;  // bounded by ResourceOptions::plugins_max_bytes
};

// The job queue is bounded and refuses new jobs when full (a 429 for the
// submitter) rather than dropping old ones.
const std::vector<StreamDef>& streams() {
  static const std::vector<StreamDef> defs = {
      {"PYOCO_WORK",
       "one job per run, by tag",
       {"pyoco.work.>"},
       js_WorkQueuePolicy,
       0,
       10 * 60 * kSecond,
       1'000'000,
       js_DiscardNew},
      // Duplicates are dropped for 10 minutes: longer than every redelivery of
      // a job (5 x AckWait), so a run's end retried by its next worker is one.
      {"PYOCO_EVENTS",
       "every run event",
       {"pyoco.ev.>"},
       js_LimitsPolicy,
       7 * kDay,
       10 * 60 * kSecond},
      {"PYOCO_ADVISORIES",
       "jobs past max deliveries, for the reaper",
       {"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.PYOCO_WORK.*"},
       js_LimitsPolicy,
       7 * kDay},
      {"PYOCO_DLQ",
       "runs that could not run, with the reason",
       {"pyoco.dlq.>"},
       js_LimitsPolicy,
       30 * kDay},
      {"PYOCO_PLUGINS",
       "plugin package chunks",
       {"pyoco.plugins.chunk.>"},
       js_LimitsPolicy,
       0,
       2 * 60 * kSecond,
       -1,
       js_DiscardNew,
       true},
  };
  return defs;
}

struct BucketDef {
  const char* name;
  const char* what;
  std::uint8_t history = 1;
  std::int64_t ttl = 0;
};

// The worker registry outlives three disconnect timeouts (30 s), so the
// gateway shows a silent worker as DISCONNECTED before its record goes.
const std::vector<BucketDef>& buckets() {
  static const std::vector<BucketDef> defs = {
      {"pyoco_runs", "run snapshots"},
      {"pyoco_workers", "worker registry", 1, kWorkerRecordTtl.count() * kSecond},
      {"pyoco_auth", "API keys"},
      {"pyoco_plugins", "plugin index", 5},
      {"pyoco_meta", "gateway flags"},
  };
  return defs;
}

}  // namespace

const std::vector<MetricsFeed>& metrics_feeds() {
  static const std::vector<MetricsFeed> feeds = {
      {"pyoco_metrics_runs", "pyoco.ev.*.run", "pyoco.metrics.runs", "the gateways' run counts"},
      {"pyoco_metrics_tasks", "pyoco.ev.*.node", "pyoco.metrics.tasks",
       "the gateways' task durations"}};
  return feeds;
}

namespace {

constexpr const char* kWorkersPrefix = "pyoco_workers_";
constexpr const char* kReaper = "pyoco_reaper";
constexpr const char* kWebhooks = "pyoco_webhooks";

std::string description(const char* what) {
  return std::string("pyoco: ") + what + " (schema " + std::to_string(kSchemaVersion) + ")";
}

// Refuses a resource whose description is not one of ours of this schema,
// after `release` (the caller's info about it).
void check_ours(const char* kind, const std::string& name, const char* found,
                const std::function<void()>& release) {
  const std::string_view d = found != nullptr ? found : "";
  const std::string tail = "(schema " + std::to_string(kSchemaVersion) + ")";
  if (d.rfind("pyoco: ", 0) == 0 && d.size() >= tail.size() &&
      d.substr(d.size() - tail.size()) == tail) {
    return;
  }
  const std::string message =
      d.rfind("pyoco: ", 0) == 0
          ? std::string(kind) + " " + name + " was made by another version of pyoco (\"" +
                std::string(d) + "\"; this one writes schema " + std::to_string(kSchemaVersion) +
                "): upgrade every gateway and worker together"
          : std::string(kind) + " " + name +
                " exists on this NATS but pyoco did not make it (its description is \"" +
                std::string(d) +
                "\"): pyoco will not use or change it; delete it, or point pyoco at another "
                "NATS";
  release();
  throw NatsError(message);
}

[[noreturn]] void refused(const std::string& what, natsStatus s, jsErrCode jerr,
                          const ResourceOptions& options, bool plugin_store = false) {
  const int replicas = options.replicas;
  if (jerr == JSStreamReplicasNotSupportedErr ||
      (replicas > 1 && jerr == JSInsufficientResourcesErr)) {
    throw NatsError(what + ": NATS refuses " + std::to_string(replicas) +
                    " replicas: PYOCO_NATS_REPLICAS=" + std::to_string(replicas) +
                    " needs a JetStream cluster of at least that many servers");
  }
  const std::string said = nats_error_message(what, s, jerr);
  if (plugin_store &&
      (jerr == JSStorageResourcesExceededErr ||
       (jerr == JSClusterNoPeersErr && said.find("insufficient storage") != std::string::npos))) {
    // JetStream reserves a stream's whole bound when it is made, and a
    // nats-server without max_file_store offers 75% of the disk free when
    // it started: a small disk refuses the plugin store's 4 GiB.
    throw NatsError(said + "; the plugin store (PYOCO_PLUGINS) reserves PYOCO_PLUGINS_MAX_BYTES=" +
                    std::to_string(options.plugins_max_bytes) +
                    " bytes of JetStream file storage: set PYOCO_PLUGINS_MAX_BYTES lower (at "
                    "least 1048576), or give nats-server more room (free disk where it stores, "
                    "or a larger max_file_store in its jetstream block)" +
                    (replicas > 1 ? ", on " + std::to_string(replicas) + " servers" : ""));
  }
  throw_nats(what, s, jerr);
}

// The copies NATS really keeps: the leader and its peers on a cluster, one
// on a single server (which takes a replica count it cannot honour).
int actual_replicas(const jsClusterInfo* c) {
  return c != nullptr && c->Leader != nullptr ? 1 + c->ReplicasLen : 1;
}

bool not_found(natsStatus s, jsErrCode jerr) {
  return s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || jerr == JSConsumerNotFoundErr;
}

ResourceState stream_state(ResourceState::Kind kind, const std::string& name,
                           const std::string& stream, const jsStreamInfo* si) {
  ResourceState r{kind, name, stream};
  if (si != nullptr) {
    r.exists = true;
    r.replicas = actual_replicas(si->Cluster);
    r.messages = si->State.Msgs;
    r.bytes = si->State.Bytes;
  }
  return r;
}

class Resources {
 public:
  Resources(Connection& nats, const ResourceOptions& options, bool create)
      : js_(nats.handles().js), options_(options), create_(create) {}

  std::vector<ResourceState> run() {
    for (const std::string& tag : options_.tags) check_tag(tag);
    std::vector<ResourceState> out;
    for (const StreamDef& def : streams()) out.push_back(stream(def));
    std::vector<std::string> workers;
    for (const std::string& tag : options_.tags) workers.push_back(tag);
    if (!create_) {
      for (const std::string& tag : existing_worker_tags()) {
        if (std::find(workers.begin(), workers.end(), tag) == workers.end()) workers.push_back(tag);
      }
    }
    for (const std::string& tag : workers) out.push_back(worker_consumer(tag));
    out.push_back(reaper_consumer());
    for (const MetricsFeed& feed : metrics_feeds()) out.push_back(metrics_consumer(feed));
    for (const BucketDef& def : buckets()) out.push_back(bucket(def));
    return out;
  }

 private:
  // A stream's info, or null when it does not exist.
  jsStreamInfo* find_stream(const std::string& name) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr{};
    const natsStatus s = js_GetStreamInfo(&si, js_, name.c_str(), nullptr, &jerr);
    if (s == NATS_OK) return si;
    if (not_found(s, jerr)) return nullptr;
    throw_nats("cannot read stream " + name, s, jerr);
  }

  std::int64_t max_bytes(const StreamDef& def) const {
    return def.plugin_store ? options_.plugins_max_bytes : -1;
  }

  // Applies a changed replica count (and the plugin store's bound) to a
  // stream of ours; a bucket is read from its leader only (`direct` false).
  jsStreamInfo* keep_config(jsStreamInfo* si, const std::string& what, std::int64_t max_bytes,
                            jsDiscardPolicy discard, bool direct) {
    if (!create_ ||
        (si->Config->Replicas == options_.replicas && si->Config->MaxBytes == max_bytes &&
         si->Config->Discard == discard && si->Config->AllowDirect == direct)) {
      return si;
    }
    si->Config->Replicas = options_.replicas;
    si->Config->MaxBytes = max_bytes;
    si->Config->Discard = discard;
    si->Config->AllowDirect = direct;
    jsStreamInfo* updated = nullptr;
    jsErrCode jerr{};
    const natsStatus s = js_UpdateStream(&updated, js_, si->Config, nullptr, &jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK)
      refused("cannot change the replicas or limits of " + what, s, jerr, options_, max_bytes > 0);
    return updated;
  }

  ResourceState stream(const StreamDef& def) {
    jsStreamInfo* si = find_stream(def.name);
    bool created = false;
    if (si != nullptr) {
      check_ours("stream", def.name, si->Config->Description, [&] { jsStreamInfo_Destroy(si); });
      si = keep_config(si, std::string("stream ") + def.name, max_bytes(def), def.discard,
                       si->Config->AllowDirect);
    } else if (create_) {
      const std::string desc = description(def.what);
      jsStreamConfig cfg;
      jsStreamConfig_Init(&cfg);
      cfg.Name = def.name;
      cfg.Description = desc.c_str();
      std::vector<const char*> subjects = def.subjects;
      cfg.Subjects = subjects.data();
      cfg.SubjectsLen = static_cast<int>(subjects.size());
      cfg.Retention = def.retention;
      cfg.MaxAge = def.max_age;
      cfg.Duplicates = def.duplicates;
      cfg.MaxMsgs = def.max_msgs;
      cfg.Discard = def.discard;
      cfg.MaxBytes = max_bytes(def);
      cfg.Storage = js_FileStorage;
      cfg.Replicas = options_.replicas;
      jsErrCode jerr{};
      const natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
      if (s != NATS_OK) {
        refused(std::string("cannot create stream ") + def.name, s, jerr, options_,
                def.plugin_store);
      }
      created = true;
    }
    ResourceState r = stream_state(ResourceState::Kind::Stream, def.name, def.name, si);
    r.created = created;
    if (si != nullptr) jsStreamInfo_Destroy(si);
    check_replicas(r);
    return r;
  }

  // A pull consumer, or a push one when `deliver` is given (its subject
  // and the queue group the gateways share it in).
  ResourceState consumer(const std::string& stream, const std::string& name,
                         const std::string& what, const char* filter, std::int64_t ack_wait,
                         int max_deliver, const MetricsFeed* deliver = nullptr,
                         bool from_now = false) {
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr{};
    natsStatus s = js_GetConsumerInfo(&ci, js_, stream.c_str(), name.c_str(), nullptr, &jerr);
    bool created = false;
    if (s == NATS_OK) {
      check_ours("consumer", name, ci->Config->Description, [&] { jsConsumerInfo_Destroy(ci); });
    } else if (!not_found(s, jerr)) {
      throw_nats("cannot read consumer " + name + " of " + stream, s, jerr);
    } else if (create_) {
      const std::string desc = description(what.c_str());
      jsConsumerConfig cc;
      jsConsumerConfig_Init(&cc);
      cc.Durable = name.c_str();
      cc.Description = desc.c_str();
      cc.AckPolicy = js_AckExplicit;
      cc.AckWait = ack_wait;
      cc.MaxDeliver = max_deliver;
      cc.FilterSubject = filter;
      if (from_now) cc.DeliverPolicy = js_DeliverNew;
      if (deliver != nullptr) {
        cc.DeliverSubject = deliver->deliver_subject;
        cc.DeliverGroup = kMetricsGroup;
        cc.DeliverPolicy = js_DeliverAll;
        cc.MaxAckPending = 10000;
      }
      jerr = {};
      s = js_AddConsumer(&ci, js_, stream.c_str(), &cc, nullptr, &jerr);
      if (s != NATS_OK) {
        refused("cannot create consumer " + name + " of " + stream, s, jerr, options_);
      }
      created = true;
    }
    ResourceState r{ResourceState::Kind::Consumer, name, stream};
    r.created = created;
    if (ci != nullptr) {
      r.exists = true;
      r.replicas = actual_replicas(ci->Cluster);
      r.pending = ci->NumPending;
      r.ack_pending = ci->NumAckPending;
      r.redelivered = ci->NumRedelivered;
      r.waiting = ci->NumWaiting;
      jsConsumerInfo_Destroy(ci);
    }
    return r;
  }

  // A single server takes a replica count it cannot keep; say so rather
  // than promise copies that do not exist.
  void check_replicas(const ResourceState& r) const {
    if (!create_ || !r.exists || r.replicas >= options_.replicas) return;
    throw NatsError(std::string(to_string(r.kind)) + " " + r.name + " has " +
                    std::to_string(r.replicas) + " cop" + (r.replicas == 1 ? "y" : "ies") +
                    ": PYOCO_NATS_REPLICAS=" + std::to_string(options_.replicas) +
                    " needs a JetStream cluster of at least that many servers (this NATS keeps " +
                    std::to_string(r.replicas) + ")");
  }

  // A tag's workers share one durable consumer: each job goes to one of them.
  ResourceState worker_consumer(const std::string& tag) {
    const std::string filter = "pyoco.work." + tag;
    const auto ack_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.ack_wait);
    return consumer("PYOCO_WORK", kWorkersPrefix + tag, "the workers of tag " + tag, filter.c_str(),
                    ack_wait.count(), kWorkMaxDeliver);
  }

  ResourceState metrics_consumer(const MetricsFeed& feed) {
    return consumer("PYOCO_EVENTS", feed.consumer, feed.what, feed.filter, 30 * kSecond, -1, &feed);
  }

 public:
  ResourceState webhook_consumer(std::int64_t ack_wait, int max_deliver) {
    return consumer("PYOCO_EVENTS", kWebhooks, "the gateways' webhooks", "pyoco.ev.*.run", ack_wait,
                    max_deliver, nullptr, /*from_now=*/true);
  }

 private:
  ResourceState reaper_consumer() {
    return consumer("PYOCO_ADVISORIES", kReaper, "the reaper of every gateway", nullptr,
                    30 * kSecond, -1);
  }

  // The tags whose workers' consumer exists on PYOCO_WORK.
  std::vector<std::string> existing_worker_tags() {
    std::vector<std::string> tags;
    jsConsumerNamesList* list = nullptr;
    jsErrCode jerr{};
    const natsStatus s = js_ConsumerNames(&list, js_, "PYOCO_WORK", nullptr, &jerr);
    if (s != NATS_OK) {
      if (not_found(s, jerr)) return tags;
      throw_nats("cannot list the consumers of PYOCO_WORK", s, jerr);
    }
    const std::string_view prefix = kWorkersPrefix;
    for (int i = 0; i < list->Count; ++i) {
      const std::string_view name = list->List[i];
      if (name.rfind(prefix, 0) == 0) tags.emplace_back(name.substr(prefix.size()));
    }
    jsConsumerNamesList_Destroy(list);
    std::sort(tags.begin(), tags.end());
    return tags;
  }

  ResourceState bucket(const BucketDef& def) {
    const std::string stream = std::string("KV_") + def.name;
    jsStreamInfo* si = find_stream(stream);
    bool created = false;
    if (si != nullptr) {
      check_ours("bucket", def.name, si->Config->Description, [&] { jsStreamInfo_Destroy(si); });
      si = keep_config(si, std::string("bucket ") + def.name, si->Config->MaxBytes,
                       si->Config->Discard, false);
    } else if (create_) {
      const std::string desc = description(def.what);
      kvConfig cfg;
      kvConfig_Init(&cfg);
      cfg.Bucket = def.name;
      cfg.Description = desc.c_str();
      cfg.History = def.history;
      cfg.TTL = def.ttl;
      cfg.StorageType = js_FileStorage;
      cfg.Replicas = options_.replicas;
      kvStore* kv = nullptr;
      const natsStatus s = js_CreateKeyValue(&kv, js_, &cfg);
      if (s != NATS_OK) {
        const std::string last =
            nats_GetLastError(nullptr) != nullptr ? nats_GetLastError(nullptr) : "";
        refused(std::string("cannot create bucket ") + def.name, s,
                last.find("replicas > 1") != std::string::npos ? JSStreamReplicasNotSupportedErr
                                                               : jsErrCode{},
                options_);
      }
      kvStore_Destroy(kv);
      created = true;
      si = find_stream(stream);
      // cnats makes a bucket readable from any replica ("direct" gets); a
      // replica that restarted behind answers with what it had, so a run
      // that ended read as RUNNING again (the chaos run found one stuck
      // so). Read from the leader, which has every acknowledged write.
      if (si != nullptr) {
        si = keep_config(si, std::string("bucket ") + def.name, si->Config->MaxBytes,
                         si->Config->Discard, false);
      }
    }
    ResourceState r = stream_state(ResourceState::Kind::Bucket, def.name, stream, si);
    r.created = created;
    if (si != nullptr) jsStreamInfo_Destroy(si);
    check_replicas(r);
    return r;
  }

  jsCtx* js_;
  const ResourceOptions& options_;
  bool create_;
};

}  // namespace

const char* to_string(ResourceState::Kind kind) {
  switch (kind) {
    case ResourceState::Kind::Stream:
      return "stream";
    case ResourceState::Kind::Consumer:
      return "consumer";
    case ResourceState::Kind::Bucket:
      return "bucket";
  }
  return "";
}

void check_tag(const std::string& tag) {
  const bool ok = !tag.empty() && tag.size() <= 64 &&
                  tag.find_first_not_of(
                      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789-_") == std::string::npos;
  if (!ok) {
    throw NatsError("tag \"" + core::printable(tag) +  // escaped, as a flow name
                    "\": a tag is 1 to 64 letters, digits, '-' and '_' (it is part of a NATS "
                    "subject)");
  }
}

bool worker_tag_exists(Connection& nats, const std::string& tag) {
  const std::string name = kWorkersPrefix + tag;
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr{};
  const natsStatus s =
      js_GetConsumerInfo(&ci, nats.handles().js, "PYOCO_WORK", name.c_str(), nullptr, &jerr);
  if (s == NATS_OK) {
    jsConsumerInfo_Destroy(ci);
    return true;
  }
  if (not_found(s, jerr)) return false;
  throw_nats("cannot read consumer " + name + " of PYOCO_WORK", s, jerr);
}

ResourceOptions resource_options_from_env() {
  ResourceOptions o;
  if (const char* r = std::getenv("PYOCO_NATS_REPLICAS"); r != nullptr && *r != '\0') {
    const std::string text(r);
    if (text.size() != 1 || text[0] < '1' || text[0] > '5') {
      throw NatsError("PYOCO_NATS_REPLICAS=" + text + ": give 1 to 5 (3 on a 3-node cluster)");
    }
    o.replicas = text[0] - '0';
  }
  if (const char* b = std::getenv("PYOCO_PLUGINS_MAX_BYTES"); b != nullptr && *b != '\0') {
    const std::string text(b);
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(text.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || n < (1 << 20)) {
      throw NatsError("PYOCO_PLUGINS_MAX_BYTES=" + text +
                      ": give a number of bytes, at least 1048576 (default 4294967296)");
    }
    o.plugins_max_bytes = n;
  }
  return o;
}

std::vector<ResourceState> init_resources(Connection& nats, const ResourceOptions& options) {
  return Resources(nats, options, true).run();
}

std::vector<ResourceState> resource_status(Connection& nats, const ResourceOptions& options) {
  return Resources(nats, options, false).run();
}

ResourceState init_webhook_consumer(Connection& nats, std::chrono::milliseconds ack_wait,
                                    int max_deliver) {
  const std::int64_t wait = std::chrono::duration_cast<std::chrono::nanoseconds>(ack_wait).count();
  ResourceState r = Resources(nats, ResourceOptions{}, true).webhook_consumer(wait, max_deliver);
  // Made by a gateway with other settings: these (the newest) apply, or a
  // raised PYOCO_WEBHOOK_RETRIES would meet NATS's old MaxDeliver first.
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr{};
  if (js_GetConsumerInfo(&ci, nats.handles().js, "PYOCO_EVENTS", kWebhooks, nullptr, &jerr) !=
      NATS_OK) {
    return r;
  }
  if (ci->Config->AckWait != wait || ci->Config->MaxDeliver != max_deliver) {
    jsConsumerConfig cc = *ci->Config;
    cc.AckWait = wait;
    cc.MaxDeliver = max_deliver;
    jsConsumerInfo* updated = nullptr;
    const natsStatus s =
        js_UpdateConsumer(&updated, nats.handles().js, "PYOCO_EVENTS", &cc, nullptr, &jerr);
    if (updated != nullptr) jsConsumerInfo_Destroy(updated);
    if (s != NATS_OK) {
      jsConsumerInfo_Destroy(ci);
      throw_nats("cannot update consumer pyoco_webhooks", s, jerr);
    }
  }
  jsConsumerInfo_Destroy(ci);
  return r;
}

}  // namespace pyoco::cluster
