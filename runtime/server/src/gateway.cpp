#include <pyoco/abi.h>
#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/cluster/event_stream.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/plugin_repository.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/run_records.hpp>
#include <pyoco/cluster/unqueued_runs.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/json_text.hpp>
#include <pyoco/core/node_name.hpp>
#include <pyoco/core/param_name.hpp>
#include <pyoco/core/states.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/package.hpp>
#include <pyoco/server/auth.hpp>
#include <pyoco/server/gateway.hpp>
#include <pyoco/server/metrics.hpp>
#include <pyoco/server/metrics_feed.hpp>
#include <pyoco/server/run_index.hpp>

#include <openssl/evp.h>

#include <boost/json.hpp>

#include "dashboard.hpp"
#include "event_hub.hpp"
#include "job_sequences.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stop_token>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <vector>

namespace pyoco::server {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

std::string uuid4() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  const std::uint64_t a = gen(), b = gen();
  char out[37];
  std::snprintf(out, sizeof out, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0x0fff),
                static_cast<unsigned>(((b >> 48) & 0x3fff) | 0x8000),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return out;
}

// With an Idempotency-Key, the run id is derived from it (and the tenant):
// the same key gives the same run, however often it is sent.
std::string run_id_for(std::string_view idempotency_key, std::string_view tenant) {
  if (idempotency_key.empty()) return uuid4();
  const std::string input = std::string(tenant) + "\n" + std::string(idempotency_key);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string id = "idem-";
  for (unsigned i = 0; i < 16; ++i) id += hex[md[i] >> 4], id += hex[md[i] & 15];
  return id;
}

// `v` as JSON text with every object's members in key order: the same
// params give the same text however a client ordered them.
void append_canonical(std::string& out, const json::value& v) {
  if (v.is_object()) {
    std::vector<const json::key_value_pair*> members;
    for (const json::key_value_pair& m : v.as_object()) members.push_back(&m);
    std::sort(members.begin(), members.end(),
              [](const auto* a, const auto* b) { return a->key() < b->key(); });
    out += '{';
    for (const json::key_value_pair* m : members) {
      if (out.back() != '{') out += ',';
      out += json::serialize(json::string(m->key()));
      out += ':';
      append_canonical(out, m->value());
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (const json::value& e : v.as_array()) {
      if (out.back() != '[') out += ',';
      append_canonical(out, e);
    }
    out += ']';
  } else {
    out += json::serialize(v);
  }
}

// What a submit asks for, as a digest (hex SHA-256): an Idempotency-Key
// repeated with another request is told apart from a retry by it.
std::string request_digest(const cluster::RunJob& job) {
  std::string text;
  append_canonical(text, json::object{{"flow_name", job.flow_name},
                                      {"tag", job.tag},
                                      {"params", job.params},
                                      {"workflow_yaml", job.workflow_yaml}});
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string digest;
  for (unsigned i = 0; i < len; ++i) digest += hex[md[i] >> 4], digest += hex[md[i] & 15];
  return digest;
}

// A stream sequence a client may name (JetStream's are int64).
constexpr std::uint64_t kMaxSequence = std::numeric_limits<std::int64_t>::max() - 1;

[[noreturn]] void unprocessable(const std::string& detail) {
  throw HttpError{422, "invalid_request", detail};
}

// A query value that must be a whole number from `min` to `max` (digits
// only: no sign, no space, nothing after); 422 with `what` otherwise.
std::uint64_t whole_number(std::string_view text, std::uint64_t min, std::uint64_t max,
                           const std::string& what) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < min || n > max) {
    unprocessable(what);
  }
  return n;
}

// On an answer made from what the gateway holds while NATS is away.
constexpr const char* kStaleHeader = "X-Pyoco-Stale";

// What a JSON value is, for an answer: "a number", "an array"...
const char* json_kind(const json::value& v) {
  switch (v.kind()) {
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
    case json::kind::string:
      return "a string";
    case json::kind::null:
      return "null";
  }
  return "a value";
}

// Retry-After of a 503 `nats_unavailable`: the gateway reconnects by itself.
constexpr unsigned kNatsRetryAfter = 5;

[[noreturn]] void nats_down(const cluster::NatsError& e) {
  // A key or subject NATS refuses as malformed came from the request (a
  // name in the path or the body): the client's to fix, retrying is vain.
  if (dynamic_cast<const cluster::NatsInvalidArgument*>(&e) != nullptr) unprocessable(e.what());
  throw HttpError{503, "nats_unavailable", std::string(e.what()) + " (retry when NATS is back)",
                  kNatsRetryAfter};
}

// How deep a body's arrays and objects may nest (Boost.JSON's default, which
// bounds the parser's stack): the body is one level, so params get one less.
constexpr std::size_t kMaxBodyDepth = 32;

json::object body_object(const Request& req) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxBodyDepth;
  json::value v = json::parse(req.body(), ec, {}, options);
  if (ec == json::error::too_deep) {
    unprocessable("the body nests arrays and objects more than " + std::to_string(kMaxBodyDepth) +
                  " levels deep (params: at most " + std::to_string(kMaxBodyDepth - 1) +
                  " levels inside the body); flatten it, or pass a file's location");
  }
  if (ec) {
    // Where it stopped, and why when the bytes are not text at all.
    const std::string_view body = req.body();
    if (const std::size_t bad = core::invalid_utf8_at(body); bad != std::string_view::npos) {
      unprocessable("the body is not JSON: byte " + std::to_string(bad + 1) + " (at " +
                    core::line_column(body, bad) + ") is not UTF-8; send the body as UTF-8");
    }
    unprocessable("the body is not JSON: " + ec.message() + " at " +
                  core::json_error_position(body, kMaxBodyDepth));
  }
  if (!v.is_object()) unprocessable("the body must be a JSON object");
  // What the value cannot tell: a key sent twice (JSON readers disagree on
  // which one counts), an integer no 64-bit integer holds (read as a double,
  // silently rounded: `pyoco client submit --param` refuses it too, in the
  // same words).
  if (const core::JsonTextProblem p = core::json_text_problem(req.body(), kMaxBodyDepth)) {
    const std::string where = p.path.empty() ? "the body" : p.path;
    if (p.kind == core::JsonTextProblem::Kind::DuplicateKey) {
      unprocessable(where + ": the key is sent twice in one object; send each key once");
    }
    unprocessable(where + ": " + shown(p.integer) +
                  ": too large for a 64-bit integer; quote it to keep it as text");
  }
  return std::move(v.as_object());
}

std::string tag_of(const json::object& o, const std::string& fallback) {
  const json::value* t = o.if_contains("tag");
  if (t == nullptr || t->is_null()) return fallback;
  if (!t->is_string()) unprocessable("tag: must be a string");
  const std::string tag(t->as_string());
  try {
    cluster::check_tag(tag);
  } catch (const cluster::NatsError& e) {
    unprocessable(std::string("tag: ") + e.what());
  }
  return tag;
}

// A name a client sent, fit to show back: "" for none.
std::string shown_name(std::string_view name) { return name.empty() ? "\"\"" : shown(name); }

