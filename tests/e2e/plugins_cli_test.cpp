// `pyoco plugins list | info` and `pyoco tasks`, in human and JSON form.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

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

// ---- docs/plugins.md, promise by promise ------------------------------------

namespace {

std::vector<std::string> keys_of(const json::value& v) {
  std::vector<std::string> keys;
  for (const auto& kv : v.as_object()) keys.emplace_back(kv.key());
  return keys;
}

}  // namespace

// "The five-minute path": what `pyoco plugins new` prints and writes, and
// the one line it refuses with.
BOOST_AUTO_TEST_CASE(plugins_new_prints_what_the_docs_show) {
  TempDir dir;
  ProcessOptions o;
  o.cwd = dir.path();
  o.env["USER"] = "ada";
  o.env["PATH"] = "/usr/bin:/bin";  // the pyoco that runs is not on PATH
  const ProcessResult r = run_pyoco({"plugins", "new", "acme"}, o);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  BOOST_TEST(r.err.empty(), r.err);  // no plugin is called acme
  const std::string self = pyoco_exe().string();
  BOOST_TEST(r.out ==
             "Created plugin 'acme' in acme/ with task greet:\n"
             "  .gitignore\n"
             "  CMakeLists.txt\n"
             "  README.md\n"
             "  flow.yaml\n"
             "  plugin.toml\n"
             "  src/acme.cpp\n"
             "  tests/acme_test.cpp\n"
             "\n"
             "Next: build and test it, lint it, run its example flow:\n"
             "  cmake -S acme -B acme/build -DPyocoSDK_DIR=" +
                 binary_dir().string() +
                 " && cmake --build acme/build && ctest --test-dir acme/build\n"
                 "  " +
                 self +
                 " plugins lint acme/build/acme --strict\n"
                 "  " +
                 self + " run acme/flow.yaml --plugin-path acme/build\n");
  BOOST_TEST(read_text(dir.path() / "acme/.gitignore") == "/build/\n.pyoco/\n");
  BOOST_TEST(has(read_text(dir.path() / "acme/plugin.toml"), "authors = [\"ada\"]"));  // $USER
  BOOST_TEST(
      has(read_text(dir.path() / "acme/CMakeLists.txt"), "find_package(PyocoSDK 0.1 REQUIRED)"));

  // With the pyoco that ran first on PATH, the commands say `pyoco`.
  o.env["PATH"] = pyoco_exe().parent_path().string() + ":/usr/bin:/bin";
  fs::create_directories(dir.path() / "empty");  // an empty --dir is fine
  const ProcessResult two = run_pyoco({"plugins", "new", "duo", "--dir", "empty", "--task", "a",
                                       "--task", "b", "--author", "Grace"},
                                      o);
  BOOST_TEST_REQUIRE(two.exit_code == 0, two.err);
  BOOST_TEST(has(two.out, "Created plugin 'duo' in empty/ with tasks a, b:\n"), two.out);
  BOOST_TEST(has(two.out, "\n  pyoco plugins lint empty/build/duo --strict\n"), two.out);
  BOOST_TEST(has(two.out, "\n  pyoco run empty/flow.yaml --plugin-path empty/build\n"), two.out);
  BOOST_TEST(has(read_text(dir.path() / "empty/plugin.toml"), "authors = [\"Grace\"]"));
  BOOST_TEST(has(read_text(dir.path() / "empty/flow.yaml"), "a >> b"));

  // No $USER, empty or unset: the login name of this user id (or "you"
  // when it has none), not "you" at once.
  const passwd* pw = getpwuid(getuid());
  const std::string login = pw != nullptr ? pw->pw_name : "you";
  o.env["USER"] = "";
  BOOST_TEST_REQUIRE(run_pyoco({"plugins", "new", "anon", "--dir", "blank"}, o).exit_code == 0);
  BOOST_TEST(has(read_text(dir.path() / "blank/plugin.toml"), "authors = [\"" + login + "\"]"),
             read_text(dir.path() / "blank/plugin.toml"));
  o.env.erase("USER");
  o.unset_env = {"USER"};
  BOOST_TEST_REQUIRE(run_pyoco({"plugins", "new", "anon", "--dir", "unset"}, o).exit_code == 0);
  BOOST_TEST(has(read_text(dir.path() / "unset/plugin.toml"), "authors = [\"" + login + "\"]"));
  o.unset_env.clear();
  o.env["USER"] = "ada";

  const ProcessResult bad = run_pyoco({"plugins", "new", "Acme"}, o);
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(bad.err ==
             "pyoco plugins new: plugin name 'Acme' must be lower case letters, digits and _, "
             "starting with a letter (lint rule PL002)\n");
  const ProcessResult again = run_pyoco({"plugins", "new", "acme"}, o);
  BOOST_TEST(again.exit_code == 2);
  BOOST_TEST(again.err ==
             "pyoco plugins new: acme already exists and is not empty: choose another --dir\n");
}

