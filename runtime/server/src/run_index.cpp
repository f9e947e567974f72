#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/core/base64.hpp>
#include <pyoco/server/run_index.hpp>

#include <sqlite3.h>

#include <boost/json.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace pyoco::server {

namespace json = boost::json;

namespace {

void exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error != nullptr ? error : "?";
    sqlite3_free(error);
    throw std::runtime_error(std::string("run index: ") + message);
  }
}

struct Statement {
  sqlite3_stmt* s = nullptr;
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("run index: ") + sqlite3_errmsg(db));
    }
  }
  ~Statement() { sqlite3_finalize(s); }
  void text(int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.c_str(), -1, SQLITE_TRANSIENT);
  }
  void real(int i, double v) { sqlite3_bind_double(s, i, v); }
  void integer(int i, std::int64_t v) { sqlite3_bind_int64(s, i, v); }
  std::string column_text(int i) const {
    const auto* t = sqlite3_column_text(s, i);
    return t != nullptr ? reinterpret_cast<const char*>(t) : "";
  }
};

}  // namespace

std::string encode_cursor(double updated_at, const std::string& run_id) {
  return core::base64url(json::serialize(json::object{{"u", updated_at}, {"r", run_id}}));
}

std::optional<std::pair<double, std::string>> decode_cursor(const std::string& cursor) {
  const std::optional<std::string> raw = core::from_base64url(cursor);
  if (!raw) return std::nullopt;
  boost::system::error_code ec;
  const json::value v = json::parse(*raw, ec);
  if (ec || !v.is_object() || !v.as_object().contains("u") || !v.as_object().contains("r") ||
      !v.at("u").is_number() || !v.at("r").is_string()) {
    return std::nullopt;
  }
  // The time is read back with strtod, exactly: Boost.JSON 1.81's parser
  // can be a unit in the last place off, and a cursor one ULP late
  // repeated the last run of a page on the next.
  double u = v.at("u").to_number<double>();
  if (const auto at = raw->find("\"u\":"); at != std::string::npos) {
    char* end = nullptr;
    const double exact = std::strtod(raw->c_str() + at + 4, &end);
    if (end != raw->c_str() + at + 4) u = exact;
  }
  return std::pair{u, std::string(v.at("r").as_string())};
}

constexpr int kLayout = 4;  // PRAGMA user_version of the tables below

struct RunIndex::Impl {
  cluster::Connection& nats;
  sqlite3* db = nullptr;
  mutable std::mutex mutex;  // the connection: the follower writes, requests read
  std::atomic<std::uint64_t> last{0};
  std::atomic<bool> stopping{false};
  std::thread follower;

