#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/open_nodes.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/run_protocol.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <vector>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {

// The job in a queued message; false for one that is not a valid job.
bool read_job(std::string_view data, RunJob& job) {
  boost::system::error_code ec;
  const json::value v = json::parse(data, ec);
  if (ec || !v.is_object()) return false;
  try {
    job = job_from_json(v.as_object());
    return true;
  } catch (const NatsError&) {
    return false;
  }
}

void delete_job(Connection& nats, std::uint64_t seq, const char* what) {
  jsErrCode jerr{};
  const natsStatus s = js_DeleteMsg(nats.handles().js, "PYOCO_WORK", seq, nullptr, &jerr);
  if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSNoMessageFoundErr &&
      jerr != JSSequenceNotFoundErr) {
    throw_nats(std::string("cannot remove ") + what, s, jerr);
  }
}

}  // namespace

Reaper::Reaper(Connection& nats) : nats_(nats) {}

namespace {

// What the reaper reads of each work consumer.
struct ConsumerFloor {
  std::string subject;
  std::uint64_t acked = 0;      // every job of `subject` up to here was acked
  std::uint64_t delivered = 0;  // every job of `subject` up to here was delivered at least once
  std::int64_t max_deliver = 0;
  std::chrono::milliseconds ack_wait{0};
};

std::vector<ConsumerFloor> consumer_floors(Connection& nats) {
  jsConsumerNamesList* names = nullptr;
  jsErrCode jerr{};
  natsStatus s = js_ConsumerNames(&names, nats.handles().js, "PYOCO_WORK", nullptr, &jerr);
  if (s == NATS_NOT_FOUND) return {};  // no consumers yet
  if (s != NATS_OK) throw_nats("cannot list the consumers of PYOCO_WORK", s, jerr);
  std::vector<ConsumerFloor> floors;
  for (int i = 0; i < names->Count; ++i) {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, nats.handles().js, "PYOCO_WORK", names->List[i], nullptr, &jerr) !=
        NATS_OK) {
      continue;  // deleted meanwhile
    }
    if (ci->Config != nullptr && ci->Config->FilterSubject != nullptr) {
      floors.push_back({ci->Config->FilterSubject, ci->AckFloor.Stream, ci->Delivered.Stream,
                        ci->Config->MaxDeliver,
                        std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::nanoseconds(ci->Config->AckWait))});
    }
    jsConsumerInfo_Destroy(ci);
  }
  jsConsumerNamesList_Destroy(names);
  return floors;
}

// Queues a run's job again under a message id of its own (`why` makes it
// unique, so that the queue's duplicate window keeps it and a second
// gateway doing the same is one job).
void queue_again(Connection& nats, const RunJob& job, const std::string& data,
                 const std::string& why) {
  const std::string id = job.run_id + "." + why;
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode jerr{};
  const std::string subject = "pyoco.work." + job.tag;
  const natsStatus s = js_Publish(&ack, nats.handles().js, subject.c_str(), data.data(),
                                  static_cast<int>(data.size()), &po, &jerr);
  if (s != NATS_OK) throw_nats("cannot queue run " + job.run_id + " again", s, jerr);
  jsPubAck_Destroy(ack);
}

}  // namespace

std::size_t Reaper::sweep() {
  const std::vector<ConsumerFloor> floors = consumer_floors(nats_);
  std::size_t handled = 0;
  RunRecords runs(nats_);
  for (const ConsumerFloor& f : floors) {
    for (std::uint64_t from = 1;;) {
      const std::optional<StoredMessage> stored = next_stored(nats_, "PYOCO_WORK", from, f.subject);
      if (!stored || stored->seq > f.acked) break;  // past the floor: live jobs
      from = stored->seq + 1;
      RunJob job;
      const bool readable = read_job(stored->data, job);  // else: invalid, acked once
      // A NATS error here ends the sweep (it is tried again): never a job
      // deleted for a record that could not be read.
      const std::optional<RunRecord> r =
          readable ? runs.get(job.run_id) : std::optional<RunRecord>{};
      // Its end was lost with the crash when its run has not ended.
      if (r) settle(job, *r, stored->data, f.max_deliver, "requeue." + std::to_string(stored->seq));
      delete_job(nats_, stored->seq, "an acked job");
      ++handled;
    }
  }
  return handled;
}

