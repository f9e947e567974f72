// The reaper: when NATS gives up on a job (delivered MaxDeliver times and
// never acked: its workers keep dying, or it never finishes), it publishes
// an advisory; every gateway's reaper shares one durable consumer of them.
// For each, the run is made FAILED (`max_deliver_exceeded`) unless it
// already ended, a dead letter and its RunEnd are written, and the job is
// deleted from the queue: no run is stuck for ever.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>

namespace pyoco::cluster {

struct RunJob;
struct RunRecord;

class Reaper {
 public:
  explicit Reaper(Connection& nats);  // its own thread, from start() to stop()
  ~Reaper();
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  void start();
  void stop();
  std::uint64_t reaped() const { return reaped_.load(); }

  // Jobs a NATS crash brought back after they were acked: a kill -9 of a
  // server can lose a work queue's deletes while the consumer keeps its ack
  // floor, so such a job is never delivered again and would sit in
  // PYOCO_WORK for ever. A finished run's job is deleted; the job of a run
  // that has not finished (its end was lost in the same crash) is queued
  // again. The number of jobs handled. Runs at start and every
  // `sweep_every` on the reaper's thread. Throws NatsError.
  std::size_t sweep();
  std::chrono::milliseconds sweep_every{std::chrono::seconds(60)};

  // Jobs NATS delivered, never saw acked and never delivered again (a
  // nats-server 2.9 consumer can lose its pending redeliveries across a
  // leader change): a job between a consumer's ack floor and its last
  // delivery whose run record no lease holds and that has not changed
  // between two looks an AckWait and a margin apart is queued again (and
  // the stranded copy deleted): a worker claims it as the next attempt. A
  // run that ended only loses its job (and gets its RunEnd if that is
  // missing); one whose attempts reached MaxDeliver fails as the advisory
  // would. The number of jobs handled. Runs every half AckWait on the
  // reaper's thread. Throws NatsError.
  std::size_t requeue_stranded();

 private:
  void loop();
  void reap(const std::string& advisory);
  // FAILED (max_deliver_exceeded) unless it ended, its RunEnd, a dead letter.
  void fail_stuck(const RunJob& job, std::int64_t deliveries);
  bool has_run_end(const std::string& run_id);
  void settle(const RunJob& job, const RunRecord& r, const std::string& data,
              std::int64_t max_deliver, const std::string& why);
  struct Seen {
    std::uint64_t revision = 0;                   // of the run's record
    std::chrono::steady_clock::time_point since;  // first seen at it
  };
  std::map<std::uint64_t, Seen> seen_;  // by the job's stream sequence (the reaper's thread)
  std::chrono::milliseconds stranded_every_{std::chrono::seconds(1)};
  Connection& nats_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> reaped_{0};
  std::thread thread_;
};

}  // namespace pyoco::cluster