  Impl(cluster::Connection& n, const std::filesystem::path& file) : nats(n) {
    const std::string path = file.empty() ? ":memory:" : file.string();
    if (!file.empty()) std::filesystem::create_directories(file.parent_path());
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
      throw std::runtime_error("run index: cannot open " + path);
    }
    exec(db, "PRAGMA journal_mode=WAL");
    // An index of an older layout (user_version < 3: no tenants or plugins;
    // < 4: no first event) is dropped and rebuilt from the event stream.
    int layout = 0;
    {
      Statement v(db, "PRAGMA user_version");  // finalized before the DROP: it would lock it
      if (sqlite3_step(v.s) == SQLITE_ROW) layout = sqlite3_column_int(v.s, 0);
    }
    exec(db, "BEGIN IMMEDIATE");
    if (layout < kLayout) exec(db, "DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS applied;");
    exec(db, ("PRAGMA user_version = " + std::to_string(kLayout)).c_str());
    exec(db,
         "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, flow_name TEXT, tag TEXT, "
         "status TEXT, submitted_at REAL, start_time REAL, end_time REAL, updated_at REAL, error "
         "TEXT, tenant TEXT NOT NULL DEFAULT '', plugins TEXT NOT NULL DEFAULT '{}', first_seq "
         "INTEGER);"
         "CREATE INDEX IF NOT EXISTS runs_updated ON runs(updated_at, run_id);"
         "CREATE INDEX IF NOT EXISTS runs_status ON runs(status, updated_at);"
         "CREATE INDEX IF NOT EXISTS runs_tenant ON runs(tenant, updated_at, run_id);"
         "CREATE TABLE IF NOT EXISTS applied (one INTEGER PRIMARY KEY CHECK (one = 1), seq "
         "INTEGER);"
         "INSERT OR IGNORE INTO applied VALUES (1, 0);");
    exec(db, "COMMIT");
    Statement s(db, "SELECT seq FROM applied");
    if (sqlite3_step(s.s) == SQLITE_ROW)
      last = static_cast<std::uint64_t>(sqlite3_column_int64(s.s, 0));
    follower = std::thread([this] { follow(); });
  }

  ~Impl() {
    stopping = true;
    if (follower.joinable()) follower.join();
    sqlite3_close(db);
  }

  // Run-level events from the one after the last applied, for ever (it
  // subscribes again after a NATS outage, from where it stopped).
  void follow() {
    while (!stopping) {
      const cluster::Subscription owned = cluster::subscribe_events(nats, "pyoco.ev.*.run", last);
      natsSubscription* sub = owned.get();
      if (sub == nullptr) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // NATS away: again
        continue;
      }
      while (!stopping) {
        natsMsg* m = nullptr;
        const natsStatus s = natsSubscription_NextMsg(&m, sub, 500);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) break;
        apply(m);
        natsMsg_Destroy(m);
      }
    }
  }

  void apply(natsMsg* m) {
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) != NATS_OK) return;
    const std::uint64_t seq = meta->Sequence.Stream;
    const double at = static_cast<double>(meta->Timestamp) / 1e9;
    jsMsgMetaData_Destroy(meta);
    if (seq <= last) return;  // seen (a resubscription may repeat some)
    boost::system::error_code ec;
    const json::value v = json::parse(
        std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))),
        ec);
    std::lock_guard lock(mutex);
    exec(db, "BEGIN");
    if (!ec && v.is_object()) {
      const json::object& o = v.as_object();
      auto text = [&](const char* k) {
        const json::value* x = o.if_contains(k);
        return x != nullptr && x->is_string() ? std::string(x->as_string()) : std::string();
      };
      const std::string kind = text("kind"), run = text("run_id");
      if (!run.empty()) {
        Statement ins(db,
                      "INSERT INTO runs (run_id, flow_name, tag, status, submitted_at, updated_at, "
                      "tenant, first_seq) VALUES (?1, ?2, ?3, 'PENDING', ?4, ?4, ?5, ?6) "
                      "ON CONFLICT(run_id) DO NOTHING");
        ins.text(1, run);
        ins.text(2, text("flow"));
        ins.text(3, text("tag"));
        ins.real(4, at);
        ins.text(5, text("tenant_id"));
        ins.integer(6, static_cast<std::int64_t>(seq));
        sqlite3_step(ins.s);
        const char* sql = nullptr;
        std::string status;
        if (kind == "run_start") {
          sql =
              // A cancel request's run_cancelling may come before the
              // worker's run_start: CANCELLING stays.
              "UPDATE runs SET status = CASE WHEN status IN "
              "('COMPLETED','FAILED','CANCELLED','CANCELLING') "
              "THEN status ELSE 'RUNNING' END, start_time = COALESCE(start_time, ?2), "
              "updated_at = ?2, plugins = ?5 WHERE run_id = ?1";
        } else if (kind == "run_cancelling") {
          sql =
              "UPDATE runs SET status = CASE WHEN status IN ('COMPLETED','FAILED','CANCELLED') "
              "THEN status ELSE 'CANCELLING' END, updated_at = ?2 WHERE run_id = ?1";
        } else if (kind == "run_end") {
          sql =
              "UPDATE runs SET status = ?3, end_time = ?2, updated_at = ?2, error = ?4 "
              "WHERE run_id = ?1";
          status = text("status");
        }
        if (sql != nullptr) {
          Statement up(db, sql);
          up.text(1, run);
          up.real(2, at);
          if (!status.empty()) {
            up.text(3, status);
            up.text(4, text("message"));
          }
          if (kind == "run_start") {
            const json::value* p = o.if_contains("plugins");
            up.text(5, p != nullptr && p->is_object() ? json::serialize(*p) : "{}");
          }
          sqlite3_step(up.s);
        }
      }
    }
    Statement done(db, "UPDATE applied SET seq = ?1");
    done.integer(1, static_cast<std::int64_t>(seq));
    sqlite3_step(done.s);
    exec(db, "COMMIT");
    last = seq;
  }
};

RunIndex::RunIndex(cluster::Connection& nats, const std::filesystem::path& file)
    : impl_(std::make_unique<Impl>(nats, file)) {}

RunIndex::~RunIndex() = default;

std::uint64_t RunIndex::applied() const { return impl_->last; }

