// The NATS resources of cluster mode (docs/cluster.md, "NATS resources"):
// streams, the workers' and the reaper's consumers, and KV buckets. `init`
// makes what is missing and leaves what is there; `status` reports them.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace pyoco::cluster {

// Written into every description we create: a resource without it, or with
// another version, is not ours and is never changed.
inline constexpr int kSchemaVersion = 1;

// How often NATS delivers a job to the workers of its tag before it is the
// reaper's (their consumer's MaxDeliver).
inline constexpr int kWorkMaxDeliver = 5;

struct ResourceOptions {
  int replicas = 1;                          // PYOCO_NATS_REPLICAS
  std::vector<std::string> tags{"default"};  // a workers' consumer per tag
  // How long a delivered job may go without an ack or progress before NATS
  // delivers it again (a worker sends progress well within it).
  std::chrono::milliseconds ack_wait{std::chrono::seconds(30)};
  // What PYOCO_PLUGINS may hold (PYOCO_PLUGINS_MAX_BYTES): a push past it
  // is refused (507), nothing older is dropped to make room.
  std::int64_t plugins_max_bytes = std::int64_t{4} << 30;
};

// PYOCO_NATS_REPLICAS (1 to 5) and PYOCO_PLUGINS_MAX_BYTES (a number of
// bytes, at least 1 MiB); throws NatsError otherwise. Default tags.
ResourceOptions resource_options_from_env();

// Throws NatsError for a tag that is not a NATS subject token
// (letters, digits, '-' and '_').
void check_tag(const std::string& tag);

// Whether the workers' consumer of `tag` (pyoco_workers_<tag> on
// PYOCO_WORK, made by `pyoco cluster init --tags`) exists: a job of a tag
// without one stays queued for ever. Throws NatsError when NATS cannot
// say.
bool worker_tag_exists(Connection& nats, const std::string& tag);

// The gateways' shared feeds of the event stream for their metrics: durable
// push consumers of PYOCO_EVENTS delivered to one queue group, so that each
// event is counted by exactly one gateway, and a restarted gateway takes up
// where the group was.
struct MetricsFeed {
  const char* consumer;         // pyoco_metrics_runs, pyoco_metrics_tasks
  const char* filter;           // pyoco.ev.*.run, pyoco.ev.*.node
  const char* deliver_subject;  // where NATS pushes them
  const char* what;
};
const std::vector<MetricsFeed>& metrics_feeds();
inline constexpr const char* kMetricsGroup = "pyoco_metrics";

struct ResourceState;

// The webhook senders' durable pull consumer `pyoco_webhooks` of the run
// events, made on first use (delivering what ends from then on). Throws
// NatsError.
ResourceState init_webhook_consumer(Connection& nats, std::chrono::milliseconds ack_wait,
                                    int max_deliver);

struct ResourceState {
  enum class Kind { Stream, Consumer, Bucket } kind;
  std::string name;    // PYOCO_WORK, pyoco_workers_default, pyoco_runs
  std::string stream;  // the stream it lives in (itself for a stream, KV_<b> for a bucket)
  bool exists = false;
  bool created = false;  // by this init
  int replicas = 0;
  std::uint64_t messages = 0;  // streams and buckets
  std::uint64_t bytes = 0;
  std::uint64_t pending = 0;     // consumers: messages not yet delivered (lag)
  std::int64_t ack_pending = 0;  // consumers: delivered, not yet acked
  std::int64_t redelivered = 0;  // consumers
  std::int64_t waiting = 0;      // consumers: pull requests waiting
};

const char* to_string(ResourceState::Kind kind);

// Creates every missing resource; existing ones of ours are left as they
// are (a changed replica count is applied to streams and buckets). Throws
// NatsError naming the resource when one is not ours, or NATS refuses.
std::vector<ResourceState> init_resources(Connection& nats, const ResourceOptions& options);

// Every resource: those of `options` and, for consumers, every workers'
// consumer that exists. A missing one has exists == false. Throws
// NatsError when one is not ours.
std::vector<ResourceState> resource_status(Connection& nats, const ResourceOptions& options);

}  // namespace pyoco::cluster
