#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/trace/sinks.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <set>

namespace pyoco::cluster {

namespace json = boost::json;

bool read_events(Connection& nats, const std::string& subject, std::uint64_t after,
                 const std::function<bool(const StoredEvent&)>& each) {
  // Closed however this ends (`each` may throw).
  const Subscription sub = subscribe_events(nats, subject, after);
  if (sub == nullptr) return false;
  return read_stored(sub.get(), [&](natsMsg* m) {
    StoredEvent e;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      e.seq = meta->Sequence.Stream;
      e.later = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
    }
    e.size = static_cast<std::size_t>(natsMsg_GetDataLength(m));
    boost::system::error_code ec;
    const json::value v = json::parse(std::string_view(natsMsg_GetData(m), e.size), ec);
    if (ec || !v.is_object()) return true;
    e.event = &v.as_object();
    return each(e);
  });
}

const char* event_subject_kind(trace::EventKind kind) {
  switch (kind) {
    case trace::EventKind::RunStart:
    case trace::EventKind::RunCancelling:
    case trace::EventKind::RunEnd:
    case trace::EventKind::NodesPlanned:
      return "run";
    case trace::EventKind::Log:
      return "log";
    default:
      return "node";
  }
}

// How long a published event may wait for NATS's ack before it is sent
// again (with its message id, so that it is stored once).
constexpr std::int64_t kAckWaitMs = 5000;

struct EventPublisher::Impl {
  Connection& nats;
  jsCtx* js = nullptr;  // its own: async publishing has its own pending acks
  std::mutex mutex;
  std::condition_variable acked;
  std::map<std::string, std::int64_t, std::less<>> attempts;
  std::map<std::string, std::shared_ptr<RunFence>, std::less<>> fences;
  // Events of runs whose fence did not hold, in order, until it does again.
  std::map<std::string, std::deque<trace::Event>, std::less<>> held;
  // Held by whoever publishes (the queue's thread, a release): held events
  // go out before any later one of their run.
  std::mutex publishing;
  std::set<std::string, std::less<>> muted;
  std::map<std::string, std::size_t, std::less<>> unacked;  // per run: published, not yet acked
  std::atomic<std::uint64_t> resent{0}, lost{0};
  // cnats 3.4 makes its table of pending publishes at the first one, and
  // js_PublishAsyncGetPendingList reads it unchecked (a crash at the exit
  // of a worker that ran nothing).
  std::atomic<bool> published{false};

  static jsPubOptions publish_options(const char* msg_id) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = kAckWaitMs;
    return po;
  }

  void settled(std::string_view run_id) {
    std::lock_guard lock(mutex);
    if (auto it = unacked.find(run_id); it != unacked.end() && --it->second == 0) {
      unacked.erase(it);
      acked.notify_all();
    }
  }

  // Every publish's answer. Unanswered (NATS away, or it died after taking
  // the publish): sent again until it is stored; the message id keeps it
  // stored once.
  static void on_ack(jsCtx* js, natsMsg* msg, jsPubAck*, jsPubAckErr* err, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    // pyoco.ev.<run_id>.<kind>
    const std::string_view subject = natsMsg_GetSubject(msg);
    const auto first = subject.find('.', 6), last = subject.rfind('.');
    const std::string run_id(subject.substr(first + 1, last - first - 1));
    if (err != nullptr && (err->Err == NATS_TIMEOUT || err->Err == NATS_NO_RESPONDERS ||
                           err->Err == NATS_CONNECTION_DISCONNECTED)) {
      jsPubOptions po = publish_options(nullptr);  // the id is in the message's headers
      if (js_PublishMsgAsync(js, &msg, &po) == NATS_OK) {
        self->resent.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    if (err != nullptr) {
      self->lost.fetch_add(1, std::memory_order_relaxed);
      log(LogLevel::error, "events: an event was not stored in PYOCO_EVENTS",
          {{"run_id", run_id},
           {"error", err->ErrText != nullptr ? err->ErrText : natsStatus_GetText(err->Err)}});
    }
    natsMsg_Destroy(msg);
    self->settled(run_id);
  }

  explicit Impl(Connection& n) : nats(n) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = nats.options().timeout.count();
    o.PublishAsync.MaxPending = 4096;  // past it, publishing waits: only this queue's thread
    o.PublishAsync.AckHandler = &Impl::on_ack;
    o.PublishAsync.AckHandlerClosure = this;
    const natsStatus s = natsConnection_JetStream(&js, nats.handles().nc, &o);
    if (s != NATS_OK) throw_nats("cannot publish events", s);
  }
  ~Impl() {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 2000;
    js_PublishAsyncComplete(js, &po);
    // What NATS never answered is given up, so that no answer reaches a
    // handler whose publisher is gone.
    natsMsgList pending{};
    if (published.load() && js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
      natsMsgList_Destroy(&pending);
    }
    jsCtx_Destroy(js);
  }
};

EventPublisher::EventPublisher(Connection& nats) : impl_(std::make_unique<Impl>(nats)) {}
EventPublisher::~EventPublisher() = default;