std::uint64_t RunIndex::count(const std::string& status) const {
  std::lock_guard lock(impl_->mutex);
  Statement s(impl_->db, "SELECT COUNT(*) FROM runs WHERE status = ?1");
  s.text(1, status);
  return sqlite3_step(s.s) == SQLITE_ROW ? static_cast<std::uint64_t>(sqlite3_column_int64(s.s, 0))
                                         : 0;
}

std::map<std::string, std::uint64_t> RunIndex::counts(
    const std::optional<std::string>& tenant) const {
  std::lock_guard lock(impl_->mutex);
  Statement s(impl_->db, tenant
                             ? "SELECT status, COUNT(*) FROM runs WHERE tenant = ?1 GROUP BY status"
                             : "SELECT status, COUNT(*) FROM runs GROUP BY status");
  if (tenant) s.text(1, *tenant);
  std::map<std::string, std::uint64_t> out;
  while (sqlite3_step(s.s) == SQLITE_ROW) {
    out[s.column_text(0)] = static_cast<std::uint64_t>(sqlite3_column_int64(s.s, 1));
  }
  return out;
}

std::optional<std::string> RunIndex::tenant_of(const std::string& run_id) const {
  std::lock_guard lock(impl_->mutex);
  Statement s(impl_->db, "SELECT tenant FROM runs WHERE run_id = ?1");
  s.text(1, run_id);
  if (sqlite3_step(s.s) != SQLITE_ROW) return std::nullopt;
  return s.column_text(0);
}

std::optional<std::uint64_t> RunIndex::first_event(const std::string& run_id) const {
  std::lock_guard lock(impl_->mutex);
  Statement s(impl_->db, "SELECT first_seq FROM runs WHERE run_id = ?1");
  s.text(1, run_id);
  if (sqlite3_step(s.s) != SQLITE_ROW || sqlite3_column_type(s.s, 0) == SQLITE_NULL) {
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(sqlite3_column_int64(s.s, 0));
}

namespace {

// The plugins a run's tasks came from, as its RunStart said ({} before it started).
json::value plugins_of(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  return !ec && v.is_object() ? v : json::value(json::object());
}

}  // namespace

RunPage RunIndex::query(const RunQuery& q) const {
  std::string sql =
      "SELECT run_id, flow_name, tag, status, submitted_at, start_time, end_time, updated_at, "
      "error, plugins FROM runs WHERE 1";
  if (!q.status.empty()) sql += " AND status = ?1";
  if (!q.flow.empty()) sql += " AND flow_name = ?2";
  if (!q.tag.empty()) sql += " AND tag = ?3";
  if (q.updated_after > 0) sql += " AND updated_at > ?4";
  if (q.before) sql += " AND (updated_at, run_id) < (?5, ?6)";
  if (q.tenant) sql += " AND tenant = ?8";
  sql += " ORDER BY updated_at DESC, run_id DESC LIMIT ?7";
  std::lock_guard lock(impl_->mutex);
  Statement s(impl_->db, sql.c_str());
  if (!q.status.empty()) s.text(1, q.status);
  if (!q.flow.empty()) s.text(2, q.flow);
  if (!q.tag.empty()) s.text(3, q.tag);
  if (q.updated_after > 0) s.real(4, q.updated_after);
  if (q.before) {
    s.real(5, q.before->first);
    s.text(6, q.before->second);
  }
  if (q.tenant) s.text(8, *q.tenant);
  s.integer(7, static_cast<std::int64_t>(q.limit) + 1);  // one more: is there a next page?
  RunPage page;
  auto nullable = [&](int i) -> json::value {
    return sqlite3_column_type(s.s, i) == SQLITE_NULL ? json::value(nullptr)
                                                      : json::value(sqlite3_column_double(s.s, i));
  };
  while (sqlite3_step(s.s) == SQLITE_ROW) {
    if (page.items.size() == q.limit) {
      const json::object& last = page.items.back();
      page.next =
          std::pair{last.at("updated_at").as_double(), std::string(last.at("run_id").as_string())};
      break;
    }
    const std::string tag = s.column_text(2);
    const std::string error = s.column_text(8);
    page.items.push_back(
        json::object{{"run_id", s.column_text(0)},
                     {"flow_name", s.column_text(1)},
                     {"tag", tag},
                     {"tags", json::array{json::value(tag)}},
                     {"status", s.column_text(3)},
                     {"submitted_at", nullable(4)},
                     {"start_time", nullable(5)},
                     {"end_time", nullable(6)},
                     {"updated_at", sqlite3_column_double(s.s, 7)},
                     {"error", error.empty() ? json::value(nullptr) : json::value(error)},
                     {"plugins", plugins_of(s.column_text(9))}});
  }
  return page;
}

}  // namespace pyoco::server