std::size_t Reaper::requeue_stranded() {
  const std::vector<ConsumerFloor> floors = consumer_floors(nats_);
  const auto now = std::chrono::steady_clock::now();
  std::map<std::uint64_t, Seen> seen;  // what this look found, for the next one
  std::size_t handled = 0;
  std::chrono::milliseconds every = std::chrono::seconds(30);
  RunRecords runs(nats_);
  for (const ConsumerFloor& f : floors) {
    // NATS sends a job again an AckWait after its last sign of life; past
    // that and a margin, it will not.
    const auto limit =
        f.ack_wait + std::max<std::chrono::milliseconds>(std::chrono::seconds(2), f.ack_wait / 2);
    every = std::min(every, std::clamp<std::chrono::milliseconds>(
                                f.ack_wait / 2, std::chrono::seconds(1), std::chrono::seconds(30)));
    // Between the ack floor and the last delivered: jobs delivered at least
    // once and not acked (acked ones are gone from the work queue).
    for (std::uint64_t from = f.acked + 1;;) {
      const std::optional<StoredMessage> stored = next_stored(nats_, "PYOCO_WORK", from, f.subject);
      if (!stored || stored->seq > f.delivered) break;
      from = stored->seq + 1;
      RunJob job;
      if (!read_job(stored->data, job)) continue;  // a worker ends it when it is delivered
      const std::optional<RunRecord> r = runs.get(job.run_id);
      if (!r || r->lease_until() > epoch_now()) continue;  // unknown, or its owner holds it
      const auto it = seen_.find(stored->seq);
      if (it == seen_.end() || it->second.revision != r->revision) {
        seen[stored->seq] = Seen{r->revision, now};  // changed since: someone is at it
        continue;
      }
      if (now - it->second.since < limit) {
        seen[stored->seq] = it->second;
        continue;
      }
      log(LogLevel::warning,
          "reaper: a job delivered and never delivered again, its run unchanged for longer than "
          "the AckWait; queued again",
          {{"run_id", job.run_id},
           {"status", r->status()},
           {"stream_seq", stored->seq},
           {"unchanged_s", std::chrono::duration<double>(now - it->second.since).count()}});
      settle(job, *r, stored->data, f.max_deliver, "stranded." + std::to_string(stored->seq));
      delete_job(nats_, stored->seq, "a stranded job");
      ++handled;
    }
  }
  seen_.swap(seen);
  stranded_every_ = every;
  return handled;
}

// A job taken off the queue: a run that ended gets its RunEnd if it is
// missing; one delivered to the limit fails, as the advisory would make
// it; any other is queued again (`why` names the copy).
void Reaper::settle(const RunJob& job, const RunRecord& r, const std::string& data,
                    std::int64_t max_deliver, const std::string& why) {
  if (r.terminal()) {
    if (!has_run_end(job.run_id)) publish_run_end(nats_, r);  // lost in the same crash
    return;
  }
  const json::value* attempt = r.snapshot.if_contains("attempt");
  if (attempt != nullptr && attempt->is_int64() && max_deliver > 0 &&
      attempt->as_int64() >= max_deliver) {
    fail_stuck(job, attempt->as_int64());
    return;
  }
  queue_again(nats_, job, data, why);
  log(LogLevel::warning, "sweep: run queued again", {{"run_id", job.run_id}, {"why", why}});
}

void Reaper::fail_stuck(const RunJob& job, std::int64_t deliveries) {
  const std::string error = "max_deliver_exceeded: NATS delivered the job " +
                            std::to_string(deliveries) +
                            " times and no worker finished it (see the workers' logs)";
  {
    RunRecords runs(nats_);
    std::optional<RunRecord> ended;
    std::optional<std::vector<OpenNode>> open;  // read once, if it is ended here
    for (;;) {
      std::optional<RunRecord> r = runs.get(job.run_id);
      if (!r) break;
      if (r->terminal()) {
        ended = r;
        open.reset();  // ended by another: its tasks' ends are not ours to publish
        break;
      }
      json::object next = r->snapshot;
      const double now = epoch_now();
      next["status"] = "FAILED";
      next["error"] = error;
      next["end_time"] = now;
      end_unfinished_tasks(next, "FAILED");
      if (!open) open = open_nodes(nats_, job.run_id);
      record_open_nodes(next, *open, "FAILED");
      next["updated_at"] = now;
      if (auto rev = runs.replace(job.run_id, next, r->revision)) {
        ended = RunRecord{std::move(next), *rev};
        break;
      }
      open.reset();  // the record changed: read its events again
    }
    if (ended) {
      // Its tasks' ends before its own: the trace shows none left started.
      // NATS away: the run still ends (its end is what a watcher waits for).
      if (open) {
        try {
          publish_open_node_ends(nats_, *ended, *open, "FAILED", error);
        } catch (const NatsError& e) {
          log(LogLevel::warning, "reaper: a dead owner's tasks' ends not published",
              {{"run_id", job.run_id}, {"error", e.what()}});
        }
      }
      publish_run_end(nats_, *ended);
    }
    const json::object dead{{"reason", "max_deliver_exceeded"},
                            {"error", error},
                            {"run_id", job.run_id},
                            {"flow_name", job.flow_name},
                            {"tag", job.tag},
                            {"tenant_id", job.tenant_id},
                            {"worker_id", nullptr},
                            {"ts", epoch_now()}};
    const std::string body = json::serialize(dead);
    const std::string subject = "pyoco.dlq." + job.tag;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    const std::string id = job.run_id + ".dlq";
    po.MsgId = id.c_str();
    jsPubAck* ack = nullptr;
    jsErrCode jerr{};
    const natsStatus s = js_Publish(&ack, nats_.handles().js, subject.c_str(), body.data(),
                                    static_cast<int>(body.size()), &po, &jerr);
    if (s != NATS_OK) throw_nats("cannot write the dead letter", s, jerr);
    jsPubAck_Destroy(ack);
  }
}

