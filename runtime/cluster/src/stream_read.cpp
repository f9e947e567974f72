// Reading what JetStream holds: subscriptions made, read and closed
// without tripping cnats 3.4.
#include <pyoco/cluster/nats_handles.hpp>

#include <chrono>
#include <cstring>

namespace pyoco::cluster {

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

Subscription subscribe_events(Connection& nats, const std::string& subject, std::uint64_t after,
                              double not_before) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.AckPolicy = js_AckNone;
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

bool read_stored(natsSubscription* sub, const std::function<void(natsMsg*)>& each) {
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
    each(m);
  }
  return true;
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
      return;  // deleted: not a current value
    }
    std::string key(natsMsg_GetSubject(m));
    if (key.rfind(subjects, 0) != 0) return;
    key.erase(0, subjects.size());
    if (key.rfind(prefix, 0) != 0) return;
    out.emplace_back(
        std::move(key),
        std::string(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))));
  });
  // Part of a bucket read as the whole would look like keys deleted.
  if (!whole) throw NatsError("cannot read bucket " + bucket + ": it stopped coming");
  return out;
}

}  // namespace pyoco::cluster
