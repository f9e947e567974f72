#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/server/metrics_feed.hpp>

#include <boost/json.hpp>

#include <cstdio>
#include <vector>

namespace pyoco::server {

namespace json = boost::json;

struct MetricsFeed::Impl {
  Metrics& metrics;
  std::vector<natsSubscription*> subscriptions;

  explicit Impl(Metrics& m) : metrics(m) {}

  void count(std::string_view data) {
    boost::system::error_code ec;
    const json::value v = json::parse(data, ec);
    if (ec || !v.is_object()) return;  // not an event of ours: acked, ignored
    const json::object& e = v.as_object();
    const json::value* kind = e.if_contains("kind");
    if (kind == nullptr || !kind->is_string()) return;
    auto text = [&](const char* key) -> std::string_view {
      const json::value* f = e.if_contains(key);
      return f != nullptr && f->is_string() ? std::string_view(f->as_string()) : "";
    };
    auto number = [&](const char* key) -> double {
      const json::value* f = e.if_contains(key);
      return f != nullptr && f->is_number() ? f->to_number<double>() : -1;
    };
    if (kind->as_string() == "run_end") {
      const double start = number("started_at"), end = number("ended_at");
      metrics.run_ended(text("status"), text("flow"),
                        start >= 0 && end >= start ? end - start : -1);
    } else if (kind->as_string() == "node_done" && !text("task").empty()) {
      const double ms = number("duration_ms");
      if (ms >= 0) metrics.task_done(text("task"), ms / 1000);
    }
  }

  static void on_event(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
    static_cast<Impl*>(closure)->count(
        std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))));
    natsMsg_Ack(m, nullptr);
    natsMsg_Destroy(m);
  }
};

MetricsFeed::MetricsFeed(cluster::Connection& nats, Metrics& metrics)
    : impl_(std::make_unique<Impl>(metrics)) {
  for (const cluster::MetricsFeed& feed : cluster::metrics_feeds()) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "PYOCO_EVENTS";
    so.Consumer = feed.consumer;
    so.ManualAck = true;
    natsSubscription* sub = nullptr;
    jsErrCode jerr{};
    so.Queue = cluster::kMetricsGroup;
    const natsStatus s = js_Subscribe(&sub, nats.handles().js, feed.filter, &Impl::on_event,
                                      impl_.get(), nullptr, &so, &jerr);
    if (s != NATS_OK) {
      cluster::log(cluster::LogLevel::error,
                   "metrics: a feed is missing; /metrics counts nothing from it: run `pyoco "
                   "cluster init`",
                   {{"consumer", feed.consumer}, {"nats", natsStatus_GetText(s)}});
      continue;
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);  // NATS's MaxAckPending bounds it
    impl_->subscriptions.push_back(sub);
  }
}

MetricsFeed::~MetricsFeed() {
  // Drained, so that no callback still runs when the counts it writes go
  // (the durable stays: it is bound, not made, here; the group goes on).
  for (natsSubscription* sub : impl_->subscriptions) cluster::close_subscription(sub);
}

}  // namespace pyoco::server
