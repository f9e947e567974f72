// The ABI's promises, against real plugins built for the purpose
// (tests/fixtures/plugins): older minors load, other majors are refused
// clearly, and exceptions never cross the boundary.
#include <pyoco/core/value.hpp>
#include <pyoco/plugins/loader.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "process.hpp"

using namespace pyoco;
using pyoco::testing::fixture_dir;

namespace {

plugins::Manifest fixture(const char* name) { return plugins::read_manifest(fixture_dir() / name); }

std::string load_error(const char* name, plugins::LoadError::Reason* reason = nullptr) {
  try {
    plugins::load_plugin(fixture(name));
  } catch (const plugins::LoadError& e) {
    if (reason != nullptr) *reason = e.reason();
    return e.what();
  }
  return "";
}

core::Value json(const char* text) { return core::from_json(boost::json::parse(text)); }

plugins::CallResult call(const plugins::LoadedPlugin& p, const char* task, const char* inputs) {
  plugins::TaskInstance instance(*p.find_task(task));
  plugins::Call ctx;
  ctx.info = {"run", "flow", "node-a", "x/y", 1};
  return instance.call(ctx, json(inputs));
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_plugin_from_an_older_minor_loads_and_runs) {
  const auto& p = plugins::load_plugin(fixture("abi_old_minor"));
  BOOST_TEST(p.abi_minor == 0u);
  BOOST_TEST_REQUIRE(p.tasks.size() == 1u);
  const auto& task = p.tasks.front();
  BOOST_TEST(task.summary == "A task from an older SDK minor");
  BOOST_TEST_REQUIRE(task.inputs.size() == 1u);
  BOOST_TEST(task.inputs[0].name == "x");
  BOOST_TEST(task.inputs[0].description.empty());  // beyond the plugin's struct_size

  const auto r = call(p, "old", R"({"x": 5})");
  BOOST_TEST_REQUIRE(r.ok, r.error);
  BOOST_TEST(core::to_json_text(r.output) == R"({"node":"node-a","x":5})");
}

BOOST_AUTO_TEST_CASE(another_abi_major_is_refused_with_one_clear_line) {
  plugins::LoadError::Reason reason{};
  const std::string e = load_error("pl024_abi", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::Abi));
  BOOST_TEST(e.find("was built for plugin ABI 99.0, this pyoco speaks ABI 1.") != std::string::npos,
             e);
  BOOST_TEST(e.find("rebuild it against a pyoco SDK with ABI 1.x") != std::string::npos, e);
  BOOST_TEST(e.find('\n') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_missing_entry_point_is_refused) {
  plugins::LoadError::Reason reason{};
  const std::string e = load_error("pl023_no_entry", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::NoEntry));
  BOOST_TEST(e.find("does not export pyoco_plugin_entry") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(a_library_for_another_arch_is_refused) {
  plugins::LoadError::Reason reason{};
  const std::string e = load_error("pl031_arch", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::Platform));
  BOOST_TEST(e.find("is a 64-bit aarch64 library, this machine is x86_64") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(a_throwing_register_tasks_is_an_error_and_the_process_survives) {
  plugins::LoadError::Reason reason{};
  const std::string e = load_error("pl027_register_fails", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::Register));
  BOOST_TEST(e.find("register_tasks failed: database not configured") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(registered_and_declared_tasks_must_agree) {
  plugins::LoadError::Reason reason{};
  std::string e = load_error("pl028_undeclared", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::TasksMismatch));
  BOOST_TEST(e.find("registers tasks its plugin.toml does not declare: beta") != std::string::npos,
             e);
  // The manifest's [[tasks]] are generated (docs/plugins.md): the advice is
  // to rebuild, never to hand-write an entry.
  BOOST_TEST(e.find("rebuild the plugin") != std::string::npos, e);
  BOOST_TEST(e.find("add a [[tasks]] entry") == std::string::npos, e);
  e = load_error("pl029_unregistered", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::TasksMismatch));
  BOOST_TEST(e.find("declares tasks it never registers: gamma") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(exceptions_in_run_become_task_errors) {
  const auto& p = plugins::load_plugin(fixture("throwing"));
  const auto a = call(p, "std_exception", "{}");
  BOOST_TEST(!a.ok);
  BOOST_TEST(a.error == "boom");
  const auto b = call(p, "not_an_exception", "{}");
  BOOST_TEST(!b.ok);
  BOOST_TEST(b.error == "unknown exception (not derived from std::exception)");
  const auto c = call(p, "wrong_kind", R"({"n": "seven"})");
  BOOST_TEST(!c.ok);
  BOOST_TEST(c.error == "input 'n': expected int, got string");
  // And the plugin still works afterwards.
  const auto d = call(p, "wrong_kind", R"({"n": 7})");
  BOOST_TEST_REQUIRE(d.ok, d.error);
  BOOST_TEST(d.output.as_int() == 7);
}

// docs/plugins.md, "How a task ends": a C task that cancels itself and sets
// no message is said to have done so, not to have failed with "status 5".
BOOST_AUTO_TEST_CASE(a_c_task_that_cancels_itself_without_a_message_says_so) {
  plugins::TaskDefinition def;
  def.plugin = "c";
  def.name = "quits";
  def.abi_minor = 1;
  def.run = [](void*, pyoco_context*, const pyoco_value*, const pyoco_value**) -> pyoco_status {
    return PYOCO_ERR_CANCELLED;
  };
  plugins::TaskInstance instance(def);
  plugins::Call ctx;
  ctx.info = {"run", "flow", "node-a", "c/quits", 1};
  const auto r = instance.call(ctx, json("{}"));
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.cancelled);
  BOOST_TEST(r.error == "the task cancelled itself and gave no reason");
}

BOOST_AUTO_TEST_CASE(a_missing_library_names_the_file_and_what_to_do) {
  plugins::LoadError::Reason reason{};
  const std::string e = load_error("pl008_no_library", &reason);
  BOOST_TEST((reason == plugins::LoadError::Reason::Open));
  BOOST_TEST(e.find("library libpyoco_not_built.so not found") != std::string::npos, e);
}

// abi.h: a NULL handle is PYOCO_ERR_INVALID (a bad argument), for every
// value_get_*: value_get_string said PYOCO_ERR_TYPE.
BOOST_AUTO_TEST_CASE(a_null_value_handle_is_invalid_for_every_getter) {
  const pyoco_host_api& h = plugins::host_api();
  int32_t b = 0;
  int64_t i = 0;
  double d = 0;
  pyoco_str s{};
  const void* data = nullptr;
  size_t size = 0;
  BOOST_TEST(h.value_get_bool(nullptr, &b) == PYOCO_ERR_INVALID);
  BOOST_TEST(h.value_get_int(nullptr, &i) == PYOCO_ERR_INVALID);
  BOOST_TEST(h.value_get_double(nullptr, &d) == PYOCO_ERR_INVALID);
  BOOST_TEST(h.value_get_string(nullptr, &s) == PYOCO_ERR_INVALID);
  BOOST_TEST(h.value_get_bytes(nullptr, &data, &size) == PYOCO_ERR_INVALID);
  // A value of another kind is still a type error.
  const core::ArenaPtr arena = core::Arena::create();
  auto* a = reinterpret_cast<pyoco_arena*>(arena.get());
  BOOST_TEST(h.value_get_string(h.value_new_int(a, 1), &s) == PYOCO_ERR_TYPE);
  BOOST_TEST(h.value_get_int(h.value_new_string(a, "x", 1), &i) == PYOCO_ERR_TYPE);
}

// A container pushed into (or set on) itself was accepted: a value no
// reader could ever finish.
BOOST_AUTO_TEST_CASE(a_container_cannot_contain_itself) {
  const pyoco_host_api& h = plugins::host_api();
  const core::ArenaPtr arena = core::Arena::create();
  auto* a = reinterpret_cast<pyoco_arena*>(arena.get());
  pyoco_value* array = h.value_new_array(a);
  pyoco_value* object = h.value_new_object(a);
  BOOST_TEST(h.value_array_push(array, array) == PYOCO_ERR_INVALID);
  BOOST_TEST(h.value_size(array) == 0u);
  BOOST_TEST(h.value_object_set(object, "self", 4, object) == PYOCO_ERR_INVALID);
  BOOST_TEST(h.value_size(object) == 0u);
  // Each in the other is fine (the engine's depth check catches a cycle
  // made of several).
  BOOST_TEST(h.value_array_push(array, object) == PYOCO_OK);
  BOOST_TEST(h.value_object_set(object, "list", 4, h.value_new_int(a, 1)) == PYOCO_OK);
  BOOST_TEST(h.value_size(array) == 1u);
}

namespace {

// What a call reaches through its context, kept for the checks below.
struct Services : plugins::RunServices {
  std::vector<std::string> logs;
  int saved = 0;
  int beats = 0;
  std::vector<std::pair<pyoco_callback_fn, void*>> cancel_callbacks;
  void log(const plugins::CallInfo&, plugins::LogLevel, std::string_view m) override {
    logs.emplace_back(m);
  }
  core::ArtifactRecord save_artifact(const plugins::CallInfo&, std::string_view name,
                                     std::string_view, std::string_view) override {
    ++saved;
    core::ArtifactRecord r;
    r.name = std::string(name);
    return r;
  }
  core::Value scratch_get(std::string_view) override { return {}; }
  void scratch_set(std::string_view, core::Value) override {}
  void heartbeat(const plugins::CallInfo&, double, std::string_view) override { ++beats; }
  bool on_cancel(pyoco_callback_fn fn, void* user) override {
    cancel_callbacks.emplace_back(fn, user);
    return true;
  }
};

// Saves `v` as a JSON artifact through the host table: its status and the
// reason the host gave.
std::pair<pyoco_status, std::string> save_value(pyoco_context* c, const pyoco_value* v) {
  pyoco_artifact art{};
  art.struct_size = sizeof art;
  art.name = pyoco_str{"v.json", 6};
  art.value = v;
  pyoco_str why{nullptr, 0};
  const pyoco_status s = plugins::host_api().context_save_artifact(c, &art, &why);
  return {s, why.data == nullptr ? std::string() : std::string(why.data, why.size)};
}

}  // namespace

// A value saved as an artifact was serialized whatever it was: 60 lists
// each holding the one below twice (2^60 items) never finished, 100 levels
// were saved, NaN became null. It is refused at once, as outputs and
// scratch are, with the reason.
BOOST_AUTO_TEST_CASE(an_artifact_value_keeps_the_limits_every_value_keeps) {
  const pyoco_host_api& h = plugins::host_api();
  Services svc;
  plugins::Call ctx;
  ctx.info = {"run", "flow", "node-a", "x/y", 1};
  ctx.services = &svc;
  ctx.abi_minor = 1;
  auto* c = reinterpret_cast<pyoco_context*>(&ctx);
  pyoco_arena* a = h.context_arena(c);

  pyoco_value* dag = h.value_new_array(a);
  h.value_array_push(dag, h.value_new_int(a, 1));
  for (int i = 0; i < 60; ++i) {
    pyoco_value* up = h.value_new_array(a);
    h.value_array_push(up, dag);
    h.value_array_push(up, dag);
    dag = up;
  }
  auto [s1, why1] = save_value(c, dag);
  BOOST_TEST(s1 == PYOCO_ERR_INVALID);
  BOOST_TEST(why1.find("more than 16777216 items") != std::string::npos, why1);

  pyoco_value* deep = h.value_new_array(a);
  for (int i = 0; i < 100; ++i) {
    pyoco_value* up = h.value_new_array(a);
    h.value_array_push(up, deep);
    deep = up;
  }
  auto [s2, why2] = save_value(c, deep);
  BOOST_TEST(s2 == PYOCO_ERR_INVALID);
  BOOST_TEST(why2.find("nested more than 64 levels deep") != std::string::npos, why2);

  pyoco_value* nan = h.value_new_object(a);
  h.value_object_set(nan, "x", 1, h.value_new_double(a, std::nan("")));
  auto [s3, why3] = save_value(c, nan);
  BOOST_TEST(s3 == PYOCO_ERR_INVALID);
  BOOST_TEST(why3 == "a number that is not finite at value.x, which JSON cannot hold");

  BOOST_TEST(svc.saved == 0);
  auto [s4, why4] = save_value(c, h.value_new_int(a, 1));
  BOOST_TEST(s4 == PYOCO_OK);
  BOOST_TEST(svc.saved == 1);
}

namespace {

const pyoco_host_api& H() { return plugins::host_api(); }
pyoco_context* g_kept = nullptr;
pyoco_call* g_call = nullptr;

// Keeps its context and call, as a plugin thread with a copy of the Context would.
pyoco_status keep_start(void*, pyoco_context* c, const pyoco_value*, pyoco_call* k) {
  g_kept = c;
  g_call = k;
  return PYOCO_OK;
}

// Completes its call, then logs: start() may use the context until it returns.
pyoco_status end_then_log(void*, pyoco_context* c, const pyoco_value*, pyoco_call* k) {
  H().call_complete(k, PYOCO_OK, nullptr);
  H().context_log(c, PYOCO_LOG_INFO, "start after the end", 19);
  H().context_on_cancel(
      c,
      [](void* user, pyoco_status) {
        H().context_log(static_cast<pyoco_context*>(user), PYOCO_LOG_INFO, "callback", 8);
      },
      c);
  return PYOCO_OK;
}

}  // namespace

// A plugin thread that kept a copy of its Context and used it after the
// call ended had its lines and heartbeats shown under the finished node,
// and, once the run was over, touched freed memory. While the Call is
// alive the host now drops such uses (one warning); start() and the host's
// callbacks for the call may still use it until they return.
BOOST_AUTO_TEST_CASE(a_context_used_after_its_call_ended_is_dropped) {
  plugins::TaskDefinition def;
  def.plugin = "x";
  def.name = "kept";
  def.abi_minor = 1;
  def.start = keep_start;
  plugins::TaskInstance instance(def);
  Services svc;
  plugins::Call ctx;
  ctx.info = {"run", "flow", "node-a", "x/kept", 1};
  ctx.services = &svc;
  int done = 0;
  instance.begin(ctx, json("{}"), [&done](plugins::CallResult) { ++done; });
  std::thread([] { H().context_log(g_kept, PYOCO_LOG_INFO, "live", 4); }).join();
  BOOST_TEST(H().call_complete(g_call, PYOCO_OK, nullptr) == PYOCO_OK);
  BOOST_TEST(done == 1);

  const std::uint64_t before = plugins::calls_after_end();
  std::ostringstream err;
  std::streambuf* saved = std::cerr.rdbuf(err.rdbuf());
  int cancelled = 0;
  std::thread([&cancelled] {
    H().context_log(g_kept, PYOCO_LOG_INFO, "late", 4);
    H().context_heartbeat(g_kept, 0.5, nullptr, 0);
    cancelled = H().context_is_cancelled(g_kept);
  }).join();
  BOOST_TEST(cancelled == 1);  // over: a loop polling it stops
  std::cerr.rdbuf(saved);
  BOOST_TEST(plugins::calls_after_end() - before == 3u);
  BOOST_TEST(svc.logs == std::vector<std::string>{"live"}, boost::test_tools::per_element());
  BOOST_TEST(svc.beats == 0);
  if (before == 0) {  // the warning is printed once per process
    BOOST_TEST(err.str().find("x/kept (node node-a) called context_log after its call had "
                              "ended") != std::string::npos,
               err.str());
  }

  // start() itself, and a callback the host makes for the call, may.
  plugins::TaskDefinition def2 = def;
  def2.start = end_then_log;
  plugins::TaskInstance instance2(def2);
  Services svc2;
  plugins::Call ctx2;
  ctx2.info = ctx.info;
  ctx2.services = &svc2;
  instance2.begin(ctx2, json("{}"), [](plugins::CallResult) {});
  BOOST_TEST_REQUIRE(svc2.cancel_callbacks.size() == 1u);
  std::thread([&] {
    auto [fn, user] = svc2.cancel_callbacks.front();
    fn(user, PYOCO_OK);  // as the host calls it, on a thread of its own
  }).join();
  BOOST_TEST(svc2.logs == (std::vector<std::string>{"start after the end", "callback"}),
             boost::test_tools::per_element());
  BOOST_TEST(plugins::calls_after_end() - before == 3u);
}

// A second completion from inside the call's start() names the task: a C
// plugin's author could not tell which of its tasks did it.
BOOST_AUTO_TEST_CASE(a_second_completion_names_its_task) {
  plugins::TaskDefinition def;
  def.plugin = "x";
  def.name = "twice";
  def.abi_minor = 1;
  def.start = [](void*, pyoco_context*, const pyoco_value*, pyoco_call* k) {
    H().call_complete(k, PYOCO_OK, nullptr);
    H().call_complete(k, PYOCO_OK, nullptr);
    return PYOCO_OK;
  };
  plugins::TaskInstance instance(def);
  Services svc;
  plugins::Call ctx;
  ctx.info.task_name = "x/twice";
  ctx.info.node_name = "again";
  ctx.services = &svc;
  std::ostringstream err;
  std::streambuf* saved = std::cerr.rdbuf(err.rdbuf());
  instance.begin(ctx, json("{}"), [](plugins::CallResult) {});
  std::cerr.rdbuf(saved);
  BOOST_TEST(err.str() ==
                 "pyoco: warning: task x/twice (node again) completed a call that had already "
                 "ended (call_complete called twice, or with a handle that is not its call's); "
                 "ignored\n",
             err.str());
}

// call_complete(NULL) said "called twice".
BOOST_AUTO_TEST_CASE(a_null_call_handle_is_named_as_such) {
  std::ostringstream err;
  std::streambuf* saved = std::cerr.rdbuf(err.rdbuf());
  const pyoco_status s = H().call_complete(nullptr, PYOCO_OK, nullptr);
  std::cerr.rdbuf(saved);
  BOOST_TEST(s == PYOCO_ERR_INVALID);
  BOOST_TEST(err.str().find("NULL call handle") != std::string::npos, err.str());
}
