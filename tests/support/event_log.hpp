// Records every event a run emits, as owned trace::Events, thread-safely;
// the listener the engine tests share.
#pragma once

#include <pyoco/trace/event.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace pyoco::testing {

class EventLog : public trace::EventListener {
 public:
  void on_event(const trace::RunEvent& e) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      events_.push_back(trace::Event::from(e));
    }
    changed_.notify_all();
  }

  std::vector<trace::Event> events() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  // Those of `kind` (and of `node`, when given).
  std::vector<trace::Event> of(trace::EventKind kind, const std::string& node = "") const {
    std::vector<trace::Event> out;
    for (auto& e : events()) {
      if (e.kind == kind && (node.empty() || e.node == node)) out.push_back(std::move(e));
    }
    return out;
  }
  std::size_t count(trace::EventKind kind, const std::string& node = "") const {
    return of(kind, node).size();
  }
  bool logged(const std::string& node, const std::string& message) const {
    for (const auto& e : of(trace::EventKind::Log, node)) {
      if (e.message == message) return true;
    }
    return false;
  }
  // Waits until a Log event carries `message`.
  bool wait_for_log(const std::string& message, std::chrono::seconds timeout) const {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      for (const auto& e : events_) {
        if (e.kind == trace::EventKind::Log && e.message == message) return true;
      }
      return false;
    });
  }

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<trace::Event> events_;
};

}  // namespace pyoco::testing
