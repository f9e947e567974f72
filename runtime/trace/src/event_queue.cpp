#include <pyoco/trace/event_queue.hpp>

#include <algorithm>

namespace pyoco::trace {

EventQueue::EventQueue() : thread_([this] { loop(); }) {}

EventQueue::~EventQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void EventQueue::add(std::shared_ptr<EventListener> listener) {
  std::lock_guard<std::mutex> lock(mutex_);
  listeners_.push_back(std::move(listener));
}

void EventQueue::on_event(const RunEvent& event) {
  Event owned = Event::from(event);  // outside the lock: the copy is the cost
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(owned));
    ++queued_;
    // Only a sleeping thread needs waking, and only once: a wake-up per
    // event would cost the engine more than the event itself.
    wake = sleeping_;
    sleeping_ = false;
  }
  if (wake) wake_.notify_one();
}

void EventQueue::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t target = queued_;
  ++flushing_;
  wake_.notify_one();
  drained_.wait(lock, [&] { return delivered_ >= target; });
  --flushing_;
}

void EventQueue::loop() {
  // How long the thread lets a burst gather once woken: far below what a
  // person watching a trace notices, long enough that a busy run's events
  // are handed on in batches.
  constexpr auto kGather = std::chrono::microseconds(500);
  // Listeners hear a batch in slices of this many: the views stay small.
  constexpr std::size_t kSlice = 1024;
  std::vector<Event> batch;
  std::vector<RunEvent> views;
  std::deque<std::vector<PlannedNode>> planned;  // the views' planned nodes
  std::vector<PlannedNode> none;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) return;
      sleeping_ = true;
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      sleeping_ = false;
      wake_.wait_for(lock, kGather, [&] { return stopping_ || flushing_ > 0; });
      if (queue_.empty()) continue;
    }
    batch.swap(queue_);
    const auto listeners = listeners_;
    lock.unlock();
    for (std::size_t first = 0; first < batch.size(); first += kSlice) {
      views.clear();
      planned.clear();
      const std::size_t end = std::min(batch.size(), first + kSlice);
      for (std::size_t i = first; i < end; ++i) {
        const Event& e = batch[i];
        views.push_back(e.view(e.planned.empty() ? none : planned.emplace_back()));
      }
      for (const auto& l : listeners) l->on_events(views);
    }
    const std::size_t n = batch.size();
    batch.clear();
    lock.lock();
    delivered_ += n;
    drained_.notify_all();
  }
}

}  // namespace pyoco::trace
