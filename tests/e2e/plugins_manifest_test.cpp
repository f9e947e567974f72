// A task's metadata is written once, in its code: the build writes
// plugin.toml's [[tasks]] from the library (`pyoco plugins manifest`, run by
// pyoco_add_plugin), and a manifest that says otherwise — edited by hand, or
// left from an older build — is a lint error (PL034) and never loaded.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

fs::path std_dir() { return binary_dir() / "lib/pyoco/plugins/std"; }

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A copy of the built std plugin whose manifest says `from` as `to`.
fs::path drifted_std(const TempDir& dir, const std::string& from, const std::string& to) {
  const fs::path copy = dir.path() / "std";
  fs::create_directories(copy);
  fs::copy_file(std_dir() / "libpyoco_std.so", copy / "libpyoco_std.so");
  std::string manifest = read_text(std_dir() / "plugin.toml");
  const auto at = manifest.find(from);
  BOOST_TEST_REQUIRE(at != std::string::npos, from << " not in\n" << manifest);
  manifest.replace(at, from.size(), to);
  write_text(copy / "plugin.toml", manifest);
  return copy;
}

const std::string kSleepSeconds =
    "{name = \"seconds\", type = \"number\", required = true, description = \"how long to wait\"}";

// `plugins manifest` of the hostile fixture (a plain-C plugin), its
// register_tasks misbehaving as `how` says (see tests/fixtures/plugins/hostile.c).
ProcessResult hostile_manifest(const TempDir& dir, const std::string& how) {
  std::string source = read_text(fixture_dir() / "hostile/plugin.toml");
  source = source.substr(0, source.find("[[tasks]]"));
  write_text(dir.path() / "plugin.toml", source);
  ProcessOptions o;
  o.env = {{"PYOCO_FIXTURE_HOSTILE", how}};
  return run_pyoco({"plugins", "manifest", (dir.path() / "plugin.toml").string(), "--library",
                    (fixture_dir() / "hostile/libpyoco_hostile.so").string()},
                   o);
}

}  // namespace

// A plugin of a hundred thousand tasks: registering them took minutes (each
// name was compared with every one before it), and `plugins manifest` gave
// up after 60 s saying the library was "still loading". Now they register
// at once, and the manifest they would need, past the 1 MiB any manifest may
// hold, is named as what is too large (it named the 145-byte source).
BOOST_AUTO_TEST_CASE(a_plugin_of_too_many_tasks_is_told_its_manifest_is_too_large) {
  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  const ProcessResult r = hostile_manifest(dir, "many:100000");
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(has(r.err,
                 "the manifest written for the 100001 tasks libpyoco_hostile.so registers "
                 "would be "),
             r.err);
  BOOST_TEST(has(r.err,
                 "bytes, more than the 1048576 a plugin.toml may hold: register fewer "
                 "tasks (split the plugin), or describe them more briefly"),
             r.err);
  BOOST_TEST(took < 30.0, "took " << took << " s");
  const ProcessResult fine = hostile_manifest(dir, "many:2000");
  BOOST_TEST(fine.exit_code == 0, fine.err);
  BOOST_TEST(has(fine.out, "[[tasks]]\nname = \"t1999\"\n"));
}

// `plugins list` names a plugin's first few tasks and says how many: one of
// thousands padded every row of the table to its list.
BOOST_AUTO_TEST_CASE(plugins_list_names_a_few_tasks_of_a_plugin_of_many) {
  TempDir dir;
  const ProcessResult built = hostile_manifest(dir, "many:20");
  BOOST_TEST_REQUIRE(built.exit_code == 0, built.err);
  const fs::path plugin = dir.path() / "many" / "hostile";
  fs::create_directories(plugin);
  write_text(plugin / "plugin.toml", built.out);
  fs::copy_file(fixture_dir() / "hostile/libpyoco_hostile.so", plugin / "libpyoco_hostile.so");
  const ProcessResult list =
      run_pyoco({"plugins", "list", "--plugin-path", (dir.path() / "many").string()});
  BOOST_TEST(list.exit_code == 0, list.err);
  BOOST_TEST(has(list.out,
                 " t0, t1, t2, t3, t4, t5, t6, t7, ... (21 in all: plugins info hostile "
                 "lists them) "),
             list.out);
  BOOST_TEST(has(list.out, " echo, sleep, fail, json_get, shell, write_file, read_file, http_get "),
             list.out);  // ten or fewer: all of them
}

