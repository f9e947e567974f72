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
    bool schedule = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(f));
      schedule = !busy_;
      busy_ = true;
    }
    if (schedule) schedule_drain(std::move(keep));
  }

  // Only on an engine thread, where no plugin code is on the stack: runs
  // `f` here and now if nobody is running this control (then what others
  // queued meanwhile too); otherwise queues it for the one who is.
  // `keep()` makes the Keep only when one is needed (queued, or a drain
  // scheduled): a handler run at once touches no shared count.
  template <class F, class MakeKeep>
  void dispatch(F&& f, MakeKeep&& keep) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (busy_) {
        queue_.push_back(Handler([k = keep(), f = std::forward<F>(f)]() mutable { f(); }));
        return;
      }
      busy_ = true;
    }
    Current here(this);
    f();
    if (drain_batch()) schedule_drain(keep());
  }

  // True inside one of this control's handlers.
  bool running_in_this_thread() const { return current() == this; }
  // True inside a handler of any run's control (a direct listener is).
  static bool inside_any() { return current() != nullptr; }

 private:
  void schedule_drain(Keep keep) {
    asio::post(control_, [this, keep = std::move(keep)]() mutable {
      Current here(this);
      if (drain_batch()) schedule_drain(std::move(keep));
    });
  }

  // Runs what is queued now, then lets the control go — or, when more came
  // meanwhile, says so (true): the caller queues another drain behind other
  // work, so one busy run never holds a thread (control's, or a worker with
  // a body waiting) for long. Only the drainer (busy_) touches spare_: the
  // queue's storage goes back and forth between the two, so a drain
  // allocates nothing.
  bool drain_batch() {
    std::vector<Handler> batch;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (queue_.empty()) {
        busy_ = false;
        return false;
      }
      batch.swap(queue_);
      queue_.swap(spare_);
    }
    for (Handler& h : batch) h();
    batch.clear();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      spare_.swap(batch);
      if (queue_.empty()) {
        busy_ = false;
        return false;
      }
    }
    return true;
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
  std::mutex mutex_;  // queue_ and busy_; held only to move a handler in or out
  std::vector<Handler> queue_;
  std::vector<Handler> spare_;  // the drainer's, emptied
  bool busy_ = false;           // someone runs this control, or a drain is on its way
};

}  // namespace pyoco
