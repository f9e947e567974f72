// Run events on the PYOCO_EVENTS stream: `pyoco.ev.<run_id>.<run|node|log>`,
// each event the owned JSON of trace::to_json plus its "run_attempt" (the
// delivery of the run that made it; also its "attempt" when the event is
// not a node's, whose "attempt" is the node's own try). Message ids
// make every publish idempotent: "<run_id>.<attempt>.<seq>" for the events of
// an attempt, "<run_id>.end" for the one RunEnd a run has, whoever ends it
// (its worker, a canceller, the reaper), however often it is retried.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/trace/event.hpp>

#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace pyoco::cluster {

// "run", "node" or "log": the last token of an event's subject.
const char* event_subject_kind(trace::EventKind kind);

// Whether this process may still act for a run (docs/cluster.md, the run
// protocol): not once it is `lost` (another owner has it), nor while the
// lease this owner last wrote (`lease_until`, epoch seconds) has run out by
// this host's clock, as it has for a process resumed after a stop: its
// timers fire late, so the lease is read before each event and each task,
// not left to the renewal's timer. Past its lease another worker may have
// claimed the run: nothing is published or started until a renewal (a
// compare-and-set as its owner) moves the lease on, or the run is lost.
struct RunFence {
  std::atomic<bool> lost{false};
  std::atomic<double> lease_until{0};
  bool holds() const;
};

// A listener for a trace::EventQueue (never the engine's strand: it does
// network I/O). Publishes asynchronously, so a slow NATS slows only this
// queue's thread; a publish NATS did not ack is sent again (its message id
// keeps it from being stored twice). RunEnd events are not published here:
// the run's end is published once its record is terminal (publish_run_end).
class EventPublisher : public trace::EventListener {
 public:
  explicit EventPublisher(Connection& nats);
  ~EventPublisher() override;
  EventPublisher(const EventPublisher&) = delete;
  EventPublisher& operator=(const EventPublisher&) = delete;

  // The attempt of the run's events from now on (before its first event).
  // With a fence, the run's events wait while it does not hold (at most
  // kMaxHeldEvents; past them the run is lost), are published once its
  // lease is renewed (release), and dropped once it is lost: a worker that
  // lost a run publishes nothing more of it.
  void set_attempt(const std::string& run_id, std::int64_t attempt,
                   std::shared_ptr<RunFence> fence = nullptr);
  void forget(const std::string& run_id);
  // The run's lease was renewed: the events it held go out, in order.
  void release(const std::string& run_id);
  static constexpr std::size_t kMaxHeldEvents = 100000;
  // The run's events from now on are not published: it was given up here
  // (another worker runs it now), and its cancellation is no news.
  void mute(const std::string& run_id);

  void on_event(const trace::RunEvent& event) override;

  // Waits until NATS acked every event of the run published so far (an
  // unanswered one is sent again after 5 s); false at the deadline.
  bool flush(const std::string& run_id, std::chrono::milliseconds timeout);

  struct Impl;

 private:
  // `part`: the suffix of a split event's message id; `cut_already`: a log
  // line this cut once (never again: what is left fits).
  void publish_fitting(const trace::RunEvent& e, std::int64_t attempt, const std::string& part,
                       bool cut_already);
  std::unique_ptr<Impl> impl_;
};

// An event read back from PYOCO_EVENTS.
struct StoredEvent {
  std::uint64_t seq = 0;                       // its stream sequence
  std::uint64_t later = 0;                     // how many on the subject were stored after it
  std::size_t size = 0;                        // its bytes as stored
  const boost::json::object* event = nullptr;  // valid during the call
};

// Reads what PYOCO_EVENTS holds on `subject` after sequence `after`, in
// stream order, up to what was there when asked (no waiting on a timeout):
// `each` for every event that is a JSON object, until it answers false.
// False when NATS could not be asked or stopped answering before the end.
bool read_events(Connection& nats, const std::string& subject, std::uint64_t after,
                 const std::function<bool(const StoredEvent&)>& each);

// One event `o` on `pyoco.ev.<run_id>.<subject_kind>` with message id `id`
// (stored once however often it is sent). Throws NatsError.
void publish_event_once(Connection& nats, const std::string& run_id, const char* subject_kind,
                        const std::string& id, const boost::json::object& o);

struct RunJob;

// A run was accepted: {"kind":"run_submitted","run_id","flow","tag","ts"}
// with message id "<run_id>.submitted", so that every gateway's list knows
// it before a worker starts it. Throws NatsError.
void publish_run_submitted(Connection& nats, const RunJob& job);

// The run's one RunEnd, from its terminal record: {"kind":"run_end",
// "run_id","flow","status","message","attempt","started_at","ended_at","ts"}
// (started_at null for a run cancelled before it started) with message id
// "<run_id>.end". Throws NatsError when NATS does not take it.
void publish_run_end(Connection& nats, const RunRecord& record);

// The run was asked to stop, from its CANCELLING record:
// {"kind":"run_cancelling","run_id","flow","status","by","ts"} with message
// id "<run_id>.cancelling". Published by whoever wrote the request, so a
// watcher and the gateways' lists see it at once, even while the run's
// worker is dead; the worker's own (EventPublisher) has the same message
// id, so JetStream keeps one. Throws NatsError.
void publish_run_cancelling(Connection& nats, const RunRecord& record);

}  // namespace pyoco::cluster