BOOST_AUTO_TEST_CASE(the_built_manifest_is_the_source_plus_what_the_library_registers) {
  const std::string source = read_text(source_dir() / "plugins/std/plugin.toml");
  const std::string built = read_text(std_dir() / "plugin.toml");
  BOOST_TEST(source.find("[[tasks]]") == std::string::npos, "the source must not list tasks");
  BOOST_TEST_REQUIRE(built.substr(0, source.size()) == source);
  BOOST_TEST(has(built,
                 "# The tables below are written by `pyoco plugins manifest` from what "
                 "libpyoco_std.so\n# registers. Edit the task's code, not them.\n"));
  // Each task the library registers, with what its code says about it.
  for (const char* task :
       {"echo", "sleep", "fail", "json_get", "shell", "write_file", "read_file", "http_get"}) {
    BOOST_TEST(has(built, "[[tasks]]\nname = \"" + std::string(task) + "\"\n"), task);
  }
  BOOST_TEST(has(built, "inputs = [" + kSleepSeconds + "]\n"));

  // The same as the command prints for it.
  const ProcessResult r =
      run_pyoco({"plugins", "manifest", (source_dir() / "plugins/std/plugin.toml").string(),
                 "--library", (std_dir() / "libpyoco_std.so").string()});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out == built);
}

