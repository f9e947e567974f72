// Reading what JetStream holds: subscriptions made, read and closed
// without tripping cnats 3.4.
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/core/base64.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <cstring>

namespace pyoco::cluster {

namespace json = boost::json;

void close_subscription(natsSubscription* sub) {
  if (sub == nullptr) return;
  if (natsSubscription_IsValid(sub) && natsSubscription_DrainTimeout(sub, 5000) == NATS_OK) {
    // A sync subscription's drain ends when its queue is read empty after
    // the flush: read and drop. An async one answers ILLEGAL_STATE and is
    // waited for instead.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      natsMsg* m = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&m, sub, 100);
      if (s == NATS_OK) {
        natsMsg_Destroy(m);
        continue;
      }
      if (s == NATS_TIMEOUT && natsSubscription_IsValid(sub) &&
          std::chrono::steady_clock::now() < deadline) {
        continue;
      }
      if (s != NATS_TIMEOUT && natsSubscription_IsValid(sub)) {
        natsSubscription_WaitForDrainCompletion(sub, 5000);
      }
      break;
    }
  }
  natsSubscription_Destroy(sub);
}

namespace {

// NATS pushes no further ahead than the client has read: a large read (a
// run's 200 MB of logs, a big bucket) would otherwise fill the
// connection's buffers until NATS cut the whole connection off as a slow
// consumer, every other request on it with it. Flow control needs idle
// heartbeats.
void paced(jsSubOptions& so) {
  so.Config.FlowControl = true;
  so.Config.Heartbeat = std::chrono::nanoseconds(std::chrono::seconds(5)).count();
}

}  // namespace

Subscription subscribe_events(Connection& nats, const std::string& subject, std::uint64_t after,
                              double not_before) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.AckPolicy = js_AckNone;
  paced(so);
  if (after > 0) {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = after + 1;
  } else if (not_before > 0) {
    so.Config.DeliverPolicy = js_DeliverByStartTime;
    so.Config.OptStartTime = static_cast<std::int64_t>(not_before * 1e9);  // UTC, nanoseconds
  } else {
    so.Config.DeliverPolicy = js_DeliverAll;
  }
  so.ManualAck = true;
  // Making a consumer of a large stream takes NATS a while, longer when
  // many are made at once (200 watches opened together took 5.6 s): a
  // caller that gave up at cnats's 5 s would leave a consumer made after
  // it stopped waiting, and its retry would make NATS busier still.
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 30000;
  natsSubscription* sub = nullptr;
  if (js_SubscribeSync(&sub, nats.handles().js, subject.c_str(), &jo, &so, nullptr) != NATS_OK) {
    return nullptr;
  }
  return Subscription(sub);
}

bool read_stored(natsSubscription* sub, const std::function<bool(natsMsg*)>& each) {
  std::uint64_t pending = 1;  // unknown: read until a message says none is left
  jsConsumerInfo* ci = nullptr;
  if (natsSubscription_GetConsumerInfo(&ci, sub, nullptr, nullptr) == NATS_OK) {
    // Pushed already, or still to push: nothing at all means no wait.
    pending = ci->NumPending + ci->Delivered.Consumer;
    jsConsumerInfo_Destroy(ci);
  }
  while (pending > 0) {
    natsMsg* m = nullptr;
    if (natsSubscription_NextMsg(&m, sub, 2000) != NATS_OK) return false;
    const std::unique_ptr<natsMsg, decltype(&natsMsg_Destroy)> owned(m, &natsMsg_Destroy);
    jsMsgMetaData* meta = nullptr;
    pending = 0;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      pending = meta->NumPending;
      jsMsgMetaData_Destroy(meta);
    }
    if (!each(m)) return true;
  }
  return true;
}

