// The ABI's promises, against real plugins built for the purpose
// (tests/fixtures/plugins): older minors load, other majors are refused
// clearly, and exceptions never cross the boundary.
#include <pyoco/core/value.hpp>
#include <pyoco/plugins/loader.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

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