BOOST_AUTO_TEST_CASE(the_command_writes_a_file_and_refuses_what_it_cannot_describe) {
  TempDir dir;
  const fs::path lib = std_dir() / "libpyoco_std.so";
  const std::string source = read_text(source_dir() / "plugins/std/plugin.toml");

  const fs::path out = dir.path() / "out.toml";
  write_text(dir.path() / "plugin.toml", source);
  ProcessResult r = run_pyoco({"plugins", "manifest", (dir.path() / "plugin.toml").string(),
                               "--library", lib.string(), "-o", out.string()});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.empty());
  BOOST_TEST(read_text(out) == read_text(std_dir() / "plugin.toml"));

  // A source manifest that lists tasks: the line of the first.
  const std::string with_tasks = source + "\n[[tasks]]\nname = \"echo\"\n";
  write_text(dir.path() / "plugin.toml", with_tasks);
  r = run_pyoco(
      {"plugins", "manifest", (dir.path() / "plugin.toml").string(), "--library", lib.string()});
  BOOST_TEST(r.exit_code == 1);
  const auto line = std::count(with_tasks.begin(), with_tasks.end(), '\n') - 1;
  BOOST_TEST(has(r.err, "plugin.toml:" + std::to_string(line) +
                            ": tasks: [[tasks]] tables are written from what the library "
                            "registers; delete them from this source manifest"),
             r.err);

  // A library that is not the one the manifest names.
  write_text(dir.path() / "plugin.toml", source);
  fs::copy_file(lib, dir.path() / "libother.so");
  r = run_pyoco({"plugins", "manifest", (dir.path() / "plugin.toml").string(), "--library",
                 (dir.path() / "libother.so").string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err,
                 "[plugin] library: is \"libpyoco_std.so\" but the library built is "
                 "libother.so"),
             r.err);

  // A source manifest that breaks an error rule: the build stops there.
  std::string bad_abi = source;
  bad_abi.replace(bad_abi.find("abi = 1"), 7, "abi = 2");
  write_text(dir.path() / "plugin.toml", bad_abi);
  fs::copy_file(lib, dir.path() / "libpyoco_std.so");
  r = run_pyoco({"plugins", "manifest", (dir.path() / "plugin.toml").string(), "--library",
                 (dir.path() / "libpyoco_std.so").string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST((has(r.err, "abi = 2, this runtime speaks ABI") && has(r.err, "PL004")), r.err);
}

BOOST_AUTO_TEST_CASE(a_manifest_that_describes_a_task_otherwise_is_pl034_and_never_loaded) {
  TempDir dir;
  const fs::path plugin = drifted_std(
      dir, kSleepSeconds,
      "{name = \"seconds\", type = \"string\", required = true, description = \"how long to "
      "wait\"}");

  ProcessResult r = run_pyoco({"plugins", "lint", plugin.string(), "--json"});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  const json::value report = json::parse(r.out);
  // The one error; the copy is off the search path, where the build's std is (PL016, a note).
  BOOST_TEST(report.at("errors").as_int64() == 1);
  const json::value* pl034 = nullptr;
  for (const auto& f : report.at("plugins").at(0).at("findings").as_array()) {
    if (f.at("rule").as_string() == "PL034") pl034 = &f;
  }
  BOOST_TEST_REQUIRE(pl034 != nullptr, r.out);
  BOOST_TEST(pl034->at("severity").as_string() == "error");
  BOOST_TEST(pl034->at("message").as_string() ==
             "task 'sleep': input 'seconds' type: \"string\" in plugin.toml, \"number\" in the "
             "library");

  // check reads the manifest and would accept a string; the run refuses the
  // plugin before anything starts.
  write_text(
      dir.path() / "flow.yaml",
      "flow:\n  name: drift\n  graph: nap\ntasks:\n  nap: {use: std/sleep, inputs: {seconds: "
      "\"0\"}}\n");
  r = run_pyoco({"run", (dir.path() / "flow.yaml").string(), "--plugin-path", dir.path().string()},
                {.cwd = dir.path()});
  BOOST_TEST(r.exit_code != 0);
  BOOST_TEST(has(r.err,
                 "plugin.toml describes task 'sleep': input 'seconds' type: \"string\" in "
                 "plugin.toml, \"number\" in the library"),
             r.err);
  BOOST_TEST(has(r.err, "PL034"), r.err);
  BOOST_TEST(!has(r.out, "start node=nap"), r.out);
}

BOOST_AUTO_TEST_CASE(a_renamed_input_in_the_manifest_is_caught_too) {
  TempDir dir;
  const fs::path plugin = drifted_std(dir, "{name = \"seconds\"", "{name = \"secs\"");
  const ProcessResult r = run_pyoco({"plugins", "lint", plugin.string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.out, "PL034"), r.out);
  BOOST_TEST(has(r.out, "task 'sleep': inputs: [secs] in plugin.toml, [seconds] in the library"),
             r.out);
}

BOOST_AUTO_TEST_CASE(a_library_that_exits_while_loading_is_named) {
  // exit(3) in register_tasks ended the build's manifest step with exit 3
  // and no word; now it is a library that does not load: named, exit 1.
  TempDir dir;
  ProcessResult r = hostile_manifest(dir, "exit");
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(r.err ==
             "pyoco plugins manifest: " + (fixture_dir() / "hostile/libpyoco_hostile.so").string() +
                 " called exit(3) while loading (in its code run at load or in "
                 "register_tasks); nothing was written (run `pyoco plugins lint` on its "
                 "plugin)\n");
  BOOST_TEST(r.out.empty());

  r = hostile_manifest(dir, "");  // the same library, behaving
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.out, "[[tasks]]\nname = \"calm\"\n"), r.out);
}

BOOST_AUTO_TEST_CASE(a_task_the_host_refuses_fails_the_load_with_the_reason) {
  // abi.h: names are [a-z][a-z0-9_]*. The host took "x/y", "..", "UP", an
  // input "Bad Name", an input twice and NULL inputs with a count of 3; the
  // fixture fails if any is accepted, then returns OK as if it had not seen
  // the refusals: the load fails anyway, with the first refusal's reason.
  TempDir dir;
  const ProcessResult r = hostile_manifest(dir, "bad_defs");
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(has(r.err, "): the host refused task 'x/y': its name is not [a-z][a-z0-9_]*\n"),
             r.err);
  BOOST_TEST(r.out.empty());
}

BOOST_AUTO_TEST_CASE(a_failing_register_tasks_s_message_is_escaped) {
  // registry_set_error's text reached the terminal raw ("^[[2J" cleared it).
  TempDir dir;
  const ProcessResult r = hostile_manifest(dir, "escape");
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(has(r.err, "register_tasks failed: no database \\x1b[2J here\n"), r.err);
  BOOST_TEST(!has(r.err, "\x1b"), r.err);
}
