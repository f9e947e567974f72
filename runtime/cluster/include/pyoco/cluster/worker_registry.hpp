// The worker registry: each worker puts its record in the `pyoco_workers`
// bucket on every heartbeat; a gateway keeps every record in memory from a
// watch on that bucket (and the hidden flags from `pyoco_meta`), so a list
// of workers never scans NATS.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pyoco::cluster {

// Puts a worker's record (worker_id, instance_id, tags, slots, running[],
// state RUNNING|IDLE|DRAINING|STOPPED_GRACEFUL, last_seen_at, ...).
void put_worker_record(Connection& nats, const boost::json::object& record);

// A starting worker's first record: put unless its worker_id is a live
// worker's (another instance_id that has not stopped, heard from within
// `silent_after`, and not a process of this host that is gone: a worker
// restarted after kill -9 takes its name back at once). Compare-and-set, so
// two workers starting with one name at once do not both get it. Throws
// WorkerIdInUse naming the other worker, NatsError when NATS fails.
class WorkerIdInUse : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
void claim_worker_id(Connection& nats, const boost::json::object& record,
                     std::chrono::milliseconds silent_after);

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
