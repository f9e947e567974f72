// The one way a listener that does I/O (a trace sink, the history, a
// network publisher) hears a run: the engine's control thread only copies
// the event into this queue; a thread of the queue's own hands it on, in
// order, to every listener added. Control never waits for a disk, a
// terminal or a socket.
//
//   auto queue = std::make_shared<pyoco::trace::EventQueue>();
//   queue->add(pyoco::trace::make_trace_sink(format, out));
//   options.listener = queue;
//   ...
//   run.wait();
//   queue->flush();   // everything the run said has been handed on
#pragma once

#include <pyoco/trace/event.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace pyoco::trace {

class EventQueue : public EventListener {
 public:
  EventQueue();
  ~EventQueue() override;  // hands on what is queued, then stops
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  // Listeners are called on the queue's thread, in the order added. Add
  // them before the first event.
  void add(std::shared_ptr<EventListener> listener);
  bool empty() const { return listeners_.empty(); }

  // Copies the event and returns: never blocks on a listener. Listeners
  // hear events in batches, within about a millisecond.
  void on_event(const RunEvent& event) override;
  // The log lines queued and not yet handed on (EventListener::backlog_bytes).
  std::size_t backlog_bytes() const override { return log_bytes_.load(std::memory_order_relaxed); }

  // Returns once every event queued before the call has been handed on.
  void flush();
  // The same, waiting at most `limit` (a listener may be stuck on a full
  // pipe): whether everything queued before the call has been handed on.
  bool flush_for(std::chrono::milliseconds limit);

 private:
  class Batch;  // events queued together, their strings in storage of its own
  void loop();

  std::vector<std::shared_ptr<EventListener>> listeners_;
  std::mutex mutex_;
  std::condition_variable wake_, drained_;
  // Swapped with the thread's batch: both keep their storage, so queueing
  // an event allocates nothing once the queue has warmed up.
  std::unique_ptr<Batch> queue_;
  std::uint64_t queued_ = 0, delivered_ = 0;
  std::atomic<std::size_t> log_bytes_{0};  // of the log lines in queue_ and the batch handed on
  unsigned flushing_ = 0;                  // flush() calls waiting: no time to gather
  bool sleeping_ = false;                  // the thread waits for an event: the next one wakes it
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pyoco::trace
