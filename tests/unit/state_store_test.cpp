// The StateStore contract, run over both implementations (memory and
// SQLite), plus what only the SQLite file can do: survive a reopen, migrate,
// refuse a newer schema or a file that is not a database.
#include <pyoco/store/history.hpp>
#include <pyoco/store/state_store.hpp>

#include <sqlite3.h>
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <fstream>

#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::store;
using pyoco::testing::TempDir;

namespace {

Clock::time_point at(int seconds) { return Clock::time_point(std::chrono::seconds(seconds)); }

RunRecord make_run(const std::string& id, int started, core::RunStatus status,
                   const std::string& flow = "hello") {
  RunRecord r;
  r.id = id;
  r.flow = flow;
  r.flow_file = "/flows/" + flow + ".yaml";
  r.params = R"({"x":1})";
  r.status = status;
  r.started = at(started);
  if (core::is_terminal(status)) {
    r.ended = at(started + 2);
    r.duration_ms = 2000;
  }
  r.host = "host";
  r.pid = 42;
  return r;
}

TaskRecord make_task(const std::string& node, core::TaskState state) {
  TaskRecord t;
  t.node = node;
  t.task = "std/echo";
  t.state = state;
  t.attempts = 1;
  t.started = at(10);
  t.ended = at(11);
  t.duration_ms = 1000;
  return t;
}

// Pages `which` of a task table (records by seq), as the writer hands them.
TaskPages pages_of(std::string_view run, const std::vector<TaskRecord>& table,
                   std::vector<std::uint32_t> which) {
  TaskPages p;
  p.run_id = run;
  p.tasks = table;
  p.pages = std::move(which);
  return p;
}

LogEntry make_log(std::uint64_t seq, const std::string& node, const std::string& message) {
  return LogEntry{seq, at(10), node, trace::LogLevel::Info, message};
}

// The tables as the first release (schema 1) made them, for migration tests.
const char* const kSchema1 = R"sql(
CREATE TABLE runs(id TEXT PRIMARY KEY, flow TEXT NOT NULL, flow_file TEXT NOT NULL,
  params TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, started_us INTEGER NOT NULL,
  ended_us INTEGER NOT NULL, duration_ms REAL NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
  pid_start INTEGER NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE INDEX runs_by_start ON runs(started_us);
CREATE INDEX runs_by_status ON runs(status);
CREATE TABLE tasks(run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  node TEXT NOT NULL, seq INTEGER NOT NULL, task TEXT NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL, started_us INTEGER NOT NULL, ended_us INTEGER NOT NULL,
  duration_ms REAL NOT NULL, error TEXT NOT NULL, output TEXT NOT NULL,
  PRIMARY KEY(run_id, node));
CREATE TABLE artifacts(run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  node TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
  sha256 TEXT NOT NULL, media_type TEXT NOT NULL, PRIMARY KEY(run_id, node, name));
CREATE TABLE logs(run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL, time_us INTEGER NOT NULL, node TEXT NOT NULL, level INTEGER NOT NULL,
  message TEXT NOT NULL, PRIMARY KEY(run_id, seq));
)sql";

struct Memory {
  std::shared_ptr<StateStore> open() { return open_memory_store(); }
};
struct Sqlite {
  TempDir dir;
  std::shared_ptr<StateStore> open() { return open_sqlite_store(dir.path() / "sub" / "state.db"); }
};
using Stores = boost::mpl::list<Memory, Sqlite>;

}  // namespace

BOOST_AUTO_TEST_SUITE(contract)

