#include "executors.hpp"

namespace pyoco {

std::shared_ptr<Executors> Executors::start(unsigned jobs) {
  std::shared_ptr<Executors> e(new Executors());
  e->exited_ = std::make_unique<std::atomic<bool>[]>(jobs);
  e->running_workers_ = jobs;
  e->control_thread_ = std::thread([raw = e.get()] { raw->control_.run(); });
  e->workers_.reserve(jobs);
  for (std::size_t i = 0; i < jobs; ++i) {
    // Each worker owns a reference: one abandoned inside a body outlives the
    // engine, and what it touches afterwards must still be there.
    e->workers_.emplace_back([self = e, i] { self->run_worker(i); });
  }
  return e;
}

void Executors::run_worker(std::size_t index) {
  work_.run();
  exited_[index].store(true, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(exit_mutex_);
    --running_workers_;
  }
  exit_cv_.notify_all();
}

void Executors::shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  control_guard_.reset();
  control_.stop();
  if (control_thread_.joinable()) control_thread_.join();

  work_guard_.reset();
  work_.stop();
  {
    std::unique_lock<std::mutex> lock(exit_mutex_);
    exit_cv_.wait_for(lock, grace, [this] { return running_workers_ == 0; });
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (exited_[i].load(std::memory_order_acquire)) {
      workers_[i].join();
    } else {
      workers_[i].detach();  // stuck in a body; see the header
    }
  }
}

Executors::~Executors() {
  // Reached only after shutdown(), or from the last worker: nothing runs here.
  for (auto& w : workers_) {
    if (w.joinable()) w.detach();
  }
  if (control_thread_.joinable()) control_thread_.detach();
}

}  // namespace pyoco
