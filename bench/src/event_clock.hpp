// What a benchmark hears on NATS: per run, when its first task started and
// when it ended (node_start, run_end), on this process's clock, from a core
// subscription to every run's events.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace pyoco::bench {

class EventClock {
 public:
  explicit EventClock(const std::string& nats_url);
  ~EventClock();
  EventClock(const EventClock&) = delete;
  EventClock& operator=(const EventClock&) = delete;

  struct Times {
    std::chrono::steady_clock::time_point start{}, end{};
  };

  // Waits until all of `ids` have ended; false at the deadline.
  bool wait_ends(const std::vector<std::string>& ids, std::chrono::seconds deadline);
  Times get(const std::string& id);

 private:
  static void on_msg(natsConnection*, natsSubscription*, natsMsg* m, void* self);

  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::unordered_map<std::string, Times> times_;
};

}  // namespace pyoco::bench
