// Run snapshots in the `pyoco_runs` bucket, written only by compare-and-
// swap: a write names the revision it read, and loses (nullopt) when anyone
// wrote since. The JSON is pyoco-server's snapshot (run_id, flow_name, tag,
// status, params, tasks, start_time, end_time, error, ...) plus `attempt`
// and `owner` {worker_id, instance, lease_until}: the fencing that keeps a
// stale worker from overwriting a newer owner.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pyoco::cluster {

struct RunRecord {
  boost::json::object snapshot;
  std::uint64_t revision = 0;  // the bucket's sequence of this write

  std::string status() const;  // PENDING, RUNNING, CANCELLING, COMPLETED, FAILED, CANCELLED
  bool terminal() const;
  // Until when (epoch seconds) its owner holds it: owner.lease_until; 0
  // for none.
  double lease_until() const;
};

bool is_terminal_status(std::string_view status);

// A run ended by someone other than the worker running it (its owner died:
// a cancel, the reaper, a worker that cannot run it): the tasks its record
// still shows PENDING become CANCELLED and those RUNNING become `running_as`
// (CANCELLED or FAILED), in `tasks` and in `task_counts`, so that a finished
// run never shows a task under way.
void end_unfinished_tasks(boost::json::object& snapshot, std::string_view running_as);

// Whether `name` is 1 to `max` letters, digits and `punctuation`, '.' neither
// first nor last nor twice in a row: a key NATS KV takes (and a file name).
bool is_key_name(std::string_view name, std::size_t max, std::string_view punctuation);

// Throws NatsError for an id a KV key cannot hold (letters, digits, '-', '_', '=', '.').
void check_run_id(std::string_view run_id);

class RunRecords {
 public:
  explicit RunRecords(Connection& nats);  // the bucket must exist (`pyoco cluster init`)
  ~RunRecords();
  RunRecords(const RunRecords&) = delete;
  RunRecords& operator=(const RunRecords&) = delete;

  std::optional<RunRecord> get(std::string_view run_id) const;
  // Writes a new run; nullopt when one of this id exists.
  std::optional<std::uint64_t> create(std::string_view run_id, const boost::json::object& snapshot);
  // Replaces the snapshot read at `revision`; nullopt when it changed since.
  std::optional<std::uint64_t> replace(std::string_view run_id, const boost::json::object& snapshot,
                                       std::uint64_t revision);

 private:
  std::optional<std::uint64_t> write(std::string_view run_id, const boost::json::object& snapshot,
                                     std::optional<std::uint64_t> revision);
  Connection& nats_;
  struct Bucket;
  std::unique_ptr<Bucket> bucket_;
};

}  // namespace pyoco::cluster
