// The worker registry: each worker puts its record in the `pyoco_workers`
// bucket on every heartbeat; a gateway keeps every record in memory from a
// watch on that bucket (and the hidden flags from `pyoco_meta`), so a list
// of workers never scans NATS.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <boost/json/object.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace pyoco::cluster {

// How long the `pyoco_workers` bucket keeps a record its worker no longer
// writes (the bucket's max age): three disconnect timeouts, so that a silent
// worker is shown DISCONNECTED before its record goes.
inline constexpr std::chrono::seconds kWorkerRecordTtl{120};

// The states a worker is listed in. STALLED: every thread of its engine is
// inside a task body whose run gave it up (cancelled, past its deadline),
// so it takes no run until one returns. DISCONNECTED: silent past the
// gateway's timeout (the gateway's word, never written by a worker).
inline constexpr std::array<std::string_view, 6> kWorkerStates{
    "RUNNING", "IDLE", "STALLED", "DRAINING", "STOPPED_GRACEFUL", "DISCONNECTED"};

// Puts a worker's record (worker_id, instance_id, tags, slots, running[],
// state, one of kWorkerStates but DISCONNECTED, last_seen_at, ...) over
// whatever is there: for tools and tests. A worker writes its own through
// claim_worker_id, then write_worker_beat, never this.
void put_worker_record(Connection& nats, const boost::json::object& record);

// A starting worker's first record: put unless its worker_id is a live
// worker's. Free at once: no record, this instance's, a stopped worker's, a
// process of this host (and pid namespace) that is gone (a worker restarted
// after kill -9 takes its name back at once), or one silent by its own
// clock for a minute past its window. Otherwise the record is watched on
// this host's steady clock for that window (three of its beats, at least
// `silent_after`): a beat means in use; none, and it is taken. No two
// hosts' clocks are compared closer than a minute. Compare-and-set, so two
// workers starting with one name at once do not both get it. Returns the
// revision written (what its first beat writes over). Throws WorkerIdInUse
// naming the other worker, NatsError when NATS fails. `stop_requested` is
// asked a few times a second while it watches (a watch may last 30 min: a
// Ctrl+C must not wait for it); true ends it with WorkerIdWaitStopped,
// nothing written.
class WorkerIdInUse : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class WorkerIdWaitStopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
std::uint64_t claim_worker_id(Connection& nats, const boost::json::object& record,
                              std::chrono::milliseconds silent_after,
                              const std::function<bool()>& stop_requested = {});

// The record of another instance, found where a worker's beat was to go:
// the id was claimed by another worker while this one was silent (stopped,
// frozen, cut off), and is that worker's now.
class WorkerIdTaken : public std::runtime_error {
 public:
  WorkerIdTaken(const std::string& what, boost::json::object holder)
      : std::runtime_error(what), holder_(std::move(holder)) {}
  const boost::json::object& holder() const { return holder_; }

 private:
  boost::json::object holder_;
};

// A worker's beat after its claim: a compare-and-set over `revision`, the
// one this instance last wrote, so that it never overwrites another
// instance's record. Returns the revision written. A record changed since
// by this same instance (a write whose answer was lost) is written over; a
// record gone (the bucket's TTL, after a long silence) is created again.
// Throws WorkerIdTaken when the record is another instance's, NatsError
// when NATS fails.
std::uint64_t write_worker_beat(Connection& nats, const boost::json::object& record,
                                std::uint64_t revision);

class WorkerDirectory {
 public:
  // A worker not heard from for `disconnect_after` shows DISCONNECTED (the
  // bucket keeps records 120 s: longer, so that it is shown).
  WorkerDirectory(Connection& nats, std::chrono::milliseconds disconnect_after);
  ~WorkerDirectory();  // stops the watches
  WorkerDirectory(const WorkerDirectory&) = delete;
  WorkerDirectory& operator=(const WorkerDirectory&) = delete;

  // Newest first; `state` empty: any. `hidden` as `tenant` sees it: its
  // own flag when it set one, else the flag for everyone ("": that one).
  std::vector<boost::json::object> list(const std::string& state, bool include_hidden,
                                        std::size_t limit, const std::string& tenant = {}) const;
  std::optional<boost::json::object> find(const std::string& worker_id,
                                          const std::string& tenant = {}) const;
  // Records the flag in pyoco_meta (every gateway hears it): for `tenant`'s
  // list only, or ("") for everyone's. Workers are shared, so one tenant
  // never hides them from another. False: no such worker.
  bool set_hidden(const std::string& worker_id, bool hidden, const std::string& tenant = {});

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pyoco::cluster
