// Internal: memory for one run's attempts, used again from one attempt to
// the next.
//
// An attempt is made on the run's strand and freed wherever its last owner
// lets go of it: often another worker (a fan's bodies run on both), where
// the allocator's slow path took a tenth of a fan's time, and its 700 bytes
// come back cold. Here a freed block goes onto a lock-free list any thread
// may push to; the strand, the one taker, takes that whole list at once
// (an exchange, so no ABA) and keeps up to kKept blocks for the next
// attempts, warm. Blocks of any other size go to the global allocator.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <vector>

namespace pyoco {

class AttemptPool {
 public:
  // The run's handle: the pool lives until the run and every block it
  // handed out have let go (an attempt may outlive its run's state).
  struct Release {
    void operator()(AttemptPool* p) const { p->unref(); }
  };
  using Handle = std::unique_ptr<AttemptPool, Release>;
  static Handle create() { return Handle(new AttemptPool); }

  // The run's strand only.
  void* take(std::size_t bytes) {
    if (block_bytes_ == 0) block_bytes_ = bytes;
    if (bytes != block_bytes_) return ::operator new(bytes);
    if (kept_.empty()) refill();
    void* p = nullptr;
    if (kept_.empty()) {
      p = ::operator new(bytes);  // may throw: no reference taken yet
    } else {
      p = kept_.back();
      kept_.pop_back();
    }
    refs_.fetch_add(1, std::memory_order_relaxed);
    return p;
  }

  // Any thread.
  void give(void* p, std::size_t bytes) {
    if (bytes != block_bytes_) {
      ::operator delete(p);
      return;
    }
    auto* b = static_cast<Free*>(p);
    b->next = returned_.load(std::memory_order_relaxed);
    while (!returned_.compare_exchange_weak(b->next, b, std::memory_order_release,
                                            std::memory_order_relaxed)) {
    }
    unref();
  }

  // What std::allocate_shared needs to put an attempt (and its count) in a
  // block of this pool.
  template <class T>
  struct Allocator {
    using value_type = T;
    AttemptPool* pool;
    explicit Allocator(AttemptPool* p) : pool(p) {}
    template <class U>
    Allocator(const Allocator<U>& other)
        : pool(other.pool) {}  // NOLINT(google-explicit-constructor)
    T* allocate(std::size_t n) { return static_cast<T*>(pool->take(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) { pool->give(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const Allocator<U>& other) const {
      return pool == other.pool;
    }
  };

 private:
  // A run keeps this many freed blocks at most: enough for the attempts
  // that are alive at once without deadlines (a few per worker); a burst
  // of attempts with deadlines gives the rest back.
  static constexpr std::size_t kKept = 64;
  struct Free {
    Free* next;
  };

  AttemptPool() { kept_.reserve(kKept); }
  ~AttemptPool() {
    for (void* p : kept_) ::operator delete(p);
    for (Free* b = returned_.load(std::memory_order_acquire); b != nullptr;) {
      Free* next = b->next;
      ::operator delete(b);
      b = next;
    }
  }
  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  void refill() {
    for (Free* b = returned_.exchange(nullptr, std::memory_order_acquire); b != nullptr;) {
      Free* next = b->next;
      if (kept_.size() < kKept) {
        kept_.push_back(b);
      } else {
        ::operator delete(b);
      }
      b = next;
    }
  }

  std::atomic<Free*> returned_{nullptr};  // any thread pushes; the strand takes all
  std::vector<void*> kept_;               // the strand's
  std::size_t block_bytes_ = 0;           // the first block's size (the strand's; fixed after)
  std::atomic<std::size_t> refs_{1};      // the run's handle, and each block handed out
};

}  // namespace pyoco
