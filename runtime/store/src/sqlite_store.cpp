// The SQLite StateStore: $PYOCO_HOME/state.db, shared by every local pyoco
// process. WAL mode lets readers (`pyoco runs ...`) work while a run writes;
// writes take the lock up front (BEGIN IMMEDIATE) and wait for it under a
// busy timeout, so two processes writing at once queue instead of failing.
#include <pyoco/store/state_store.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "store_rules.hpp"
#include "task_page.hpp"

namespace pyoco::store {

namespace {

// Each entry moves the schema one version up; append only, never edit one
// that has shipped. The file's PRAGMA user_version is its version.
constexpr const char* kMigrations[] = {
    // 1: runs, their tasks, artifacts and log lines
    R"sql(
CREATE TABLE runs(
  id TEXT PRIMARY KEY,
  flow TEXT NOT NULL,
  flow_file TEXT NOT NULL,
  params TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL,
  started_us INTEGER NOT NULL,
  ended_us INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  pid_start INTEGER NOT NULL,
  cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE INDEX runs_by_start ON runs(started_us);
CREATE INDEX runs_by_status ON runs(status);
CREATE TABLE tasks(
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  node TEXT NOT NULL,
  seq INTEGER NOT NULL,
  task TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  started_us INTEGER NOT NULL,
  ended_us INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  error TEXT NOT NULL,
  output TEXT NOT NULL,
  PRIMARY KEY(run_id, node));
CREATE TABLE artifacts(
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  node TEXT NOT NULL,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  media_type TEXT NOT NULL,
  PRIMARY KEY(run_id, node, name));
CREATE TABLE logs(
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  time_us INTEGER NOT NULL,
  node TEXT NOT NULL,
  level INTEGER NOT NULL,
  message TEXT NOT NULL,
  PRIMARY KEY(run_id, seq));
)sql",
    // 2: a task's last heartbeat (plugin ABI 1.1)
    R"sql(
ALTER TABLE tasks ADD COLUMN progress REAL NOT NULL DEFAULT -1;
ALTER TABLE tasks ADD COLUMN heartbeat TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN heartbeat_us INTEGER NOT NULL DEFAULT 0;
)sql",
    // 3: tasks in pages of 128 by seq, each a JSON array of task objects
    // (task_page.hpp), their artifacts inside: one row per page, not per
    // task. A REAL that is not finite (a plugin's progress of 1/0) would make
    // SQLite write JSON that is not JSON: it is clamped. The old tables are
    // emptied, not dropped: a pyoco of schema 2 still running when this one
    // migrates must still be able to record its run's end.
    R"sql(
CREATE TABLE task_pages(
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  page INTEGER NOT NULL,
  tasks TEXT NOT NULL,
  PRIMARY KEY(run_id, page));
INSERT INTO task_pages(run_id, page, tasks)
SELECT run_id, seq / 128, json_group_array(json(task)) FROM (
  SELECT t.run_id AS run_id, t.seq AS seq, json_object(
    'seq', t.seq, 'node', t.node, 'task', t.task, 'state', t.state, 'attempts', t.attempts,
    'started_us', t.started_us, 'ended_us', t.ended_us,
    'duration_ms', iif(abs(t.duration_ms) <= 1.7976931348623157e308, t.duration_ms, 0),
    'error', t.error, 'output', t.output,
    'progress', iif(abs(t.progress) <= 1.7976931348623157e308, t.progress, -1),
    'heartbeat', t.heartbeat, 'heartbeat_us', t.heartbeat_us,
    'artifacts', json((SELECT json_group_array(json(a)) FROM (
        SELECT json_object('name', name, 'path', path, 'size', size, 'sha256', sha256,
                           'media_type', media_type) AS a
        FROM artifacts WHERE run_id = t.run_id AND node = t.node ORDER BY rowid)))) AS task
  FROM tasks t ORDER BY t.run_id, t.seq)
GROUP BY run_id, seq / 128;
DELETE FROM artifacts;
DELETE FROM tasks;
)sql",
    // 4: each task's whole output (its page keeps a summary); `value` is
    // NULL when a limit kept it out, `dropped` names the limit.
    R"sql(
CREATE TABLE outputs(
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  node TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  value TEXT,
  dropped TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(run_id, seq));
)sql",
    // 5: the plugins a run's tasks came from, {"name": "version"}
    R"sql(
