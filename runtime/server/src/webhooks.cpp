#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/server/client.hpp>
#include <pyoco/server/webhooks.hpp>

#include "env_settings.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

namespace pyoco::server {

namespace json = boost::json;

namespace {

// The event's name for a status: run.completed, run.failed, run.cancelled.
std::string event_name(std::string_view status) {
  std::string out = "run.";
  for (const char c : status) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Seconds before the next try after `delivered` failed ones: 1, 2, 4 ... 60.
std::int64_t backoff_ms(std::uint64_t delivered) {
  const std::uint64_t shift = std::min<std::uint64_t>(delivered - 1, 6);
  return std::min<std::int64_t>(1000LL << shift, 60'000);
}

// Refuses a receiver's URL no POST could reach, at start rather than as
// a dead letter per run. Credentials in it are refused without showing
// it: the URL is printed at start and kept in warnings and dead letters,
// and http_call would take user:password for the host.
void check_webhook_url(const std::string& url) {
  const auto scheme_end = url.find("://");
  const std::string authority =
      scheme_end == std::string::npos
          ? std::string()
          : url.substr(scheme_end + 3, url.find_first_of("/?#", scheme_end + 3) - scheme_end - 3);
  if (authority.find('@') != std::string::npos) {
    throw std::invalid_argument(
        "PYOCO_WEBHOOK_URL: a user and password in the URL are not sent, and would be shown "
        "where the URL is: put a token in the path instead (https://host/hook/<token>), and set "
        "PYOCO_WEBHOOK_SECRET to have each delivery signed");
  }
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    throw std::invalid_argument("PYOCO_WEBHOOK_URL=" + url + ": an http:// or https:// URL");
  }
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("PYOCO_WEBHOOK_URL=" + url + ": " + why);
  };
  std::string host = authority, port;
  bool port_given = false;
  if (!host.empty() && host.front() == '[') {  // [::1]:8080
    const auto close = host.find(']');
    if (close == std::string::npos) throw bad("the IPv6 address has no closing ]");
    if (close + 1 < host.size() && host[close + 1] != ':') {
      throw bad("after the ] of an IPv6 address comes :PORT or the path");
    }
    port_given = close + 1 < host.size();
    if (port_given) port = host.substr(close + 2);
    host = host.substr(1, close - 1);
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos) {
      throw bad("\"" + host + "\" is not an IPv6 address");
    }
  } else {
    const auto colon = host.rfind(':');
    if (colon != std::string::npos) {
      port_given = true;
      port = host.substr(colon + 1);
      host.resize(colon);
    }
    if (host.empty()) throw bad("no host");
    for (const char c : host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
        throw bad("the host \"" + host + "\" is not a name or an address");
      }
    }
  }
  if (port_given && (port.empty() || port.size() > 5 ||
                     port.find_first_not_of("0123456789") != std::string::npos ||
                     std::stoul(port) == 0 || std::stoul(port) > 65535)) {
    throw bad("the port \"" + port + "\" is not 1 to 65535");
  }
}

}  // namespace

std::optional<WebhookOptions> webhook_options_from_env() {
  WebhookOptions o;
  o.url = env("PYOCO_WEBHOOK_URL");
  if (o.url.empty()) return std::nullopt;
  check_webhook_url(o.url);
  o.ca_file = env("PYOCO_WEBHOOK_CA_FILE");
  if (const std::string t = env("PYOCO_WEBHOOK_TIMEOUT"); !t.empty()) {
    o.timeout = std::chrono::milliseconds(
        static_cast<std::int64_t>(seconds_from("PYOCO_WEBHOOK_TIMEOUT", t) * 1000));
  }
  if (const std::string r = env("PYOCO_WEBHOOK_RETRIES"); !r.empty()) {
    o.retries = static_cast<int>(whole_from("PYOCO_WEBHOOK_RETRIES", r, 0, 20));
  }
  o.secret = env("PYOCO_WEBHOOK_SECRET");
  const std::string events = env("PYOCO_WEBHOOK_EVENTS");
  for (std::size_t start = 0; start < events.size();) {
    const std::size_t comma = std::min(events.find(',', start), events.size());
    const std::string e = events.substr(start, comma - start);
    if (e != "run.completed" && e != "run.failed" && e != "run.cancelled") {
      throw std::invalid_argument("PYOCO_WEBHOOK_EVENTS: \"" + e +
                                  "\" is not run.completed, run.failed or run.cancelled");
    }
    o.events.insert(e);
    start = comma + 1;
  }
  return o;
}

std::string webhook_signature(const std::string& secret, const std::string& timestamp,
                              const std::string& body) {
  const std::string message = timestamp + "." + body;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += hex[md[i] >> 4], out += hex[md[i] & 15];
  return out;
}

struct WebhookSender::Impl {
  cluster::Connection& nats;
  WebhookOptions options;
  std::string server, target;  // the URL split for http_call
  std::atomic<bool> stopping{false};
  std::vector<std::thread> threads;

