// `pyoco plugins list | info` and `pyoco tasks`, in human and JSON form.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <fstream>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

json::value parse(const ProcessResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.out, ec);
  BOOST_TEST_REQUIRE(!ec, "not JSON: " << r.out << r.err);
  return v;
}

const json::object* plugin_named(const json::value& list, const std::string& name,
                                 bool shadowed = false) {
  for (const auto& p : list.at("plugins").as_array()) {
    if (p.at("name").as_string() == name && p.at("shadowed_by").is_null() != shadowed) {
      return &p.as_object();
    }
  }
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_CASE(list_shows_the_first_party_plugins) {
  const ProcessResult r = run_pyoco({"plugins", "list"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out.rfind("PLUGIN  ", 0) == 0u, r.out);
  BOOST_TEST(has(r.out, "VERSION"));
  BOOST_TEST(has(r.out, "hello   0.1.0    1    stable  fetch_data, process_data, save_result"),
             r.out);
  BOOST_TEST(has(r.out, "std     0.1.0"), r.out);
  BOOST_TEST(has(r.out, "lib/pyoco/plugins/std"));
}

BOOST_AUTO_TEST_CASE(list_verbose_shows_task_summaries) {
  const ProcessResult r = run_pyoco({"plugins", "list", "--verbose"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(has(r.out, "std/shell       Runs a command and captures exit code, stdout, stderr"),
             r.out);
  BOOST_TEST(has(r.out, "hello 0.1.0: The seed example"), r.out);
}

BOOST_AUTO_TEST_CASE(list_json_is_complete) {
  const json::value v = parse(run_pyoco({"plugins", "list", "--json"}));
  const json::object* hello = plugin_named(v, "hello");
  BOOST_TEST_REQUIRE(hello != nullptr);
  BOOST_TEST(hello->at("version").as_string() == "0.1.0");
  BOOST_TEST(hello->at("abi").as_int64() == 1);
  BOOST_TEST(hello->at("status").as_string() == "stable");
  BOOST_TEST(hello->at("library").as_string() == "libpyoco_hello.so");
  BOOST_TEST(hello->at("tasks").as_array().size() == 3u);
  BOOST_TEST(hello->at("tasks").at(0).at("name").as_string() == "fetch_data");
  const auto& path = v.at("search_path").as_array();
  BOOST_TEST_REQUIRE(!path.empty());
  BOOST_TEST(fs::path(std::string(path.back().as_string())) == binary_dir() / "lib/pyoco/plugins");
}

BOOST_AUTO_TEST_CASE(search_path_is_flags_then_env_then_install_and_first_wins) {
  // The fixture pl016_shadowed is a plugin called "hello" too.
  const fs::path shadow = fixture_dir() / "pl016_shadowed";
  ProcessOptions o;
  o.env["PYOCO_PLUGIN_PATH"] = (fixture_dir() / "clean").string();
  const json::value v =
      parse(run_pyoco({"plugins", "list", "--json", "--plugin-path", shadow.string()}, o));
  const auto& path = v.at("search_path").as_array();
  BOOST_TEST_REQUIRE(path.size() == 3u);
  BOOST_TEST(path.at(0).as_string() == shadow.string());
  BOOST_TEST(path.at(1).as_string() == (fixture_dir() / "clean").string());
  const json::object* winner = plugin_named(v, "hello");
  const json::object* shadowed = plugin_named(v, "hello", true);
  BOOST_TEST_REQUIRE(winner != nullptr);
  BOOST_TEST_REQUIRE(shadowed != nullptr);
  BOOST_TEST(winner->at("path").as_string() == shadow.string());
  BOOST_TEST(shadowed->at("shadowed_by").as_string() == shadow.string());
  BOOST_TEST(plugin_named(v, "clean") != nullptr);

  const ProcessResult human = run_pyoco({"plugins", "list", "--plugin-path", shadow.string()});
  BOOST_TEST(has(human.out, "shadowed"), human.out);
  BOOST_TEST(has(human.out, "is shadowed by " + shadow.string() + ", which comes first"),
             human.out);
}

BOOST_AUTO_TEST_CASE(list_runs_no_plugin_code) {
  // pl025_crash segfaults as soon as its library is loaded.
  const ProcessResult r =
      run_pyoco({"plugins", "list", "--plugin-path", (fixture_dir() / "pl025_crash").string()});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.out, "pl025_crash"));
}

BOOST_AUTO_TEST_CASE(list_reports_unreadable_manifests_and_goes_on) {
  const ProcessResult r = run_pyoco(
      {"plugins", "list", "--plugin-path", (fixture_dir() / "pl001_unknown_key").string()});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(has(r.err, "pl001_unknown_key/plugin.toml:"), r.err);
  BOOST_TEST(has(r.err, "[plugin] sumary: unknown key"), r.err);
  BOOST_TEST(has(r.out, "hello"));
  const json::value v = parse(run_pyoco({"plugins", "list", "--json", "--plugin-path",
                                         (fixture_dir() / "pl001_unknown_key").string()}));
  BOOST_TEST(v.at("problems").as_array().size() == 1u);
  BOOST_TEST(v.at("problems").at(0).at("line").as_int64() > 0);
}

BOOST_AUTO_TEST_CASE(nothing_found_says_where_it_looked) {
  // A copy of the binary with no plugins beside it.
  TempDir dir;
  fs::create_directories(dir.path() / "bin");
  fs::copy_file(pyoco_exe(), dir.path() / "bin/pyoco");
  const ProcessResult r = run_process({(dir.path() / "bin/pyoco").string(), "plugins", "list"},
                                      {.unset_env = {"PYOCO_PLUGIN_PATH"}});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(has(r.out, "No plugins found; looked in:"), r.out);
  BOOST_TEST(has(r.out, (dir.path() / "lib/pyoco/plugins").string() + "  (does not exist)"), r.out);
  BOOST_TEST(has(r.out, "--plugin-path"));
}

BOOST_AUTO_TEST_CASE(info_shows_one_plugin_in_full) {
  const ProcessResult r = run_pyoco({"plugins", "info", "std"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(has(r.out, "std 0.1.0 — General tasks"), r.out);
  BOOST_TEST(has(r.out, "license:   MIT"), r.out);
  BOOST_TEST(has(r.out, "std/sleep  Waits `seconds`"), r.out);
  BOOST_TEST(has(r.out, "seconds: number, required — how long to wait"), r.out);
  BOOST_TEST(has(r.out, "usage: wait: {use: \"std/sleep\""), r.out);
}

BOOST_AUTO_TEST_CASE(info_json_and_by_directory) {
  const json::value v = parse(run_pyoco(
      {"plugins", "info", (binary_dir() / "lib/pyoco/plugins/hello").string(), "--json"}));
  BOOST_TEST(v.at("name").as_string() == "hello");
  BOOST_TEST(v.at("license").as_string() == "MIT");
  BOOST_TEST(v.at("platform").at("os").as_string() == "linux");
  const auto& process = v.at("tasks").at(1);
  BOOST_TEST(process.at("name").as_string() == "process_data");
  BOOST_TEST(process.at("inputs").at(0).at("required").as_bool());
  BOOST_TEST(process.at("inputs").at(0).at("type").as_string() == "object");
}

BOOST_AUTO_TEST_CASE(info_of_an_unknown_plugin_is_a_usage_error) {
  const ProcessResult r = run_pyoco({"plugins", "info", "nope"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "no plugin named 'nope'; looked in:"), r.err);
}

BOOST_AUTO_TEST_CASE(tasks_lists_qualified_names) {
  const ProcessResult r = run_pyoco({"tasks"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(has(r.out, "hello/fetch_data"));
  BOOST_TEST(has(r.out, "std/json_get"));
  const json::value v = parse(run_pyoco({"tasks", "--json"}));
  bool found = false;
  for (const auto& t : v.at("tasks").as_array()) {
    if (t.at("name").as_string() == "std/echo") found = true;
  }
  BOOST_TEST(found);
}
