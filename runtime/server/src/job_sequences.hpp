// Internal: the PYOCO_WORK sequence of the jobs this gateway queued, so that
// a run cancelled while PENDING has its job removed from the queue at once
// (cluster::request_cancel). Only the newest kCapacity are kept: an older
// run's cancel leaves its job for a worker to pull and drop, as before.
// Another gateway's runs are not known here (the same fallback).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

namespace pyoco::server {

class JobSequences {
 public:
  static constexpr std::size_t kCapacity = 20'000;  // about 4 MB at most

  void remember(const std::string& run_id, std::uint64_t seq) {
    if (seq == 0) return;
    std::lock_guard lock(mutex_);
    if (!seqs_.insert_or_assign(run_id, seq).second) return;  // a repeat: already in order_
    order_.push_back(run_id);
    while (order_.size() > kCapacity) {
      seqs_.erase(order_.front());
      order_.pop_front();
    }
  }

  // The run's job sequence (0: not known).
  std::uint64_t find(const std::string& run_id) const {
    std::lock_guard lock(mutex_);
    const auto it = seqs_.find(run_id);
    return it == seqs_.end() ? 0 : it->second;
  }

  // Its place in order_ is dropped when it comes round.
  void forget(const std::string& run_id) {
    std::lock_guard lock(mutex_);
    seqs_.erase(run_id);
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::uint64_t> seqs_;
  std::deque<std::string> order_;
};

}  // namespace pyoco::server
