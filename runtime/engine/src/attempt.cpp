// One try of one task node: what a call reaches through its context (ABI
// 1.1 included: on-cancel callbacks, host timers, heartbeats).
#include <boost/asio/post.hpp>

#include <algorithm>
#include <limits>
#include <utility>

#include "run_state.hpp"

namespace pyoco {

void Attempt::log(const plugins::CallInfo& call, plugins::LogLevel level,
                  std::string_view message) {
  run->emit_log(call, level, message);
}

ArtifactRecord Attempt::save_artifact(const plugins::CallInfo&, std::string_view name,
                                      std::string_view bytes, std::string_view media_type) {
  ArtifactRecord r = run->artifacts().put(run->id(), name, bytes, media_type);
  // Saved again under the same name: the record says what the store holds now.
  auto same = std::find_if(artifacts.begin(), artifacts.end(),
                           [&](const ArtifactRecord& a) { return a.name == r.name; });
  if (same != artifacts.end()) {
    *same = r;
  } else {
    artifacts.push_back(r);
  }
  return r;
}

std::optional<std::string> Attempt::load_artifact(std::string_view name) {
  return run->artifacts().get(run->id(), name);
}

core::Value Attempt::scratch_get(std::string_view key) { return run->scratch_get(key); }
void Attempt::scratch_set(std::string_view key, core::Value value) {
  run->scratch_set(key, std::move(value));
}
pyoco_status Attempt::scratch_update(std::string_view key, const core::Value& expected,
                                     const core::Value& desired, core::Value& current) {
  return run->scratch_update(key, expected, desired, current);
}

void Attempt::heartbeat(const plugins::CallInfo& call, double progress, std::string_view message) {
  run->emit_heartbeat(*this, call, progress, message);
}

Attempt::Beats& Attempt::beats() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!beats_) beats_ = std::make_unique<Beats>();
  return *beats_;
}

Attempt::Beats* Attempt::beats_if_any() {
  std::lock_guard<std::mutex> lock(mutex_);
  return beats_.get();
}

bool Attempt::on_cancel(pyoco_callback_fn fn, void* user) {
  std::unique_lock<std::mutex> lock(mutex_);
  // Said before the phase is read: a settle() that changes the phase after
  // this read then sees the flag and takes the callbacks (both seq_cst).
  has_callbacks_.store(true);
  const Phase phase = phase_.load();
  if (phase == Phase::Live) {
    callbacks_.emplace_back(fn, user);
    return true;
  }
  const pyoco_status why = phase == Phase::Cancelled ? PYOCO_ERR_CANCELLED : PYOCO_OK;
  lock.unlock();
  fn(user, why);  // already decided: at once, on the caller's thread
  return true;
}

// Timers live on the run's strand: a plugin thread only posts there.
bool Attempt::start_timer(std::uint64_t delay_ns, pyoco_callback_fn fn, void* user) {
  const bool posted = run->on_strand([self = shared_from_this(), delay_ns, fn, user] {
    if (!self->live()) {
      self->callback(fn, user, PYOCO_ERR_CANCELLED, true);
      return;
    }
    auto timer = std::make_unique<asio::steady_timer>(self->run->control());
    timer->expires_after(std::chrono::nanoseconds(
        std::min<std::uint64_t>(delay_ns, std::numeric_limits<std::int64_t>::max())));
    // The callback may end the call and go on using its context (a log
    // line, values) until it returns: the run must outlive it too, though
    // the result it just handed on may let the run finish meanwhile.
    timer->async_wait(
        [self, run = self->run->shared_from_this(), fn, user](boost::system::error_code ec) {
          self->callback(fn, user, !ec && self->live() ? PYOCO_OK : PYOCO_ERR_CANCELLED, true);
        });
    self->timers_.push_back(std::move(timer));
  });
  if (!posted) fn(user, PYOCO_ERR_CANCELLED);  // the engine is gone: the call is over
  return true;
}

void Attempt::end(bool was_cancelled) {
  // seq_cst: paired with the worker's `body` store then cancelled load
  // (post_body), so a timeout that finds the body not taken knows it never
  // runs.
  if (was_cancelled) cancelled.store(true);
  settle(was_cancelled ? Phase::Cancelled : Phase::Ended);
  for (auto& t : timers_) t->cancel();  // each handler says PYOCO_ERR_CANCELLED
}

// Any thread: the call completed. Its callbacks hear PYOCO_OK now, before a
// deadline or cancel handled later on the strand could tell them otherwise.
void Attempt::call_finished() { settle(Phase::Ended); }

void Attempt::settle(Phase phase) {
  Phase live = Phase::Live;
  if (!phase_.compare_exchange_strong(live, phase)) return;
  if (!has_callbacks_.load()) return;
  std::vector<std::pair<pyoco_callback_fn, void*>> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(callbacks_);
  }
  const pyoco_status why = phase == Phase::Cancelled ? PYOCO_ERR_CANCELLED : PYOCO_OK;
  for (auto [fn, user] : waiting) callback(fn, user, why);
}

void Attempt::starting() {
  std::lock_guard<std::mutex> lock(mutex_);
  in_start_ = true;
  start_thread_ = std::this_thread::get_id();
}

bool Attempt::hold_end_if_starting() {
  std::lock_guard<std::mutex> lock(mutex_);
  holds_end_ = in_start_;
  return holds_end_;
}

void Attempt::started() {
  std::vector<Deferred> due;
  bool held = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_start_ = false;
    due.swap(deferred_);
    held = std::exchange(holds_end_, false);
  }
  if (due.empty() && !held) return;
  // The lines start() and the callbacks log reach the strand before the
  // release: they are recorded before the run's end.
  auto call_all = [self = shared_from_this(), due = std::move(due), held] {
    for (const Deferred& d : due) {
      // Fired while the call was live, it may have ended since (start()
      // completed it): a timer then hears CANCELLED, never a stale OK.
      const bool stale = d.timer && d.why == PYOCO_OK && !self->live();
      d.fn(d.user, stale ? PYOCO_ERR_CANCELLED : d.why);
    }
    // Not after the engine shut down (run here, off the strand): the run
    // is over by then.
    if (held && self->run->serial().running_in_this_thread()) self->run->release_end();
  };
  // On the run's strand (the control thread, or a worker moving the run on);
  // on_strand copies call_all only when it takes it, else it runs here.
  if (!run->on_strand(call_all)) call_all();
}

void Attempt::callback(pyoco_callback_fn fn, void* user, pyoco_status why, bool timer) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Inside start() itself (it completed the call, or registered a
    // callback once the call's fate was known): at once, as always.
    if (in_start_ && start_thread_ != std::this_thread::get_id()) {
      deferred_.push_back({fn, user, why, timer});
      return;
    }
  }
  fn(user, why);
}

}  // namespace pyoco
