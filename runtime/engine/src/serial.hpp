// Internal: a run's control, one handler at a time (what an Asio strand
// gives), with one thing a strand cannot do: a thread of the engine's own,
// at a point where no plugin code is on its stack, may run a handler at once
// when nobody else is running the run's control. A worker that just ran a
// body then decides what comes next itself — no hand-off to another thread,
// no wake-up — while every other thread (a plugin's, a caller's) only
// queues, and control's thread drains. Control never waits for work: whoever
// drains runs only control handlers, each short.
#pragma once

#include <pyoco/core/small_function.hpp>

#include <boost/asio/post.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "executors.hpp"

namespace pyoco {

class Serial {
 public:
  using Handler = core::SmallFunction<void()>;

  explicit Serial(Executors::Executor control) : control_(control) {}

  // Keeps this Serial (its owner) alive while a drain is on its way.
  using Keep = std::shared_ptr<const void>;

  // Any thread: queues `f`; when nobody is running this control, control's
  // thread (or an idle worker) will.
  void post(Handler f, Keep keep) {
    push(std::move(f));
    if (acquire()) schedule_drain(std::move(keep));
  }

  // Only on an engine thread, where no plugin code is on the stack: runs
  // `f` here and now if nobody is running this control (then what others
  // queued meanwhile too); otherwise queues it for the one who is.
  // `keep()` makes the Keep only when one is needed (queued, or a drain
  // scheduled): a handler run at once touches no shared count, and takes
  // no lock.
  template <class F, class MakeKeep>
  void dispatch(F&& f, MakeKeep&& keep) {
    if (acquire()) {
      Current here(this);
      // Handlers queued before it (pushed while the last holder let go)
      // run first: one order, as a strand's.
      if (queued_.load() == 0) {
        f();
      } else {
        push(Handler([k = keep(), f = std::forward<F>(f)]() mutable { f(); }));
      }
      if (drain_batch()) schedule_drain(keep());
      return;
    }
    push(Handler([k = keep(), f = std::forward<F>(f)]() mutable { f(); }));
    // The one running it may have let go before the push: then it is ours.
    if (acquire()) {
      Current here(this);
      if (drain_batch()) schedule_drain(keep());
    }
  }

  // True inside one of this control's handlers.
  bool running_in_this_thread() const { return current() == this; }
  // True inside a handler of any run's control (a direct listener is).
  static bool inside_any() { return current() != nullptr; }

 private:
  // Who runs this control: whoever turns busy_ from false to true, until it
  // lets go (drain_batch). A push is followed by an acquire, and letting go
  // by a look at queued_ (both sequentially consistent, a Dekker pair): a
  // handler pushed while the holder lets go is seen by one of the two.
  bool acquire() { return !busy_.exchange(true); }
  void push(Handler f) {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(f));
    queued_.fetch_add(1);
  }

  void schedule_drain(Keep keep) {
    asio::post(control_, [this, keep = std::move(keep)]() mutable {
      Current here(this);
      if (drain_batch()) schedule_drain(std::move(keep));
    });
  }

  // The holder: runs what is queued now, then lets the control go — or,
  // when more came meanwhile, keeps it and says so (true): the caller queues
  // another drain behind other work, so one busy run never holds a thread
  // (control's, or a worker with a body waiting) for long. Only the holder
  // touches spare_: the queue's storage goes back and forth between the
  // two, so a drain allocates nothing.
  bool drain_batch() {
    if (queued_.load() != 0) {
      std::vector<Handler> batch;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        batch.swap(queue_);
        queue_.swap(spare_);
        queued_.fetch_sub(batch.size());
      }
      for (Handler& h : batch) h();
      batch.clear();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        spare_.swap(batch);
      }
      if (queued_.load() != 0) return true;
    }
    busy_.store(false);
    // Pushed after the look above, by a thread whose acquire came before
    // the store: it is queued, and nobody else will run it.
    if (queued_.load() != 0 && acquire()) return true;
    return false;
  }

  static const Serial*& current() {
    static thread_local const Serial* running = nullptr;
    return running;
  }
  struct Current {
    explicit Current(const Serial* s) : saved(current()) { current() = s; }
    ~Current() { current() = saved; }
    const Serial* saved;
  };

  Executors::Executor control_;
  std::atomic<bool> busy_{false};       // someone runs this control, or a drain is on its way
  std::atomic<std::size_t> queued_{0};  // handlers in queue_
  std::mutex mutex_;                    // queue_ and spare_; held only to move handlers in or out
  std::vector<Handler> queue_;
  std::vector<Handler> spare_;  // the holder's, emptied
};

}  // namespace pyoco
