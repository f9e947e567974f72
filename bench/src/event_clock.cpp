#include "event_clock.hpp"

#include <pyoco/cluster/nats_handles.hpp>

#include <stdexcept>
#include <string_view>

namespace pyoco::bench {

EventClock::EventClock(const std::string& nats_url) {
  if (natsConnection_ConnectTo(&nc_, nats_url.c_str()) != NATS_OK)
    throw std::runtime_error("cannot connect to " + nats_url);
  natsConnection_Subscribe(&sub_, nc_, "pyoco.ev.*.*", &EventClock::on_msg, this);
  natsSubscription_SetPendingLimits(sub_, -1, -1);
  natsConnection_Flush(nc_);
}

EventClock::~EventClock() {
  pyoco::cluster::close_subscription(sub_);  // events are still coming
  natsConnection_Destroy(nc_);
}

bool EventClock::wait_ends(const std::vector<std::string>& ids, std::chrono::seconds deadline) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, deadline, [&] {
    for (const auto& id : ids) {
      auto it = times_.find(id);
      if (it == times_.end() || it->second.end == std::chrono::steady_clock::time_point{})
        return false;
    }
    return true;
  });
}

EventClock::Times EventClock::get(const std::string& id) {
  std::lock_guard lock(mutex_);
  return times_[id];
}

void EventClock::on_msg(natsConnection*, natsSubscription*, natsMsg* m, void* self_) {
  const auto now = std::chrono::steady_clock::now();
  auto* self = static_cast<EventClock*>(self_);
  const std::string_view subject = natsMsg_GetSubject(m);
  const std::string_view data(natsMsg_GetData(m),
                              static_cast<std::size_t>(natsMsg_GetDataLength(m)));
  // pyoco.ev.<run_id>.<kind>
  const auto first = subject.find('.', 6);
  const auto last = subject.rfind('.');
  const std::string id(subject.substr(first + 1, last - first - 1));
  const bool start = data.find("\"kind\":\"node_start\"") != std::string_view::npos;
  const bool end = data.find("\"kind\":\"run_end\"") != std::string_view::npos;
  if (start || end) {
    std::lock_guard lock(self->mutex_);
    Times& t = self->times_[id];
    if (start && t.start == std::chrono::steady_clock::time_point{}) t.start = now;
    if (end && t.end == std::chrono::steady_clock::time_point{}) t.end = now;
    if (end) self->changed_.notify_all();
  }
  natsMsg_Destroy(m);
}

}  // namespace pyoco::bench