  cluster::RunRecords runs;  // the bucket, opened once

  Impl(cluster::Connection& n, WebhookOptions o) : nats(n), options(std::move(o)), runs(n) {
    const auto path = options.url.find('/', options.url.find("://") + 3);
    server = options.url.substr(0, path);
    target = path == std::string::npos ? "/" : options.url.substr(path);
  }

  // The payload: the run's end with its tasks' states and durations.
  json::object payload(const json::object& end, const cluster::RunRecord* record) const {
    const std::string run_id(end.at("run_id").as_string());
    json::object tasks;
    if (record != nullptr) {
      if (const json::value* t = record->snapshot.if_contains("tasks"); t && t->is_object()) {
        for (const auto& [node, state] : t->as_object())
          tasks[node] = json::object{{"state", state}};
      }
    }
    // Durations from the run's node events, for the tasks the record
    // shows (a run of 60,000 iterations shows 2,000: the payload stays
    // one modest POST); without a record, for as many.
    constexpr std::size_t kTasks = 2000;
    const bool only_shown = record != nullptr;
    cluster::read_events(
        nats, "pyoco.ev." + run_id + ".node", 0, [&](const cluster::StoredEvent& e) {
          const json::object& ev = *e.event;
          const json::value* node = ev.if_contains("node");
          const json::value* ms = ev.if_contains("duration_ms");
          if (node == nullptr || !node->is_string() || ms == nullptr || !ms->is_number()) {
            return true;
          }
          if (!tasks.contains(node->as_string()) && (only_shown || tasks.size() >= kTasks)) {
            return true;
          }
          json::value& slot = tasks[node->as_string()];
          if (!slot.is_object()) slot = json::object{};
          json::object& t = slot.as_object();
          const json::value* st = ev.if_contains("task_state");
          if (st != nullptr && !t.contains("state")) t["state"] = *st;
          t["duration_ms"] = *ms;
          return true;
        });
    auto field = [&](const char* key) -> json::value {
      const json::value* v = end.if_contains(key);
      return v != nullptr ? *v : json::value(nullptr);
    };
    const json::value started = field("started_at"), ended = field("ended_at");
    const json::value duration =
        started.is_number() && ended.is_number()
            ? json::value((ended.to_number<double>() - started.to_number<double>()) * 1000)
            : json::value(nullptr);
    // Every key in every delivery, whatever the record holds (a run ended
    // by the next worker after its owner died may have saved no tasks): a
    // receiver reads metadata.task_counts without looking first.
    json::object metadata{{"attempt", field("attempt")},   {"tag", nullptr},
                          {"tenant_id", nullptr},          {"error", nullptr},
                          {"task_counts", json::object{}}, {"tasks_omitted", 0},
                          {"worker_id", nullptr}};
    if (record != nullptr) {
      for (const char* key : {"tag", "tenant_id", "error", "task_counts", "tasks_omitted"}) {
        if (const json::value* v = record->snapshot.if_contains(key); v && !v->is_null()) {
          metadata[key] = *v;
        }
      }
      if (const json::value* o = record->snapshot.if_contains("owner"); o && o->is_object()) {
        if (const json::value* w = o->as_object().if_contains("worker_id"))
          metadata["worker_id"] = *w;
      }
    }
    return json::object{{"event", event_name(end.at("status").as_string())},
                        {"run_id", run_id},
                        {"flow_name", field("flow")},
                        {"status", field("status")},
                        {"started_at", started},
                        {"ended_at", ended},
                        {"duration_ms", duration},
                        {"tasks", std::move(tasks)},
                        {"metadata", std::move(metadata)}};
  }

  // One POST; an empty string when the receiver took it (2xx), else why not.
  std::string post(const std::string& body, const std::string& delivery,
                   const std::string& event) const {
    const std::string timestamp = std::to_string(static_cast<std::int64_t>(cluster::epoch_now()));
    std::map<std::string, std::string> headers{{"X-Pyoco-Event", event},
                                               {"X-Pyoco-Delivery", delivery},
                                               {"X-Pyoco-Timestamp", timestamp},
                                               {"User-Agent", "pyoco-webhooks"}};
    if (!options.secret.empty()) {
      headers["X-Pyoco-Signature"] = "sha256=" + webhook_signature(options.secret, timestamp, body);
    }
    try {
      const ClientResponse r =
          http_call(Endpoint{server, {}, options.ca_file}, boost::beast::http::verb::post, target,
                    body, "application/json", headers, options.timeout);
      if (r.status >= 200 && r.status < 300) return {};
      return "HTTP " + std::to_string(r.status);
    } catch (const ClientError& e) {
      return e.reason().empty() ? e.what() : e.reason();
    }
  }

  // The receiver's address without its path (which may hold a token).
  std::string where() const { return server; }

