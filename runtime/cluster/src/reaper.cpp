#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/run_protocol.hpp>

#include <boost/json.hpp>

#include <cstdio>

namespace pyoco::cluster {

namespace json = boost::json;

Reaper::Reaper(Connection& nats) : nats_(nats) {}

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
    std::fprintf(stderr, "pyoco: the reaper cannot start (%s): run `pyoco cluster init`\n",
                 natsStatus_GetText(s));
    return;
  }
  while (!stopping_) {
    natsMsgList list{};
    // Short polls, so that stop() is heard within a second.
    const natsStatus f = natsSubscription_Fetch(&list, sub, 16, 1000, nullptr);
    for (int i = 0; f == NATS_OK && i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      try {
        reap(std::string(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))));
        natsMsg_AckSync(m, nullptr, nullptr);
      } catch (const NatsError& e) {
        // NATS is away: the advisory is delivered again later.
        std::fprintf(stderr, "pyoco: the reaper will retry: %s\n", e.what());
      }
    }
    natsMsgList_Destroy(&list);
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
  const json::value job_json =
      json::parse(std::string_view(natsMsg_GetData(job_msg),
                                   static_cast<std::size_t>(natsMsg_GetDataLength(job_msg))),
                  ec);
  natsMsg_Destroy(job_msg);
  RunJob job;
  bool readable = false;
  if (!ec && job_json.is_object()) {
    try {
      job = job_from_json(job_json.as_object());
      readable = true;
    } catch (const NatsError&) {
    }
  }
  const std::string error = "max_deliver_exceeded: NATS delivered the job " +
                            std::to_string(deliveries) +
                            " times and no worker finished it (see the workers' logs)";
  if (readable) {
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
    s = js_Publish(&ack, nats_.handles().js, subject.c_str(), body.data(),
                   static_cast<int>(body.size()), &po, &jerr);
    if (s != NATS_OK) throw_nats("cannot write the dead letter", s, jerr);
    jsPubAck_Destroy(ack);
  }
  s = js_DeleteMsg(nats_.handles().js, "PYOCO_WORK", seq, nullptr, &jerr);
  if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSNoMessageFoundErr &&
      jerr != JSSequenceNotFoundErr) {
    throw_nats("cannot remove the stuck job", s, jerr);
  }
  reaped_.fetch_add(1);
}

}  // namespace pyoco::cluster
