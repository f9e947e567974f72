#include "event_hub.hpp"

#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>

#include <utility>

namespace pyoco::server {

struct EventHub::Watch::Shared {
  Shared(cluster::Connection& n, Limits l) : nats(n), limits(l) {}

  cluster::Connection& nats;
  const Limits limits;
  std::mutex making;  // one subscription made at a time
  std::mutex mutex;   // what follows, and every watch's queue
  natsSubscription* sub = nullptr;
  std::uint64_t position = 0;  // the last stream sequence handed on
  std::multimap<std::string, Watch*, std::less<>> watches;
  std::size_t queued_bytes = 0;  // of every watch's queue_

  std::uint64_t reconnects_then = 0;  // the connection's reconnects when `sub` was made
  // When a resubscribe last failed (under `making`): watches asked for
  // within a second of it are refused at once, not each after NATS's
  // timeout one after another.
  std::chrono::steady_clock::time_point failed_at{};

  // A reconnect may have lost the consumer (its server restarted): the
  // hub then counts as lost, rather than trust it to come back by itself.
  bool live() const {
    return sub != nullptr && natsSubscription_IsValid(sub) && reconnects() == reconnects_then;
  }

  std::uint64_t reconnects() const {
    natsStatistics* stats = nullptr;
    std::uint64_t in_msgs = 0, in_bytes = 0, out_msgs = 0, out_bytes = 0, n = 0;
    if (natsStatistics_Create(&stats) == NATS_OK) {
      if (natsConnection_GetStats(nats.handles().nc, stats) == NATS_OK) {
        natsStatistics_GetCounts(stats, &in_msgs, &in_bytes, &out_msgs, &out_bytes, &n);
      }
      natsStatistics_Destroy(stats);
    }
    return n;
  }

  void break_all() {
    for (auto& [id, w] : watches) {
      w->broken_ = true;
      w->arrived_.notify_all();
    }
  }

  // A new ordered consumer from the stream's end (under `making`): the
  // old one's watches are broken (they read the stream from where they
  // are). False when NATS cannot be asked.
  bool resubscribe() {
    natsSubscription* old = nullptr;
    {
      std::lock_guard lock(mutex);
      old = std::exchange(sub, nullptr);
      break_all();
    }
    if (old != nullptr) cluster::close_subscription(old);
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, nats.handles().js, "PYOCO_EVENTS", nullptr, nullptr) != NATS_OK) {
      return false;
    }
    const std::uint64_t end = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    const std::uint64_t reconnected = reconnects();
    {
      std::lock_guard lock(mutex);
      position = end;  // watches made from here on read the stream up to it
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "PYOCO_EVENTS";
    so.Ordered = true;  // cnats makes it again after a gap, from where it was
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = end + 1;
    natsSubscription* fresh = nullptr;
    jsErrCode jerr{};
    const natsStatus s =
        js_Subscribe(&fresh, nats.handles().js, "pyoco.ev.>", &on_event, this, nullptr, &so, &jerr);
    if (s != NATS_OK) {
      cluster::log(cluster::LogLevel::warning,
                   "gateway: run watches read the stream each (cannot follow every run's events)",
                   {{"nats", natsStatus_GetText(s)}});
      return false;
    }
    std::lock_guard lock(mutex);
    sub = fresh;
    reconnects_then = reconnected;
    return true;
  }

  // On cnats's thread for the subscription: never waits but for the mutex.
  static void on_event(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
    auto& h = *static_cast<Shared*>(closure);
    std::uint64_t seq = 0;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
    }
    const std::string_view subject = natsMsg_GetSubject(m);
    constexpr std::string_view kPrefix = "pyoco.ev.";
    std::string_view run;
    if (subject.starts_with(kPrefix)) {
      run = subject.substr(kPrefix.size());
      run = run.substr(0, run.find('.'));
    }
    {
      std::lock_guard lock(h.mutex);
      if (seq > h.position) {
        h.position = seq;
        auto [at, end] = h.watches.equal_range(run);
        for (; at != end; ++at) {
          Watch& w = *at->second;
          const auto size = static_cast<std::size_t>(natsMsg_GetDataLength(m));
          if (w.broken_) {
            // It reads the stream once it has had what its queue holds.
          } else if (w.queue_.size() >= h.limits.events ||
                     w.queued_bytes_ + size > h.limits.bytes ||
                     (w.queued_bytes_ + size > h.limits.own_bytes &&
                      h.queued_bytes + size > h.limits.all_bytes)) {
            w.broken_ = true;  // it reads the stream from its last event instead
          } else {
            w.queue_.push_back(
                Event{seq, std::string(subject), std::string(natsMsg_GetData(m), size)});
            w.queued_bytes_ += size;
            h.queued_bytes += size;
          }
          w.arrived_.notify_all();
        }
      }
    }
    natsMsg_Destroy(m);
  }
};

EventHub::Watch::Watch(std::shared_ptr<Shared> hub, std::string run_id, std::uint64_t from)
    : hub_(std::move(hub)), run_id_(std::move(run_id)), from_(from) {}

EventHub::Watch::~Watch() {
  std::lock_guard lock(hub_->mutex);
  hub_->queued_bytes -= queued_bytes_;
  auto [at, end] = hub_->watches.equal_range(run_id_);
  for (; at != end; ++at) {
    if (at->second == this) {
      hub_->watches.erase(at);
      break;
    }
  }
}

std::optional<EventHub::Event> EventHub::Watch::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(hub_->mutex);
  arrived_.wait_for(lock, timeout, [&] { return !queue_.empty() || broken_; });
  if (queue_.empty()) return std::nullopt;
  Event e = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= e.data.size();
  hub_->queued_bytes -= e.data.size();
  return e;
}

bool EventHub::Watch::broken() const {
  std::lock_guard lock(hub_->mutex);
  return broken_ || !hub_->live();
}

EventHub::EventHub(cluster::Connection& nats, Limits limits)
    : shared_(std::make_shared<Watch::Shared>(nats, limits)) {}

std::size_t EventHub::queued_bytes() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->queued_bytes;
}

EventHub::~EventHub() {
  natsSubscription* sub = nullptr;
  {
    std::lock_guard lock(shared_->mutex);
    sub = std::exchange(shared_->sub, nullptr);
    shared_->break_all();
  }
  // Drained: no callback runs on the hub after this.
  if (sub != nullptr) cluster::close_subscription(sub);
}

std::unique_ptr<EventHub::Watch> EventHub::watch(const std::string& run_id) {
  Watch::Shared& h = *shared_;
  {
    std::lock_guard making(h.making);
    bool live = false;
    {
      std::lock_guard lock(h.mutex);
      live = h.live();
    }
    if (!live) {
      const auto now = std::chrono::steady_clock::now();
      if (now - h.failed_at < std::chrono::seconds(1)) return nullptr;
      if (!h.resubscribe()) {
        h.failed_at = std::chrono::steady_clock::now();
        return nullptr;
      }
    }
  }
  std::lock_guard lock(h.mutex);
  std::unique_ptr<Watch> w(new Watch(shared_, run_id, h.position));
  h.watches.emplace(run_id, w.get());
  return w;
}

}  // namespace pyoco::server
