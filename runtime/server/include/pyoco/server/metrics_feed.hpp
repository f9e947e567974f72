// The event stream into a gateway's Metrics: the gateways' shared push
// consumers of PYOCO_EVENTS (cluster::metrics_feeds), one queue group, so
// that each run's end and each task's end is counted by exactly one gateway
// and acked once counted.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/server/metrics.hpp>

#include <memory>

namespace pyoco::server {

class MetricsFeed {
 public:
  // Subscribes at once; a missing consumer (a cluster initialised by an
  // older pyoco) is reported on stderr and its counts stay at zero.
  MetricsFeed(cluster::Connection& nats, Metrics& metrics);
  ~MetricsFeed();  // unsubscribes; what was not acked goes to another gateway
  MetricsFeed(const MetricsFeed&) = delete;
  MetricsFeed& operator=(const MetricsFeed&) = delete;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pyoco::server
