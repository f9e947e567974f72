// A plugin built against the first released ABI 1.0 headers (frozen in
// tests/compat/abi_1_0) keeps loading and running under the current host:
// values in and out, log, scratch, artifacts, cancellation and failure, each
// through the engine as a user's flow would use them.
#include <pyoco/core/value.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/plugins/loader.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <thread>

#include "event_log.hpp"
#include "flows.hpp"
#include "process.hpp"
#include "records.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco;
using core::TaskState;
using core::Value;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;
constexpr auto json = pyoco::testing::json_value;

fs::path compat10_dir() { return pyoco::testing::fixture_dir() / "compat10"; }

bool wait_for_file(const fs::path& p, std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(p)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct CompatFixture {
  // Before the engine: it outlives task bodies that may still write here.
  pyoco::testing::TempDir artifacts, scratch;
  // Only compat10 on the search path: every task below is the 1.0 plugin's.
  Engine engine{EngineOptions{4, {compat10_dir()}}};
  std::shared_ptr<pyoco::testing::EventLog> events = std::make_shared<pyoco::testing::EventLog>();

  Run start(const std::string& yaml, Value params = {}) {
    RunOptions o;
    o.listener = events;
    o.params = params.is_null() ? json("{}") : params;
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(artifacts.path());
    return engine.start(compile(yaml), std::move(o));
  }
  Run run(const std::string& yaml, Value params = {}) {
    Run r = start(yaml, std::move(params));
    BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(30)), "the run did not finish");
    return r;
  }

  static TaskRecord record(const std::vector<TaskRecord>& rs, const std::string& node) {
    return pyoco::testing::record_of(rs, node);
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(abi_1_0_plugin, CompatFixture)

BOOST_AUTO_TEST_CASE(loads_and_reports_abi_1_0) {
  const plugins::PluginEntry* entry = engine.catalog()->find_plugin("compat10");
  BOOST_TEST_REQUIRE(entry != nullptr, "compat10 not found in " << compat10_dir());
  BOOST_TEST(entry->manifest.abi == 1);
  const plugins::LoadedPlugin& p = plugins::load_plugin(entry->manifest);
  BOOST_TEST(p.abi_major == 1u);
  BOOST_TEST(p.abi_minor == 0u);  // built against the 1.0 headers
  BOOST_TEST(p.sdk_version == "0.1.0");
  BOOST_TEST(p.plugin_name == "compat10");
  BOOST_TEST(p.plugin_version == "0.1.0");
  BOOST_TEST(p.tasks.size() == 8u);
  const plugins::TaskDefinition* compute = p.find_task("compute");
  BOOST_TEST_REQUIRE(compute != nullptr);
  BOOST_TEST(compute->summary ==
             "Sums and doubles numbers, echoes a label, lists an object's keys");
  BOOST_TEST_REQUIRE(compute->inputs.size() == 3u);
  BOOST_TEST(compute->inputs[0].name == "numbers");
  BOOST_TEST(compute->inputs[0].required);
  BOOST_TEST(compute->inputs[2].description == "its keys are listed in order");
  // The host speaks ABI 1.x, at this minor or a later one.
  BOOST_TEST(plugins::host_api().abi_major == 1u);
  BOOST_TEST_MESSAGE("host ABI 1." << plugins::host_api().abi_minor << ", plugin ABI "
                                   << p.abi_major << "." << p.abi_minor);
}

BOOST_AUTO_TEST_CASE(inputs_in_computed_object_and_array_out) {
  // R"yaml(: the graph holds `)"`, which would end a plain R"( string.
  Run r = run(R"yaml(
flow: {graph: "c >> (r & back)"}
tasks:
  c:
    use: "compat10/compute"
    inputs: {numbers: [1, 2, 3, 4], label: "sum", tags: {zeta: 1, alpha: 2}}
  r: {use: "compat10/reverse", inputs: {items: "$node.c.output.doubled"}}
  back: {use: "compat10/reverse", inputs: {items: [1, "two", {three: 3}, [4], true, 2.5]}}
)yaml",
              json(R"({"greeting": "hi"})"));
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(core::to_json_text(r.output("c")) ==
             R"({"label":"sum!","count":4,"sum":10,"mean":2.5,"doubled":[2,4,6,8],)"
             R"("keys":["zeta","alpha"],"greeting":"hi","node":"c","task":"compat10/compute",)"
             R"("attempt":1,"flag":true,"nothing":null})");
  BOOST_TEST(r.output("c").find("sum").as_int() == 10);
  BOOST_TEST(core::to_json_text(r.output("r")) == "[8,6,4,2]");
  BOOST_TEST(core::to_json_text(r.output("back")) == R"([2.5,true,[4],{"three":3},"two",1])");
  for (const char* node : {"c", "r", "back"}) {
    BOOST_TEST((record(r.tasks(), node).state == TaskState::Succeeded), node);
  }
}

BOOST_AUTO_TEST_CASE(log_lines_arrive_as_events) {
  Run r = run(R"(
flow: {graph: l}
tasks:
  l: {use: "compat10/log", inputs: {who: "world"}}
)");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(r.output("l").as_string() == "logged");
  const auto logs = events->of(trace::EventKind::Log, "l");
  BOOST_TEST_REQUIRE(logs.size() == 2u);
  BOOST_TEST(logs[0].message == "compat10 greets world");
  BOOST_TEST((logs[0].level == trace::LogLevel::Info));
  BOOST_TEST(logs[0].task == "compat10/log");
  BOOST_TEST(logs[1].message == "compat10 warns");
  BOOST_TEST((logs[1].level == trace::LogLevel::Warn));
}