// Whether the run's last run-level event is its end.
bool Reaper::has_run_end(const std::string& run_id) {
  const std::optional<StoredMessage> last =
      last_stored(nats_, "PYOCO_EVENTS", "pyoco.ev." + run_id + ".run");
  return last && last->data.find("\"kind\":\"run_end\"") != std::string::npos;
}

Reaper::~Reaper() { stop(); }

void Reaper::start() {
  thread_ = std::thread([this] { loop(); });
}

void Reaper::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void Reaper::loop() {
  natsSubscription* sub = nullptr;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "PYOCO_ADVISORIES";
  so.Consumer = "pyoco_reaper";
  jsErrCode jerr{};
  const natsStatus s = js_PullSubscribe(&sub, nats_.handles().js,
                                        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.PYOCO_WORK.*",
                                        "pyoco_reaper", nullptr, &so, &jerr);
  if (s != NATS_OK) {
    log(LogLevel::error, "reaper: cannot start: run `pyoco cluster init`",
        {{"nats", natsStatus_GetText(s)}});
    return;
  }
  auto next_sweep = std::chrono::steady_clock::now();
  auto next_stranded_check = next_sweep;
  while (!stopping_) {
    natsMsgList list{};
    // Short polls, so that stop() is heard within a second; one advisory a
    // poll (they are rare, and cnats's batches wait to be full).
    const natsStatus f = natsSubscription_Fetch(&list, sub, 1, 1000, nullptr);
    for (int i = 0; f == NATS_OK && i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      try {
        reap(std::string(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))));
        natsMsg_AckSync(m, nullptr, nullptr);
      } catch (const std::exception& e) {
        // NATS is away: the advisory is delivered again later.
        log(LogLevel::warning, "reaper: will retry", {{"error", e.what()}});
      }
    }
    natsMsgList_Destroy(&list);
    // After a poll of the advisories, so that a job NATS gave up on is
    // reaped (FAILED) rather than swept.
    if (std::chrono::steady_clock::now() >= next_stranded_check) {
      try {
        requeue_stranded();
      } catch (const std::exception& e) {
        log(LogLevel::warning, "reaper: stranded jobs not looked at; will retry",
            {{"error", e.what()}});
      }
      next_stranded_check = std::chrono::steady_clock::now() + stranded_every_;
    }
    if (std::chrono::steady_clock::now() >= next_sweep) {
      try {
        if (const std::size_t n = sweep(); n > 0) {
          log(LogLevel::warning, "sweep: removed acked jobs a NATS crash left in PYOCO_WORK",
              {{"jobs", n}});
        }
      } catch (const std::exception& e) {
        log(LogLevel::warning, "sweep: will retry", {{"error", e.what()}});
      }
      next_sweep = std::chrono::steady_clock::now() + sweep_every;
    }
  }
  natsSubscription_Destroy(sub);
}

void Reaper::reap(const std::string& advisory) {
  boost::system::error_code ec;
  const json::value v = json::parse(advisory, ec);
  if (ec || !v.is_object() || !v.as_object().contains("stream_seq")) return;  // not ours to read
  const std::uint64_t seq = v.at("stream_seq").to_number<std::uint64_t>();
  const std::int64_t deliveries =
      v.as_object().contains("deliveries") ? v.at("deliveries").to_number<std::int64_t>() : 0;
  natsMsg* job_msg = nullptr;
  jsErrCode jerr{};
  natsStatus s = js_GetMsg(&job_msg, nats_.handles().js, "PYOCO_WORK", seq, nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return;  // acked since: nothing stuck
  if (s != NATS_OK) throw_nats("cannot read the stuck job", s, jerr);
  const std::string data(natsMsg_GetData(job_msg),
                         static_cast<std::size_t>(natsMsg_GetDataLength(job_msg)));
  natsMsg_Destroy(job_msg);
  RunJob job;
  if (read_job(data, job)) fail_stuck(job, deliveries);
  delete_job(nats_, seq, "the stuck job");
  reaped_.fetch_add(1);
}

}  // namespace pyoco::cluster