ALTER TABLE runs ADD COLUMN plugins TEXT NOT NULL DEFAULT '{}';
)sql",
};
static_assert(kTasksPerPage == 128, "migration 3 groups tasks by 128");
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

std::int64_t to_us(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_us(std::int64_t us) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(us)));
}

class Database;

// SQLITE_BUSY past the busy timeout, or where SQLite does not wait (e.g. two
// processes setting up a new file at once): worth trying again.
struct Busy : StoreError {
  explicit Busy(const std::string& what) : StoreError(what, true) {}
};

// A prepared statement: bind by position from 1, step, read columns from 0.
class Statement {
 public:
  Statement(const Database& db, const char* sql);
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement& bind_null(int i) {
    check(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  Statement& bind(int i, double v) {
    check(sqlite3_bind_double(stmt_, i, v));
    return *this;
  }
  // True while there is a row to read.
  bool step();
  void run() {
    while (step()) {
    }
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, c));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c))) : "";
  }
  std::int64_t integer(int c) const { return sqlite3_column_int64(stmt_, c); }
  double real(int c) const { return sqlite3_column_double(stmt_, c); }

 private:
  void check(int rc) const;
  const Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class Database {
 public:
  Database(std::filesystem::path file, std::chrono::milliseconds busy_timeout,
           std::function<void()> on_wait)
      : file_(std::move(file)), busy_timeout_(busy_timeout), on_wait_(std::move(on_wait)) {
    const int rc =
        sqlite3_open_v2(file_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
      const std::string why = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      db_ = nullptr;
      throw StoreError(file_.string() + ": cannot open the run history: " + why + hint(rc & 0xff));
    }
    sqlite3_busy_handler(db_, &Database::busy_wait, this);
  }
  ~Database() { sqlite3_close(db_); }
  const std::filesystem::path& file() const { return file_; }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(const char* sql) const {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
      const std::string why = msg ? msg : sqlite3_errmsg(db_);
      sqlite3_free(msg);
      fail(why);
    }
  }
  [[noreturn]] void fail(const std::string& why) const {
    const int code = sqlite3_errcode(db_) & 0xff;
    if (code == SQLITE_BUSY) throw Busy(file_.string() + ": " + why);
    throw StoreError(file_.string() + ": " + why + hint(code), code == SQLITE_FULL);
  }
  // What to do about an error of SQLite's primary `code`, for its message.
  std::string hint(int code) const {
    std::error_code ec;
    if (std::filesystem::is_directory(file_, ec)) {
      return " (it is a directory: move it away, or point PYOCO_HOME elsewhere)";
    }
    if (std::filesystem::exists(file_, ec) && !std::filesystem::is_regular_file(file_, ec)) {
      return " (it is not a regular file: move it away, or point PYOCO_HOME elsewhere)";
    }
    if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT) {
      return " (move the file away, or point PYOCO_HOME elsewhere)";
    }
    if (code == SQLITE_READONLY || code == SQLITE_PERM || code == SQLITE_CANTOPEN) {
      return " (this user must be able to write the file and its directory: fix their "
             "permissions, or point PYOCO_HOME elsewhere)";
    }
    if (code == SQLITE_FULL)
      return " (the disk is full: free space, or point PYOCO_HOME elsewhere)";
    return "";
  }
  sqlite3* handle() const { return db_; }

  // The file deleted or replaced since it was opened (PYOCO_HOME removed
  // mid-run): SQLite would go on writing to the deleted file, and the run
  // would be lost without a word.
  void check_in_place() const {
    int moved = 0;
    if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
        moved != 0) {
      throw StoreError::file_gone(file_.string() +
                                  " was deleted or replaced while this process wrote to it");
    }
  }

  // While it lives, a busy database fails at once instead of being waited
  // for (the holder of the connection's mutex only).
  class NoWait {
   public:
    explicit NoWait(const Database& db) : database_(db) { database_.no_wait_ = true; }
    ~NoWait() { database_.no_wait_ = false; }
    NoWait(const NoWait&) = delete;
    NoWait& operator=(const NoWait&) = delete;

   private:
    const Database& database_;
  };

 private:
  // SQLite's own busy handler sleeps longer and longer (100 ms a try once
  // it has waited a while), so among many writing processes one that has
  // waited long loses each turn to newcomers that look every millisecond:
  // with a dozen `pyoco run`s a run's writes waited out the whole timeout.
  // Here every waiter looks every 1-3 ms until the timeout, so the lock
  // goes round instead.
  static int busy_wait(void* self, int tries) {
    auto& db = *static_cast<Database*>(self);
    const auto now = std::chrono::steady_clock::now();
    if (tries == 0) db.busy_since_ = now;
    if (db.no_wait_ || now - db.busy_since_ >= db.busy_timeout_) return 0;
    if (db.on_wait_ && now - db.busy_since_ >= std::chrono::seconds(1)) {
      std::exchange(db.on_wait_, {})();  // once: a wait is reported, not each
    }
    thread_local std::minstd_rand jitter(static_cast<unsigned>(
        std::hash<std::thread::id>{}(std::this_thread::get_id()) ^ now.time_since_epoch().count()));
    std::this_thread::sleep_for(std::chrono::microseconds(1000 + jitter() % 2000));
    return 1;
  }
  std::filesystem::path file_;
  std::chrono::milliseconds busy_timeout_;
  std::function<void()> on_wait_;  // only touched by the thread holding the connection
  sqlite3* db_ = nullptr;
  std::chrono::steady_clock::time_point busy_since_;
  mutable bool no_wait_ = false;  // see NoWait
};

