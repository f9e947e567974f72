#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/run_protocol.hpp>

#include <boost/json.hpp>

#include <cstdio>
#include <optional>
#include <vector>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {

std::string base64_decode(std::string_view in) {
  static const std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  for (const char c : in) {
    const std::size_t v = alphabet.find(c);
    if (v == std::string_view::npos) continue;  // '=' padding
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

struct StoredJob {
  std::uint64_t seq = 0;
  std::string data;
};

// The first job of PYOCO_WORK at or after `seq` on `subject` (the
// JetStream API's message get with next_by_subj, which skips deleted
// sequences in the server); nullopt when there is none.
std::optional<StoredJob> next_job(Connection& nats, std::uint64_t seq, const std::string& subject) {
  const std::string request =
      json::serialize(json::object{{"seq", seq}, {"next_by_subj", subject}});
  natsMsg* reply = nullptr;
  const natsStatus s = natsConnection_Request(
      &reply, nats.handles().nc, "$JS.API.STREAM.MSG.GET.PYOCO_WORK", request.data(),
      static_cast<int>(request.size()), nats.options().timeout.count());
  if (s != NATS_OK) throw_nats("cannot read PYOCO_WORK", s);
  boost::system::error_code ec;
  const json::value v =
      json::parse(std::string_view(natsMsg_GetData(reply),
                                   static_cast<std::size_t>(natsMsg_GetDataLength(reply))),
                  ec);
  natsMsg_Destroy(reply);
  if (ec || !v.is_object()) throw NatsError("PYOCO_WORK: an unreadable answer to a message get");
  if (const json::value* e = v.as_object().if_contains("error")) {
    if (e->is_object() && e->as_object().contains("code") && e->at("code").to_number<int>() == 404)
      return std::nullopt;
    throw NatsError("PYOCO_WORK: " + json::serialize(*e));
  }
  const json::object& m = v.at("message").as_object();
  StoredJob job;
  job.seq = m.at("seq").to_number<std::uint64_t>();
  if (const json::value* d = m.if_contains("data"); d != nullptr && d->is_string())
    job.data = base64_decode(d->as_string());
  return job;
}

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

std::size_t Reaper::sweep() {
  jsConsumerNamesList* names = nullptr;
  jsErrCode jerr{};
  natsStatus s = js_ConsumerNames(&names, nats_.handles().js, "PYOCO_WORK", nullptr, &jerr);
  if (s == NATS_NOT_FOUND) return 0;  // no consumers yet
  if (s != NATS_OK) throw_nats("cannot list the consumers of PYOCO_WORK", s, jerr);
  struct Floor {
    std::string subject;
    std::uint64_t acked = 0;  // every job of `subject` up to here was acked
    std::int64_t max_deliver = 0;
  };
  std::vector<Floor> floors;
  for (int i = 0; i < names->Count; ++i) {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, nats_.handles().js, "PYOCO_WORK", names->List[i], nullptr, &jerr) !=
        NATS_OK) {
      continue;  // deleted meanwhile
    }
    if (ci->Config != nullptr && ci->Config->FilterSubject != nullptr) {
      floors.push_back({ci->Config->FilterSubject, ci->AckFloor.Stream, ci->Config->MaxDeliver});
    }
    jsConsumerInfo_Destroy(ci);
  }
  jsConsumerNamesList_Destroy(names);

  std::size_t handled = 0;
  RunRecords runs(nats_);
  for (const Floor& f : floors) {
    for (std::uint64_t from = 1;;) {
      const std::optional<StoredJob> stored = next_job(nats_, from, f.subject);
      if (!stored || stored->seq > f.acked) break;  // past the floor: live jobs
      from = stored->seq + 1;
      RunJob job;
      const bool readable = read_job(stored->data, job);  // else: invalid, acked once
      // A NATS error here ends the sweep (it is tried again): never a job
      // deleted for a record that could not be read.
      const std::optional<RunRecord> r =
          readable ? runs.get(job.run_id) : std::optional<RunRecord>{};
      if (r && r->terminal() && !has_run_end(job.run_id)) {
        publish_run_end(nats_, *r);  // lost in the same crash
      }
      const json::value* attempt = r ? r->snapshot.if_contains("attempt") : nullptr;
      if (r && !r->terminal() && attempt != nullptr && attempt->is_int64() && f.max_deliver > 0 &&
          attempt->as_int64() >= f.max_deliver) {
        fail_stuck(job, attempt->as_int64());  // delivered to the limit, as the advisory would
      } else if (r && !r->terminal()) {
        // Its end was lost with the crash: queue it again (a message id of
        // its own, so that the queue's duplicate window keeps it).
        const std::string id = job.run_id + ".requeue." + std::to_string(stored->seq);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id.c_str();
        jsPubAck* ack = nullptr;
        const std::string subject = "pyoco.work." + job.tag;
        s = js_Publish(&ack, nats_.handles().js, subject.c_str(), stored->data.data(),
                       static_cast<int>(stored->data.size()), &po, &jerr);
        if (s != NATS_OK) throw_nats("cannot queue run " + job.run_id + " again", s, jerr);
        jsPubAck_Destroy(ack);
        log(LogLevel::warning, "sweep: run queued again (NATS lost its end in a crash)",
            {{"run_id", job.run_id}});
      }
      delete_job(nats_, stored->seq, "an acked job");
      ++handled;
    }
  }
  return handled;
}

void Reaper::fail_stuck(const RunJob& job, std::int64_t deliveries) {
  const std::string error = "max_deliver_exceeded: NATS delivered the job " +
                            std::to_string(deliveries) +
                            " times and no worker finished it (see the workers' logs)";
  {
    RunRecords runs(nats_);
    std::optional<RunRecord> ended;
    for (;;) {
      std::optional<RunRecord> r = runs.get(job.run_id);
      if (!r) break;
      if (r->terminal()) {
        ended = r;
        break;
      }
      json::object next = r->snapshot;
      const double now = epoch_now();
      next["status"] = "FAILED";
      next["error"] = error;
      next["end_time"] = now;
      next["updated_at"] = now;
      if (auto rev = runs.replace(job.run_id, next, r->revision)) {
        ended = RunRecord{std::move(next), *rev};
        break;
      }
    }
    if (ended) publish_run_end(nats_, *ended);
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
  natsMsg* last = nullptr;
  jsErrCode jerr{};
  const std::string subject = "pyoco.ev." + run_id + ".run";
  const natsStatus s =
      js_GetLastMsg(&last, nats_.handles().js, "PYOCO_EVENTS", subject.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return false;
  if (s != NATS_OK) throw_nats("cannot read the events of run " + run_id, s, jerr);
  const std::string_view data(natsMsg_GetData(last),
                              static_cast<std::size_t>(natsMsg_GetDataLength(last)));
  const bool ended = data.find("\"kind\":\"run_end\"") != std::string_view::npos;
  natsMsg_Destroy(last);
  return ended;
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
