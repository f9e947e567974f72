// Internal: where an engine's code runs (ARCHITECTURE.md §4a).
//
// Control — the runs' strands, timers, deadlines, cancel and event emission —
// runs on one thread of its own. Task bodies run on a bounded pool of `jobs`
// threads. Control only ever posts to the pool, never waits on it, so however
// long a body blocks, a deadline or a cancel is handled on time.
#pragma once

#include <pyoco/core/small_function.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace pyoco {

namespace asio = boost::asio;

class Executors : public std::enable_shared_from_this<Executors> {
 public:
  using Executor = asio::io_context::executor_type;

  // Starts the control thread and `jobs` worker threads.
  static std::shared_ptr<Executors> start(unsigned jobs);
  ~Executors();

  Executor control() { return control_.get_executor(); }

  // Queues a task body for the pool. Called from a control handler that a
  // worker runs right after its body (serial.hpp), the body is kept for
  // that worker to run next instead: a chain's next step starts on the
  // thread that finished the last one, its data still in that core's
  // cache. With bodies waiting, that jumps them, so a worker does it for at
  // most kJumpBudget from its first jump since it last took a body from a
  // queue: bodies that short gain most from staying on one thread (handing
  // one to another core costs more than running it), and each worker
  // passes a waiting body over for at most that long plus one body (which
  // may itself be long). Then it queues the next body behind the waiting
  // ones and takes the oldest. Never over a body with a deadline
  // (`has_deadline`): one that waits for a worker is not passed over by a
  // later one, which could make it miss its deadline.
  //
  // A body such a worker does not run next goes to its backlog, not to the
  // pool: the worker runs it once it is free (turn about with the pool's
  // queue, so neither waits on the other for long). Another worker takes
  // it when the owner's bodies are long (it began its last kSampleEvery
  // kShortBody apart or more on average, twice in a row) or once the
  // owner has begun none for kStealAfter (it is inside a long one). So bodies of a
  // microsecond stay on one core, where their run's state is, instead of
  // two cores taking turns at the run's strand (handing such a body over
  // costs more than running it); longer ones run side by side as before,
  // an idle worker looking at least every kStealPollMax.
  template <class F>
  void post_work(F&& f, bool has_deadline = false) {
    Continuation& c = continuation();
    if (c.owner == this && c.home == this) {
      if (!c.next && (queued_work_.load(std::memory_order_acquire) == 0 ||
                      (deadlines_waiting_.load(std::memory_order_acquire) == 0 && may_jump(c)))) {
        c.next = std::forward<F>(f);
        return;
      }
      if (has_deadline) {
        deadlines_waiting_.fetch_add(1, std::memory_order_acq_rel);
        c.backlog->deadlines.fetch_add(1, std::memory_order_acq_rel);
        c.backlog->push(Body([this, b = c.backlog, f = std::forward<F>(f)]() mutable {
          b->deadlines.fetch_sub(1, std::memory_order_acq_rel);
          deadlines_waiting_.fetch_sub(1, std::memory_order_acq_rel);
          f();
        }));
      } else {
        c.backlog->push(Body(std::forward<F>(f)));
      }
      queued_work_.fetch_add(1, std::memory_order_release);  // counted once it is there
      // seq_cst, after the push: paired with a worker going to sleep
      // (worker_loop), which counts itself then looks at the backlogs.
      if (sleepers_.load() > wakes_.load()) wake_one();
      return;
    }
    queued_work_.fetch_add(1, std::memory_order_release);
    pooled_.fetch_add(1, std::memory_order_release);
    if (has_deadline) {
      deadlines_waiting_.fetch_add(1, std::memory_order_acq_rel);
      pooled_deadlines_.fetch_add(1, std::memory_order_acq_rel);
    }
    asio::post(work_, [this, has_deadline, f = std::forward<F>(f)]() mutable {
      pooled_.fetch_sub(1, std::memory_order_acq_rel);
      queued_work_.fetch_sub(1, std::memory_order_acq_rel);
      if (has_deadline) {
        pooled_deadlines_.fetch_sub(1, std::memory_order_acq_rel);
        deadlines_waiting_.fetch_sub(1, std::memory_order_acq_rel);
      }
      run_bodies(std::move(f));
    });
  }
  // Whether this thread may wait for control to catch up: a thread of a
  // plugin's (or any not the engine's), or a worker inside a task body;
  // never control's thread or a worker running control's handlers (a
  // plugin's timer callback runs there), which is what it would wait for.
  static bool may_wait_for_control() {
    const Continuation& c = continuation();
    if (c.control) return false;
    return c.home == nullptr || c.owner != nullptr;
  }
  unsigned jobs() const { return static_cast<unsigned>(workers_.size()); }
  // How many workers are inside bodies now (a snapshot: for messages, never
  // for decisions).
  unsigned busy_workers() const {
    unsigned n = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      n += busy_[i].flag.load(std::memory_order_relaxed) ? 1u : 0u;
    }
    return n;
  }
  // Workers inside a body whose run gave it up (cancelled, stopped, past
  // its deadline) and that has not returned: threads no other body can
  // have until it does. Counted by the runs, unlike busy_workers(): one
  // fewer for a moment at most (a body may return between its run's mark
  // and its count; the count may then dip below zero, read as none).
  unsigned abandoned_bodies() const {
    return static_cast<unsigned>(std::max(0, abandoned_bodies_.load(std::memory_order_acquire)));
  }
  void abandoned_body_held() { abandoned_bodies_.fetch_add(1, std::memory_order_acq_rel); }
  void abandoned_body_returned() { abandoned_bodies_.fetch_sub(1, std::memory_order_acq_rel); }
  // False once shutdown() began: nothing new should be posted.
  bool accepting() const { return accepting_.load(std::memory_order_acquire); }

  // Stops control at once and the pool within `grace`: bodies still queued
  // never start; a worker still inside a body after `grace` is detached. It
  // keeps this object alive until its body returns, then exits; whatever the
  // body posts back is dropped with the stopped queues.
  void shutdown(std::chrono::milliseconds grace);

 private:
  Executors() = default;
  void run_worker(std::size_t index);
  void worker_loop(std::size_t index);

  using Body = core::SmallFunction<void()>;
  // One worker's bodies waiting for it (see post_work): pushed by the
  // worker, taken from the front by it or, once it is stuck in a body, by
  // another. A ring, so that a steady flow of bodies allocates nothing.
  class Backlog {
   public:
    void push(Body b);
    Body pop();  // empty when there is none
    bool empty() const { return size_.load() == 0; }
    std::atomic<int> deadlines{0};  // of its bodies, those with a deadline (post_work)

   private:
    // Held for a few moves of a ring, almost always by the owner alone (a
    // thief comes only for a stuck or slow owner): a flag, not a mutex,
    // which cost a short task a tenth of its instructions in a tree.
    class Lock {
     public:
      void lock() {
        while (held_.exchange(true, std::memory_order_acquire)) {
          while (held_.load(std::memory_order_relaxed)) std::this_thread::yield();
        }
      }
      void unlock() { held_.store(false, std::memory_order_release); }

     private:
      std::atomic<bool> held_{false};
    };
    Lock mutex_;
    std::vector<Body> ring_;  // mutex_
    std::size_t head_ = 0;    // mutex_
    std::atomic<std::size_t> size_{0};
  };
  // Runs a body taken from a backlog (queued_work_ counted it).
  void run_queued(Body body);
  // An idle worker: takes the oldest body of a worker that has begun none
  // for kStealAfter, if there is one. `seen`: per worker, its progress as
  // this thread last saw it changing, and when.
  struct Seen {
    std::uint64_t progress = 0;
    std::chrono::steady_clock::time_point at{};
  };
  // `timing`: set when an owner with a backlog may be stuck (looked at
  // again soon, not after a long nap).
  bool steal(std::size_t self, std::vector<Seen>& seen, bool& timing);
  bool any_backlog() const;
  // A worker asleep in the pool wakes (and looks at the backlogs). At
  // most one wake per sleeper is on its way (wakes_), and awake workers
  // leave wakes in the pool's queue for sleepers (worker_loop).
  void wake_one() {
    wakes_.fetch_add(1, std::memory_order_acq_rel);
    pooled_.fetch_add(1, std::memory_order_release);
    asio::post(work_, [this] {
      pooled_.fetch_sub(1, std::memory_order_acq_rel);
      wakes_.fetch_sub(1, std::memory_order_acq_rel);
    });
  }

  static constexpr std::chrono::microseconds kJumpBudget{100};
  static constexpr std::chrono::microseconds kStealAfter{20};
  static constexpr std::chrono::microseconds kStealPoll{100};      // an idle worker's first nap
  static constexpr std::chrono::microseconds kStealPollMax{3200};  // doubled up to this
  static constexpr std::chrono::nanoseconds kShortBody{10000};
  static constexpr unsigned kSampleEvery = 16;  // bodies between two clock reads
  // One per worker, on a cache line of its own: set by that worker alone
  // (plain stores around its bodies); read by busy_workers() and by
  // thieves (steal).
  struct alignas(64) BusyFlag {
    std::atomic<bool> flag{false};
    std::atomic<std::uint64_t> progress{0};  // bodies it has begun
    std::atomic<bool> long_bodies{false};    // its recent bodies began kShortBody apart or more
    std::chrono::steady_clock::time_point sampled{};  // this worker only
    bool last_sample_long = false;                    // this worker only
  };
  struct Continuation {
    Executors* owner = nullptr;        // set while one of its workers runs bodies
    BusyFlag* busy = nullptr;          // this worker's (a worker thread only)
    Executors* home = nullptr;         // whose worker this thread is, if any
    Backlog* backlog = nullptr;        // this worker's (a worker thread only)
    core::SmallFunction<void()> next;  // the body that worker runs next
    bool asleep = false;               // counted in sleepers_ (a worker in work_.run_one())
    bool control = false;              // this is control's thread
    // When it first kept a body past waiting ones since it last took one
    // from the queue; zero: not since.
    std::chrono::steady_clock::time_point jumping_since{};
  };
  static bool may_jump(Continuation& c) {
    const auto now = std::chrono::steady_clock::now();
    if (c.jumping_since == std::chrono::steady_clock::time_point{}) c.jumping_since = now;
    return now - c.jumping_since < kJumpBudget;
  }
  // A worker begins a body. Only it writes its figures: loads and stores,
  // no read-modify-write, and the clock read once every kSampleEvery.
  void began(Continuation& c) {
    BusyFlag& b = *c.busy;
    const std::uint64_t n = b.progress.load(std::memory_order_relaxed) + 1;
    b.progress.store(n, std::memory_order_relaxed);
    if (n % kSampleEvery == 0) {
      // Long only after two long samples in a row: one preemption (or a
      // wait at a busy strand) must not hand a worker's short bodies out.
      // A window the worker spent idle in part (sampled reset) is no sample.
      const auto now = std::chrono::steady_clock::now();
      const bool long_sample = b.sampled != std::chrono::steady_clock::time_point{} &&
                               now - b.sampled >= kSampleEvery * kShortBody;
      b.long_bodies.store(long_sample && b.last_sample_long, std::memory_order_relaxed);
      b.last_sample_long = long_sample;
      b.sampled = now;
    }
    // Going into a body that may not return while bodies wait in a backlog
    // and a worker sleeps: that sleeper may have missed its wake (another
    // worker took it from the pool's queue), so it is woken again.
    if (sleepers_.load(std::memory_order_relaxed) > wakes_.load(std::memory_order_relaxed) &&
        queued_work_.load(std::memory_order_relaxed) > pooled_.load(std::memory_order_relaxed)) {
      wake_one();
    }
  }
  static Continuation& continuation() {
    static thread_local Continuation c;
    return c;
  }
  // Runs `body`, then whatever body its completion kept for this thread.
  template <class F>
  void run_bodies(F&& body) {
    Continuation& c = continuation();
    Executors* const saved = c.owner;
    const auto saved_since = c.jumping_since;
    c.owner = this;
    c.jumping_since = {};
    // A sleeper handed a body by the pool is no longer asleep: counted so,
    // pushes would wake others for nothing while it runs.
    if (c.asleep) {
      c.asleep = false;
      sleepers_.fetch_sub(1);
    }
    const bool was_busy = c.busy != nullptr && c.busy->flag.load(std::memory_order_relaxed);
    if (c.busy != nullptr) {
      c.busy->flag.store(true, std::memory_order_relaxed);
      began(c);
    }
    body();
    while (c.next && accepting()) {
      core::SmallFunction<void()> next = std::move(c.next);
      c.next = nullptr;
      if (c.busy != nullptr) began(c);
      next();
    }
    c.next = nullptr;
    if (c.busy != nullptr) c.busy->flag.store(was_busy, std::memory_order_relaxed);
    c.owner = saved;
    c.jumping_since = saved_since;
  }

  asio::io_context control_;  // its own thread, and idle workers (see executors.cpp)
  asio::io_context work_;
  asio::executor_work_guard<Executor> control_guard_{control_.get_executor()};
  asio::executor_work_guard<Executor> work_guard_{work_.get_executor()};
  std::thread control_thread_;
  std::vector<std::thread> workers_;
  std::unique_ptr<std::atomic<bool>[]> exited_;
  std::unique_ptr<BusyFlag[]> busy_;
  std::unique_ptr<Backlog[]> backlogs_;
  std::size_t workers_count_ = 0;  // jobs: the size of busy_ and backlogs_
  std::mutex exit_mutex_;
  std::condition_variable exit_cv_;
  std::size_t running_workers_ = 0;
  bool shut_down_ = false;
  std::atomic<bool> accepting_{true};
  std::atomic<std::int64_t> queued_work_{0};  // bodies waiting in work_ or a backlog
  std::atomic<std::int64_t> pooled_{0};       // handlers waiting in work_
  std::atomic<unsigned> sleepers_{0};         // workers asleep in work_ (worker_loop)
  std::atomic<unsigned> wakes_{0};            // wake_one()s not yet run
  std::atomic<int> deadlines_waiting_{0};     // of queued_work_, bodies with a deadline
  std::atomic<int> pooled_deadlines_{0};      // of those, the ones in work_
  std::atomic<int> abandoned_bodies_{0};
};

}  // namespace pyoco