Statement::Statement(const Database& db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v2(db.handle(), sql, -1, &stmt_, nullptr) != SQLITE_OK) {
    db.fail(sqlite3_errmsg(db.handle()));
  }
}
bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  const std::string why = sqlite3_errmsg(db_.handle());
  sqlite3_reset(stmt_);
  db_.fail(why);
}
void Statement::check(int rc) const {
  if (rc != SQLITE_OK) db_.fail(sqlite3_errmsg(db_.handle()));
}

// BEGIN IMMEDIATE ... COMMIT, rolled back when an exception leaves the scope.
class WriteTransaction {
 public:
  // Every write checks that the file is still there, before and after: a
  // write to a deleted file would be lost without a word.
  explicit WriteTransaction(const Database& db) : db_(db) {
    db_.check_in_place();
    db_.exec("BEGIN IMMEDIATE");
  }
  ~WriteTransaction() {
    if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    db_.exec("COMMIT");
    done_ = true;
    db_.check_in_place();
  }

 private:
  const Database& db_;
  bool done_ = false;
};

// The statuses of a run still going (store_rules.hpp's is_active, in SQL).
#define PYOCO_ACTIVE_STATUSES "('PENDING','RUNNING','CANCELLING')"

constexpr const char* kRunColumns =
    "id, flow, flow_file, params, status, reason, started_us, ended_us, duration_ms, host, pid, "
    "pid_start, cancel_requested, plugins";

RunRecord read_run(const Statement& s) {
  RunRecord r;
  r.id = s.text(0);
  r.flow = s.text(1);
  r.flow_file = s.text(2);
  r.params = s.text(3);
  r.status = core::run_status_from(s.text(4)).value_or(core::RunStatus::Failed);
  r.reason = s.text(5);
  r.started = from_us(s.integer(6));
  r.ended = from_us(s.integer(7));
  r.duration_ms = s.real(8);
  r.host = s.text(9);
  r.pid = s.integer(10);
  r.pid_start = s.integer(11);
  r.cancel_requested = s.integer(12) != 0;
  r.plugins = s.text(13);
  return r;
}

