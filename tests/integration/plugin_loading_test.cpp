// Loading real plugins through the catalog and calling their tasks through
// the C ABI, as the engine will.
#include <pyoco/core/value.hpp>
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/plugins/search_path.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <mutex>

#include "process.hpp"

namespace fs = std::filesystem;
using namespace pyoco;
using pyoco::testing::binary_dir;

namespace {

class RecordingServices : public plugins::RunServices {
 public:
  void log(const plugins::CallInfo& call, plugins::LogLevel, std::string_view message) override {
    std::lock_guard<std::mutex> lock(mutex);
    lines.push_back(std::string(call.node_name) + ": " + std::string(message));
  }
  core::ArtifactRecord save_artifact(const plugins::CallInfo&, std::string_view name,
                                     std::string_view bytes, std::string_view) override {
    artifacts[std::string(name)] = std::string(bytes);
    return core::ArtifactRecord{std::string(name), "/artifacts/" + std::string(name), bytes.size(),
                                "", ""};
  }
  core::Value scratch_get(std::string_view key) override {
    auto it = scratch.find(std::string(key));
    return it == scratch.end() ? core::Value() : it->second;
  }
  void scratch_set(std::string_view key, core::Value v) override { scratch[std::string(key)] = v; }

  std::mutex mutex;
  std::vector<std::string> lines;
  std::map<std::string, std::string> artifacts;
  std::map<std::string, core::Value> scratch;
};

fs::path build_plugin_dir() { return binary_dir() / "lib/pyoco/plugins"; }

core::Value object(const char* json) { return core::from_json(boost::json::parse(json)); }

core::Value inputs(std::string_view key, const core::Value& v) {
  core::ValueBuilder b;
  core::ValueNode* o = b.arena().make_object();
  core::Arena::set(o, key, v.node());
  b.arena().seal();
  return b.wrap(o);
}

plugins::Call context(RecordingServices& services, const char* node) {
  plugins::Call ctx;
  ctx.info = {"run-1", "hello", node, "hello/x", 1};
  ctx.services = &services;
  return ctx;
}

}  // namespace

BOOST_AUTO_TEST_CASE(catalog_finds_hello_without_loading_it) {
  const auto catalog = plugins::Catalog::discover({build_plugin_dir()});
  BOOST_TEST_REQUIRE(catalog.find_plugin("hello") != nullptr);
  BOOST_TEST(catalog.find_task("hello/fetch_data").has_value());
  BOOST_TEST(!catalog.find_task("hello/nope").has_value());
  BOOST_TEST(!catalog.find_task("nope/fetch_data").has_value());
}

BOOST_AUTO_TEST_CASE(hello_runs_the_seed_example_through_the_abi) {
  const auto catalog = plugins::Catalog::discover({build_plugin_dir()});
  const auto& plugin = plugins::load_plugin(catalog.find_plugin("hello")->manifest);
  BOOST_TEST(plugin.abi_major == unsigned(PYOCO_ABI_VERSION_MAJOR));
  BOOST_TEST(plugin.plugin_name == "hello");
  BOOST_TEST(plugin.tasks.size() == 3u);

  RecordingServices services;
  plugins::TaskInstance fetch(*plugin.find_task("fetch_data"));
  plugins::TaskInstance process(*plugin.find_task("process_data"));
  plugins::TaskInstance save(*plugin.find_task("save_result"));

  auto c1 = context(services, "fetch_data");
  const auto r1 = fetch.call(c1, object("{}"));
  BOOST_TEST_REQUIRE(r1.ok, r1.error);
  BOOST_TEST(core::to_json_text(r1.output) == R"({"id":1,"value":"carrot"})");

  auto c2 = context(services, "process_data");
  const auto r2 = process.call(c2, inputs("data", r1.output));
  BOOST_TEST_REQUIRE(r2.ok, r2.error);
  BOOST_TEST(r2.output.as_string() == "CARROT");

  auto c3 = context(services, "save_result");
  const auto r3 = save.call(c3, inputs("result", r2.output));
  BOOST_TEST_REQUIRE(r3.ok, r3.error);
  BOOST_TEST(r3.output.as_string() == "CARROT");

  const std::vector<std::string> expected = {"fetch_data: 🐰 Fetching data...",
                                             "process_data: 🥕 Processing: carrot",
                                             "save_result: ✨ Saved: CARROT"};
  BOOST_TEST(services.lines == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_task_error_is_a_result_not_a_crash) {
  const auto catalog = plugins::Catalog::discover({build_plugin_dir()});
  const auto& plugin = plugins::load_plugin(catalog.find_plugin("hello")->manifest);
  RecordingServices services;
  plugins::TaskInstance process(*plugin.find_task("process_data"));
  auto ctx = context(services, "process_data");
  const auto r = process.call(ctx, object("{}"));
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.error == "input 'data' is required");
  const auto r2 = process.call(ctx, inputs("data", object(R"({"value": 7})")));
  BOOST_TEST(!r2.ok);
  BOOST_TEST(r2.error == "input 'data.value': expected string, got int");
}

BOOST_AUTO_TEST_CASE(loading_twice_returns_the_same_plugin) {
  const auto catalog = plugins::Catalog::discover({build_plugin_dir()});
  const auto& a = plugins::load_plugin(catalog.find_plugin("hello")->manifest);
  const auto& b = plugins::load_plugin(catalog.find_plugin("hello")->manifest);
  BOOST_TEST(&a == &b);
}

// A library whose compiled-in name is another plugin's is never loaded under
// the manifest's name: the error names both. One of another version loads
// (a stale build in development; lint warns, a worker refuses it).
BOOST_AUTO_TEST_CASE(a_library_that_is_another_plugin_s_is_refused) {
  const plugins::Manifest m =
      plugins::read_manifest(pyoco::testing::fixture_dir() / "pl035_other_name");
  try {
    plugins::load_plugin(m);
    BOOST_FAIL("loaded another plugin's library");
  } catch (const plugins::LoadError& e) {
    BOOST_TEST((e.reason() == plugins::LoadError::Reason::Identity));
    const std::string msg = e.what();
    BOOST_TEST(msg.find("is plugin 'hello' 0.1.0, not 'pl035_other_name' 0.1.0 as plugin.toml "
                        "says") != std::string::npos,
               msg);
  }
  const plugins::Manifest stale =
      plugins::read_manifest(pyoco::testing::fixture_dir() / "pl032_stale");
  const plugins::LoadedPlugin& p = plugins::load_plugin(stale);
  BOOST_TEST(p.plugin_version == "0.0.9");
  BOOST_TEST(plugins::version_mismatch(stale, p).find("older than its manifest") !=
             std::string::npos);
}

// A large thread_local's zero-filled part (.tbss) takes no room in its
// segment and may pass its end: the ELF checks took that for damage and
// refused a valid library.
BOOST_AUTO_TEST_CASE(a_library_with_a_large_thread_local_loads) {
  const plugins::Manifest m = plugins::read_manifest(pyoco::testing::fixture_dir() / "big_tls");
  const plugins::LoadedPlugin& p = plugins::load_plugin(m);
  BOOST_TEST(p.plugin_name == "big_tls");
}
