#include "executors.hpp"

#include <sched.h>

namespace pyoco {

namespace {

// Runs handlers of `ctx` until it stops. After a handler the thread keeps
// looking for the next one for a short while (yielding the core to anyone
// runnable) before it sleeps: waking a sleeping thread costs tens of
// microseconds where a scheduling step costs one. An idle engine sleeps.
// The clock is read, and whether `ctx` was stopped asked (under its
// mutex), only once nothing was found: a busy thread runs handler after
// handler without either (a clock read costs ~25 ns on a KVM guest, and
// every look under the pool's mutex is one the other threads wait for).
//
// A worker with no body to run also runs control's handlers (`help`),
// while `helping` says so: a chain's next step is then decided on the
// thread that just finished the last one, with no hand-off at all. Control
// never depends on that help — its own thread serves it whenever the
// workers are busy or blocked. Once shut down, a worker that returns late
// from a body must not touch control, which shutdown() drains itself.
void run_spinning(asio::io_context& ctx, asio::io_context* help = nullptr,
                  const std::atomic<bool>* helping = nullptr) {
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(50);
  bool ran = true;  // since the last look at the clock
  clock::time_point idle_since;
  for (;;) {
    if (ctx.poll_one() > 0 ||
        (help != nullptr && (helping == nullptr || helping->load(std::memory_order_acquire)) &&
         help->poll_one() > 0)) {
      ran = true;
      continue;
    }
    if (ctx.stopped()) return;
    if (ran) {
      ran = false;
      idle_since = clock::now();
      sched_yield();
      continue;
    }
    if (clock::now() - idle_since < kSpin) {
      sched_yield();
      continue;
    }
    ctx.run_one();
    ran = true;
  }
}

}  // namespace

std::shared_ptr<Executors> Executors::start(unsigned jobs) {
  std::shared_ptr<Executors> e(new Executors());
  e->exited_ = std::make_unique<std::atomic<bool>[]>(jobs);
  e->busy_ = std::make_unique<BusyFlag[]>(jobs);
  e->running_workers_ = jobs;
  e->control_thread_ = std::thread([raw = e.get()] { run_spinning(raw->control_); });
  e->workers_.reserve(jobs);
  for (std::size_t i = 0; i < jobs; ++i) {
    // Each worker owns a reference: one abandoned inside a body outlives the
    // engine, and what it touches afterwards must still be there.
    e->workers_.emplace_back([self = e, i] { self->run_worker(i); });
  }
  return e;
}

void Executors::run_worker(std::size_t index) {
  continuation().busy = &busy_[index].flag;
  run_spinning(work_, &control_, &accepting_);
  continuation().busy = nullptr;
  exited_[index].store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(exit_mutex_);
    --running_workers_;
  }
  exit_cv_.notify_all();
}

void Executors::shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  accepting_.store(false, std::memory_order_release);
  control_guard_.reset();
  control_.stop();
  if (control_thread_.joinable()) control_thread_.join();

  work_guard_.reset();
  work_.stop();
  {
    std::unique_lock<std::mutex> lock(exit_mutex_);
    exit_cv_.wait_for(lock, grace, [this] { return running_workers_ == 0; });
  }
  bool all_joined = true;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (exited_[i].load(std::memory_order_acquire)) {
      workers_[i].join();
    } else {
      workers_[i].detach();  // stuck in a body; see the header
      all_joined = false;
    }
  }
  // What is still queued holds runs, and runs hold this object: let the
  // queues go. Every run is over by now (~Engine cancelled them), so
  // control handlers find nothing to change but still tell plugins'
  // cancelled timers (exactly once), and a queued body sees its cancel and
  // returns. With a worker still inside a body, its queue is left to it.
  for (bool ran = true; ran;) {
    control_.restart();
    ran = control_.poll() > 0;
    if (all_joined) {
      work_.restart();
      ran = work_.poll() > 0 || ran;
    }
  }
}

Executors::~Executors() {
  // Reached only after shutdown(), or from the last worker: nothing runs here.
  for (auto& w : workers_) {
    if (w.joinable()) w.detach();
  }
  if (control_thread_.joinable()) control_thread_.detach();
}

}  // namespace pyoco