class SqliteStateStore final : public StateStore {
 public:
  SqliteStateStore(const std::filesystem::path& file, std::chrono::milliseconds busy_timeout,
                   std::function<void()> on_wait)
      : db_(file, busy_timeout, std::move(on_wait)) {
    // Two processes opening a new history at once can meet SQLITE_BUSY where
    // SQLite does not wait (switching the journal mode): set up again then.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int attempt = 1;; ++attempt) {
      try {
        set_up();
        return;
      } catch (const Busy&) {
        if (std::chrono::steady_clock::now() > deadline) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5 * attempt, 100)));
      }
    }
  }

  void set_up() {
    db_.exec("PRAGMA foreign_keys=ON");
    // WAL: readers never block the writer. NORMAL sync is durable across a
    // crash of the process (what we guard against); a power cut may lose the
    // last batch, never corrupt the file.
    Statement mode(db_, "PRAGMA journal_mode=WAL");
    // It answers with the mode in force: another process may have held the
    // file in a way that kept the old one.
    if (!mode.step() || mode.text(0) != "wal") throw Busy("cannot switch to WAL yet");
    mode.reset();
    db_.exec("PRAGMA synchronous=NORMAL");
    // A short-lived `pyoco run` would otherwise checkpoint (and fsync) the
    // WAL on every exit: milliseconds of start-up cost per run. SQLite's
    // automatic checkpoint, once the WAL holds 1000 pages, still bounds it.
    sqlite3_db_config(db_.handle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    migrate();
  }

  std::filesystem::path notes_dir() const override { return db_.file().parent_path() / "crashes"; }

  void write(const Batch& batch) override {
    std::lock_guard lock(mutex_);
    WriteTransaction tx(db_);
    write_locked(batch);
    tx.commit();
  }

  bool write_if_active(const Batch& batch) override {
    std::lock_guard lock(mutex_);
    WriteTransaction tx(db_);
    Statement status(db_, "SELECT 1 FROM runs WHERE id=? AND status IN " PYOCO_ACTIVE_STATUSES);
    for (const RunRecord& r : batch.runs) {
      status.bind(1, r.id);
      const bool active = status.step();
      status.reset();
      if (!active) return false;  // rolled back: nothing written
    }
    write_locked(batch);
    tx.commit();
    return true;
  }

  std::vector<RunRecord> runs(const RunFilter& filter) const override {
    std::lock_guard lock(mutex_);
    std::string sql = std::string("SELECT ") + kRunColumns + " FROM runs WHERE 1=1";
    if (filter.status) sql += " AND status=?1";
    if (!filter.flow.empty()) sql += " AND flow=?2";
    if (filter.active_only) sql += " AND status IN " PYOCO_ACTIVE_STATUSES;
    sql += " ORDER BY started_us DESC, id DESC";
    if (filter.limit > 0) sql += " LIMIT ?3";
    Statement s(db_, sql.c_str());
    if (filter.status) s.bind(1, core::to_string(*filter.status));
    if (!filter.flow.empty()) s.bind(2, filter.flow);
    if (filter.limit > 0) s.bind(3, static_cast<std::int64_t>(filter.limit));
    std::vector<RunRecord> out;
    while (s.step()) out.push_back(read_run(s));
    return out;
  }

  std::optional<RunRecord> run(std::string_view id) const override {
    std::lock_guard lock(mutex_);
    return read_run_record(id);
  }

  std::optional<RunRecord> run_without_waiting(std::string_view id) const override {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock) throw Busy("the run history's connection is in use");
    const Database::NoWait no_wait(db_);
    return read_run_record(id);
  }

  std::vector<std::string> ids_with_prefix(std::string_view prefix,
                                           std::size_t max) const override {
    std::lock_guard lock(mutex_);
    // A range, not LIKE: ids are plain text and '_' or '%' in a prefix mean nothing.
    Statement s(db_,
                "SELECT id FROM runs WHERE id >= ?1 AND substr(id, 1, ?2) = ?1 "
                "ORDER BY id LIMIT ?3");
    s.bind(1, prefix)
        .bind(2, static_cast<std::int64_t>(prefix.size()))
        .bind(3, static_cast<std::int64_t>(max));
    std::vector<std::string> out;
    while (s.step()) out.push_back(s.text(0));
    return out;
  }

  std::vector<TaskRecord> tasks(std::string_view run_id) const override {
    std::lock_guard lock(mutex_);
    Statement s(db_, "SELECT page, tasks FROM task_pages WHERE run_id=? ORDER BY page");
    s.bind(1, run_id);
    std::vector<std::pair<std::uint32_t, TaskRecord>> found;
    while (s.step()) {
      decode_task_page(s.text(1),
                       "run " + std::string(run_id) + ", task page " + std::to_string(s.integer(0)),
                       found);
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<TaskRecord> out;
    out.reserve(found.size());
    for (auto& [seq, record] : found) out.push_back(std::move(record));
    return out;
  }

  std::vector<LogEntry> logs(std::string_view run_id, const LogFilter& filter) const override {
    std::lock_guard lock(mutex_);
    std::string sql =
        "SELECT seq, time_us, node, level, message FROM logs WHERE run_id=?1 AND seq>?2";
    if (!filter.node.empty()) {
      sql += filter.iterations ? " AND (node=?3 OR substr(node, 1, length(?3) + 1)=?3 || '[')"
                               : " AND node=?3";
    }
    // The last N: newest first with a limit, then turned back into order.
    sql += filter.tail > 0 ? " ORDER BY seq DESC LIMIT ?4" : " ORDER BY seq";
    Statement s(db_, sql.c_str());
    s.bind(1, run_id).bind(2, static_cast<std::int64_t>(filter.after));
    if (!filter.node.empty()) s.bind(3, filter.node);
    if (filter.tail > 0) s.bind(4, static_cast<std::int64_t>(filter.tail));
    std::vector<LogEntry> out;
    while (s.step()) {
      LogEntry l;
      l.seq = static_cast<std::uint64_t>(s.integer(0));
      l.time = from_us(s.integer(1));
      l.node = s.text(2);
      l.level = static_cast<trace::LogLevel>(s.integer(3));
      l.message = s.text(4);
      out.push_back(std::move(l));
    }
    if (filter.tail > 0) std::reverse(out.begin(), out.end());
    return out;
  }

  std::vector<OutputRecord> outputs(std::string_view run_id) const override {
    std::lock_guard lock(mutex_);
    Statement s(db_,
                "SELECT seq, node, bytes, value, dropped FROM outputs WHERE run_id=? ORDER BY seq");
    s.bind(1, run_id);
    std::vector<OutputRecord> out;
    while (s.step()) {
      OutputRecord o;
      o.seq = static_cast<std::uint32_t>(s.integer(0));
      o.node = s.text(1);
      o.bytes = static_cast<std::uint64_t>(s.integer(2));
      o.json = s.text(3);
      o.dropped = s.text(4);
      out.push_back(std::move(o));
    }
    return out;
  }

  bool claim(const RunRecord& r) override {
    std::lock_guard lock(mutex_);
    return insert_claim(r);
  }

  bool claim_without_waiting(const RunRecord& r) override {
    std::lock_guard lock(mutex_);
    const Database::NoWait no_wait(db_);
    return insert_claim(r);
  }

  bool insert_claim(const RunRecord& r) {  // under mutex_
    WriteTransaction tx(db_);
    Statement run(db_, (std::string(kInsertRun) + "ON CONFLICT(id) DO NOTHING").c_str());
    bind_run(run, r).run();
    const bool claimed = sqlite3_changes(db_.handle()) > 0;
    tx.commit();
    return claimed;
  }

  void unclaim(std::string_view run_id) override {
    std::lock_guard lock(mutex_);
    WriteTransaction tx(db_);
    Statement s(db_,
                "DELETE FROM runs WHERE id=?1 AND status='PENDING' AND NOT EXISTS(SELECT 1 FROM "
                "task_pages WHERE run_id=?1)");
    s.bind(1, run_id).run();
    tx.commit();
  }

  bool request_cancel(std::string_view run_id) override {
    std::lock_guard lock(mutex_);
    WriteTransaction tx(db_);
    Statement s(db_, "UPDATE runs SET cancel_requested=1 WHERE id=?");
    s.bind(1, run_id).run();
    const bool found = sqlite3_changes(db_.handle()) > 0;
    tx.commit();
    return found;
  }

  std::size_t trim(std::size_t keep) override {
    std::lock_guard lock(mutex_);
    WriteTransaction tx(db_);
    // Cascades to task pages and logs, in the same transaction.
    Statement s(db_, "DELETE FROM runs WHERE status NOT IN " PYOCO_ACTIVE_STATUSES
                     " AND id "
                     "NOT IN (SELECT id FROM runs ORDER BY started_us DESC, id DESC LIMIT ?)");
    s.bind(1, static_cast<std::int64_t>(keep)).run();
    const auto deleted = static_cast<std::size_t>(sqlite3_changes(db_.handle()));
    tx.commit();
    return deleted;
  }

 private:
  // The caller holds mutex_.
  std::optional<RunRecord> read_run_record(std::string_view id) const {
    Statement s(db_, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE id=?").c_str());
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return read_run(s);
  }

  // write()'s work: the caller holds mutex_ and a write transaction.
  void write_locked(const Batch& batch) {
    Statement run(db_, (std::string(kInsertRun) +
                        "ON CONFLICT(id) DO UPDATE SET flow=excluded.flow, "
                        "flow_file=excluded.flow_file, params=excluded.params, "
                        "status=excluded.status, reason=excluded.reason, "
                        "started_us=excluded.started_us, ended_us=excluded.ended_us, "
                        "duration_ms=excluded.duration_ms, host=excluded.host, "
                        "pid=excluded.pid, pid_start=excluded.pid_start, plugins=excluded.plugins")
                           .c_str());
    for (const RunRecord& r : batch.runs) bind_run(run, r).run();
    // Pages whose run was trimmed away meanwhile are dropped, not an error.
    Statement page(db_,
                   "INSERT INTO task_pages(run_id, page, tasks) SELECT ?1,?2,?3 "
                   "WHERE EXISTS(SELECT 1 FROM runs WHERE id=?1) "
                   "ON CONFLICT(run_id, page) DO UPDATE SET tasks=excluded.tasks");
    Statement cut(db_, "DELETE FROM task_pages WHERE run_id=?1 AND page>=?2");
    for (const TaskPages& pages : batch.tasks) {
      for (const std::uint32_t p : pages.pages) {
        const std::size_t first = std::size_t{p} * kTasksPerPage;
        if (first >= pages.tasks.size()) continue;
        const auto records = pages.tasks.subspan(
            first, std::min<std::size_t>(kTasksPerPage, pages.tasks.size() - first));
        page.bind(1, pages.run_id)
            .bind(2, static_cast<std::int64_t>(p))
            .bind(3, encode_task_page(records, static_cast<std::uint32_t>(first)))
            .run();
      }
      if (pages.whole) {
        cut.bind(1, pages.run_id)
            .bind(2, static_cast<std::int64_t>((pages.tasks.size() + kTasksPerPage - 1) /
                                               kTasksPerPage))
            .run();
      }
    }
    Statement log(db_,
                  "INSERT OR IGNORE INTO logs(run_id, seq, time_us, node, level, message) "
                  "SELECT ?1,?2,?3,?4,?5,?6 WHERE EXISTS(SELECT 1 FROM runs WHERE id=?1)");
    for (const auto& [id, l] : batch.logs) {
      log.bind(1, id)
          .bind(2, static_cast<std::int64_t>(l.seq))
          .bind(3, to_us(l.time))
          .bind(4, l.node)
          .bind(5, static_cast<std::int64_t>(l.level))
          .bind(6, l.message)
          .run();
    }
    Statement output(db_,
                     "INSERT OR REPLACE INTO outputs(run_id, seq, node, bytes, value, dropped) "
                     "SELECT ?1,?2,?3,?4,?5,?6 WHERE EXISTS(SELECT 1 FROM runs WHERE id=?1)");
    for (const auto& [id, o] : batch.outputs) {
      output.bind(1, id)
          .bind(2, static_cast<std::int64_t>(o.seq))
          .bind(3, o.node)
          .bind(4, static_cast<std::int64_t>(o.bytes));
      if (o.dropped.empty()) {
        output.bind(5, o.json);
      } else {
        output.bind_null(5);
      }
      output.bind(6, o.dropped).run();
    }
    Statement alive(db_, "UPDATE runs SET duration_ms=?2 WHERE id=?1 AND ended_us=0");
    for (const auto& [id, ms] : batch.alive) alive.bind(1, id).bind(2, ms).run();
  }

  static constexpr std::string_view kInsertRun =
      "INSERT INTO runs(id, flow, flow_file, params, status, reason, started_us, ended_us, "
      "duration_ms, host, pid, pid_start, plugins) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ";

  static Statement& bind_run(Statement& s, const RunRecord& r) {
    return s.bind(1, r.id)
        .bind(2, r.flow)
        .bind(3, r.flow_file)
        .bind(4, r.params)
        .bind(5, core::to_string(r.status))
        .bind(6, r.reason)
        .bind(7, to_us(r.started))
        .bind(8, to_us(r.ended))
        .bind(9, r.duration_ms)
        .bind(10, r.host)
        .bind(11, r.pid)
        .bind(12, r.pid_start)
        .bind(13, r.plugins.empty() ? std::string("{}") : r.plugins);
  }

  int schema_version() const {
    Statement v(db_, "PRAGMA user_version");
    return v.step() ? static_cast<int>(v.integer(0)) : 0;
  }

  void migrate() {
    // The common case reads only; the write lock is taken to migrate, and
    // the version read again under it (another process may have migrated).
    if (schema_version() == kSchemaVersion) return;
    WriteTransaction tx(db_);
    const int version = schema_version();
    if (version > kSchemaVersion) {
      throw StoreError(sqlite3_db_filename(db_.handle(), "main") +
                       std::string(": the run history has schema version ") +
                       std::to_string(version) + ", newer than this pyoco knows (" +
                       std::to_string(kSchemaVersion) +
                       "); use a newer pyoco, or point PYOCO_HOME elsewhere");
    }
    if (version < 0) {  // never written by pyoco: SQLite starts at 0
      throw StoreError(sqlite3_db_filename(db_.handle(), "main") +
                       std::string(": the run history has schema version ") +
                       std::to_string(version) +
                       ", which no pyoco writes: the file is damaged; move it away (or point "
                       "PYOCO_HOME elsewhere) to start a new history");
    }
    for (int next = version; next < kSchemaVersion; ++next) db_.exec(kMigrations[next]);
    if (version != kSchemaVersion) {
      db_.exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
    }
    tx.commit();
  }

  mutable std::mutex mutex_;
  Database db_;
};

}  // namespace

std::shared_ptr<StateStore> open_sqlite_store(const std::filesystem::path& file,
                                              std::chrono::milliseconds busy_timeout,
                                              std::function<void()> on_wait) {
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) {
    throw StoreError(file.parent_path().string() + ": cannot create the directory for the run " +
                     "history: " + ec.message() + " (set PYOCO_HOME to a writable directory)");
  }
  return std::make_shared<SqliteStateStore>(file, busy_timeout, std::move(on_wait));
}

}  // namespace pyoco::store