BOOST_AUTO_TEST_CASE_TEMPLATE(a_run_reads_back_as_written, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("aaaa-1", 100, core::RunStatus::Failed));
  b.runs.back().reason = "failed: broken";
  store->write(b);
  const auto r = store->run("aaaa-1");
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(r->flow == "hello");
  BOOST_TEST(r->flow_file == "/flows/hello.yaml");
  BOOST_TEST(r->params == R"({"x":1})");
  BOOST_TEST(core::to_string(r->status) == "FAILED");
  BOOST_TEST(r->reason == "failed: broken");
  BOOST_TEST((r->started == at(100)));
  BOOST_TEST((r->ended == at(102)));
  BOOST_TEST(r->duration_ms == 2000.0);
  BOOST_TEST(r->host == "host");
  BOOST_TEST(r->pid == 42);
  BOOST_TEST(!r->cancel_requested);
  BOOST_TEST(!store->run("aaaa-2").has_value());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(runs_are_newest_first_and_filtered, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("r1", 100, core::RunStatus::Completed, "a"));
  b.runs.push_back(make_run("r2", 300, core::RunStatus::Failed, "b"));
  b.runs.push_back(make_run("r3", 200, core::RunStatus::Running, "a"));
  store->write(b);
  auto ids = [](const std::vector<RunRecord>& rs) {
    std::string out;
    for (const auto& r : rs) out += r.id + " ";
    return out;
  };
  BOOST_TEST(ids(store->runs({})) == "r2 r3 r1 ");
  RunFilter f;
  f.flow = "a";
  BOOST_TEST(ids(store->runs(f)) == "r3 r1 ");
  f = {};
  f.status = core::RunStatus::Failed;
  BOOST_TEST(ids(store->runs(f)) == "r2 ");
  f = {};
  f.active_only = true;
  BOOST_TEST(ids(store->runs(f)) == "r3 ");
  f = {};
  f.limit = 2;
  BOOST_TEST(ids(store->runs(f)) == "r2 r3 ");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_page_replaces_its_tasks_and_tasks_read_back_by_seq, S, Stores) {
  S s;
  auto store = s.open();
  std::vector<TaskRecord> table{make_task("first", core::TaskState::Running),
                                make_task("second", core::TaskState::Running)};
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  b.tasks.push_back(pages_of("r", table, {0}));
  store->write(b);

  table[1].state = core::TaskState::Succeeded;
  table[1].attempts = 3;
  table[1].output_summary = R"({"ok":true})";
  table[1].artifacts.push_back({"out.json", "/a/r/out.json", 12, "abc123", "application/json"});
  table[0].state = core::TaskState::Failed;
  table[0].error = "disk on fire";
  Batch later;
  later.tasks.push_back(pages_of("r", table, {0}));
  store->write(later);

  const auto tasks = store->tasks("r");
  BOOST_TEST_REQUIRE(tasks.size() == 2u);
  BOOST_TEST(tasks[0].node == "first");
  BOOST_TEST(core::to_string(tasks[0].state) == "FAILED");
  BOOST_TEST(tasks[0].error == "disk on fire");
  BOOST_TEST((tasks[0].started == at(10)));
  BOOST_TEST((tasks[0].ended == at(11)));
  BOOST_TEST(tasks[0].duration_ms == 1000.0);
  BOOST_TEST(tasks[1].node == "second");
  BOOST_TEST(tasks[1].task == "std/echo");
  BOOST_TEST(tasks[1].attempts == 3u);
  BOOST_TEST(tasks[1].output_summary == R"({"ok":true})");
  BOOST_TEST(tasks[1].progress == -1.0);
  BOOST_TEST_REQUIRE(tasks[1].artifacts.size() == 1u);
  BOOST_TEST(tasks[1].artifacts[0].path == "/a/r/out.json");
  BOOST_TEST(tasks[1].artifacts[0].size == 12u);
  BOOST_TEST(tasks[1].artifacts[0].sha256 == "abc123");
  BOOST_TEST(tasks[1].artifacts[0].media_type == "application/json");
  BOOST_TEST(store->tasks("nope").empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pages_are_written_apart_and_unknown_records_are_left_out, S, Stores) {
  S s;
  auto store = s.open();
  // Three pages; seq 5 and the whole second page are not known yet.
  std::vector<TaskRecord> table(2 * kTasksPerPage + 10);
  for (std::uint32_t i = 0; i < table.size(); ++i) {
    if (i == 5 || (i >= kTasksPerPage && i < 2 * kTasksPerPage)) continue;
    table[i] = make_task("n" + std::to_string(i), core::TaskState::Pending);
  }
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  b.tasks.push_back(pages_of("r", table, {0, 2}));
  store->write(b);
  BOOST_TEST(store->tasks("r").size() == kTasksPerPage - 1 + 10);

  // A task of the middle page becomes known, with what a plugin may write.
  table[kTasksPerPage + 3] = make_task("late", core::TaskState::Succeeded);
  table[kTasksPerPage + 3].error =
      "quote \" backslash \\ newline \n tab \t nul? \x01 bytes \xff\xfe";
  // Escapes first, last, back to back, and a string of nothing else.
  table[kTasksPerPage + 3].output_summary = "\"a\\\x1f\x1f\"b\"";
  table[kTasksPerPage + 3].heartbeat = "50% done";
  table[kTasksPerPage + 3].progress = 0.5;
  table[kTasksPerPage + 3].heartbeat_at = at(12);
  Batch middle;
  middle.tasks.push_back(pages_of("r", table, {1}));
  store->write(middle);
  const auto tasks = store->tasks("r");
  BOOST_TEST_REQUIRE(tasks.size() == kTasksPerPage + 10u);
  BOOST_TEST(tasks[4].node == "n4");
  BOOST_TEST(tasks[5].node == "n6");
  BOOST_TEST(tasks[kTasksPerPage - 1].node == "late");
  BOOST_TEST(tasks[kTasksPerPage - 1].error == table[kTasksPerPage + 3].error);
  BOOST_TEST(tasks[kTasksPerPage - 1].output_summary == table[kTasksPerPage + 3].output_summary);
  BOOST_TEST(tasks[kTasksPerPage - 1].heartbeat == "50% done");
  BOOST_TEST(tasks[kTasksPerPage - 1].progress == 0.5);
  BOOST_TEST((tasks[kTasksPerPage - 1].heartbeat_at == at(12)));
  BOOST_TEST(tasks[kTasksPerPage].node == "n" + std::to_string(2 * kTasksPerPage));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_whole_table_drops_pages_past_its_end, S, Stores) {
  S s;
  auto store = s.open();
  std::vector<TaskRecord> table(kTasksPerPage + 1, make_task("t", core::TaskState::Running));
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  b.tasks.push_back(TaskPages::all("r", table));
  store->write(b);
  BOOST_TEST(store->tasks("r").size() == kTasksPerPage + 1u);
  table.resize(3);
  Batch shorter;
  shorter.tasks.push_back(TaskPages::all("r", table));
  store->write(shorter);
  BOOST_TEST(store->tasks("r").size() == 3u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(logs_filter_by_task_position_and_tail, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  for (std::uint64_t i = 1; i <= 6; ++i) {
    b.logs.emplace_back("r", make_log(i, i % 2 ? "odd" : "even", "line " + std::to_string(i)));
  }
  store->write(b);
  auto text = [](const std::vector<LogEntry>& ls) {
    std::string out;
    for (const auto& l : ls) out += l.message.substr(5) + ",";
    return out;
  };
  BOOST_TEST(text(store->logs("r", {})) == "1,2,3,4,5,6,");
  LogFilter f;
  f.node = "odd";
  BOOST_TEST(text(store->logs("r", f)) == "1,3,5,");
  f = {};
  f.after = 4;
  BOOST_TEST(text(store->logs("r", f)) == "5,6,");
  f = {};
  f.tail = 2;
  BOOST_TEST(text(store->logs("r", f)) == "5,6,");
  f.node = "even";
  BOOST_TEST(text(store->logs("r", f)) == "4,6,");
}

// A loop body's node with its iterations: say, say[0], say[1][2], not sayer
// or say2.
BOOST_AUTO_TEST_CASE_TEMPLATE(logs_filter_by_a_node_with_its_iterations, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  const char* nodes[] = {"say[0]", "sayer", "say[1][2]", "say2", "say", "x[say]", "say[1]"};
  std::uint64_t seq = 0;
  for (const char* node : nodes) {
    ++seq;
    b.logs.emplace_back("r", make_log(seq, node, "line " + std::to_string(seq)));
  }
  store->write(b);
  auto text = [](const std::vector<LogEntry>& ls) {
    std::string out;
    for (const auto& l : ls) out += l.message.substr(5) + ",";
    return out;
  };
  LogFilter f;
  f.node = "say";
  BOOST_TEST(text(store->logs("r", f)) == "5,");  // without iterations: the node alone
  f.iterations = true;
  BOOST_TEST(text(store->logs("r", f)) == "1,3,5,7,");
  f.tail = 2;
  BOOST_TEST(text(store->logs("r", f)) == "5,7,");
  f = {};
  f.node = "say[1]";
  f.iterations = true;
  BOOST_TEST(text(store->logs("r", f)) == "3,7,");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cancel_request_survives_later_writes, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  store->write(b);
  BOOST_TEST(store->request_cancel("r"));
  BOOST_TEST(!store->request_cancel("other"));
  b.runs.back().status = core::RunStatus::Cancelling;
  store->write(b);  // the run's own writer knows nothing of the request
  BOOST_TEST(store->run("r")->cancel_requested);
}

// Recovery's write: an end found abandoned never overwrites the end the
// run's own process wrote after the read that found it active (`pyoco runs
// list` beside runs ending marked COMPLETED runs FAILED "interrupted").
BOOST_AUTO_TEST_CASE_TEMPLATE(a_write_if_active_never_overwrites_an_end, S, Stores) {
  S s;
  auto store = s.open();
  Batch running;
  running.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  store->write(running);
  Batch interrupted;
  interrupted.runs.push_back(make_run("r", 1, core::RunStatus::Failed));
  interrupted.runs.back().reason = "interrupted";

  Batch completed;
  completed.runs.push_back(make_run("r", 1, core::RunStatus::Completed));
  store->write(completed);  // its own process, between the read and the write
  BOOST_TEST(!store->write_if_active(interrupted));
  BOOST_TEST(core::to_string(store->run("r")->status) == "COMPLETED");
  BOOST_TEST(store->run("r")->reason.empty());

  store->write(running);
  BOOST_TEST(store->write_if_active(interrupted));
  BOOST_TEST(core::to_string(store->run("r")->status) == "FAILED");
  BOOST_TEST(store->run("r")->reason == "interrupted");
  BOOST_TEST(!store->write_if_active(interrupted));  // ended: once
}

BOOST_AUTO_TEST_CASE_TEMPLATE(ids_resolve_from_unambiguous_prefixes, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("abc-111", 1, core::RunStatus::Completed));
  b.runs.push_back(make_run("abc-222", 2, core::RunStatus::Completed));
  b.runs.push_back(make_run("abd-333", 3, core::RunStatus::Completed));
  b.runs.push_back(make_run("a_c-444", 4, core::RunStatus::Completed));
  store->write(b);
  BOOST_TEST(resolve_run(*store, "abc-111").id == "abc-111");
  BOOST_TEST(resolve_run(*store, "abc-2").id == "abc-222");
  BOOST_TEST(resolve_run(*store, "abd").id == "abd-333");
  BOOST_TEST(resolve_run(*store, "a_").id == "a_c-444");  // '_' is no wildcard
  BOOST_CHECK_EXCEPTION(resolve_run(*store, "abc"), StoreError, [](const StoreError& e) {
    return std::string(e.what()) ==
           "run id prefix abc is ambiguous (abc-111, abc-222); give more of the id";
  });
  BOOST_CHECK_EXCEPTION(resolve_run(*store, "zz"), StoreError, [](const StoreError& e) {
    return std::string(e.what()).find("no run zz in the history") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(trim_deletes_old_ended_runs_whole_and_never_active_ones, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("oldest-running", 1, core::RunStatus::Running));
  b.runs.push_back(make_run("old", 2, core::RunStatus::Completed));
  b.runs.push_back(make_run("mid", 3, core::RunStatus::Failed));
  b.runs.push_back(make_run("new", 4, core::RunStatus::Completed));
  const std::vector<TaskRecord> table{make_task("t", core::TaskState::Succeeded)};
  b.tasks.push_back(pages_of("old", table, {0}));
  b.logs.emplace_back("old", make_log(1, "t", "hello"));
  b.outputs.emplace_back("old", OutputRecord{0, "t", "42", 2, ""});
  store->write(b);
  BOOST_TEST(store->outputs("old").size() == 1u);
  BOOST_TEST(store->trim(2) == 1u);  // "old" only: the running one stays
  BOOST_TEST(!store->run("old").has_value());
  BOOST_TEST(store->tasks("old").empty());
  BOOST_TEST(store->logs("old", {}).empty());
  BOOST_TEST(store->outputs("old").empty());
  BOOST_TEST(store->run("oldest-running").has_value());
  BOOST_TEST(store->run("mid").has_value());
  BOOST_TEST(store->run("new").has_value());
  // Rows for a run that is gone are dropped, not an error.
  Batch late;
  late.tasks.push_back(pages_of("old", table, {0}));
  late.logs.emplace_back("old", make_log(2, "t", "late"));
  late.outputs.emplace_back("old", OutputRecord{0, "t", "43", 2, ""});
  store->write(late);
  BOOST_TEST(store->tasks("old").empty());
  BOOST_TEST(store->outputs("old").empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(outputs_read_back_by_seq_kept_or_not, S, Stores) {
  S s;
  auto store = s.open();
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  b.outputs.emplace_back("r", OutputRecord{7, "each[1]", R"({"a":[1,2]})", 11, ""});
  b.outputs.emplace_back("r",
                         OutputRecord{2, "big", "", 5000000, "PYOCO_MAX_OUTPUT_BYTES=1048576"});
  store->write(b);
  Batch again;  // a rewrite of the same seq replaces it
  again.outputs.emplace_back("r", OutputRecord{7, "each[1]", R"({"a":[3]})", 9, ""});
  store->write(again);
  const auto out = store->outputs("r");
  BOOST_TEST_REQUIRE(out.size() == 2u);
  BOOST_TEST(out[0].seq == 2u);
  BOOST_TEST(out[0].node == "big");
  BOOST_TEST(out[0].json == "");
  BOOST_TEST(out[0].bytes == 5000000u);
  BOOST_TEST(out[0].dropped == "PYOCO_MAX_OUTPUT_BYTES=1048576");
  BOOST_TEST(out[1].node == "each[1]");
  BOOST_TEST(out[1].json == R"({"a":[3]})");
  BOOST_TEST(out[1].dropped.empty());
  BOOST_TEST(store->outputs("other").empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(sqlite_file)

BOOST_AUTO_TEST_CASE(a_second_handle_sees_what_the_first_wrote) {
  TempDir dir;
  const auto file = dir.path() / "state.db";
  auto first = open_sqlite_store(file);
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Running));
  first->write(b);
  auto second = open_sqlite_store(file);
  BOOST_TEST(second->run("r").has_value());
  BOOST_TEST(second->request_cancel("r"));
  BOOST_TEST(first->run("r")->cancel_requested);
}

BOOST_AUTO_TEST_CASE(the_file_is_in_wal_mode_at_the_current_schema) {
  TempDir dir;
  const auto file = dir.path() / "state.db";
  open_sqlite_store(file);
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  auto one = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
    sqlite3_step(s);
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return v;
  };
  BOOST_TEST(one("PRAGMA journal_mode") == "wal");
  BOOST_TEST(one("PRAGMA user_version") == "5");
  sqlite3_close(db);
}

BOOST_AUTO_TEST_CASE(a_version_1_history_is_migrated_with_its_runs) {
  // A state.db as the first release wrote it: schema 1, one run, one task.
  TempDir dir;
  const auto file = dir.path() / "state.db";
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  const std::string v1 = std::string(kSchema1) + R"sql(
INSERT INTO runs VALUES('old', 'f', '/f.yaml', '{}', 'COMPLETED', '', 1, 2, 0.001, 'h', 1, 1, 0);
INSERT INTO tasks VALUES('old', 'a', 0, 'std/echo', 'SUCCEEDED', 1, 1, 2, 0.001, '', '1');
INSERT INTO tasks VALUES('old', 'b', 200, 'std/write_file', 'FAILED', 2, 3, 5, 0.002,
  'it said "no"', '');
INSERT INTO artifacts VALUES('old', 'b', 'out.txt', '/a/old/out.txt', 7, 'ff00', 'text/plain');
PRAGMA user_version=1;
)sql";
  BOOST_TEST_REQUIRE(sqlite3_exec(db, v1.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto store = open_sqlite_store(file);
  const auto tasks = store->tasks("old");
  BOOST_TEST_REQUIRE(tasks.size() == 2u);
  BOOST_TEST(tasks[0].node == "a");
  BOOST_TEST(tasks[0].output_summary == "1");
  BOOST_TEST(tasks[0].progress == -1.0);  // no heartbeat in a version 1 history
  BOOST_TEST(tasks[0].heartbeat.empty());
  BOOST_TEST(tasks[0].artifacts.empty());
  // Version 3 keeps tasks in pages: the second one's page is another.
  BOOST_TEST(tasks[1].node == "b");
  BOOST_TEST(core::to_string(tasks[1].state) == "FAILED");
  BOOST_TEST(tasks[1].attempts == 2u);
  BOOST_TEST(tasks[1].error == R"(it said "no")");
  BOOST_TEST((tasks[1].started == Clock::time_point(std::chrono::microseconds(3))));
  BOOST_TEST((tasks[1].ended == Clock::time_point(std::chrono::microseconds(5))));
  BOOST_TEST(tasks[1].duration_ms == 0.002);
  BOOST_TEST_REQUIRE(tasks[1].artifacts.size() == 1u);
  BOOST_TEST(tasks[1].artifacts[0].name == "out.txt");
  BOOST_TEST(tasks[1].artifacts[0].path == "/a/old/out.txt");
  BOOST_TEST(tasks[1].artifacts[0].size == 7u);
  BOOST_TEST(tasks[1].artifacts[0].sha256 == "ff00");
  BOOST_TEST(tasks[1].artifacts[0].media_type == "text/plain");
  // Trimming the migrated run takes its pages with it.
  BOOST_TEST(store->trim(0) == 1u);
  BOOST_TEST(store->tasks("old").empty());
}

BOOST_AUTO_TEST_CASE(a_version_2_history_keeps_its_heartbeats_and_artifact_order) {
  // Schema 2 as pyoco wrote it, with what a plugin could leave in it: a
  // progress of 1/0 (infinite) and artifacts saved z first, then a.
  TempDir dir;
  const auto file = dir.path() / "state.db";
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  const std::string v2 = std::string(kSchema1) + R"sql(
ALTER TABLE tasks ADD COLUMN progress REAL NOT NULL DEFAULT -1;
ALTER TABLE tasks ADD COLUMN heartbeat TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN heartbeat_us INTEGER NOT NULL DEFAULT 0;
INSERT INTO runs VALUES('r', 'f', '/f.yaml', '{}', 'RUNNING', '', 1, 0, 0, 'h', 1, 1, 0);
INSERT INTO tasks VALUES('r', 'busy', 0, 'p/t', 'RUNNING', 1, 1, 0, 0, '', '', 9e999, 'half', 7);
INSERT INTO tasks VALUES('r', 'calm', 1, 'p/t', 'RUNNING', 1, 1, 0, 0, '', '', 0.25, 'quarter', 8);
INSERT INTO artifacts VALUES('r', 'busy', 'z.txt', '/z', 1, 'aa', 'text/plain');
INSERT INTO artifacts VALUES('r', 'busy', 'a.txt', '/a', 2, 'bb', 'text/plain');
PRAGMA user_version=2;
)sql";
  BOOST_TEST_REQUIRE(sqlite3_exec(db, v2.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto store = open_sqlite_store(file);
  const auto tasks = store->tasks("r");
  BOOST_TEST_REQUIRE(tasks.size() == 2u);
  BOOST_TEST(tasks[0].progress == -1.0);  // not finite: unknown
  BOOST_TEST(tasks[0].heartbeat == "half");
  BOOST_TEST((tasks[0].heartbeat_at == Clock::time_point(std::chrono::microseconds(7))));
  BOOST_TEST(tasks[1].progress == 0.25);
  BOOST_TEST_REQUIRE(tasks[0].artifacts.size() == 2u);
  BOOST_TEST(tasks[0].artifacts[0].name == "z.txt");  // the order they were saved in
  BOOST_TEST(tasks[0].artifacts[1].name == "a.txt");
  // The old tables stay (empty), so a schema-2 pyoco still running can end its run.
  sqlite3_open(file.c_str(), &db);
  BOOST_TEST(sqlite3_exec(db,
                          "INSERT INTO tasks VALUES('r', 'late', 2, 'p/t', 'SUCCEEDED', 1, 1, 2, "
                          "0, '', '', -1, '', 0); UPDATE runs SET status='COMPLETED' WHERE id='r'",
                          nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  BOOST_TEST(core::to_string(store->run("r")->status) == "COMPLETED");
}

BOOST_AUTO_TEST_CASE(a_newer_schema_is_refused_with_what_to_do) {
  TempDir dir;
  const auto file = dir.path() / "state.db";
  open_sqlite_store(file);
  sqlite3* db = nullptr;
  sqlite3_open(file.c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  BOOST_CHECK_EXCEPTION(open_sqlite_store(file), StoreError, [](const StoreError& e) {
    const std::string m = e.what();
    return m.find("schema version 99, newer than this pyoco knows (5)") != std::string::npos &&
           m.find("PYOCO_HOME") != std::string::npos;
  });
}

// A negative version indexed the migrations out of bounds (a crash).
BOOST_AUTO_TEST_CASE(a_negative_schema_version_is_named_as_damage) {
  TempDir dir;
  const auto file = dir.path() / "state.db";
  open_sqlite_store(file);
  for (const char* pragma : {"PRAGMA user_version=-1", "PRAGMA user_version=-1000"}) {
    sqlite3* db = nullptr;
    sqlite3_open(file.c_str(), &db);
    sqlite3_exec(db, pragma, nullptr, nullptr, nullptr);
    sqlite3_close(db);
    BOOST_CHECK_EXCEPTION(open_sqlite_store(file), StoreError, [](const StoreError& e) {
      const std::string m = e.what();
      return m.find("which no pyoco writes: the file is damaged") != std::string::npos &&
             m.find("PYOCO_HOME") != std::string::npos;
    });
  }
}

BOOST_AUTO_TEST_CASE(a_page_edited_into_nonsense_is_named_not_crashed_on) {
  TempDir dir;
  const auto file = dir.path() / "state.db";
  auto store = open_sqlite_store(file);
  const std::vector<TaskRecord> table{make_task("t", core::TaskState::Succeeded)};
  Batch b;
  b.runs.push_back(make_run("r", 1, core::RunStatus::Completed));
  b.tasks.push_back(pages_of("r", table, {0}));
  store->write(b);
  sqlite3* db = nullptr;
  sqlite3_open(file.c_str(), &db);
  sqlite3_exec(db, "UPDATE task_pages SET tasks='[{\"seq\":0,' WHERE run_id='r'", nullptr, nullptr,
               nullptr);
  sqlite3_close(db);
  BOOST_CHECK_EXCEPTION(store->tasks("r"), StoreError, [](const StoreError& e) {
    return std::string(e.what()).find("run r, task page 0") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_database_is_named) {
  TempDir dir;
  const auto file = dir.path() / "state.db";
  std::ofstream(file) << "this is not sqlite, it is a shopping list: carrots, more carrots\n";
  BOOST_CHECK_EXCEPTION(open_sqlite_store(file), StoreError, [&](const StoreError& e) {
    const std::string m = e.what();
    return m.find(file.string()) != std::string::npos &&
           m.find("not a database") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(the_default_file_follows_pyoco_home_then_xdg) {
  setenv("PYOCO_HOME", "/somewhere/pyoco", 1);
  BOOST_TEST(default_store_file().string() == "/somewhere/pyoco/state.db");
  unsetenv("PYOCO_HOME");
  setenv("XDG_STATE_HOME", "/xdg", 1);
  BOOST_TEST(default_store_file().string() == "/xdg/pyoco/state.db");
  unsetenv("XDG_STATE_HOME");
  setenv("HOME", "/home/carrot", 1);
  BOOST_TEST(default_store_file().string() == "/home/carrot/.local/state/pyoco/state.db");
}

BOOST_AUTO_TEST_SUITE_END()