// Refuses (422) the first of `names` (a body's keys, a form's parts, a
// query's parameters) that is not one of `known`: a misspelt field would
// otherwise start a run nobody asked for ("parmas", without its params).
// `why` says more of a name, or "".
template <class Names>
void refuse_unknown(const Names& names, std::span<const std::string_view> known,
                    std::string_view what,
                    const std::function<std::string(std::string_view)>& why) {
  for (const auto& name : names) {
    const std::string_view n(name);
    if (std::find(known.begin(), known.end(), n) != known.end()) continue;
    std::string list;
    for (const std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
    const std::string more = why ? why(n) : std::string();
    unprocessable(shown_name(n) + ": not a field of " + std::string(what) + " (" + list + ")" +
                  (more.empty() ? "" : "; " + more));
  }
}

// One part of a multipart/form-data body: its bytes, and the file name
// its sender gave ("" for none).
struct FormPart {
  std::string value;
  std::string filename;
};

// The parameters of a part's Content-Disposition header (name, filename),
// names in lower case, quoted values unquoted: `form-data; name="workflow";
// filename="flow.yaml"`. A `name=` inside a quoted filename is no name.
std::map<std::string, std::string> disposition(std::string_view headers) {
  std::map<std::string, std::string> params;
  auto lower = [](std::string_view t) {
    std::string out(t);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  std::string_view line;
  for (std::string_view rest = headers; !rest.empty();) {
    const auto end = rest.find("\r\n");
    const std::string_view l = rest.substr(0, end);
    if (lower(l.substr(0, 20)) == "content-disposition:") {
      line = l.substr(20);
      break;
    }
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
  }
  std::size_t at = line.find(';');  // past "form-data"
  while (at != std::string_view::npos && at < line.size()) {
    ++at;  // the ';'
    while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
    const auto eq = line.find('=', at);
    if (eq == std::string_view::npos) break;
    std::string key = lower(line.substr(at, eq - at));
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    std::string value;
    at = eq + 1;
    if (at < line.size() && line[at] == '"') {
      for (++at; at < line.size() && line[at] != '"'; ++at) {
        if (line[at] == '\\' && at + 1 < line.size()) ++at;
        value += line[at];
      }
      at = line.find(';', at);
    } else {
      const auto semi = line.find(';', at);
      value = std::string(line.substr(at, semi == std::string_view::npos ? semi : semi - at));
      at = semi;
    }
    params.emplace(std::move(key), std::move(value));
  }
  return params;
}

// multipart/form-data: each part by its name.
std::map<std::string, FormPart> form_parts(const Request& req) {
  const std::string type(req[http::field::content_type]);
  const auto b = type.find("boundary=");
  if (b == std::string::npos) unprocessable("a multipart body needs a boundary");
  std::string boundary = type.substr(b + 9);
  if (!boundary.empty() && boundary.front() == '"') {
    boundary = boundary.substr(1, boundary.find('"', 1) - 1);
  } else {
    boundary = boundary.substr(0, boundary.find(';'));  // "boundary=B; charset=..."
  }
  const std::string delimiter = "--" + boundary;
  const std::string& body = req.body();
  std::map<std::string, FormPart> parts;
  std::size_t at = body.find(delimiter);
  if (at == std::string::npos) {
    unprocessable("the multipart body holds no part: its boundary (" + shown(boundary) +
                  ", from Content-Type) is nowhere in it");
  }
  while (at != std::string::npos) {
    at += delimiter.size();
    if (body.compare(at, 2, "--") == 0) break;
    const std::size_t headers_end = body.find("\r\n\r\n", at);
    if (headers_end == std::string::npos) unprocessable("a multipart part has no end of headers");
    const std::string headers = body.substr(at, headers_end - at);
    const std::size_t next = body.find("\r\n" + delimiter, headers_end + 4);
    if (next == std::string::npos) unprocessable("a multipart part is not closed");
    const auto params = disposition(headers);
    const auto name = params.find("name");
    // A part nobody can name would be dropped without a word.
    if (name == params.end()) {
      unprocessable("a multipart part has no name (Content-Disposition: form-data; name=\"...\")");
    }
    // As a key sent twice in a JSON body: readers disagree on which counts.
    if (parts.contains(name->second)) {
      throw HttpError{400, "bad_request",
                      "the multipart field " + shown_name(name->second) +
                          " is sent twice; send each field once"};
    }
    const auto filename = params.find("filename");
    parts[name->second] = {body.substr(headers_end + 4, next - headers_end - 4),
                           filename == params.end() ? std::string() : filename->second};
    at = next + 2;
  }
  return parts;
}

cluster::ConnectOptions watch_connection(const cluster::Connection& nats) {
  cluster::ConnectOptions o = nats.options();
  o.name += " (watches)";
  return o;
}

class Gateway {
 public:
  Gateway(cluster::Connection& nats, GatewayOptions options)
      : nats_(nats),
        options_(std::move(options)),
        runs_(nats),
        workers_(nats, options_.worker_disconnect_after),
        index_(nats, options_.run_index_file),
        watch_nats_(watch_connection(nats)),
        pinger_([this](std::stop_token stop) { ping_nats(stop); }) {}

  // A gateway that stops says what its counters held last: what it counted
  // after Prometheus's last scrape is otherwise lost with the process (the
  // feed is stopped first, so nothing more is counted, nor acked, here).
  ~Gateway() {
    pinger_.request_stop();
    pinger_.join();
    feed_.reset();
    std::uint64_t total = 0;
    json::object by_status;
    for (const auto& [status, n] : metrics_.runs_ended()) {
      total += n;
      by_status[status] = n;
    }
    cluster::log(cluster::LogLevel::info, "gateway: stopped; run ends counted since its start",
                 {{"runs_total", total}, {"by_status", json::value(std::move(by_status))}});
  }
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  Response health() const {
    // Answered on the I/O thread: never natsConnection_Status, which waits
    // on the connection's lock while a reconnect holds it, nor a ping: the
    // background pinger's note is read instead. A server that stopped
    // answering (frozen, its host gone) leaves the connection up for
    // minutes, while every other route is 503 after 2 s.
    const bool connected = nats_.connected();
    const bool up = connected && nats_answering();
    return json_response(up ? 200 : 503, json::object{{"status", up ? "ok" : "degraded"},
                                                      {"nats", up          ? "connected"
                                                               : connected ? "not answering"
                                                                           : "disconnected"}});
  }

  // Whether NATS answered the background pinger lately (see ping_nats).
  bool nats_answering() const {
    const auto since = unanswered_since_.load();
    return since == 0 || std::chrono::steady_clock::now().time_since_epoch() -
                                 std::chrono::steady_clock::duration(since) <
                             kNatsSilentFor;
  }

  // /health's view of NATS: a ping every second on the gateway's
  // connection; unanswered_since_ is when the oldest ping still without
  // an answer was sent (0: none).
  static constexpr auto kNatsSilentFor = std::chrono::seconds(3);
  void ping_nats(const std::stop_token& stop) {
    std::mutex m;
    std::condition_variable_any wake;
    while (!stop.stop_requested()) {
      const auto asked = std::chrono::steady_clock::now();
      if (!nats_.connected()) {
        unanswered_since_.store(0);  // disconnected says it; a new connection starts afresh
      } else {
        std::chrono::steady_clock::rep none = 0;
        unanswered_since_.compare_exchange_strong(none, asked.time_since_epoch().count());
        if (natsConnection_FlushTimeout(nats_.handles().nc, 1000) == NATS_OK) {
          unanswered_since_.store(0);
        }
      }
      std::unique_lock lock(m);
      wake.wait_until(lock, stop, asked + std::chrono::seconds(1), [] { return false; });
    }
  }

  // GET /runs, /stats and /workers answer from the gateway's own index and
  // its last view of the workers, which stand still while NATS is away:
  // such an answer says so, so a script or the dashboard can tell. A server
  // that stopped answering (frozen, a link cut without a reset) leaves the
  // connection up for minutes: the pinger's note counts too, as for /health.
  Response from_memory(Response res) const {
    if (!nats_.connected()) {
      res.set(kStaleHeader, "NATS is away: as of the gateway's last news");
    } else if (!nats_answering()) {
      res.set(kStaleHeader, "NATS is away (not answering): as of the gateway's last news");
    }
    return res;
  }

  static constexpr std::size_t kMaxParamsBytes = 512 * 1024;

  Response submit(const Request& req, const Caller& caller) {
    const json::object body = body_object(req);
    std::vector<std::string_view> keys;
    for (const auto& member : body) keys.push_back(member.key());
    // `tags`: pyoco-server's labels of a run, which its client sends; its
    // record shows the run's one tag there.
    static constexpr std::array<std::string_view, 4> kRunFields = {"flow_name", "params", "tag",
                                                                   "tags"};
    refuse_unknown(keys, kRunFields, "a run", {});
    if (const json::value* t = body.if_contains("tags"); t != nullptr && !t->is_null()) {
      const bool strings =
          t->is_array() && std::all_of(t->as_array().begin(), t->as_array().end(),
                                       [](const json::value& v) { return v.is_string(); });
      if (!strings) {
        unprocessable("tags: a list of strings (pyoco-server's labels; the run goes to \"tag\")");
      }
    }
    const json::value* flow = body.if_contains("flow_name");
    if (flow != nullptr && !flow->is_string() && !flow->is_null()) {
      unprocessable(std::string("flow_name: must be a string (the name of a flow the workers "
                                "have, --flows), not ") +
                    json_kind(*flow));
    }
    if (flow == nullptr || flow->is_null()) {
      unprocessable("flow_name: required, the name of a flow the workers have (--flows)");
    }
    if (flow->as_string().empty()) {
      unprocessable("flow_name: empty; give the name of a flow the workers have (--flows)");
    }
    cluster::RunJob job;
    job.flow_name = std::string(flow->as_string());
    try {
      cluster::check_flow_name(job.flow_name);
    } catch (const cluster::NatsError& e) {
      unprocessable(e.what());
    }
    job.tag = tag_of(body, options_.default_tag);
    if (const json::value* p = body.if_contains("params"); p != nullptr && !p->is_null()) {
      if (!p->is_object()) unprocessable("params: must be a JSON object");
      // As `pyoco run -p` and a params file refuse it.
      for (const auto& [key, value] : p->as_object()) {
        if (const std::string why = core::param_name_problem(key); !why.empty()) {
          unprocessable("params." + core::shown_param_name(key) + ": " + why);
        }
      }
      if (const std::string at = core::non_finite_number_at(*p, "params"); !at.empty()) {
        unprocessable(at + ": a number too large for a double (JSON has no infinity)");
      }
      // The run's record (one NATS message, 1 MiB by default) holds its
      // params and up to 2,000 of its tasks.
      if (const std::size_t bytes = json::serialize(*p).size(); bytes > kMaxParamsBytes) {
        unprocessable("params: " + std::to_string(bytes) + " bytes as JSON, over the limit of " +
                      std::to_string(kMaxParamsBytes) +
                      " (a run's record, params included, is one NATS message): pass a "
                      "dataset's location, not the dataset");
      }
      job.params = p->as_object();
    }
    return queue(req, caller, std::move(job));
  }

  static constexpr const char* kSentFlowFile = "workflow.yaml";
  static constexpr std::array<std::string_view, 3> kSentFlowFields = {"workflow", "flow_name",
                                                                      "tag"};
  static std::string sent_flow_field_hint(std::string_view name) {
    if (name != "params") return {};
    return "such a run takes its flow's defaults as its params: set them there, or submit a "
           "flow the workers have by name (POST /runs, which takes params)";
  }

  Response submit_yaml(const Request& req, const Caller& caller) {
    std::string workflow, flow_name;
    std::string sender_file = kSentFlowFile;  // as its errors name it
    std::string tag = options_.default_tag;
    const std::string type(req[http::field::content_type]);
    if (type.rfind("multipart/form-data", 0) == 0) {
      auto parts = form_parts(req);
      std::vector<std::string_view> names;
      for (const auto& part : parts) names.push_back(part.first);
      refuse_unknown(names, kSentFlowFields, "a run of a sent flow", sent_flow_field_hint);
      workflow = parts["workflow"].value;
      // Its errors name the sender's file, a base name shown safely.
      if (std::string f = parts["workflow"].filename; !f.empty()) {
        f = f.substr(f.find_last_of("/\\") == std::string::npos ? 0 : f.find_last_of("/\\") + 1);
        if (!f.empty()) sender_file = shown(f.substr(0, 128));
      }
      // Names in the query beside a form would be read by nobody.
      if (const auto names = query_names(req.target()); !names.empty()) {
        unprocessable(shown_name(names.front()) +
                      ": a query parameter beside a multipart body; send it as a part "
                      "(workflow, flow_name, tag)");
      }
      flow_name = parts["flow_name"].value;
      if (!parts["tag"].value.empty()) tag = parts["tag"].value;
    } else {  // the YAML itself as the body; names in the query
      workflow = req.body();
      refuse_unknown(query_names(req.target()),
                     std::span<const std::string_view>(kSentFlowFields).subspan(1),
                     "a run of a sent flow", sent_flow_field_hint);
      flow_name = query_value(req.target(), "flow_name");
      if (const std::string t = query_value(req.target(), "tag"); !t.empty()) tag = t;
    }
    if (workflow.empty()) unprocessable("workflow: required, the flow file (multipart field)");
    if (workflow.size() > options_.workflow_limit) {
      throw HttpError{413, "too_large",
                      "workflow: " + std::to_string(workflow.size()) +
                          " bytes, over the limit of " + std::to_string(options_.workflow_limit)};
    }
    try {
      cluster::check_tag(tag);
    } catch (const cluster::NatsError& e) {
      unprocessable(std::string("tag: ") + e.what());
    }
    // Refused here, with the line, rather than failed on a worker.
    std::shared_ptr<core::FlowSpec> spec;
    try {
      // Read as the workers read it (YAML, named workflow.yaml: its name is
      // a nameless flow's); the sender's file is named in the message only.
      spec = std::make_shared<core::FlowSpec>(core::parse_flow_text(workflow, kSentFlowFile));
      core::compile_flow(spec);
    } catch (const core::FlowError& e) {
      core::SourceLocation at = e.where();
      if (at.file == kSentFlowFile) at.file = sender_file;
      unprocessable("workflow: " + at.to_string() + ": " + e.problem());
    }
    cluster::RunJob job;
    job.flow_name = !flow_name.empty() ? flow_name : spec->name.empty() ? "flow" : spec->name;
    try {
      cluster::check_flow_name(job.flow_name);
    } catch (const cluster::NatsError& e) {
      if (!flow_name.empty()) unprocessable(e.what());
      // Taken from the flow: a name `pyoco run` takes ("my flow") may not
      // name a cluster run; the caller can give one that does.
      unprocessable("the flow's name \"" + core::printable(job.flow_name) +
                    "\" cannot name a cluster run (1 to 128 letters, digits, '-', '_' and '.', "
                    "not first): give the run a flow_name field (`pyoco client submit-yaml "
                    "--flow-name NAME`)");
    }
    job.tag = tag;
    job.workflow_yaml = std::move(workflow);
    return queue(req, caller, std::move(job));
  }

  Response list(const Request& req, const Caller& caller) const {
    RunQuery q;
    if (!caller.any_tenant) q.tenant = caller.tenant;
    // A status is one a run can have, in any case: a misspelt one is an
    // error, not an empty list.
    q.status = upper_case(query_value(req.target(), "status"));
    if (!q.status.empty() && !core::run_status_from(q.status)) {
      unprocessable("status: one of PENDING, RUNNING, COMPLETED, FAILED, CANCELLING, CANCELLED");
    }
    q.flow = query_value(req.target(), "flow");
    q.tag = query_value(req.target(), "tag");
    const std::string limit = query_value(req.target(), "limit");
    const std::string after = query_value(req.target(), "updated_after");
    const std::string cursor = query_value(req.target(), "cursor");
    if (!limit.empty()) q.limit = whole_number(limit, 1, 200, "limit: a number from 1 to 200");
    if (!after.empty()) {
      double t = 0;
      const auto [end, ec] = std::from_chars(after.data(), after.data() + after.size(), t);
      if (ec != std::errc() || end != after.data() + after.size() || !std::isfinite(t)) {
        unprocessable("updated_after: a time in seconds since the epoch, as updated_at gives");
      }
      q.updated_after = t;
    }
    if (!cursor.empty()) {
      q.before = decode_cursor(cursor);
      if (!q.before) unprocessable("cursor: not one this gateway gave (use next_cursor as it is)");
    }
    RunPage page = index_.query(q);
    json::array items;
    for (json::object& o : page.items) items.push_back(std::move(o));
    // pyoco-server's shapes: a plain array, or a page once paging is asked for.
    if (cursor.empty() && after.empty()) return from_memory(json_response(200, items));
    return from_memory(json_response(
        200, json::object{{"items", std::move(items)},
                          {"next_cursor", page.next ? json::value(encode_cursor(page.next->first,
                                                                                page.next->second))
                                                    : json::value(nullptr)}}));
  }

  Response get(const std::string& id, const Caller& caller) const {
    const cluster::RunRecord r = find(id, caller);
    return json_response(200, r.snapshot);
  }

  Response tasks(const std::string& id, const Caller& caller) const {
    const cluster::RunRecord r = find(id, caller);
    json::object out{{"run_id", id}, {"status", r.status()}};
    const json::value* t = r.snapshot.if_contains("tasks");
    out["tasks"] = t != nullptr ? *t : json::value(json::object{});
    // A large run's record shows 2,000 of its tasks, and counts them all;
    // before its worker's first write of them, none and none left out.
    const json::value* counts = r.snapshot.if_contains("task_counts");
    const json::value* omitted = r.snapshot.if_contains("tasks_omitted");
    out["task_counts"] = counts != nullptr ? *counts : json::value(json::object{});
    out["tasks_omitted"] = omitted != nullptr ? *omitted : json::value(0);
    return json_response(200, out);
  }

  // A state or status in a query, in any case, as it is compared.
  static std::string upper_case(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return text;
  }

  Response workers(const Request& req, const Caller& caller) const {
    // Any case, as a run's status in GET /runs.
    const std::string state = upper_case(query_value(req.target(), "state"));
    const auto& states = cluster::kWorkerStates;
    if (!state.empty() && std::find(states.begin(), states.end(), state) == states.end()) {
      std::string allowed;
      for (std::string_view s : states) allowed += (allowed.empty() ? "" : ", ") + std::string(s);
      unprocessable("state: one of " + allowed);
    }
    const std::string hidden = query_value(req.target(), "include_hidden");
    const std::string limit_text = query_value(req.target(), "limit");
    const std::size_t limit =
        limit_text.empty() ? 100
                           : whole_number(limit_text, 1, 1000, "limit: a number from 1 to 1000");
    json::array out;
    // `hidden` as the caller's tenant set it (auth off: as everyone's).
    const std::string viewer = caller.any_tenant ? std::string() : caller.tenant;
    for (json::object& w : workers_.list(state, hidden == "true" || hidden == "1", limit, viewer)) {
      if (!caller.any_tenant) {
        if (!serves_a_tag_of(w, caller)) continue;
        hide_others(w, caller);
      }
      out.push_back(std::move(w));
    }
    return from_memory(json_response(200, out));
  }

  // Workers are shared by every tenant: an admin key hides one from its
  // own tenant's list only (docs/security.md: admin is for its tenant);
  // with auth off, from everyone's. A worker the caller may not see is
  // not found.
  Response patch_worker(const Request& req, const std::string& id, const Caller& caller) {
    const json::object body = body_object(req);
    const json::value* h = body.if_contains("hidden");
    if (h == nullptr || !h->is_bool()) unprocessable("hidden: required, true or false");
    if (!caller.any_tenant) {
      const std::optional<json::object> w = workers_.find(id);
      if (!w || !serves_a_tag_of(*w, caller)) {
        throw HttpError{404, "not_found", "worker " + shown(id) + " not found"};
      }
    }
    try {
      if (!workers_.set_hidden(id, h->as_bool(), caller.any_tenant ? "" : caller.tenant)) {
        throw HttpError{404, "not_found", "worker " + shown(id) + " not found"};
      }
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
    return json_response(200, json::object{{"worker_id", id},
                                           {"hidden", h->as_bool()},
                                           {"updated_at", cluster::epoch_now()}});
  }

  // The run's log lines from PYOCO_EVENTS (its `log` events): `task` keeps
  // one node's (its iterations too), `after` those past a stream sequence
  // (`next_after` of the last answer), `tail` the last N. An answer holds
  // at most `limit` lines and about kLogPage bytes of them, from at most
  // kLogScan bytes read: `more` says that the next page starts at
  // `next_after`. Nothing is held but the page, however much the run
  // logged. `truncated` says a tail's page held fewer than N.
  static constexpr std::size_t kLogPage = 4 << 20;
  static constexpr std::size_t kLogScan = 64 << 20;  // read at most, but for `tail`
  using LogLines = std::deque<std::pair<json::object, std::size_t>>;  // a line, its bytes as stored

  // A stored log event as an answer's line; nullopt when `task` does not keep it.
  static std::optional<json::object> log_line(const cluster::StoredEvent& e,
                                              const std::string& task) {
    const json::object& o = *e.event;
    const json::value* n = o.if_contains("node");
    const std::string node = n != nullptr && n->is_string() ? std::string(n->as_string()) : "";
    if (!task.empty() && node != task && !core::is_iteration_of(node, task)) return std::nullopt;
    return json::object{{"id", e.seq},
                        {"node", node},
                        {"level", o.contains("level") ? o.at("level") : json::value("INFO")},
                        {"message", o.contains("message") ? o.at("message") : json::value("")},
                        {"ts", o.contains("ts") ? o.at("ts") : json::value(nullptr)}};
  }

  Response logs(const Request& req, const std::string& id, const Caller& caller) const {
    find(id, caller);  // 404 for an unknown run, or another tenant's
    const std::string task = query_value(req.target(), "task");
    std::uint64_t after = 0;
    std::size_t tail = 0, limit = 1000;
    if (const std::string a = query_value(req.target(), "after"); !a.empty())
      after = whole_number(a, 0, kMaxSequence, "after: a stream sequence, as next_after gives");
    if (const std::string t = query_value(req.target(), "tail"); !t.empty())
      tail = whole_number(t, 0, 10000, "tail: a number of lines from 0 to 10000");
    // With a tail, limit does not apply (docs/cluster.md): not even checked.
    if (const std::string l = query_value(req.target(), "limit"); !l.empty() && tail == 0)
      limit = whole_number(l, 1, 10000, "limit: a number of lines from 1 to 10000");
    const std::string subject = "pyoco.ev." + id + ".log";
    LogLines items;
    std::uint64_t last = after;
    bool more = false, truncated = false;
    if (tail > 0) {
      truncated = log_tail(id, subject, task, after, tail, items, last);
    } else {
      std::size_t bytes = 0, scanned = 0;
      const bool asked =
          cluster::read_events(nats_, subject, after, [&](const cluster::StoredEvent& e) {
            // A page is full, or enough was read for one request (a `task`
            // that logged little among much): the next starts after the
            // last line read.
            if (items.size() == limit || (bytes >= kLogPage && !items.empty()) ||
                scanned >= kLogScan) {
              more = true;
              return false;
            }
            scanned += e.size;
            last = e.seq;
            if (std::optional<json::object> line = log_line(e, task)) {
              items.emplace_back(std::move(*line), e.size);
              bytes += e.size;
            }
            return true;
          });
      if (!asked)
        throw HttpError{503, "nats_unavailable", "cannot read the logs of run " + id,
                        kNatsRetryAfter};
    }
    json::array out;
    out.reserve(items.size());
    for (auto& [line, size] : items) out.push_back(std::move(line));
    json::object answer{
        {"run_id", id}, {"items", std::move(out)}, {"next_after", last}, {"more", more}};
    if (tail > 0) answer["truncated"] = truncated;
    return json_response(200, answer);
  }

  // The last `tail` lines past `after` that fit in a page, read backwards
  // from the run's last log event in windows of stream sequences that grow
  // eightfold: a tail costs about what it shows, not the run's whole log.
  // `newest` becomes the last event's sequence; true when lines were
  // dropped for room (truncated).
  bool log_tail(const std::string& id, const std::string& subject, const std::string& task,
                std::uint64_t after, std::size_t tail, LogLines& items,
                std::uint64_t& newest) const {
    std::optional<cluster::StoredMessage> last;
    try {
      last = cluster::last_stored(nats_, "PYOCO_EVENTS", subject);
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
    if (!last || last->seq <= after) return false;
    newest = last->seq;
    std::size_t bytes = 0;
    bool truncated = false;
    std::uint64_t upper = last->seq, window = 2 * tail + 64;
    for (;;) {
      const std::uint64_t from = upper - after > window ? upper - window : after;
      // This window's lines, newest kept: no more than still fit.
      const std::size_t room_lines = tail - items.size();
      LogLines older;
      std::size_t older_bytes = 0;
      const bool asked =
          cluster::read_events(nats_, subject, from, [&](const cluster::StoredEvent& e) {
            if (e.seq > upper) return false;
            std::optional<json::object> line = log_line(e, task);
            if (!line) return true;
            older.emplace_back(std::move(*line), e.size);
            older_bytes += e.size;
            while (older.size() > room_lines) {
              older_bytes -= older.front().second;
              older.pop_front();
            }
            // The page keeps at least its newest line, however long.
            while (bytes + older_bytes > kLogPage && older.size() + items.size() > 1 &&
                   !older.empty()) {
              truncated = true;
              older_bytes -= older.front().second;
              older.pop_front();
            }
            return true;
          });
      if (!asked)
        throw HttpError{503, "nats_unavailable", "cannot read the logs of run " + id,
                        kNatsRetryAfter};
      bytes += older_bytes;
      items.insert(items.begin(), std::make_move_iterator(older.begin()),
                   std::make_move_iterator(older.end()));
      if (items.size() >= tail || truncated || from == after) return truncated;
      upper = from;
      window = window > (std::uint64_t{1} << 60) ? window : window * 8;
    }
  }

  // What an SSE stream does with an event; how following ended.
  enum class Delivery { send, send_and_end, skip };
  enum class Followed { ended, broken };

  // SSE: the record first, then the run's events from PYOCO_EVENTS with the
  // stream sequence as their id, until its RunEnd. Last-Event-ID resumes
  // after that sequence: no gap, no duplicate. What is stored when the
  // watch begins is read by message gets from the run's first event (the
  // index knows it), what comes after from the gateway's one subscription
  // to every run's events: no consumer per watch. A watch that lost events
  // (NATS away, a client reading too slowly) comes back the same way from
  // its last event. Only a run the index has not seen yet is followed by a
  // consumer of its own.
  void watch(const Request& req, const std::string& id, const Caller& caller, EventStream& out) {
    const cluster::RunRecord record = find(id, caller);  // 404 before anything is sent
    const std::uint64_t after = last_event_id(req).value_or(0);
    // A watch ends at the RunEnd: resumed at or past it there is nothing
    // left to send, and following would only ping for as long as the
    // client stays, holding a stream thread.
    if (after != 0 && record.terminal() && run_end_seen(id, after)) return;
    if (after == 0 && !out.send("snapshot", "", json::serialize(record.snapshot))) return;
    const std::string subject = "pyoco.ev." + id + ".>";
    // An event of an attempt older than one already sent is a worker's that
    // had lost the run (docs/cluster.md): a watcher never sees it.
    std::int64_t newest_attempt = 0;
    auto until_run_end = [&newest_attempt](std::string_view, const std::string& data) {
      if (const std::int64_t attempt = run_attempt_of(data); attempt != 0) {
        if (attempt < newest_attempt) return Delivery::skip;
        newest_attempt = attempt;
      }
      return data.find("\"kind\":\"run_end\"") != std::string::npos ? Delivery::send_and_end
                                                                    : Delivery::send;
    };
    std::uint64_t last = after;
    if (const std::optional<std::uint64_t> first = index_.first_event(id)) {
      // A watch that lost events (it fell behind, NATS reconnected) comes
      // back through the hub: what it missed is read by message gets from
      // where it was, one at a time, so a slow client holds one event and
      // no consumer of its own (many consumers on the gateway's connection
      // made NATS cut it off as a slow consumer, and what it had pushed was
      // lost to every one of them).
      auto pause = std::chrono::milliseconds(250);
      for (bool again = false; !out.stopping(); again = true) {
        const std::unique_ptr<EventHub::Watch> live = hub_.watch(id);
        const std::uint64_t before = last;
        if (live) {
          if (again) {
            cluster::log(cluster::LogLevel::info,
                         "gateway: a watch fell behind; reading what it missed from the stream",
                         {{"run_id", id}, {"after", last}});
          }
          if (through_hub(out, *live, subject, *first, last, until_run_end) == Followed::ended) {
            return;
          }
        }
        if (live && last != before) {
          pause = std::chrono::milliseconds(250);
          continue;
        }
        // Nothing got through (NATS away, the hub not to be had): not
        // again at once.
        if (!out.comment("waiting for NATS")) return;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(4000));
      }
    }
    // Its events come after its submission: looked for from then (less a
    // minute, for clocks apart between the gateway and NATS).
    double not_before = 0;
    // Anyone who can write to NATS can write a record: a time outside
    // 1970..2286 is not one (and would overflow the nanoseconds NATS takes).
    if (const json::value* t = record.snapshot.if_contains("submitted_at");
        t != nullptr && t->is_number() && t->to_number<double>() > 60 &&
        t->to_number<double>() < 1e10) {
      not_before = t->to_number<double>() - 60;
    }
    follow(out, subject, last, not_before, until_run_end);
  }

  // The "run_attempt" of a worker's event as EventPublisher writes it: no
  // spaces, after everything but "attempt" (the last one: a node's output
  // may hold the key too); 0 when it has none.
  static std::int64_t run_attempt_of(const std::string& data) {
    static constexpr std::string_view key = "\"run_attempt\":";
    const std::size_t at = data.rfind(key);
    if (at == std::string::npos) return 0;
    std::int64_t n = 0;
    for (std::size_t i = at + key.size(); i < data.size() && data[i] >= '0' && data[i] <= '9';
         ++i) {
      if (n > 1'000'000'000) return 0;
      n = n * 10 + (data[i] - '0');
    }
    return n;
  }

  // Whether the run's RunEnd is stored at or before sequence `after`.
  // False when NATS cannot say: the watch then follows as usual.
  bool run_end_seen(const std::string& id, std::uint64_t after) {
    try {
      const std::optional<cluster::StoredMessage> last =
          cluster::last_stored(watch_nats_, "PYOCO_EVENTS", "pyoco.ev." + id + ".run");
      return last && last->seq <= after &&
             last->data.find("\"kind\":\"run_end\"") != std::string::npos;
    } catch (const cluster::NatsError&) {
      return false;
    }
  }

  // A run's events through the hub: the stored ones from `first` up to the
  // hub's position, then the hub's; `broken` when the hub lost some (the
  // caller follows the stream after `last`).
  template <class Choose>
  Followed through_hub(EventStream& out, EventHub::Watch& live, const std::string& subject,
                       std::uint64_t first, std::uint64_t& last, Choose& choose) {
    for (std::uint64_t from = std::max(first, last + 1); from <= live.from();) {
      std::optional<cluster::StoredMessage> m;
      try {
        m = cluster::next_stored(watch_nats_, "PYOCO_EVENTS", from, subject);
      } catch (const cluster::NatsError&) {
        return Followed::broken;
      }
      if (!m || m->seq > live.from()) break;  // the hub has the rest
      from = m->seq + 1;
      if (!emit(out, m->seq, m->subject, m->data, last, choose)) return Followed::ended;
    }
    auto idle = std::chrono::steady_clock::now();
    while (!out.stopping()) {
      std::optional<EventHub::Event> e = live.next(std::chrono::seconds(1));
      if (!e) {
        if (live.broken()) return Followed::broken;
        if (std::chrono::steady_clock::now() - idle > std::chrono::seconds(15)) {
          if (!out.comment("ping")) return Followed::ended;
          idle = std::chrono::steady_clock::now();
        }
        continue;
      }
      if (!emit(out, e->seq, e->subject, e->data, last, choose)) return Followed::ended;
      idle = std::chrono::steady_clock::now();
    }
    return Followed::ended;
  }

  // One event to the client as `choose` says, unless it was sent already
  // (seq <= last); `last` becomes its sequence. False when the stream is
  // over: the client went, or `choose` ended it.
  template <class Choose>
  static bool emit(EventStream& out, std::uint64_t seq, const std::string& subject,
                   const std::string& data, std::uint64_t& last, Choose& choose) {
    if (seq != 0 && seq <= last) return true;  // sent before a resubscription
    if (seq != 0) last = seq;
    const Delivery d = choose(std::string_view(subject), data);
    if (d == Delivery::skip) return true;
    if (!out.send(subject.substr(subject.rfind('.') + 1), std::to_string(seq), data)) return false;
    return d != Delivery::send_and_end;
  }

  // SSE for lists that stay current (the dashboard's): the run-level
  // events (submitted, started, cancelling, ended) of every run the caller
  // sees, from now on, or after Last-Event-ID (0: all the stream keeps);
  // until the client goes.
  void events(const Request& req, const Caller& caller, EventStream& out) {
    std::optional<std::uint64_t> given = last_event_id(req);
    std::uint64_t after = given.value_or(0);
    if (!given) {
      jsStreamInfo* si = nullptr;
      const natsStatus s =
          js_GetStreamInfo(&si, nats_.handles().js, "PYOCO_EVENTS", nullptr, nullptr);
      if (s != NATS_OK)
        throw HttpError{503, "nats_unavailable", "cannot follow run events", kNatsRetryAfter};
      after = si->State.LastSeq;
      jsStreamInfo_Destroy(si);
    }
    if (!out.comment("from " + std::to_string(after))) return;  // the headers go out now
    std::map<std::string, bool, std::less<>> seen;              // run id -> the caller sees it
    follow(out, "pyoco.ev.*.run", after, 0, [&](std::string_view subject, const std::string&) {
      if (caller.any_tenant) return Delivery::send;
      const std::string_view rest = subject.substr(std::string_view("pyoco.ev.").size());
      const std::string id(rest.substr(0, rest.find('.')));
      auto it = seen.find(id);
      if (it == seen.end()) {
        if (seen.size() > 10000) seen.clear();  // bounded: asked again if need be
        std::optional<std::string> tenant = index_.tenant_of(id);
        if (!tenant) {
          try {
            if (auto r = runs_.get(id)) tenant = tenant_of(*r);
          } catch (const cluster::NatsError&) {
          }
        }
        // Unknown (NATS away a moment): not shown, asked again next time.
        if (!tenant) return Delivery::skip;
        it = seen.emplace(id, caller.sees(*tenant)).first;
      }
      return it->second ? Delivery::send : Delivery::skip;
    });
  }

  // Last-Event-ID (or ?last_event_id=): the stream sequence to go on
  // after (0: from the first); nullopt when not given.
  static std::optional<std::uint64_t> last_event_id(const Request& req) {
    std::string last(req["Last-Event-ID"]);
    if (last.empty()) last = query_value(req.target(), "last_event_id");
    if (last.empty()) return std::nullopt;
    return whole_number(last, 0, kMaxSequence,
                        "Last-Event-ID: a stream sequence, as the events' id: lines give");
  }

  // Sends what PYOCO_EVENTS holds on `subject` after `after`, then what
  // comes, as SSE (event: the subject's last token, id: the stream
  // sequence), each as `choose` says, until the client goes or `choose`
  // ends it. The headers are out by now, so NATS failing is not an error
  // status: the subscription is made again after the last event sent (no
  // gap, no duplicate) — NATS slow to make a consumer (many watches opened
  // at once on a large stream), a reconnect, a new stream leader — for as
  // long as the client listens, with a comment at each try that also tells
  // whether it still does.
  template <class Choose>
  void follow(EventStream& out, const std::string& subject, std::uint64_t after, double not_before,
              Choose&& choose) {
    std::uint64_t last = after;
    // Backing off: many streams failing together must not hammer NATS.
    auto pause = std::chrono::milliseconds(250);
    while (!out.stopping()) {
      const cluster::Subscription owned =
          cluster::subscribe_events(watch_nats_, subject, last, not_before);
      natsSubscription* sub = owned.get();
      if (sub == nullptr) {
        if (!out.comment("waiting for NATS")) return;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(4000));
        continue;
      }
      pause = std::chrono::milliseconds(250);
      // What a client reading slowly leaves in cnats's queue is bounded: past
      // it cnats drops events, which deliver() sees as a gap.
      natsSubscription_SetPendingLimits(sub, 10000, 8 << 20);
      if (deliver(out, sub, last, choose) == Followed::ended) return;
    }
  }

  // One subscription's events to the client, `last` kept as the last
  // sequence sent or skipped; `broken` when NATS stopped delivering, or
  // when an event did not come: the consumer's own sequence skipped one
  // (NATS cut the connection off as a slow consumer with events on their
  // way, or cnats dropped some past its pending limits). Its consumer,
  // AckNone, counts those as delivered: without the check they were lost
  // without a word. The caller follows again from `last`.
  template <class Choose>
  Followed deliver(EventStream& out, natsSubscription* sub, std::uint64_t& last, Choose& choose) {
    std::uint64_t next_delivery = 1;  // the consumer's sequence of the next event
    auto idle = std::chrono::steady_clock::now();
    while (!out.stopping()) {
      natsMsg* m = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&m, sub, 1000);
      if (s == NATS_TIMEOUT) {
        if (std::chrono::steady_clock::now() - idle > std::chrono::seconds(15)) {
          if (!out.comment("ping")) return Followed::ended;
          idle = std::chrono::steady_clock::now();
        }
        continue;
      }
      if (s != NATS_OK) return Followed::broken;
      jsMsgMetaData* meta = nullptr;
      std::uint64_t seq = 0, delivery = 0;
      if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        seq = meta->Sequence.Stream;
        delivery = meta->Sequence.Consumer;
        jsMsgMetaData_Destroy(meta);
      }
      if (delivery != 0 && next_delivery != 0 && delivery != next_delivery) {
        natsMsg_Destroy(m);
        cluster::log(cluster::LogLevel::info, "gateway: a watch missed events; following again",
                     {{"after", last}});
        return Followed::broken;
      }
      next_delivery = delivery == 0 ? 0 : delivery + 1;  // 0: not known, not checked
      const std::string subj = natsMsg_GetSubject(m);
      const std::string data(natsMsg_GetData(m),
                             static_cast<std::size_t>(natsMsg_GetDataLength(m)));
      natsMsg_Destroy(m);
      if (!emit(out, seq, subj, data, last, choose)) return Followed::ended;
      idle = std::chrono::steady_clock::now();
    }
    return Followed::ended;
  }

  // Runs per status and in progress, of the runs the caller sees: the
  // dashboard's header.
  Response stats(const Caller& caller) const {
    std::optional<std::string> tenant;
    if (!caller.any_tenant) tenant = caller.tenant;
    json::object runs;
    for (const char* status :
         {"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"}) {
      runs[status] = 0;
    }
    std::uint64_t total = 0, in_progress = 0;
    for (const auto& [status, n] : index_.counts(tenant)) {
      runs[status] = n;
      total += n;
      if (status == "RUNNING" || status == "CANCELLING") in_progress += n;
    }
    return from_memory(json_response(
        200,
        json::object{{"runs", std::move(runs)}, {"total", total}, {"in_progress", in_progress}}));
  }

  // POST /plugins: a package (the bytes `pyoco plugins pack` wrote),
  // checked whole before anything is stored; `?tags=a,b` names the
  // workers' tags it is for (none: every worker).
  Response push_plugin(const Request& req, const Caller& caller) {
    plugins::PluginPackage package;
    try {
      package = plugins::open_package(req.body());
    } catch (const plugins::PackageError& e) {
      unprocessable(e.what());
    } catch (const plugins::ManifestError& e) {
      unprocessable(std::string("plugin package: ") + e.what());
    }
    const plugins::Manifest& m = package.manifest;
    if (m.abi != PYOCO_ABI_VERSION_MAJOR) {
      unprocessable("plugin package: " + m.name + " is built for plugin ABI " +
                    std::to_string(m.abi) + "; workers of this cluster speak ABI " +
                    std::to_string(PYOCO_ABI_VERSION_MAJOR));
    }
    if (m.version.find('+') != std::string::npos) {
      unprocessable("plugin package: version " + m.version +
                    ": build metadata (+...) cannot be pushed (the index's keys cannot hold "
                    "'+'); give it a version of its own");
    }
    cluster::PluginRelease r = cluster::release_of(m);
    r.uploaded_by = caller.key_id;
    r.tenant = caller.tenant;
    const std::string tags = query_value(req.target(), "tags");
    for (std::size_t start = 0; start < tags.size();) {
      const std::size_t comma = std::min(tags.find(',', start), tags.size());
      const std::string tag = tags.substr(start, comma - start);
      try {
        cluster::check_tag(tag);
      } catch (const cluster::NatsError& e) {
        unprocessable(std::string("tags: ") + e.what());
      }
      r.tags.push_back(tag);
      start = comma + 1;
    }
    try {
      return json_response(200, cluster::to_json(plugins_.publish(package.bytes, std::move(r))));
    } catch (const cluster::VersionConflict& e) {
      throw HttpError{409, "conflict", e.what()};
    } catch (const cluster::RepositoryFull& e) {
      throw HttpError{507, "repository_full", e.what()};
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
  }

  // Plugins are the cluster's, shared by every tenant; the key that did
  // something to one is shown only to its own tenant (a key id is half of
  // what a guess needs).
  // `tenant_field` names the tenant of the key in `field`.
  static void hide_key_id(json::object& o, const char* field, const char* tenant_field,
                          const Caller& caller) {
    const json::value* tenant = o.if_contains(tenant_field);
    const bool own = tenant != nullptr && tenant->is_string() && caller.sees(tenant->as_string());
    if (!own && o.contains(field)) o[field] = nullptr;
  }

  Response list_plugins(const Caller& caller) const {
    try {
      json::array out;
      for (const cluster::PluginRelease& r : plugins_.releases()) {
        json::object o = cluster::to_json(r);
        hide_key_id(o, "uploaded_by", "tenant", caller);
        out.push_back(std::move(o));
      }
      return json_response(200, out);
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
  }

  Response plugin_history(const Request& req, const Caller& caller) const {
    const std::string l = query_value(req.target(), "limit");
    const std::size_t limit =
        l.empty() ? 200 : whole_number(l, 1, 1000, "limit: a number from 1 to 1000");
    try {
      json::array out;
      for (json::object& o : plugins_.history(limit)) {
        // A worker's refusal names the worker, no key; older entries have
        // no by_tenant.
        const json::value* action = o.if_contains("action");
        if (action == nullptr || *action != "rejected") {
          hide_key_id(o, "by", o.contains("by_tenant") ? "by_tenant" : "tenant", caller);
        }
        out.push_back(std::move(o));
      }
      return json_response(200, out);
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
  }

  Response yank_plugin(const std::string& name, const std::string& version, const Caller& caller) {
    try {
      auto yanked = plugins_.yank(name, version, caller.key_id, caller.tenant);
      if (yanked.empty()) {
        // Yanked before: the same answer again (a retried yank is not an
        // error), with nothing new recorded.
        for (cluster::PluginRelease& r : plugins_.releases()) {
          if (r.name == name && r.version == version && r.yanked) yanked.push_back(std::move(r));
        }
      }
      if (yanked.empty()) {
        throw HttpError{
            404, "not_found",
            "no release " + name + " " + version + " to yank (GET /plugins lists them)"};
      }
      json::array out;
      for (const auto& r : yanked) {
        json::object o = cluster::to_json(r);
        hide_key_id(o, "uploaded_by", "tenant", caller);
        out.push_back(std::move(o));
      }
      return json_response(200, out);
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
  }

  Response cancel(const std::string& id, const Caller& caller) {
    find(id, caller);  // another tenant's run is not found
    try {
      const auto r = cluster::request_cancel(
          nats_, runs_, id, caller.key_id.empty() ? "http" : "key " + caller.key_id,
          job_seqs_.find(id));
      job_seqs_.forget(id);  // it has left PENDING either way
      if (!r) throw HttpError{404, "not_found", "run " + id + " not found"};
      return json_response(200, json::object{{"run_id", id}, {"status", r->status()}});
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
  }

 private:
  Response queue(const Request& req, const Caller& caller, cluster::RunJob job) {
    if (!caller.tags.empty() &&
        std::find(caller.tags.begin(), caller.tags.end(), job.tag) == caller.tags.end()) {
      std::string allowed;
      for (const std::string& t : caller.tags) allowed += (allowed.empty() ? "" : ", ") + t;
      throw HttpError{403, "forbidden",
                      "the API key " + caller.key_id + " may submit runs to the tags " + allowed +
                          " only, not to " + job.tag};
    }
    check_tag_served(job.tag);
    job.tenant_id = caller.tenant;
    if (req.count("Idempotency-Key") > 1) {
      throw HttpError{400, "bad_request",
                      "the header Idempotency-Key is sent more than once; send one key"};
    }
    const std::string idempotency_key(req["Idempotency-Key"]);
    job.run_id = run_id_for(idempotency_key, caller.tenant);
    if (!idempotency_key.empty()) job.request_digest = request_digest(job);
    try {
      const cluster::Submitted s = cluster::submit_run(nats_, runs_, job);
      if (s.record.status() == "PENDING") job_seqs_.remember(job.run_id, s.job_seq);
      return json_response(200,
                           json::object{{"run_id", job.run_id}, {"status", s.record.status()}});
    } catch (const cluster::RequestMismatch&) {
      // The key is the client's promise that this is the same request
      // (the IETF's Idempotency-Key draft, as Stripe does): another body
      // is a mistake to say, not the old run to hand back.
      throw HttpError{422, "idempotency_key_reused",
                      "Idempotency-Key " + shown(idempotency_key) + " was used for run " +
                          job.run_id +
                          " with another request (flow_name, tag, params or workflow): send "
                          "that same request to get run " +
                          job.run_id + " again, or use a new key for a new request"};
    } catch (const cluster::NatsError& e) {
      // Its record may stand without its job: queued once NATS answers.
      unqueued_.add(job);
      HttpError busy{
          503, "nats_unavailable",
          std::string(e.what()) +
              (idempotency_key.empty()
                   ? " (the run may have been accepted: it is queued once NATS answers again; "
                     "before submitting again, GET /runs/" +
                         job.run_id +
                         " once NATS is back: a 404 says it was not, a record that it was)"
                   : " (the run may have been accepted: it is queued once NATS answers again; "
                     "submit again with the same Idempotency-Key to be sure of one run)"),
          kNatsRetryAfter};
      busy.fields = json::object{{"run_id", job.run_id}};
      throw busy;
    }
  }

  // A tag without its workers' consumer: no worker could ever take its
  // job, and the run would stay PENDING for ever. Tags found are kept; a
  // miss asks NATS again, so a tag initialised since needs no restart.
  void check_tag_served(const std::string& tag) {
    {
      std::lock_guard lock(known_tags_mutex_);
      if (known_tags_.contains(tag)) return;
    }
    bool exists = false;
    try {
      exists = cluster::worker_tag_exists(nats_, tag);
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
    if (!exists) {
      unprocessable("tag " + tag + ": no workers' queue for it (consumer pyoco_workers_" + tag +
                    " of PYOCO_WORK), so no worker would ever take the run: `pyoco cluster init " +
                    "--tags " + tag + "` creates it");
    }
    std::lock_guard lock(known_tags_mutex_);
    known_tags_.insert(tag);
  }

  static void check_id(const std::string& id) {
    try {
      cluster::check_run_id(id);
    } catch (const cluster::NatsError&) {
      throw HttpError{404, "not_found", "run " + shown(id) + " not found"};
    }
  }

  // The run, if this caller may see it: another tenant's run is as
  // unknown as one that never was (its existence never leaks).
  cluster::RunRecord find(const std::string& id, const Caller& caller) const {
    check_id(id);
    try {
      auto r = runs_.get(id);
      if (!r || !caller.sees(tenant_of(*r))) {
        throw HttpError{404, "not_found", "run " + id + " not found"};
      }
      return *r;
    } catch (const cluster::NatsError& e) {
      nats_down(e);
    }
  }

  static std::string tenant_of(const cluster::RunRecord& r) {
    const json::value* t = r.snapshot.if_contains("tenant_id");
    return t != nullptr && t->is_string() ? std::string(t->as_string()) : std::string();
  }

  // A key bound to tags sees the workers of those tags only.
  static bool serves_a_tag_of(const json::object& worker, const Caller& caller) {
    if (caller.tags.empty()) return true;
    const json::value* tags = worker.if_contains("tags");
    if (tags == nullptr || !tags->is_array()) return false;
    return std::any_of(tags->as_array().begin(), tags->as_array().end(), [&](const json::value& t) {
      return t.is_string() &&
             std::find(caller.tags.begin(), caller.tags.end(), t.as_string()) != caller.tags.end();
    });
  }

  // A worker as a tenant sees it: the runs it runs for other tenants are
  // left out of `running` (a run the index has not seen yet counts as not
  // this tenant's).
  void hide_others(json::object& worker, const Caller& caller) const {
    json::value* running = worker.if_contains("running");
    if (running == nullptr || !running->is_array()) return;
    json::array mine;
    for (const json::value& id : running->as_array()) {
      if (!id.is_string()) continue;
      const auto tenant = index_.tenant_of(std::string(id.as_string()));
      if (tenant && caller.sees(*tenant)) mine.push_back(id);
    }
    *running = std::move(mine);
  }

  // The gauges a scrape reads: in-progress runs from the index, queues and
  // dead letters from NATS (one request each), workers from the registry.
  Metrics::Gauges gauges() const {
    Metrics::Gauges g;
    g.runs_in_progress = static_cast<double>(index_.count("RUNNING") + index_.count("CANCELLING"));
    std::map<std::string, double> states;
    for (std::string_view state : cluster::kWorkerStates) states[std::string(state)] = 0;
    for (const json::object& w : workers_.list("", true, 100000)) {
      ++states[std::string(w.at("state").as_string())];
    }
    g.workers.assign(states.begin(), states.end());
    jsCtx* js = nats_.handles().js;
    jsConsumerNamesList* names = nullptr;
    if (js_ConsumerNames(&names, js, "PYOCO_WORK", nullptr, nullptr) == NATS_OK) {
      const std::string_view prefix = "pyoco_workers_";
      for (int i = 0; i < names->Count; ++i) {
        const std::string_view name = names->List[i];
        if (name.substr(0, prefix.size()) != prefix) continue;
        jsConsumerInfo* ci = nullptr;
        if (js_GetConsumerInfo(&ci, js, "PYOCO_WORK", names->List[i], nullptr, nullptr) ==
            NATS_OK) {
          g.queue_pending.emplace_back(std::string(name.substr(prefix.size())),
                                       static_cast<double>(ci->NumPending));
          jsConsumerInfo_Destroy(ci);
        }
      }
      jsConsumerNamesList_Destroy(names);
    }
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, "PYOCO_DLQ", nullptr, nullptr) == NATS_OK) {
      g.dlq_messages = static_cast<double>(si->State.Msgs);
      jsStreamInfo_Destroy(si);
    }
    return g;
  }

 public:
  Response metrics() const {
    Response res{boost::beast::http::status::ok, 11};
    res.set(boost::beast::http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = metrics_.render(gauges());
    res.prepare_payload();
    return res;
  }
  Metrics& metrics_registry() { return metrics_; }

 private:
  cluster::Connection& nats_;
  GatewayOptions options_;
  cluster::RunRecords runs_;
  mutable cluster::PluginRepository plugins_{nats_};
  cluster::WorkerDirectory workers_;
  RunIndex index_;
  // SSE streams make their consumers on a connection of their own:
  // nats-server answers one connection's requests one after another, and a
  // consumer of a large stream takes it a while to make (200 watches opened
  // at once held a record read 20 s behind them).
  cluster::Connection watch_nats_;
  EventHub hub_{watch_nats_};  // every run's events, for the watches of each
  Metrics metrics_;
  // After metrics_: it counts into it. Optional: the end stops it first.
  std::optional<MetricsFeed> feed_{std::in_place, nats_, metrics_};
  cluster::UnqueuedRuns unqueued_{nats_};
  JobSequences job_seqs_;
  std::mutex known_tags_mutex_;
  std::set<std::string> known_tags_;  // tags whose workers' consumer exists
  // When the oldest ping NATS has not answered yet was sent (steady clock
  // ticks; 0: none).
  std::atomic<std::chrono::steady_clock::rep> unanswered_since_{0};
  std::jthread pinger_;  // last: it uses the members above
};

}  // namespace

std::shared_ptr<Router> gateway_routes(cluster::Connection& nats, GatewayOptions options) {
  std::shared_ptr<KeyAuthenticator> auth;
  if (options.auth) auth = std::make_shared<KeyAuthenticator>(nats, *options.auth);
  auto g = std::make_shared<Gateway>(nats, std::move(options));
  auto router = std::make_shared<Router>();
  // The one list of what is served, and who may call it.
  using cluster::kScopeAdmin, cluster::kScopeMetricsRead, cluster::kScopeRunsRead,
      cluster::kScopeRunsWrite;
  router->add_at_once(
      http::verb::get, "/health",
      [g](const Request&, const PathParams&, const Caller&) { return g->health(); });
  router->add(http::verb::get, "/metrics", kScopeMetricsRead,
              [g](const Request&, const PathParams&, const Caller&) { return g->metrics(); });
  // The dashboard's page and files: no data in them, so public.
  for (const DashboardFile& file : dashboard_files()) {
    router->add_at_once(http::verb::get, std::string(file.path),
                        [&file](const Request&, const PathParams&, const Caller&) {
                          return dashboard_response(file);
                        });
  }
  // GET /stats, /runs and /workers answer from memory while NATS is away
  // (X-Pyoco-Stale), to keys verified before too (AuthOptions::stale_reads_for).
  router->add_from_memory(
      http::verb::get, "/stats", kScopeRunsRead,
      [g](const Request&, const PathParams&, const Caller& c) { return g->stats(c); });
  router->add_stream(http::verb::get, "/events", kScopeRunsRead,
                     [g](const Request& r, const PathParams&, const Caller& c, EventStream& out) {
                       g->events(r, c, out);
                     });
  router->add(
      http::verb::post, "/runs", kScopeRunsWrite,
      [g](const Request& r, const PathParams&, const Caller& c) { return g->submit(r, c); });
  router->add_from_memory(
      http::verb::get, "/runs", kScopeRunsRead,
      [g](const Request& r, const PathParams&, const Caller& c) { return g->list(r, c); });
  router->add(
      http::verb::post, "/runs/yaml", kScopeRunsWrite,
      [g](const Request& r, const PathParams&, const Caller& c) { return g->submit_yaml(r, c); });
  router->add(
      http::verb::get, "/runs/{id}", kScopeRunsRead,
      [g](const Request&, const PathParams& p, const Caller& c) { return g->get(p.at("id"), c); });
  router->add(http::verb::get, "/runs/{id}/logs", kScopeRunsRead,
              [g](const Request& r, const PathParams& p, const Caller& c) {
                return g->logs(r, p.at("id"), c);
              });
  router->add(http::verb::get, "/runs/{id}/tasks", kScopeRunsRead,
              [g](const Request&, const PathParams& p, const Caller& c) {
                return g->tasks(p.at("id"), c);
              });
  router->add(http::verb::post, "/runs/{id}/cancel", kScopeRunsWrite,
              [g](const Request&, const PathParams& p, const Caller& c) {
                return g->cancel(p.at("id"), c);
              });
  router->add_stream(http::verb::get, "/runs/{id}/watch", kScopeRunsRead,
                     [g](const Request& r, const PathParams& p, const Caller& c, EventStream& out) {
                       g->watch(r, p.at("id"), c, out);
                     });
  router->add_from_memory(
      http::verb::get, "/workers", kScopeRunsRead,
      [g](const Request& r, const PathParams&, const Caller& c) { return g->workers(r, c); });
  router->add_large(
      http::verb::post, "/plugins", cluster::kScopePluginsWrite, plugins::kMaxPackageBytes,
      [g](const Request& r, const PathParams&, const Caller& c) { return g->push_plugin(r, c); });
  router->add(
      http::verb::get, "/plugins", kScopeRunsRead,
      [g](const Request&, const PathParams&, const Caller& c) { return g->list_plugins(c); });
  router->add(http::verb::get, "/plugins/history", kScopeRunsRead,
              [g](const Request& r, const PathParams&, const Caller& c) {
                return g->plugin_history(r, c);
              });
  router->add(http::verb::post, "/plugins/{name}/{version}/yank", cluster::kScopePluginsWrite,
              [g](const Request&, const PathParams& p, const Caller& c) {
                return g->yank_plugin(p.at("name"), p.at("version"), c);
              });
  router->add(http::verb::patch, "/workers/{id}", kScopeAdmin,
              [g](const Request& r, const PathParams& p, const Caller& c) {
                return g->patch_worker(r, p.at("id"), c);
              });
  // What each route reads of its query: any other parameter is a 422 (a
  // misspelt filter would answer every run). /metrics and POST /runs/yaml
  // (which names its own) are left to themselves. pyoco-server's client
  // sends include, workflow_yaml_sha256, since, timeout_sec and scope:
  // taken and not used, as its body's `tags` is (docs/cluster.md).
  using http::verb;
  for (const auto& [method, pattern, names] :
       std::initializer_list<std::tuple<verb, const char*, std::vector<std::string>>>{
           {verb::get, "/stats", {}},
           {verb::get, "/events", {"last_event_id"}},
           {verb::post, "/runs", {}},
           {verb::get,
            "/runs",
            {"status", "flow", "tag", "updated_after", "cursor", "limit", "include",
             "workflow_yaml_sha256"}},
           {verb::get, "/runs/{id}", {"include"}},
           {verb::get, "/runs/{id}/logs", {"task", "tail", "after", "limit"}},
           {verb::get, "/runs/{id}/tasks", {}},
           {verb::post, "/runs/{id}/cancel", {}},
           {verb::get, "/runs/{id}/watch", {"last_event_id", "include", "since", "timeout_sec"}},
           {verb::get, "/workers", {"state", "include_hidden", "limit", "scope"}},
           {verb::post, "/plugins", {"tags"}},
           {verb::get, "/plugins", {}},
           {verb::get, "/plugins/history", {"limit"}},
           {verb::post, "/plugins/{name}/{version}/yank", {}},
           {verb::patch, "/workers/{id}", {}}}) {
    router->reads_query(method, pattern, names);
  }
  if (auth) {
    router->guard(
        [auth](const Request& r, const std::string& address, unsigned scope, bool from_memory) {
          return auth->authenticate(r, address, scope, from_memory);
        });
    router->recheck(
        [auth](const Caller& c) { return c.key_id.empty() || auth->still_valid(c.key_id); });
  }
  // The event streams' patterns: counted, but not in the latency histogram.
  std::set<std::string> streams;
  for (const Route& r : router->routes()) {
    if (r.stream) streams.insert(r.pattern);
  }
  router->observe([g, streams](const Request& req, const Response& res, const std::string& route,
                               const Caller& caller, double seconds) {
    const std::string shown = route.empty() ? "(no route)" : route;
    g->metrics_registry().http_request(
        shown, res.result_int(),
        streams.count(route) > 0 ? std::nullopt : std::optional<double>(seconds));
    // The run it was about: the path's {id}, or the id a submit made.
    // Never the query or the body: they may hold params or keys.
    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    json::value run_id;
    if (route.rfind("/runs/{id}", 0) == 0) {
      const std::string_view rest = path.substr(6);
      const std::string id(rest.substr(0, rest.find('/')));
      try {
        cluster::check_run_id(id);  // a valid id, or none: the path is the client's
        run_id = json::value(id);
      } catch (const cluster::NatsError&) {
      }
    } else if (req.method() == http::verb::post && res.result_int() == 200) {
      boost::system::error_code ec;
      const json::value v = json::parse(res.body(), ec);
      if (!ec && v.is_object() && v.as_object().contains("run_id")) run_id = v.at("run_id");
    }
    cluster::log(cluster::LogLevel::info, "http",
                 {{"method", std::string(req.method_string())},
                  {"route", shown},
                  {"status", res.result_int()},
                  {"duration_ms", seconds * 1000},
                  {"run_id", run_id},
                  // Which key did it (never the key itself), when keys are on.
                  {"key_id", caller.key_id.empty() ? json::value() : json::value(caller.key_id)},
                  {"tenant", caller.tenant.empty() ? json::value() : json::value(caller.tenant)}});
  });
  return router;
}

}  // namespace pyoco::server