  // False when NATS did not take it (the end is then tried again later).
  bool dead_letter(const json::object& end, const std::string& error, std::uint64_t tries) {
    const std::string run_id(end.at("run_id").as_string());
    const json::object o{{"reason", "webhook_failed"},
                         {"error", "POST " + where() + " failed " + std::to_string(tries) +
                                       " times; the last: " + error},
                         {"run_id", run_id},
                         {"flow_name", end.contains("flow") ? end.at("flow") : json::value()},
                         {"url", where()},
                         {"ts", cluster::epoch_now()}};
    const std::string body = json::serialize(o);
    const std::string id = run_id + ".webhook";
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id.c_str();
    jsPubAck* ack = nullptr;
    if (js_Publish(&ack, nats.handles().js, "pyoco.dlq.webhooks", body.data(),
                   static_cast<int>(body.size()), &po, nullptr) != NATS_OK) {
      return false;
    }
    jsPubAck_Destroy(ack);
    cluster::log(cluster::LogLevel::warning, "webhooks: given up",
                 {{"run_id", run_id}, {"receiver", where()}, {"tries", tries}, {"error", error}});
    return true;
  }

  void handle(natsMsg* m) {
    jsMsgMetaData* meta = nullptr;
    std::uint64_t delivered = 1, seq = 0;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      delivered = meta->NumDelivered;
      seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
    }
    boost::system::error_code ec;
    const json::value v = json::parse(
        std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))),
        ec);
    if (ec || !v.is_object() || v.at("kind") != "run_end" || !v.as_object().contains("status")) {
      natsMsg_Ack(m, nullptr);  // another run event: not for webhooks
      return;
    }
    const json::object& end = v.as_object();
    const std::string event = event_name(end.at("status").as_string());
    if (!options.events.empty() && !options.events.contains(event)) {
      natsMsg_Ack(m, nullptr);
      return;
    }
    std::optional<cluster::RunRecord> record;
    try {
      record = runs.get(std::string(end.at("run_id").as_string()));
    } catch (const cluster::NatsError&) {
      natsMsg_NakWithDelay(m, 1000, nullptr);  // NATS is away: later
      return;
    }
    const std::string body = json::serialize(payload(end, record ? &*record : nullptr));
    const std::string delivery = std::string(end.at("run_id").as_string()) + "." +
                                 std::to_string(seq);  // the same on every retry
    const std::string error = post(body, delivery, event);
    if (error.empty()) {
      natsMsg_AckSync(m, nullptr, nullptr);
    } else if (delivered > static_cast<std::uint64_t>(options.retries)) {
      if (dead_letter(end, error, delivered)) {
        natsMsg_Term(m, nullptr);
      } else {
        natsMsg_NakWithDelay(m, 5000, nullptr);  // the spare delivery: the letter later
      }
    } else {
      natsMsg_NakWithDelay(m, backoff_ms(delivered), nullptr);
    }
  }

  void loop() {
    natsSubscription* sub = nullptr;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "PYOCO_EVENTS";
    so.Consumer = "pyoco_webhooks";
    if (js_PullSubscribe(&sub, nats.handles().js, "pyoco.ev.*.run", "pyoco_webhooks", nullptr, &so,
                         nullptr) != NATS_OK) {
      cluster::log(cluster::LogLevel::error, "webhooks: cannot pull pyoco_webhooks");
      return;
    }
    while (!stopping) {
      natsMsgList list{};
      // One at a time, polls of a second (so that a stop is heard).
      const natsStatus got = natsSubscription_Fetch(&list, sub, 1, 1000, nullptr);
      if (got != NATS_OK && got != NATS_TIMEOUT) {
        std::this_thread::sleep_for(std::chrono::seconds(1));  // NATS away: no busy loop
      }
      if (got == NATS_OK && list.Count > 0) {
        try {
          handle(list.Msgs[0]);
        } catch (const std::exception& e) {
          cluster::log(cluster::LogLevel::warning, "webhooks: will try again",
                       {{"error", e.what()}});
          natsMsg_NakWithDelay(list.Msgs[0], 1000, nullptr);
        }
      }
      natsMsgList_Destroy(&list);
    }
    natsSubscription_Destroy(sub);
  }
};

WebhookSender::WebhookSender(cluster::Connection& nats, WebhookOptions options)
    : impl_(std::make_shared<Impl>(nats, std::move(options))) {
  // The AckWait covers a try, a slow name lookup included (getaddrinfo's
  // own limits), and the payload's reads; MaxDeliver the retries, plus one
  // spare for the dead letter.
  cluster::init_webhook_consumer(nats, impl_->options.timeout + std::chrono::seconds(40),
                                 impl_->options.retries + 2);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, impl_->options.senders); ++i) {
    impl_->threads.emplace_back([impl = impl_] { impl->loop(); });
  }
}

WebhookSender::~WebhookSender() {
  impl_->stopping = true;
  for (std::thread& t : impl_->threads) t.join();
}

}  // namespace pyoco::server