// A name a plugin on the search path already has (a first-party one, one on
// PYOCO_PLUGIN_PATH): created, with a warning naming where that one is and
// what the printed run command would do to it.
BOOST_AUTO_TEST_CASE(plugins_new_warns_when_the_name_is_already_on_the_search_path) {
  TempDir dir;
  ProcessOptions o;
  o.cwd = dir.path();
  ProcessResult r = run_pyoco({"plugins", "new", "hello"}, o);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(fs::is_regular_file(dir.path() / "hello/plugin.toml"));
  BOOST_TEST(has(r.err,
                 "pyoco plugins new: warning: a plugin named 'hello' is already on the "
                 "search path, at "),
             r.err);
  // It said "run with --plugin-path hello/build, this one shadows it and
  // flows that use ...": one garbled sentence.
  BOOST_TEST(has(r.err,
                 "/hello. When run with --plugin-path hello/build (as printed below), the new one "
                 "shadows it: flows that use hello/<task> get the new plugin's tasks instead "
                 "of that one's. Unless you mean to replace it, choose another name: remove "
                 "hello/ and run `"),
             r.err);
  BOOST_TEST(has(r.err, " plugins new my_hello`\n"), r.err);

  o.env["PYOCO_PLUGIN_PATH"] = fixture_dir().string();
  r = run_pyoco({"plugins", "new", "asyncy", "--dir", "mine"}, o);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.err, "a plugin named 'asyncy' is already on the search path, at " +
                            (fixture_dir() / "asyncy").string() +
                            ". When run with --plugin-path mine/build"),
             r.err);
}

