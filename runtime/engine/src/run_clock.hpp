// Internal: a run's clock, read on its strand only.
//
// A task's start and end each need a monotonic time (its duration) and a
// wall time (its record, its events). Reading both clocks costs two reads,
// ~25 ns each on a KVM guest's vDSO, four per task on the run's serial path.
// Here one monotonic read serves both: the wall time is the monotonic one
// laid on the wall clock as read at an anchor, and the anchor is re-read
// once a second. So a task's wall times and its duration agree, a stepped
// system clock shows up within a second, and slewing (NTP: at most 500 ppm)
// moves a shown time by half a millisecond at most.
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
      anchor_steady_ = steady;
      anchor_wall_ = std::chrono::system_clock::now();
      return {steady, anchor_wall_};
    }
    return {steady, anchor_wall_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                       steady - anchor_steady_)};
  }
  std::chrono::system_clock::time_point wall() { return now().wall; }

 private:
  static constexpr std::chrono::seconds kReanchor{1};
  std::chrono::steady_clock::time_point anchor_steady_{};
  std::chrono::system_clock::time_point anchor_wall_{};
};

}  // namespace pyoco
