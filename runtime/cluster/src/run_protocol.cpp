#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/core/text.hpp>

#include <boost/json.hpp>

#include <chrono>

#include <pyoco/cluster/nats_handles.hpp>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {

std::string string_field(const json::object& o, const char* key, bool required) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) throw NatsError(std::string("job: ") + key + " is missing");
    return {};
  }
  if (!v->is_string()) throw NatsError(std::string("job: ") + key + " must be a string");
  return std::string(v->as_string());
}

bool same_owner(const json::object& snapshot, const Owner& owner) {
  const json::value* o = snapshot.if_contains("owner");
  const json::value* a = snapshot.if_contains("attempt");
  if (o == nullptr || !o->is_object() || a == nullptr || !a->is_int64()) return false;
  const json::object& obj = o->as_object();
  const json::value* w = obj.if_contains("worker_id");
  const json::value* i = obj.if_contains("instance");
  return w != nullptr && w->is_string() && w->as_string() == owner.worker_id && i != nullptr &&
         i->is_string() && i->as_string() == owner.instance && a->as_int64() == owner.attempt;
}

}  // namespace

void check_flow_name(std::string_view name) {
  const bool ok = !name.empty() && name.size() <= 128 && name.front() != '.' &&
                  name.find_first_not_of(
                      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789-_.") == std::string_view::npos;
  if (!ok) {
    // Shown escaped: a NUL would cut the message short, other bytes
    // would go raw into an answer's JSON.
    throw NatsError("flow_name \"" + core::printable(name) +
                    "\": 1 to 128 letters, digits, '-', '_' and '.' (not first); it names "
                    "<flow_name>.yaml in the workers' --flows directory");
  }
}

double epoch_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json::object to_json(const RunJob& job) {
  json::object o{{"run_id", job.run_id}, {"flow_name", job.flow_name},
                 {"tag", job.tag},       {"tags", json::array{json::value(job.tag)}},
                 {"params", job.params}, {"submitted_at", job.submitted_at}};
  if (!job.workflow_yaml.empty()) o["workflow_yaml"] = job.workflow_yaml;
  if (!job.tenant_id.empty()) o["tenant_id"] = job.tenant_id;
  if (job.record_revision != 0) o["record_revision"] = job.record_revision;
  // Carried so that a worker rebuilding the record keeps it: without it a
  // claimed run took any request under its Idempotency-Key.
  if (!job.request_digest.empty()) o["request_sha256"] = job.request_digest;
  return o;
}

RunJob job_from_json(const json::object& o) {
  RunJob job;
  job.run_id = string_field(o, "run_id", true);
  check_run_id(job.run_id);
  job.flow_name = string_field(o, "flow_name", true);
  check_flow_name(job.flow_name);
  job.tag = string_field(o, "tag", false);
  if (job.tag.empty()) job.tag = "default";
  if (const json::value* p = o.if_contains("params"); p != nullptr && !p->is_null()) {
    if (!p->is_object()) throw NatsError("job: params must be an object");
    job.params = p->as_object();
  }
  job.workflow_yaml = string_field(o, "workflow_yaml", false);
  job.tenant_id = string_field(o, "tenant_id", false);
  if (const json::value* t = o.if_contains("submitted_at"); t != nullptr && t->is_number()) {
    job.submitted_at = t->to_number<double>();
  }
  if (const json::value* r = o.if_contains("record_revision"); r != nullptr && r->is_number()) {
    job.record_revision = r->to_number<std::uint64_t>();
  }
  job.request_digest = string_field(o, "request_sha256", false);
  return job;
}

json::object pending_snapshot(const RunJob& job) {
  json::object snapshot{
      {"run_id", job.run_id},
      {"flow_name", job.flow_name},
      {"tag", job.tag},
      {"tags", json::array{json::value(job.tag)}},
      {"tenant_id", job.tenant_id.empty() ? json::value(nullptr) : json::value(job.tenant_id)},
      {"status", "PENDING"},
      {"params", job.params},
      {"tasks", json::object{}},
      {"attempt", 0},
      {"owner", nullptr},
      {"submitted_at", job.submitted_at},
      {"start_time", nullptr},
      {"end_time", nullptr},
      {"updated_at", job.submitted_at},
      {"error", nullptr}};
  if (!job.request_digest.empty()) snapshot["request_sha256"] = job.request_digest;
  return snapshot;
}

namespace {

// The job, with Nats-Msg-Id = run_id: a repeat within the duplicate window
// is dropped by the stream. Returns its sequence (the first one's for a repeat).
std::uint64_t publish_job(Connection& nats, const RunJob& job) {
  const std::string subject = "pyoco.work." + job.tag;
  const std::string body = json::serialize(to_json(job));
  jsPubOptions opts;
  jsPubOptions_Init(&opts);
  opts.MsgId = job.run_id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode jerr{};
  const natsStatus s = js_Publish(&ack, nats.handles().js, subject.c_str(), body.data(),
                                  static_cast<int>(body.size()), &opts, &jerr);
  if (s != NATS_OK) throw_nats("cannot queue run " + job.run_id + " on " + subject, s, jerr);
  const std::uint64_t seq = ack->Sequence;
  jsPubAck_Destroy(ack);
  return seq;
}

// Removes run `run_id`'s job at `seq` from PYOCO_WORK, best effort. The
// message is read first: a sequence kept from before the stream was made
// anew may name another run's job.
void remove_job(Connection& nats, const std::string& run_id, std::uint64_t seq) {
  natsMsg* msg = nullptr;
  jsErrCode jerr{};
  if (js_GetMsg(&msg, nats.handles().js, "PYOCO_WORK", seq, nullptr, &jerr) != NATS_OK) return;
  const char* id = nullptr;
  const bool same =
      natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id != nullptr && run_id == id;
  natsMsg_Destroy(msg);
  if (same) js_DeleteMsg(nats.handles().js, "PYOCO_WORK", seq, nullptr, &jerr);
}

// A run submitted before (its record exists) keeps the time it was
// submitted first.
void keep_submitted_at(const RunRecord& record, RunJob& job) {
  if (const json::value* t = record.snapshot.if_contains("submitted_at");
      t != nullptr && t->is_number() && t->to_number<double>() > 0) {
    job.submitted_at = t->to_number<double>();
  }
}

}  // namespace

Submitted submit_run(Connection& nats, RunRecords& runs, const RunJob& given) {
  RunJob job = given;
  check_run_id(job.run_id);
  check_flow_name(job.flow_name);
  if (job.submitted_at == 0) job.submitted_at = epoch_now();
  Submitted out;
  const json::object pending = pending_snapshot(job);
  if (const auto revision = runs.create(job.run_id, pending)) {
    out.record = RunRecord{pending, *revision};
    out.created = true;
    job.record_revision = *revision;
    publish_run_submitted(nats, job);
  } else {
    std::optional<RunRecord> existing = runs.get(job.run_id);
    if (!existing) throw NatsError("run " + job.run_id + " exists and vanished while read");
    out.record = std::move(*existing);
    if (const json::value* d = out.record.snapshot.if_contains("request_sha256");
        !job.request_digest.empty() && d != nullptr && d->is_string() &&
        d->as_string() != job.request_digest) {
      throw RequestMismatch("run " + job.run_id + " was submitted with another request");
    }
    if (out.record.status() != "PENDING") return out;
    job.record_revision = out.record.revision;
    // Still PENDING: the first submit may have stopped before these two
    // (NATS went away); each is stored once however often it is sent.
    keep_submitted_at(out.record, job);
    publish_run_submitted(nats, job);
  }
  out.job_seq = publish_job(nats, job);
  return out;
}

bool queue_if_pending(Connection& nats, RunRecords& runs, RunJob job) {
  const std::optional<RunRecord> r = runs.get(job.run_id);
  if (!r || r->status() != "PENDING") return false;
  job.record_revision = r->revision;
  // When it was submitted, not when it is queued now (the job handed in
  // may carry none: the record said 1970 once a worker ran it).
  keep_submitted_at(*r, job);
  publish_run_submitted(nats, job);  // its message id: stored once
  publish_job(nats, job);
  return true;
}

std::optional<RunRecord> request_cancel(Connection& nats, RunRecords& runs,
                                        const std::string& run_id, const std::string& by,
                                        std::uint64_t job_seq) {
  for (;;) {
    std::optional<RunRecord> r = runs.get(run_id);
    if (!r) return std::nullopt;
    const std::string status = r->status();
    if (status != "PENDING" && status != "RUNNING") return r;  // terminal, or already asked
    json::object next = r->snapshot;
    const double now = epoch_now();
    next["status"] = status == "PENDING" ? "CANCELLED" : "CANCELLING";
    next["cancel_requested_at"] = now;
    next["cancel_requested_by"] = by;
    next["updated_at"] = now;
    if (status == "PENDING") next["end_time"] = now;
    if (const auto revision = runs.replace(run_id, next, r->revision)) {
      RunRecord written{std::move(next), *revision};
      if (written.terminal()) {
        publish_run_end(nats, written);  // it never ran: this is its one end
        // No worker can claim it now: its job is only a count in the queue.
        // A worker that pulled it meanwhile finds it gone or acks it.
        if (job_seq != 0) remove_job(nats, run_id, job_seq);
      } else {
        // The owner first (the fast path; best effort: the CAS is what
        // counts), then the event, whose publish waits for JetStream.
        const std::string subject = "pyoco.cancel." + run_id;
        natsConnection_Publish(nats.handles().nc, subject.c_str(), by.data(),
                               static_cast<int>(by.size()));
        try {
          publish_run_cancelling(nats, written);
        } catch (const NatsError&) {
          // the owner's engine publishes it under the same id when told
        }
      }
      return written;
    }
    // Someone wrote in between (the owner's progress or terminal write): read again.
  }
}

std::optional<RunRecord> owner_write(RunRecords& runs, const std::string& run_id,
                                     const Owner& owner,
                                     const std::function<void(json::object&)>& change,
                                     const RunRecord* last) {
  if (last != nullptr && !last->terminal() && same_owner(last->snapshot, owner)) {
    json::object next = last->snapshot;
    change(next);
    next["updated_at"] = epoch_now();
    if (const auto revision = runs.replace(run_id, next, last->revision)) {
      return RunRecord{std::move(next), *revision};
    }
  }
  for (;;) {
    std::optional<RunRecord> r = runs.get(run_id);
    if (!r || r->terminal() || !same_owner(r->snapshot, owner)) return std::nullopt;
    json::object next = r->snapshot;
    change(next);
    next["updated_at"] = epoch_now();
    if (const auto revision = runs.replace(run_id, next, r->revision)) {
      return RunRecord{std::move(next), *revision};
    }
  }
}

}  // namespace pyoco::cluster
