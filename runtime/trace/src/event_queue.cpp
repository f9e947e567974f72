#include <pyoco/trace/event_queue.hpp>

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
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(owned));
    ++queued_;
  }
  wake_.notify_one();
}

void EventQueue::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t target = queued_;
  drained_.wait(lock, [&] { return delivered_ >= target; });
}

void EventQueue::loop() {
  std::deque<Event> batch;
  std::vector<PlannedNode> planned;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty() && stopping_) return;
    batch.swap(queue_);
    const auto listeners = listeners_;
    lock.unlock();
    for (const Event& e : batch) {
      const RunEvent view = e.view(planned);
      for (const auto& l : listeners) l->on_event(view);
    }
    const std::size_t n = batch.size();
    batch.clear();
    lock.lock();
    delivered_ += n;
    drained_.notify_all();
  }
}

}  // namespace pyoco::trace
