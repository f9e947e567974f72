// Internal: a run's clock, read on its strand only.
//
// A task's start and end each need a monotonic time (its duration) and a
// wall time (its record, its events). Reading both clocks costs two reads,
// ~25 ns each on a KVM guest's vDSO, four per task on the run's serial path.
// Here one monotonic read serves both: the wall time is the monotonic one
// laid on the wall clock as read at an anchor, and the anchor is re-read
// once a second. So a task's wall times and its duration agree and a
// stepped system clock shows up within a second (slewing moves both clocks
// alike on Linux). The anchor pairs a wall reading with the monotonic
// instants around it, read again when a preemption came between them.
#pragma once

#include <chrono>

namespace pyoco {

class RunClock {
 public:
  struct Reading {
    std::chrono::steady_clock::time_point steady;
    std::chrono::system_clock::time_point wall;
  };

  Reading now() {
    const auto steady = std::chrono::steady_clock::now();
    if (anchor_steady_ == std::chrono::steady_clock::time_point{} ||
        steady - anchor_steady_ >= kReanchor) {
      reanchor();
    }
    return {steady, anchor_wall_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                       steady - anchor_steady_)};
  }
  std::chrono::system_clock::time_point wall() { return now().wall; }

 private:
  // The wall clock read between two monotonic reads, paired with their
  // middle; when the two lie far apart (the thread was preempted), again.
  void reanchor() {
    for (int tries = 0;; ++tries) {
      const auto before = std::chrono::steady_clock::now();
      const auto wall = std::chrono::system_clock::now();
      const auto after = std::chrono::steady_clock::now();
      if (after - before <= kPairedWithin || tries == 3) {
        anchor_steady_ = before + (after - before) / 2;
        anchor_wall_ = wall;
        return;
      }
    }
  }

  static constexpr std::chrono::seconds kReanchor{1};
  static constexpr std::chrono::microseconds kPairedWithin{20};
  std::chrono::steady_clock::time_point anchor_steady_{};
  std::chrono::system_clock::time_point anchor_wall_{};
};

}  // namespace pyoco
