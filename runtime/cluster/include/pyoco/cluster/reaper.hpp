// The reaper: when NATS gives up on a job (delivered MaxDeliver times and
// never acked: its workers keep dying, or it never finishes), it publishes
// an advisory; every gateway's reaper shares one durable consumer of them.
// For each, the run is made FAILED (`max_deliver_exceeded`) unless it
// already ended, a dead letter and its RunEnd are written, and the job is
// deleted from the queue: no run is stuck for ever.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <atomic>
#include <memory>
#include <thread>

namespace pyoco::cluster {

class Reaper {
 public:
  explicit Reaper(Connection& nats);  // its own thread, from start() to stop()
  ~Reaper();
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  void start();
  void stop();
  std::uint64_t reaped() const { return reaped_.load(); }

 private:
  void loop();
  void reap(const std::string& advisory);
  Connection& nats_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> reaped_{0};
  std::thread thread_;
};

}  // namespace pyoco::cluster
