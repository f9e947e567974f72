#include <pyoco/cluster/run_records.hpp>

#include <boost/json.hpp>

#include <pyoco/cluster/nats_handles.hpp>

namespace pyoco::cluster {

namespace json = boost::json;

namespace {
constexpr const char* kBucket = "pyoco_runs";
}  // namespace

struct RunRecords::Bucket {
  kvStore* kv = nullptr;
};

bool is_terminal_status(std::string_view status) {
  return status == "COMPLETED" || status == "FAILED" || status == "CANCELLED";
}

void end_unfinished_tasks(json::object& snapshot, std::string_view running_as) {
  auto ended_as = [&](std::string_view state) -> std::string_view {
    if (state == "PENDING") return "CANCELLED";
    if (state == "RUNNING") return running_as;
    return {};
  };
  if (json::value* tasks = snapshot.if_contains("tasks"); tasks != nullptr && tasks->is_object()) {
    for (auto& [node, state] : tasks->as_object()) {
      if (!state.is_string()) continue;
      if (const std::string_view to = ended_as(state.as_string()); !to.empty()) state = to;
    }
  }
  json::value* counts = snapshot.if_contains("task_counts");
  if (counts == nullptr || !counts->is_object()) return;
  json::object& c = counts->as_object();
  std::int64_t moved_cancelled = 0, moved_running = 0;
  // A count as read back (int64) or as a worker built it (uint64).
  auto count = [](const json::value* n) -> std::int64_t {
    if (n == nullptr || !n->is_number()) return 0;
    boost::system::error_code ec;
    const auto v = n->to_number<std::int64_t>(ec);
    return ec ? 0 : v;
  };
  for (const char* state : {"PENDING", "RUNNING"}) {
    const json::value* n = c.if_contains(state);
    if (n == nullptr) continue;
    (ended_as(state) == "CANCELLED" ? moved_cancelled : moved_running) += count(n);
    c.erase(state);
  }
  auto add = [&](std::string_view state, std::int64_t n) {
    if (n == 0) return;
    c[state] = count(c.if_contains(state)) + n;
  };
  add("CANCELLED", moved_cancelled);
  add(running_as, moved_running);
}

std::string RunRecord::status() const {
  const json::value* s = snapshot.if_contains("status");
  return s != nullptr && s->is_string() ? std::string(s->as_string()) : std::string();
}

bool RunRecord::terminal() const { return is_terminal_status(status()); }

double RunRecord::lease_until() const {
  const boost::json::value* o = snapshot.if_contains("owner");
  if (o == nullptr || !o->is_object()) return 0;
  const boost::json::value* until = o->as_object().if_contains("lease_until");
  return until != nullptr && until->is_number() ? until->to_number<double>() : 0;
}

bool is_key_name(std::string_view name, std::size_t max, std::string_view punctuation) {
  if (name.empty() || name.size() > max || name.front() == '.' || name.back() == '.' ||
      name.find("..") != std::string_view::npos) {
    return false;
  }
  for (const char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && punctuation.find(c) == std::string_view::npos) return false;
  }
  return true;
}

void check_run_id(std::string_view run_id) {
  if (!is_key_name(run_id, 128, "-_=.")) {
    throw NatsError("run id \"" + std::string(run_id) +
                    "\": 1 to 128 letters, digits, '-', '_', '=' and '.' ('.' not first, last or "
                    "twice in a row)");
  }
}

RunRecords::RunRecords(Connection& nats) : nats_(nats), bucket_(std::make_unique<Bucket>()) {
  bucket_->kv = open_bucket(nats, kBucket);
}

RunRecords::~RunRecords() {
  if (bucket_->kv != nullptr) kvStore_Destroy(bucket_->kv);
}

std::optional<RunRecord> RunRecords::get(std::string_view run_id) const {
  check_run_id(run_id);
  const std::string key(run_id);
  kvEntry* e = nullptr;
  const natsStatus s = kvStore_Get(&e, bucket_->kv, key.c_str());
  if (s == NATS_NOT_FOUND) return std::nullopt;
  if (s != NATS_OK) throw_nats("cannot read run " + key, s);
  RunRecord r;
  r.revision = kvEntry_Revision(e);
  const std::string_view text(static_cast<const char*>(kvEntry_Value(e)),
                              static_cast<std::size_t>(kvEntry_ValueLen(e)));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  kvEntry_Destroy(e);
  if (ec || !v.is_object()) {
    throw NatsError("run " + key + ": its snapshot in " + kBucket + " is not a JSON object");
  }
  r.snapshot = std::move(v.as_object());
  return r;
}

std::optional<std::uint64_t> RunRecords::create(std::string_view run_id,
                                                const json::object& snapshot) {
  return write(run_id, snapshot, std::nullopt);
}

std::optional<std::uint64_t> RunRecords::replace(std::string_view run_id,
                                                 const json::object& snapshot,
                                                 std::uint64_t revision) {
  return write(run_id, snapshot, revision);
}

// A KV put is a publish to $KV.<bucket>.<key>; with an expected last
// sequence for the subject it is a compare-and-swap (cnats 3.4's
// kvStore_Update reports a stale revision only as a generic error).
std::optional<std::uint64_t> RunRecords::write(std::string_view run_id,
                                               const json::object& snapshot,
                                               std::optional<std::uint64_t> revision) {
  check_run_id(run_id);
  const std::string subject = std::string("$KV.") + kBucket + "." + std::string(run_id);
  const std::string body = json::serialize(snapshot);
  jsPubOptions opts;
  jsPubOptions_Init(&opts);
  if (revision) {
    opts.ExpectLastSubjectSeq = *revision;
  } else {
    opts.ExpectNoMessage = true;
  }
  jsPubAck* ack = nullptr;
  jsErrCode jerr{};
  const natsStatus s = js_Publish(&ack, nats_.handles().js, subject.c_str(), body.data(),
                                  static_cast<int>(body.size()), &opts, &jerr);
  if (s != NATS_OK) {
    if (jerr == JSStreamWrongLastSequenceErr) return std::nullopt;
    throw_nats("cannot write run " + std::string(run_id), s, jerr);
  }
  const std::uint64_t seq = ack->Sequence;
  jsPubAck_Destroy(ack);
  return seq;
}

}  // namespace pyoco::cluster