// "Where pyoco finds plugins": every command that reads plugins takes
// --plugin-path; a manifest that cannot be read is skipped with a warning
// saying so; shadowed plugins stay out of `pyoco tasks`; a manifest over
// 1 MiB is not read; listing runs no plugin code.
BOOST_AUTO_TEST_CASE(every_plugin_command_takes_plugin_path) {
  const fs::path clean = fixture_dir() / "clean";
  TempDir dir;
  std::ofstream(dir.path() / "f.yaml")
      << "flow: {name: f, graph: a}\ntasks:\n  a: {use: clean/alpha}\n";
  ProcessOptions o;
  o.cwd = dir.path();
  // graph draws without plugins; the others need `clean` from the path.
  const std::vector<std::vector<std::string>> table = {
      {"run", "f.yaml", "--non-cute"},
      {"check", "f.yaml"},
      {"graph", "f.yaml"},
      {"tasks"},
      {"plugins", "list"},
      {"plugins", "info", "clean"},
      {"plugins", "lint", "clean"},
  };
  for (std::vector<std::string> args : table) {
    BOOST_TEST_CONTEXT(args[0] + " " + args.back()) {
      const ProcessResult without = run_pyoco(args, o);
      args.insert(args.end(), {"--plugin-path", clean.string()});
      const ProcessResult with = run_pyoco(args, o);
      BOOST_TEST(with.exit_code == 0, with.out << with.err);
      if (args[0] != "graph") {
        BOOST_TEST((without.exit_code != 0 || !has(without.out, "clean")),
                   without.out << without.err);
        BOOST_TEST((has(with.out, "clean") || has(with.out, "COMPLETED") || has(with.out, "ok")),
                   with.out);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(unreadable_manifests_are_skipped_with_a_warning) {
  TempDir dir;
  fs::create_directories(dir.path() / "big");
  {
    std::ofstream big(dir.path() / "big/plugin.toml");
    big << "[plugin]\nname = \"big\"\n# " << std::string((1u << 20) + 1, 'x') << "\n";
  }
  for (const char* command : {"list", "tasks"}) {
    BOOST_TEST_CONTEXT(command) {
      std::vector<std::string> args = command == std::string("list")
                                          ? std::vector<std::string>{"plugins", "list"}
                                          : std::vector<std::string>{"tasks"};
      args.insert(args.end(), {"--plugin-path", (fixture_dir() / "pl001_unknown_key").string(),
                               "--plugin-path", dir.path().string()});
      const ProcessResult r = run_pyoco(args);
      BOOST_TEST(r.exit_code == 0, r.err);
      BOOST_TEST(has(r.err, "warning: skipped " +
                                (fixture_dir() / "pl001_unknown_key/plugin.toml").string() + ":"),
                 r.err);
      BOOST_TEST(has(r.err, "[plugin] sumary: unknown key (known keys: "), r.err);
      BOOST_TEST(has(r.err, ") (see `pyoco plugins lint`)\n"), r.err);
      BOOST_TEST(has(r.err, "warning: skipped " + (dir.path() / "big/plugin.toml").string()),
                 r.err);
      BOOST_TEST(has(r.out, "hello"), r.out);  // the others still work
    }
  }
}

BOOST_AUTO_TEST_CASE(tasks_leaves_shadowed_plugins_out_and_runs_no_plugin_code) {
  const json::value v = parse(
      run_pyoco({"tasks", "--json", "--plugin-path", (fixture_dir() / "pl016_shadowed").string()}));
  std::vector<std::string> hello;
  for (const auto& t : v.at("tasks").as_array()) {
    const std::string name(t.at("name").as_string());
    if (name.rfind("hello/", 0) == 0) hello.push_back(name);
    BOOST_TEST(keys_of(t) == (std::vector<std::string>{"name", "summary", "usage", "tags", "inputs",
                                                       "outputs"}),
               boost::test_tools::per_element());
  }
  // The shadowing hello (task alpha) wins; the shipped one is left out.
  BOOST_TEST(hello == std::vector<std::string>{"hello/alpha"}, boost::test_tools::per_element());
  // pl025_crash segfaults as soon as its library is loaded.
  const ProcessResult crash =
      run_pyoco({"tasks", "--plugin-path", (fixture_dir() / "pl025_crash").string()});
  BOOST_TEST(crash.exit_code == 0, crash.err);
  BOOST_TEST(has(crash.out, "pl025_crash/"), crash.out);
}

// "--json output, for machines": the keys of list (and --verbose) and info.
BOOST_AUTO_TEST_CASE(list_and_info_json_have_the_documented_keys) {
  const json::value v = parse(run_pyoco({"plugins", "list", "--json"}));
  BOOST_TEST(keys_of(v) == (std::vector<std::string>{"search_path", "plugins", "problems"}),
             boost::test_tools::per_element());
  const json::object* hello = plugin_named(v, "hello");
  BOOST_TEST_REQUIRE(hello != nullptr);
  const std::vector<std::string> plugin_keys = {"name",        "version", "abi",  "sdk",
                                                "status",      "summary", "path", "library",
                                                "shadowed_by", "tasks"};
  BOOST_TEST(keys_of(*hello) == plugin_keys, boost::test_tools::per_element());
  BOOST_TEST(keys_of(hello->at("tasks").at(0)) == (std::vector<std::string>{"name", "summary"}),
             boost::test_tools::per_element());

  const json::value verbose = parse(run_pyoco({"plugins", "list", "--json", "--verbose"}));
  const json::object* full = plugin_named(verbose, "hello");
  BOOST_TEST_REQUIRE(full != nullptr);
  for (const char* key :
       {"description", "authors", "license", "homepage", "platform", "manifest"}) {
    BOOST_TEST(full->contains(key), key);
  }
  for (const char* key : {"usage", "tags", "inputs", "outputs"}) {
    BOOST_TEST(full->at("tasks").at(0).as_object().contains(key), key);
  }
  // info: one plugin object, in full.
  const json::value info = parse(run_pyoco({"plugins", "info", "hello", "--json"}));
  BOOST_TEST(keys_of(info) == keys_of(*full), boost::test_tools::per_element());
}

// "An argument with a `/`, or naming a directory here that holds a
// plugin.toml, is read as a directory."
BOOST_AUTO_TEST_CASE(info_reads_a_directory_here_by_its_name) {
  TempDir dir;
  fs::create_directories(dir.path() / "mine");
  fs::copy_file(fixture_dir() / "clean/plugin.toml", dir.path() / "mine/plugin.toml");
  ProcessOptions o;
  o.cwd = dir.path();
  const json::value v = parse(run_pyoco({"plugins", "info", "mine", "--json"}, o));
  BOOST_TEST(v.at("name").as_string() == "clean");
}

// The verbose list of the docs, for the shipped hello plugin, line by line.
BOOST_AUTO_TEST_CASE(list_verbose_is_the_docs_table) {
  const ProcessResult r = run_pyoco({"plugins", "list", "--verbose"});
  BOOST_TEST(r.exit_code == 0);
  const std::string header =
      "PLUGIN  VERSION  ABI  STATUS  TASKS                                                        "
      "        PATH\n";
  BOOST_TEST(r.out.rfind(header, 0) == 0u, r.out);
  BOOST_TEST(has(r.out,
                 "\nhello 0.1.0: The seed example: fetch, process and save a carrot\n"
                 "  TASK                SUMMARY\n"
                 "  hello/fetch_data    Returns the record {id: 1, value: \"carrot\"}\n"
                 "  hello/process_data  Upper-cases the record's value\n"
                 "  hello/save_result   Reports the result it was given as saved\n"),
             r.out);
}

// "Each directory on the path is either a plugin directory itself ... or
// holds plugin directories one level down (read in name order)": of two
// plugins of one name in one directory, the first by name wins.
BOOST_AUTO_TEST_CASE(plugin_directories_one_level_down_are_read_in_name_order) {
  TempDir dir;
  for (const char* sub : {"b_second", "a_first"}) {
    fs::create_directories(dir.path() / "plugins" / sub);
    fs::copy_file(fixture_dir() / "clean/plugin.toml",
                  dir.path() / "plugins" / sub / "plugin.toml");
  }
  const json::value v = parse(
      run_pyoco({"plugins", "list", "--json", "--plugin-path", (dir.path() / "plugins").string()}));
  const json::object* winner = plugin_named(v, "clean");
  BOOST_TEST_REQUIRE(winner != nullptr);
  BOOST_TEST(winner->at("path").as_string() == (dir.path() / "plugins/a_first").string());
  std::size_t shadowed = 0;
  for (const auto& p : v.at("plugins").as_array()) {
    if (p.at("name").as_string() == "clean" && !p.at("shadowed_by").is_null()) ++shadowed;
  }
  BOOST_TEST(shadowed == 1u);  // b_second
}

// "The five-minute path", step 3: what a clean plugin's strict lint prints.
BOOST_AUTO_TEST_CASE(a_clean_strict_lint_prints_what_the_docs_show) {
  const fs::path clean = fixture_dir() / "clean";
  const ProcessResult r = run_pyoco({"plugins", "lint", clean.string(), "--strict"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out == "clean 0.1.0  " + clean.string() +
                          "\n  ok\n1 plugin linted: 0 errors, 0 warnings (strict)\n");
}