bool RunFence::holds() const { return !lost.load() && epoch_now() < lease_until.load(); }

void EventPublisher::set_attempt(const std::string& run_id, std::int64_t attempt,
                                 std::shared_ptr<RunFence> fence) {
  std::lock_guard lock(impl_->mutex);
  impl_->attempts[run_id] = attempt;
  if (fence) {
    impl_->fences[run_id] = std::move(fence);
  } else {
    impl_->fences.erase(run_id);
  }
}

void EventPublisher::forget(const std::string& run_id) {
  std::lock_guard lock(impl_->mutex);
  impl_->attempts.erase(run_id);
  impl_->fences.erase(run_id);
  impl_->held.erase(run_id);
  impl_->muted.erase(run_id);
}

void EventPublisher::mute(const std::string& run_id) {
  std::lock_guard lock(impl_->mutex);
  impl_->muted.insert(run_id);
  impl_->held.erase(run_id);
}

void EventPublisher::release(const std::string& run_id) {
  std::lock_guard publishing(impl_->publishing);
  std::deque<trace::Event> out;
  std::int64_t attempt = 1;
  {
    std::lock_guard lock(impl_->mutex);
    auto f = impl_->fences.find(run_id);
    auto h = impl_->held.find(run_id);
    if (f == impl_->fences.end() || h == impl_->held.end() || !f->second->holds()) return;
    if (auto it = impl_->attempts.find(run_id); it != impl_->attempts.end()) attempt = it->second;
    out = std::move(h->second);
    impl_->held.erase(h);
  }
  for (const trace::Event& e : out) {
    std::vector<trace::PlannedNode> planned;
    publish_fitting(e.view(planned), attempt, "", false);
  }
}

void EventPublisher::on_event(const trace::RunEvent& e) {
  if (e.kind == trace::EventKind::RunEnd) return;  // publish_run_end, after the record
  std::int64_t attempt = 1;
  std::lock_guard publishing(impl_->publishing);
  std::deque<trace::Event> before;  // held, and free to go now
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->muted.contains(e.run_id)) return;
    if (auto it = impl_->attempts.find(e.run_id); it != impl_->attempts.end()) attempt = it->second;
    if (auto f = impl_->fences.find(e.run_id); f != impl_->fences.end()) {
      RunFence& fence = *f->second;
      if (fence.lost) return;  // another worker runs it now: nothing more of this attempt
      auto h = impl_->held.find(e.run_id);
      if (!fence.holds()) {
        // Its lease ran out here: it may be another's. Held until renewed.
        std::deque<trace::Event>& q =
            h != impl_->held.end() ? h->second : impl_->held[std::string(e.run_id)];
        if (q.size() >= kMaxHeldEvents) {
          fence.lost = true;  // the worker stops it as lost
          impl_->held.erase(std::string(e.run_id));
          log(LogLevel::warning, "events: a run's lease stayed out past its held events; lost",
              {{"run_id", e.run_id}});
          return;
        }
        q.push_back(trace::Event::from(e));
        return;
      }
      if (h != impl_->held.end()) {
        before = std::move(h->second);
        impl_->held.erase(h);
      }
    }
  }
  for (const trace::Event& held : before) {
    std::vector<trace::PlannedNode> planned;
    publish_fitting(held.view(planned), attempt, "", false);
  }
  publish_fitting(e, attempt, "", false);
}

