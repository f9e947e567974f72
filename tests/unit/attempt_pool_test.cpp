// AttemptPool (runtime/engine/src/attempt_pool.hpp): a run's attempts, made
// on its strand and freed on any thread, reuse their memory, never hand one
// block out twice, and the pool outlives the run while a block is out.
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "attempt_pool.hpp"

namespace {

using pyoco::AttemptPool;

struct Thing {
  char payload[600] = {};  // an attempt's size, roughly
};

std::shared_ptr<Thing> make(AttemptPool& pool) {
  return std::allocate_shared<Thing>(AttemptPool::Allocator<Thing>(&pool));
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_freed_block_is_the_next_one_handed_out) {
  auto pool = AttemptPool::create();
  auto a = make(*pool);
  const void* first = a.get();
  a.reset();
  auto b = make(*pool);
  BOOST_TEST(b.get() == first);
}

BOOST_AUTO_TEST_CASE(blocks_freed_on_other_threads_are_never_handed_out_twice) {
  auto pool = AttemptPool::create();
  constexpr int kRounds = 20000;
  // The strand (this thread) makes; two "workers" free what it hands them.
  std::vector<std::shared_ptr<Thing>> slots(64);
  std::atomic<bool> done{false};
  std::vector<std::atomic<Thing*>> handed(64);
  for (auto& h : handed) h = nullptr;
  auto worker = [&](int parity) {
    while (!done.load()) {
      for (int i = parity; i < 64; i += 2) {
        if (handed[i].load() == nullptr) continue;
        // Taken before the slot is given back (each slot has one worker).
        std::shared_ptr<Thing> owned = std::move(slots[i]);
        handed[i].store(nullptr);
        owned.reset();  // freed here, on this thread
      }
    }
  };
  std::thread w0(worker, 0), w1(worker, 1);
  int made = 0;
  std::set<const void*> distinct;
  bool clash = false;
  while (made < kRounds && !clash) {
    for (int i = 0; i < 64 && made < kRounds; ++i) {
      if (handed[i].load() != nullptr) continue;
      auto t = make(*pool);
      // Never a block some slot still holds.
      for (const auto& h : handed) clash = clash || h.load() == t.get();
      distinct.insert(t.get());
      slots[i] = std::move(t);
      handed[i].store(slots[i].get());
      ++made;
    }
  }
  done.store(true);
  w0.join();
  w1.join();
  BOOST_TEST(!clash);
  // Reused: far fewer blocks than attempts (at most those alive at once,
  // plus those on their way back).
  BOOST_TEST(distinct.size() < 1000u);
}

BOOST_AUTO_TEST_CASE(a_block_may_outlive_the_run) {
  auto pool = AttemptPool::create();
  auto a = make(*pool);
  auto b = make(*pool);
  b.reset();
  pool.reset();         // the run is gone; `a` still holds its block
  a->payload[0] = 'x';  // still its memory (ASan: no use after free)
  BOOST_TEST(a->payload[0] == 'x');
  a.reset();  // the last block back: the pool frees itself (ASan: no leak)
}
