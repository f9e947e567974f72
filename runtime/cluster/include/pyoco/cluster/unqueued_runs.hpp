// Runs whose submit failed part way. The gateway writes a run's record, then
// queues its job (CLUSTER.md, Submit); when NATS goes away in between, or
// stores a write it never answered, the record may stand PENDING with no
// job: nothing would ever run it, nor end it. The submitter was answered
// 503. Each such run is queued once NATS answers again, if its record is
// still PENDING (a client that submits again with the same
// Idempotency-Key gets that same run); one with no record is dropped.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/run_protocol.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

namespace pyoco::cluster {

class UnqueuedRuns {
 public:
  // Looks again every `every`, on a thread of its own.
  explicit UnqueuedRuns(Connection& nats,
                        std::chrono::milliseconds every = std::chrono::seconds(2));
  ~UnqueuedRuns();
  UnqueuedRuns(const UnqueuedRuns&) = delete;
  UnqueuedRuns& operator=(const UnqueuedRuns&) = delete;

  // A submit of `job` threw NatsError. At most kMaxWaiting are kept (the
  // oldest goes, with a log line): a long outage under heavy submitting
  // must not grow without bound.
  void add(RunJob job);
  // Still to look at.
  std::size_t waiting() const;

  static constexpr std::size_t kMaxWaiting = 10000;
  static constexpr int kMaxTries = 30;  // NATS answering, yet the run will not queue

 private:
  struct Waiting {
    RunJob job;
    int tries = 0;
  };
  void loop();

  Connection& nats_;
  const std::chrono::milliseconds every_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Waiting> jobs_;
  std::size_t trying_ = 0;  // taken from jobs_ while NATS is asked about it
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pyoco::cluster