namespace {

// One STREAM.MSG.GET: `request` says which message.
std::optional<StoredMessage> get_stored(Connection& nats, const std::string& stream,
                                        const json::object& asked) {
  const std::string request = json::serialize(asked);
  const std::string api = "$JS.API.STREAM.MSG.GET." + stream;
  natsMsg* reply = nullptr;
  const natsStatus s =
      natsConnection_Request(&reply, nats.handles().nc, api.c_str(), request.data(),
                             static_cast<int>(request.size()), nats.options().timeout.count());
  if (s != NATS_OK) throw_nats("cannot read " + stream, s);
  boost::system::error_code ec;
  const json::value v =
      json::parse(std::string_view(natsMsg_GetData(reply),
                                   static_cast<std::size_t>(natsMsg_GetDataLength(reply))),
                  ec);
  natsMsg_Destroy(reply);
  if (ec || !v.is_object()) throw NatsError(stream + ": an unreadable answer to a message get");
  if (const json::value* e = v.as_object().if_contains("error")) {
    const json::value* code = e->is_object() ? e->as_object().if_contains("code") : nullptr;
    if (code != nullptr && code->is_number() && code->to_number<int>() == 404) return std::nullopt;
    throw NatsError(stream + ": " + json::serialize(*e));
  }
  const json::value* m = v.as_object().if_contains("message");
  const json::value* seq =
      m != nullptr && m->is_object() ? m->as_object().if_contains("seq") : nullptr;
  if (seq == nullptr || !seq->is_number()) {
    throw NatsError(stream + ": a message get answered without a message");
  }
  StoredMessage out;
  out.seq = seq->to_number<std::uint64_t>();
  if (const json::value* subj = m->as_object().if_contains("subject"); subj && subj->is_string()) {
    out.subject = subj->as_string();
  }
  if (const json::value* d = m->as_object().if_contains("data"); d != nullptr && d->is_string()) {
    std::optional<std::string> bytes = core::from_base64(d->as_string());
    if (!bytes) throw NatsError(stream + ": a stored message's data is not base64");
    out.data = std::move(*bytes);
  }
  return out;
}

}  // namespace

std::optional<StoredMessage> next_stored(Connection& nats, const std::string& stream,
                                         std::uint64_t from, const std::string& subject) {
  return get_stored(nats, stream, json::object{{"seq", from}, {"next_by_subj", subject}});
}

std::optional<StoredMessage> last_stored(Connection& nats, const std::string& stream,
                                         const std::string& subject) {
  return get_stored(nats, stream, json::object{{"last_by_subj", subject}});
}

std::vector<std::pair<std::string, std::string>> kv_entries(Connection& nats,
                                                            const std::string& bucket,
                                                            const std::string& prefix) {
  const std::string stream = "KV_" + bucket, subjects = "$KV." + bucket + ".";
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.AckPolicy = js_AckNone;
  so.Config.DeliverPolicy = js_DeliverLastPerSubject;
  paced(so);
  so.ManualAck = true;
  natsSubscription* raw = nullptr;
  jsErrCode jerr{};
  const std::string filter = subjects + ">";
  const natsStatus s =
      js_SubscribeSync(&raw, nats.handles().js, filter.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK) throw_nats("cannot read bucket " + bucket, s, jerr);
  const Subscription sub(raw);
  std::vector<std::pair<std::string, std::string>> out;
  const bool whole = read_stored(sub.get(), [&](natsMsg* m) {
    const char* op = nullptr;
    if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op != nullptr &&
        (std::strcmp(op, "DEL") == 0 || std::strcmp(op, "PURGE") == 0)) {
      return true;  // deleted: not a current value
    }
    std::string key(natsMsg_GetSubject(m));
    if (key.rfind(subjects, 0) != 0) return true;
    key.erase(0, subjects.size());
    if (key.rfind(prefix, 0) != 0) return true;
    out.emplace_back(
        std::move(key),
        std::string(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))));
    return true;
  });
  // Part of a bucket read as the whole would look like keys deleted.
  if (!whole) throw NatsError("cannot read bucket " + bucket + ": it stopped coming");
  return out;
}

}  // namespace pyoco::cluster