// NATS takes a message of at most its max_payload (1 MiB by default): a
// frame of thousands of long node names planned at once, or a huge log
// line, was refused whole and lost. A plan goes in parts (each a
// nodes_planned of its own, which listeners add up as they do a loop's
// frames); a log line is cut, and says so.
void EventPublisher::publish_fitting(const trace::RunEvent& e, std::int64_t attempt,
                                     const std::string& part, bool cut_already) {
  json::object o = trace::to_json(trace::Event::from(e));
  // Which delivery of the run made it. A node's own `attempt` (its retry)
  // stays: the cluster's trace reads as a local run's.
  o["run_attempt"] = attempt;
  if (!o.contains("attempt")) o["attempt"] = attempt;
  const std::string body = json::serialize(o);
  const std::int64_t max_payload = natsConnection_GetMaxPayload(impl_->nats.handles().nc);
  const std::size_t limit =
      static_cast<std::size_t>(std::max<std::int64_t>(max_payload - 8192, 64 * 1024));
  if (body.size() > limit) {
    if (e.kind == trace::EventKind::NodesPlanned && e.planned.size() > 1) {
      const std::size_t half = e.planned.size() / 2;
      trace::RunEvent first = e, second = e;
      first.planned = e.planned.first(half);
      second.planned = e.planned.subspan(half);
      publish_fitting(first, attempt, part + "/0", cut_already);  // '/': never in a run id
      publish_fitting(second, attempt, part + "/1", cut_already);
      return;
    }
    // Cut once, to an eighth of the room: escaped as JSON (six bytes a
    // control byte at most) it fits. At a character's start, so that the
    // line stays UTF-8 for the readers' JSON parsers.
    if (e.kind == trace::EventKind::Log && !cut_already && e.message.size() > limit / 8) {
      const std::string cut = std::string(core::utf8_prefix(e.message, limit / 8)) +
                              " ... (cut: the line was " + std::to_string(e.message.size()) +
                              " bytes, more than an event may hold)";
      trace::RunEvent shorter = e;
      shorter.message = cut;
      publish_fitting(shorter, attempt, part, true);
      return;
    }
  }
  {
    std::lock_guard lock(impl_->mutex);
    ++impl_->unacked[std::string(e.run_id)];  // before the publish: its ack may come at once
  }
  const std::string subject =
      "pyoco.ev." + std::string(e.run_id) + "." + event_subject_kind(e.kind);
  // A run's run_cancelling has one id, "<run_id>.cancelling", whoever
  // publishes it: the cancel request's (at once, even while the worker is
  // dead) and the worker's (should the request's be lost) are kept once.
  const std::string id = e.kind == trace::EventKind::RunCancelling
                             ? std::string(e.run_id) + ".cancelling"
                             : std::string(e.run_id) + "." + std::to_string(attempt) + "." +
                                   std::to_string(e.seq) + part;
  jsPubOptions po = Impl::publish_options(id.c_str());
  const natsStatus s =
      js_PublishAsync(impl_->js, subject.c_str(), body.data(), static_cast<int>(body.size()), &po);
  if (s == NATS_OK) impl_->published.store(true);
  if (s != NATS_OK) {
    impl_->settled(e.run_id);
    impl_->lost.fetch_add(1, std::memory_order_relaxed);
    log(LogLevel::error, "events: an event was not published",
        {{"run_id", e.run_id}, {"error", natsStatus_GetText(s)}});
  }
}

bool EventPublisher::flush(const std::string& run_id, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->acked.wait_for(lock, timeout, [&] { return !impl_->unacked.contains(run_id); });
}

void publish_event_once(Connection& nats, const std::string& run_id, const char* subject_kind,
                        const std::string& id, const json::object& o) {
  const std::string body = json::serialize(o);
  const std::string subject = "pyoco.ev." + run_id + "." + subject_kind;
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode jerr{};
  const natsStatus st = js_Publish(&ack, nats.handles().js, subject.c_str(), body.data(),
                                   static_cast<int>(body.size()), &po, &jerr);
  if (st != NATS_OK) throw_nats("cannot publish an event of run " + run_id, st, jerr);
  jsPubAck_Destroy(ack);
}

namespace {

void publish_once(Connection& nats, const std::string& run_id, const std::string& id,
                  const json::object& o) {
  publish_event_once(nats, run_id, "run", id, o);
}

}  // namespace

void publish_run_submitted(Connection& nats, const RunJob& job) {
  json::object o{{"kind", "run_submitted"},
                 {"run_id", job.run_id},
                 {"flow", job.flow_name},
                 {"tag", job.tag},
                 {"ts", trace::utc_timestamp(std::chrono::system_clock::now())}};
  // The gateways' run index keeps each run's tenant: lists never show
  // another tenant's runs.
  if (!job.tenant_id.empty()) o["tenant_id"] = job.tenant_id;
  publish_once(nats, job.run_id, job.run_id + ".submitted", o);
}

namespace {

// What a run-level event the cluster writes from a record says of the run.
json::object record_event(const char* kind, const RunRecord& record) {
  const json::object& s = record.snapshot;
  auto text = [&](const char* key) -> json::value {
    const json::value* v = s.if_contains(key);
    return v != nullptr ? *v : json::value(nullptr);
  };
  return {{"kind", kind},
          {"run_id", text("run_id")},
          {"flow", text("flow_name")},
          {"status", text("status")},
          {"ts", trace::utc_timestamp(std::chrono::system_clock::now())}};
}

}  // namespace

void publish_run_end(Connection& nats, const RunRecord& record) {
  json::object o = record_event("run_end", record);
  const json::object& s = record.snapshot;
  for (const auto& [key, from] : {std::pair{"message", "error"},
                                  {"attempt", "attempt"},
                                  {"started_at", "start_time"},
                                  {"ended_at", "end_time"}}) {
    const json::value* v = s.if_contains(from);
    o[key] = v != nullptr ? *v : json::value(nullptr);
  }
  const std::string run_id(s.at("run_id").as_string());
  publish_once(nats, run_id, run_id + ".end", o);
}

void publish_run_cancelling(Connection& nats, const RunRecord& record) {
  json::object o = record_event("run_cancelling", record);
  const json::value* by = record.snapshot.if_contains("cancel_requested_by");
  o["by"] = by != nullptr ? *by : json::value(nullptr);
  const std::string run_id(record.snapshot.at("run_id").as_string());
  publish_once(nats, run_id, run_id + ".cancelling", o);
}

}  // namespace pyoco::cluster