BOOST_AUTO_TEST_CASE(scratch_written_by_one_node_is_read_by_a_later_one) {
  Run r = run(R"(
flow: {graph: "w >> rd"}
tasks:
  w: {use: "compat10/scratch_write", inputs: {key: "shared", value: {a: [1, 2], b: "x"}}}
  rd: {use: "compat10/scratch_read", inputs: {key: "shared"}}
)");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  BOOST_TEST(r.output("w").is_null());
  BOOST_TEST(core::to_json_text(r.output("rd")) ==
             R"({"value":{"a":[1,2],"b":"x"},"missing_is_null":true})");
}

BOOST_AUTO_TEST_CASE(artifacts_are_saved_and_recorded_with_size_and_sha256) {
  Run r = run(R"(
flow: {graph: s}
tasks:
  s:
    use: "compat10/save"
    inputs: {name: "compat/greeting.txt", text: "hello from ABI 1.0\n", blob: "compat/blob.bin"}
)");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  const fs::path dir = artifacts.path() / r.id() / "compat";
  const auto rec = record(r.tasks(), "s");
  BOOST_TEST_REQUIRE(rec.artifacts.size() == 2u);

  const auto& text = rec.artifacts[0];
  BOOST_TEST(text.name == "compat/greeting.txt");
  BOOST_TEST(text.path == (dir / "greeting.txt").string());
  BOOST_TEST(text.size == 19u);
  BOOST_TEST(text.sha256 == "b6af28c35329a199b16e2911a2362f32c7a86edcb113ab120ef41145678e57cb");
  BOOST_TEST(text.media_type == "text/plain");
  BOOST_TEST(read_file(text.path) == "hello from ABI 1.0\n");

  const auto& blob = rec.artifacts[1];
  BOOST_TEST(blob.name == "compat/blob.bin");
  BOOST_TEST(blob.path == (dir / "blob.bin").string());
  BOOST_TEST(blob.size == 256u);  // bytes 0..255
  BOOST_TEST(blob.sha256 == "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
  BOOST_TEST(blob.media_type == "application/octet-stream");
  BOOST_TEST(fs::file_size(blob.path) == 256u);

  // The paths the plugin got back are the recorded ones.
  BOOST_TEST(r.output("s").find("text_path").as_string() == text.path);
  BOOST_TEST(r.output("s").find("blob_path").as_string() == blob.path);
  const auto done = events->of(trace::EventKind::NodeDone, "s");
  BOOST_TEST_REQUIRE(done.size() == 1u);
  BOOST_TEST(done[0].artifacts.size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_polling_task_ends_when_the_run_is_cancelled) {
  const fs::path marker = scratch.path() / "cancelled";
  Run r = start(R"(
flow: {graph: "w >> after"}
tasks:
  w: {use: "compat10/wait_cancel", inputs: {marker: "$ctx.params.marker"}}
  after: {use: "compat10/log", inputs: {who: "nobody"}}
)",
                core::from_json(boost::json::object{{"marker", marker.string()}}));
  // Cancel only once the plugin is inside its polling loop.
  BOOST_TEST_REQUIRE(events->wait_for_log("compat10 waiting for cancel", std::chrono::seconds(10)));
  BOOST_TEST((r.status() == core::RunStatus::Running));
  BOOST_TEST(!fs::exists(marker));
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(std::chrono::seconds(10)));
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
  // The plugin's loop ended because is_cancelled() said so (giving up takes
  // 20 s and writes no marker), whether or not the run waited for it.
  BOOST_TEST_REQUIRE(wait_for_file(marker, std::chrono::seconds(10)),
                     "the 1.0 plugin never saw is_cancelled()");
  BOOST_TEST(read_file(marker).rfind("cancelled after ", 0) == 0u, read_file(marker));
  const auto t = r.tasks();
  // The engine decides what a node cancelled mid-body becomes (SUCCEEDED when
  // the run waits for the body, CANCELLED when it does not); never FAILED.
  const auto w = record(t, "w");
  BOOST_TEST((w.state == TaskState::Succeeded || w.state == TaskState::Cancelled),
             "w ended " << static_cast<int>(w.state) << ": " << w.error);
  BOOST_TEST((record(t, "after").state == TaskState::Cancelled));
  BOOST_TEST(events->of(trace::EventKind::Log, "after").empty());
  BOOST_TEST(events->of(trace::EventKind::NodeError, "w").empty());
}

BOOST_AUTO_TEST_CASE(a_failing_task_fails_with_its_message) {
  Run r = run(R"(
flow: {graph: "f >> after"}
tasks:
  f: {use: "compat10/fail", inputs: {message: "compat10 failed on purpose"}}
  after: {use: "compat10/log", inputs: {who: "nobody"}}
)");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const auto t = r.tasks();
  const auto f = record(t, "f");
  BOOST_TEST((f.state == TaskState::Failed));
  BOOST_TEST(f.error == "compat10 failed on purpose");
  BOOST_TEST(f.attempts == 1u);
  BOOST_TEST((record(t, "after").state == TaskState::Cancelled));
  const auto errors = events->of(trace::EventKind::NodeError, "f");
  BOOST_TEST_REQUIRE(errors.size() == 1u);
  BOOST_TEST(errors[0].message == "compat10 failed on purpose");
}

BOOST_AUTO_TEST_SUITE_END()
