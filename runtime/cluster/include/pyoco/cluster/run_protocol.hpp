// The run protocol of docs/cluster.md on the `pyoco_runs` records and the
// `PYOCO_WORK` queue: submit, cancel and the owner's writes, each a
// compare-and-swap that re-reads on conflict, so that no cancel is lost, no
// terminal state is overwritten and a stale owner never writes.
#pragma once

#include <pyoco/cluster/run_records.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pyoco::cluster {

// What a worker needs to run a run (pyoco-server's job: run_id, flow_name,
// tag, tags, params, submitted_at, tenant_id, workflow_yaml).
struct RunJob {
  std::string run_id;
  std::string flow_name;
  std::string tag = "default";
  boost::json::object params;
  std::string workflow_yaml;  // empty: the worker resolves flow_name from its --flows
  std::string tenant_id;
  double submitted_at = 0;  // epoch seconds; 0: now
  // The revision of the PENDING record submit wrote (0: unknown): a worker
  // claims the run with one compare-and-swap on it, without reading first.
  std::uint64_t record_revision = 0;
  // With an Idempotency-Key: a digest of what was asked (flow, tag, params,
  // workflow), kept in the record as `request_sha256`, so that a repeat of
  // the key with another request is told apart from a retry. Empty: none.
  std::string request_digest;
};

// A submit whose run id (from an Idempotency-Key) names a run made for
// another request: not a NatsError, nothing was written.
class RequestMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The PENDING record of a run, as submit writes it.
boost::json::object pending_snapshot(const RunJob& job);

// Throws NatsError for a flow name that is not 1 to 128 letters, digits,
// '-', '_' and '.' (not first): it names a file in a worker's --flows
// directory, so it may never be a path.
void check_flow_name(std::string_view name);

boost::json::object to_json(const RunJob& job);
// Throws NatsError naming the field that is missing or of the wrong type.
RunJob job_from_json(const boost::json::object& o);

// Seconds since the epoch, as pyoco-server's snapshots write times.
double epoch_now();

struct Submitted {
  RunRecord record;
  bool created = false;  // false: a run of this id existed (an idempotent repeat)
  // The job's sequence in PYOCO_WORK (0 when none was published: the run
  // had moved on). A repeat within the duplicate window names the first.
  std::uint64_t job_seq = 0;
};

// Creates the PENDING snapshot, then publishes the job with Nats-Msg-Id =
// run_id. A repeat finds the run; while it is still PENDING the job is
// published again, which the stream's duplicate window drops when the first
// one arrived (so a submitter that died between the two writes is healed).
// A repeat whose request_digest differs from the record's throws
// RequestMismatch before anything is published (a record without one, of an
// older gateway, is taken as the same request).
Submitted submit_run(Connection& nats, RunRecords& runs, const RunJob& job);

// The rest of a submit that failed part way (NATS went away between the
// record and the job, or did not answer a write it made): when the run's
// record exists and is still PENDING, its run_submitted event and its job
// are published (each stored once however often this is asked). False
// when there is nothing to queue: no record, or it has moved on. Throws
// NatsError while NATS cannot be asked.
bool queue_if_pending(Connection& nats, RunRecords& runs, RunJob job);

// PENDING -> CANCELLED (and its RunEnd), RUNNING -> CANCELLING (with `by`
// and the time, and its run_cancelling event);
// a terminal or CANCELLING run is left as it is. Then `pyoco.cancel.<id>` on
// core NATS tells the owner at once (the CAS is what counts: a missed
// message only delays it). Nullopt when there is no such run.
// `job_seq`, when known (Submitted::job_seq), is the run's job: a run
// cancelled while PENDING has it removed from PYOCO_WORK at once (best
// effort), so it is not counted as waiting until a worker pulls it.
std::optional<RunRecord> request_cancel(Connection& nats, RunRecords& runs,
                                        const std::string& run_id, const std::string& by,
                                        std::uint64_t job_seq = 0);

// Who runs a run: the worker, its process instance, and the delivery
// attempt it claimed.
struct Owner {
  std::string worker_id;
  std::string instance;
  std::int64_t attempt = 0;
};

// As the owner, applies `change` to the snapshot and writes it: re-read and
// re-applied on a conflict, for as long as `owner` still holds the run and
// it is not terminal. Nullopt when ownership was lost or the run is
// terminal (the caller stops writing and never acks). `last`, the record as
// the owner last wrote it, is tried first without reading: any write since
// (a cancel request) makes that a conflict, and then the record is read.
std::optional<RunRecord> owner_write(RunRecords& runs, const std::string& run_id,
                                     const Owner& owner,
                                     const std::function<void(boost::json::object&)>& change,
                                     const RunRecord* last = nullptr);

}  // namespace pyoco::cluster
