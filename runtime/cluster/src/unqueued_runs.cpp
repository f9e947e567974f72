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
        {{"runs", jobs_.size()}, {"first", jobs_.front().job.run_id}});
  }
}

void UnqueuedRuns::add(RunJob job) {
  std::lock_guard lock(mutex_);
  if (jobs_.size() == kMaxWaiting) {
    log(LogLevel::warning, "submit: too many runs wait to be queued; the oldest is given up",
        {{"run_id", jobs_.front().job.run_id}});
    jobs_.pop_front();
  }
  jobs_.push_back({std::move(job), 0});
}

std::size_t UnqueuedRuns::waiting() const {
  std::lock_guard lock(mutex_);
  return jobs_.size() + trying_;
}

void UnqueuedRuns::loop() {
  std::optional<RunRecords> runs;  // opened once NATS answers
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, every_, [this] { return stopping_; });
    // One at a time, the lock let go around NATS. While NATS is away the
    // pass ends at the first, and the rest wait for the next. A run NATS
    // answers about yet will not queue (its record unreadable, its job
    // refused) goes to the back, and after kMaxTries is given up with a
    // log line: it never holds the others up.
    for (std::size_t n = jobs_.size(); n > 0 && !stopping_ && !jobs_.empty(); --n) {
      Waiting w = std::move(jobs_.front());
      jobs_.pop_front();
      ++trying_;
      lock.unlock();
      bool queued = false, done = true;
      std::string error;
      try {
        if (!runs) runs.emplace(nats_);
        queued = queue_if_pending(nats_, *runs, w.job);
      } catch (const std::exception& e) {
        done = false;
        error = e.what();
      }
      const bool away = !done && !nats_.connected();
      lock.lock();
      --trying_;
      if (queued) {
        log(LogLevel::info, "submit: a run whose submit NATS cut short is queued now",
            {{"run_id", w.job.run_id}});
      }
      if (done) continue;
      if (away) {
        jobs_.push_front(std::move(w));
        break;
      }
      if (++w.tries < kMaxTries) {
        jobs_.push_back(std::move(w));
      } else {
        log(LogLevel::error, "submit: a run whose submit NATS cut short could not be queued",
            {{"run_id", w.job.run_id}, {"error", error}});
      }
    }
  }
}

}  // namespace pyoco::cluster
