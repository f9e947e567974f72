#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/cluster/unqueued_runs.hpp>

#include <optional>

namespace pyoco::cluster {

UnqueuedRuns::UnqueuedRuns(Connection& nats, std::chrono::milliseconds every)
    : nats_(nats), every_(every), thread_([this] { loop(); }) {}

UnqueuedRuns::~UnqueuedRuns() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (!jobs_.empty()) {
    log(LogLevel::warning, "submit: runs left unqueued when the gateway stopped",
        {{"runs", jobs_.size()}, {"first", jobs_.front().run_id}});
  }
}

void UnqueuedRuns::add(RunJob job) {
  std::lock_guard lock(mutex_);
  if (jobs_.size() == kMaxWaiting) {
    log(LogLevel::warning, "submit: too many runs wait to be queued; the oldest is given up",
        {{"run_id", jobs_.front().run_id}});
    jobs_.pop_front();
  }
  jobs_.push_back(std::move(job));
}

std::size_t UnqueuedRuns::waiting() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

void UnqueuedRuns::loop() {
  std::optional<RunRecords> runs;  // opened once NATS answers
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, every_, [this] { return stopping_; });
    // One at a time, the lock let go around NATS: the first that NATS
    // cannot take ends the pass, and the rest wait for the next.
    while (!stopping_ && !jobs_.empty()) {
      RunJob job = jobs_.front();
      lock.unlock();
      bool queued = false, answered = true;
      try {
        if (!runs) runs.emplace(nats_);
        queued = queue_if_pending(nats_, *runs, job);
      } catch (const NatsError&) {
        answered = false;
      }
      lock.lock();
      if (!answered) break;
      // Still first, unless add() gave it up meanwhile to make room.
      if (!jobs_.empty() && jobs_.front().run_id == job.run_id) jobs_.pop_front();
      if (queued) {
        log(LogLevel::info, "submit: a run whose submit NATS cut short is queued now",
            {{"run_id", job.run_id}});
      }
    }
  }
}

}  // namespace pyoco::cluster
