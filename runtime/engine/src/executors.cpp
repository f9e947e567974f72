#include "executors.hpp"

#include <sched.h>

namespace pyoco {

namespace {

// Runs handlers of `ctx` (control's) until it stops. After a handler the
// thread keeps looking for the next one for a short while (yielding the
// core to anyone runnable) before it sleeps: waking a sleeping thread costs
// tens of microseconds where a scheduling step costs one. An idle engine
// sleeps. The clock is read, and whether `ctx` was stopped asked (under its
// mutex), only once nothing was found: a busy thread runs handler after
// handler without either (a clock read costs ~25 ns on a KVM guest, and
// every look under the mutex is one the other threads wait for).
//
// Workers (worker_loop) look the same way, and with no body to run they
// also run control's handlers: a chain's next step is then decided on the
// thread that just finished the last one, with no hand-off at all. Control
// never depends on that help — its own thread serves it whenever the
// workers are busy or blocked. Once shut down, a worker that returns late
// from a body must not touch control, which shutdown() drains itself.
void run_spinning(asio::io_context& ctx) {
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(50);
  bool ran = true;  // since the last look at the clock
  clock::time_point idle_since;
  for (;;) {
    if (ctx.poll_one() > 0) {
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
  e->backlogs_ = std::make_unique<Backlog[]>(jobs);
  e->workers_count_ = jobs;  // workers_ grows while the first ones already run
  e->running_workers_ = jobs;
  e->control_thread_ = std::thread([raw = e.get()] {
    continuation().control = true;
    run_spinning(raw->control_);
  });
  e->workers_.reserve(jobs);
  for (std::size_t i = 0; i < jobs; ++i) {
    // Each worker owns a reference: one abandoned inside a body outlives the
    // engine, and what it touches afterwards must still be there.
    e->workers_.emplace_back([self = e, i] { self->run_worker(i); });
  }
  return e;
}

void Executors::run_worker(std::size_t index) {
  continuation().busy = &busy_[index];
  continuation().home = this;
  continuation().backlog = &backlogs_[index];
  worker_loop(index);
  continuation().busy = nullptr;
  continuation().home = nullptr;
  continuation().backlog = nullptr;
  exited_[index].store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(exit_mutex_);
    --running_workers_;
  }
  exit_cv_.notify_all();
}

// run_spinning for a worker, with its backlog and the others': the pool's
// queue (bodies control posted, in order) and its own backlog turn about,
// then control's handlers, then another worker's backlog (steal). While a
// backlog holds a body it never sleeps for longer than kStealPollMax: its
// owner may be inside a body that never ends.
void Executors::worker_loop(std::size_t index) {
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(50);
  std::vector<Seen> seen(workers_count_);
  bool ran = true;  // since the last look at the clock
  bool own_first = false;
  auto nap = kStealPoll;
  clock::time_point idle_since;
  // Only when a body (not just a wake meant for a sleeper) is there.
  auto from_pool = [&] {
    return pooled_.load(std::memory_order_acquire) > wakes_.load(std::memory_order_acquire) &&
           work_.poll_one() > 0;
  };
  unsigned turn = 0;
  bool timing = false;
  auto from_backlog = [&] {
    // Once shut down, what is left is shutdown()'s (it runs or drops it).
    if (!accepting()) return false;
    Body body = backlogs_[index].pop();
    if (!body) return false;
    run_queued(std::move(body));
    return true;
  };
  for (;;) {
    // Every fourth turn a stuck worker's backlog first: under steady load
    // (the pool and its own backlog never empty) this worker would
    // otherwise never get round to it.
    if (++turn % 4 == 0 && steal(index, seen, timing)) {
      ran = true;
      continue;
    }
    own_first = !own_first;
    // A body with a deadline waiting in either goes first (post_work): the
    // other may hold a later, long one.
    if (backlogs_[index].deadlines.load(std::memory_order_acquire) > 0) {
      own_first = true;
    } else if (pooled_deadlines_.load(std::memory_order_acquire) > 0) {
      own_first = false;
    }
    if (own_first ? from_backlog() || from_pool() : from_pool() || from_backlog()) {
      ran = true;
      nap = kStealPoll;
      continue;
    }
    if (accepting() && control_.poll_one() > 0) {
      ran = true;
      continue;
    }
    if (work_.stopped()) return;
    if (ran) {
      ran = false;
      idle_since = clock::now();
      busy_[index].sampled = {};  // idle: its next sample is no body's length
      sched_yield();
      continue;
    }
    if (steal(index, seen, timing)) {
      ran = true;
      nap = kStealPoll;
      continue;
    }
    if (clock::now() - idle_since < kSpin) {
      sched_yield();
      continue;
    }
    if (any_backlog()) {
      // Asleep for a moment only, then a look whether the owner got stuck:
      // spinning would take a core from the owner's own run (its control),
      // and counted as a sleeper it would have every push wake it. Longer
      // each time nothing came of it, so many idle workers cost little.
      // An owner that may be stuck is looked at again soon.
      if (work_.run_one_for(timing ? kStealPoll : nap) > 0) {
        ran = true;
        nap = kStealPoll;
      } else if (!timing) {
        nap = std::min(2 * nap, kStealPollMax);
      }
      continue;
    }
    // seq_cst, before the look at the backlogs: paired with post_work,
    // which pushes then looks at sleepers_. A body pushed meanwhile is seen
    // here, or its pusher wakes a sleeper.
    sleepers_.fetch_add(1);
    Continuation& c = continuation();
    c.asleep = true;
    if (any_backlog()) {
      c.asleep = false;
      sleepers_.fetch_sub(1);
      continue;
    }
    work_.run_one();
    if (c.asleep) {  // else run_bodies counted it awake already
      c.asleep = false;
      sleepers_.fetch_sub(1);
    }
    ran = true;
  }
}

void Executors::run_queued(Body body) {
  queued_work_.fetch_sub(1, std::memory_order_acq_rel);
  run_bodies(std::move(body));
}

bool Executors::steal(std::size_t self, std::vector<Seen>& seen, bool& timing) {
  timing = false;
  if (!accepting()) return false;               // what is left is shutdown()'s
  std::chrono::steady_clock::time_point now{};  // read only once a backlog holds a body
  for (std::size_t i = 0; i < workers_count_; ++i) {
    if (i == self) continue;
    if (backlogs_[i].empty()) {
      seen[i] = {};  // looked at afresh once it holds something
      continue;
    }
    const bool long_bodies = busy_[i].long_bodies.load(std::memory_order_relaxed);
    const std::uint64_t progress = busy_[i].progress.load(std::memory_order_relaxed);
    if (!long_bodies) {
      if (now == std::chrono::steady_clock::time_point{}) now = std::chrono::steady_clock::now();
      if (progress != seen[i].progress || seen[i].at == std::chrono::steady_clock::time_point{}) {
        seen[i] = {progress, now};  // moving on: its backlog is its own
        timing = true;
        continue;
      }
      if (now - seen[i].at < kStealAfter) {  // stuck in a body since then?
        timing = true;
        continue;
      }
    }
    if (Body body = backlogs_[i].pop()) {
      run_queued(std::move(body));
      return true;
    }
  }
  return false;
}

bool Executors::any_backlog() const {
  for (std::size_t i = 0; i < workers_count_; ++i) {
    if (!backlogs_[i].empty()) return true;
  }
  return false;
}

void Executors::Backlog::push(Body b) {
  std::lock_guard<Lock> lock(mutex_);
  const std::size_t n = size_.load(std::memory_order_relaxed);
  if (n == ring_.size()) {
    // Full: unrolled into a ring twice the size, oldest first.
    std::vector<Body> grown(std::max<std::size_t>(16, 2 * n));
    for (std::size_t k = 0; k < n; ++k) grown[k] = std::move(ring_[(head_ + k) % n]);
    ring_.swap(grown);
    head_ = 0;
  }
  ring_[(head_ + n) % ring_.size()] = std::move(b);
  size_.store(n + 1);  // seq_cst: see post_work
}

Executors::Body Executors::Backlog::pop() {
  if (empty()) return {};
  std::lock_guard<Lock> lock(mutex_);
  const std::size_t n = size_.load(std::memory_order_relaxed);
  if (n == 0) return {};
  Body b = std::move(ring_[head_]);
  ring_[head_] = nullptr;
  head_ = (head_ + 1) % ring_.size();
  size_.store(n - 1);
  return b;
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
    // Backlogs are no stuck worker's (none takes from one once shut
    // down): run, or with a worker still inside a body let go unrun, so
    // that the runs they hold are released (the pool's queue, left to
    // that worker, still holds its own until this object goes).
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      while (Body body = backlogs_[i].pop()) {
        if (all_joined) {
          run_queued(std::move(body));
          ran = true;
        } else {
          queued_work_.fetch_sub(1, std::memory_order_acq_rel);
        }
      }
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
