// `pyoco plugins lint` against fixtures that each break exactly one rule:
// the rule's id, and only that id, must come back in the JSON output.
#include <pyoco/plugins/lint.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <set>

#include "child.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

ProcessResult lint(std::vector<std::string> args) {
  args.insert(args.begin(), {"plugins", "lint"});
  return run_pyoco(args, {.cwd = fixture_dir()});
}

std::multiset<std::string> rules_of(const json::value& report) {
  std::multiset<std::string> rules;
  for (const auto& p : report.at("plugins").as_array()) {
    for (const auto& f : p.at("findings").as_array()) {
      rules.insert(std::string(f.at("rule").as_string()));
    }
  }
  return rules;
}

struct Case {
  const char* fixture;
  const char* rule;
};

// Each fixture directory is named after the rule it breaks.
const Case kCases[] = {
    {"pl001_bad_toml", "PL001"},       {"pl001_unknown_key", "PL001"},
    {"pl002_bad_name", "PL002"},       {"pl003_bad_version", "PL003"},
    {"pl004_manifest_abi", "PL004"},   {"pl005_platform", "PL005"},
    {"pl006_status", "PL006"},         {"pl007_metadata", "PL007"},
    {"pl008_no_library", "PL008"},     {"pl009_task_name", "PL009"},
    {"pl010_task_duplicate", "PL010"}, {"pl011_task_summary", "PL011"},
    {"pl012_task_usage", "PL012"},     {"pl013_io_untyped", "PL013"},
    {"pl014_io_type", "PL014"},        {"pl015_name_clash", "PL015"},
    {"pl016_shadowed", "PL016"},       {"pl017_sdk", "PL017"},
    {"pl018_io_name", "PL018"},        {"pl020_load", "PL020"},
    {"pl021_missing_dep", "PL021"},    {"pl022_undefined_symbol", "PL022"},
    {"pl023_no_entry", "PL023"},       {"pl024_abi", "PL024"},
    {"pl025_crash", "PL025"},          {"pl026_hang", "PL026"},
    {"pl027_register_fails", "PL027"}, {"pl028_undeclared", "PL028"},
    {"pl029_unregistered", "PL029"},   {"pl030_extra_exports", "PL030"},
    {"pl031_arch", "PL031"},           {"pl032_stale", "PL032"},
    {"pl033_truncated", "PL033"},      {"pl034_drift", "PL034"},
    {"pl035_other_name", "PL035"},
};

}  // namespace

BOOST_AUTO_TEST_CASE(each_fixture_breaks_exactly_its_rule) {
  for (const Case& c : kCases) {
    // The timeout covers the probe's whole life (a sanitized probe takes
    // seconds to load a plugin): short only for the fixture that hangs.
    const bool hangs = std::string(c.fixture) == "pl026_hang";
    const ProcessResult r = lint({c.fixture, "--json", "--timeout", hangs ? "2" : "30"});
    BOOST_TEST_CONTEXT(c.fixture) {
      boost::system::error_code ec;
      const json::value report = json::parse(r.out, ec);
      BOOST_TEST_REQUIRE(!ec, "not JSON: " << r.out << r.err);
      const auto rules = rules_of(report);
      BOOST_TEST(rules.count(c.rule) >= 1u);
      BOOST_TEST(rules.size() == rules.count(c.rule), "other rules fired too");
      const bool error = std::string(c.rule) != "PL007" && std::string(c.rule) != "PL011" &&
                         std::string(c.rule) != "PL012" && std::string(c.rule) != "PL013" &&
                         std::string(c.rule) != "PL015" && std::string(c.rule) != "PL016" &&
                         std::string(c.rule) != "PL017" && std::string(c.rule) != "PL030" &&
                         std::string(c.rule) != "PL032";
      BOOST_TEST(r.exit_code == (error ? 1 : 0));
      // Every finding, not only the first: the rule's severity, its fix,
      // a message of its own. pl016_shadowed is a "hello" off the search
      // path, where the shipped one is: a note.
      const bool note = std::string(c.rule) == "PL016";
      const std::string_view hint = pyoco::plugins::lint_rule(c.rule).hint;
      for (const auto& f : report.at("plugins").at(0).at("findings").as_array()) {
        const auto& finding = f.as_object();
        BOOST_TEST(finding.at("severity").as_string() == (error  ? "error"
                                                          : note ? "note"
                                                                 : "warning"));
        BOOST_TEST(finding.at("hint").as_string() == hint);
        BOOST_TEST(!finding.at("message").as_string().empty());
      }
    }
  }
}

// A library that is another plugin's (its compiled-in name is not the
// manifest's) is an error naming both; one of another version (a stale
// build) a warning saying which is older, that --strict fails.
BOOST_AUTO_TEST_CASE(a_library_s_own_name_and_version_are_checked_against_its_manifest) {
  ProcessResult r = lint({"pl035_other_name"});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(r.out.find("error   PL035") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("plugin 'hello' 0.1.0, not 'pl035_other_name' 0.1.0") != std::string::npos,
             r.out);

  r = lint({"pl032_stale"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("warning PL032") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("the library says pl032_stale 0.0.9, plugin.toml says pl032_stale 0.1.0: "
                        "the library is older than its manifest") != std::string::npos,
             r.out);
  BOOST_TEST(lint({"pl032_stale", "--strict"}).exit_code == 1);
}

BOOST_AUTO_TEST_CASE(the_clean_fixture_passes_strict) {
  const ProcessResult r = lint({"clean", "--strict"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("  ok\n") != std::string::npos);
  BOOST_TEST(r.out.find("1 plugin linted: 0 errors, 0 warnings (strict)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(first_party_plugins_lint_clean_under_strict) {
  const ProcessResult r = lint({"--strict", "--json"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  const json::value report = json::parse(r.out);
  std::set<std::string> names;
  for (const auto& p : report.at("plugins").as_array()) {
    names.insert(std::string(p.at("name").as_string()));
  }
  BOOST_TEST(names.count("hello") == 1u);
  BOOST_TEST(names.count("std") == 1u);
  BOOST_TEST(rules_of(report).empty());
}

BOOST_AUTO_TEST_CASE(strict_turns_warnings_into_failure) {
  BOOST_TEST(lint({"pl011_task_summary"}).exit_code == 0);
  BOOST_TEST(lint({"pl011_task_summary", "--strict"}).exit_code == 1);
}

BOOST_AUTO_TEST_CASE(human_output_cites_rule_line_and_fix) {
  const ProcessResult r = lint({"pl014_io_type"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.out.find("error   PL014 plugin.toml:") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("unknown type 'text'") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("fix: use one of any, null, bool") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("1 plugin linted: 1 error, 0 warnings") != std::string::npos, r.out);
}

// The probe timeout covers a probe's whole life (seconds for a sanitized
// one): only the hang is linted with a short one, along with a plugin that
// is never probed (its manifest has an error) to show lint goes on after it.
BOOST_AUTO_TEST_CASE(a_crash_and_a_hang_are_findings_and_the_linter_goes_on) {
  const ProcessResult hang = lint({"pl026_hang", "pl014_io_type", "--timeout", "1"});
  BOOST_TEST(hang.exit_code == 1);
  BOOST_TEST(hang.out.find("PL026") != std::string::npos, hang.out);
  BOOST_TEST(hang.out.find("PL014") != std::string::npos, hang.out);
  BOOST_TEST(hang.out.find("2 plugins linted: 2 errors, 0 warnings") != std::string::npos,
             hang.out);

  const ProcessResult r = lint({"pl025_crash", "clean", "--timeout", "30"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.out.find("PL025") != std::string::npos);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // A sanitizer's own SEGV handler reports the crash, then aborts or exits.
  BOOST_TEST((r.out.find("died of SIG") != std::string::npos ||
              r.out.find("crashed: ") != std::string::npos),
             r.out);
#else
  BOOST_TEST(r.out.find("died of SIGSEGV") != std::string::npos, r.out);
#endif
  BOOST_TEST(r.out.find("2 plugins linted: 1 error, 0 warnings") != std::string::npos, r.out);
}

namespace {

// The messages of one rule's findings, in order.
std::vector<std::string> messages_of(const json::value& report, const std::string& rule) {
  std::vector<std::string> out;
  for (const auto& p : report.at("plugins").as_array()) {
    for (const auto& f : p.at("findings").as_array()) {
      if (f.at("rule").as_string() == rule) out.emplace_back(f.at("message").as_string());
    }
  }
  return out;
}

bool any_names(const std::vector<std::string>& messages, const std::string& what) {
  return std::any_of(messages.begin(), messages.end(),
                     [&](const std::string& m) { return m.find(what) != std::string::npos; });
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_lint_killed_while_a_plugin_hangs_leaves_no_probe_behind) {
  // A CI job's timeout sends lint SIGTERM; its probe, stuck in the plugin's
  // load, used to run on for ever as an orphan.
  ChildProcess p({pyoco_exe().string(), "plugins", "lint", "pl026_hang", "--timeout", "60000"}, {},
                 fixture_dir());
  std::vector<int> probes;
  BOOST_TEST_REQUIRE(eventually([&] { return !(probes = descendants_of(p.pid())).empty(); }));
  p.send_signal(SIGTERM);
  p.wait();
  for (int pid : probes) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
}

BOOST_AUTO_TEST_CASE(every_missing_dependency_is_named) {
  // The fixture needs two libraries that are nowhere the loader looks; the
  // loader itself stops at the first.
  const ProcessResult r = lint({"pl021_missing_dep", "--json"});
  const auto messages = messages_of(json::parse(r.out), "PL021");
  BOOST_TEST(messages.size() == 2u, r.out);
  BOOST_TEST(any_names(messages, "needs libpyoco_fixture_dep.so,"), r.out);
  BOOST_TEST(any_names(messages, "needs libpyoco_fixture_second_dep.so,"), r.out);
  BOOST_TEST(r.exit_code == 1);
}

BOOST_AUTO_TEST_CASE(every_undefined_symbol_is_named_and_demangled) {
  const ProcessResult r = lint({"pl022_undefined_symbol", "--json"});
  const auto messages = messages_of(json::parse(r.out), "PL022");
  BOOST_TEST(messages.size() == 2u, r.out);
  BOOST_TEST(any_names(messages, "pyoco_fixture_symbol_nobody_defines"), r.out);
  BOOST_TEST(any_names(messages, "pyoco_fixture::also_undefined(int)"), r.out);
  BOOST_TEST(r.exit_code == 1);
}

BOOST_AUTO_TEST_CASE(a_dependency_found_through_origin_runpath_is_no_finding) {
  // runpath_dep links the same hidden library, with RUNPATH $ORIGIN/../../hidden-deps.
  const ProcessResult r = lint({"runpath_dep", "--strict"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("  ok\n") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(manifest_findings_carry_the_line_of_their_key) {
  struct Expect {
    const char* fixture;
    const char* rule;
    std::int64_t line;  // in the fixture's plugin.toml
  };
  const Expect expected[] = {
      {"pl002_bad_name", "PL002", 2},      // name =
      {"pl003_bad_version", "PL003", 3},   // version =
      {"pl004_manifest_abi", "PL004", 4},  // abi =
      {"pl005_platform", "PL005", 14},     // arch = under [plugin.platform]
      {"pl006_status", "PL006", 10},       // status =
      {"pl007_metadata", "PL007", 1},      // missing keys: the [plugin] table
      {"pl008_no_library", "PL008", 6},    // library =
      {"pl017_sdk", "PL017", 1},           // sdk missing: the [plugin] table
  };
  for (const Expect& e : expected) {
    BOOST_TEST_CONTEXT(e.fixture) {
      const json::value report = json::parse(lint({e.fixture, "--json"}).out);
      const auto& finding = report.at("plugins").at(0).at("findings").at(0);
      BOOST_TEST(finding.at("rule").as_string() == e.rule);
      BOOST_TEST(finding.at("line").to_number<std::int64_t>() == e.line);
    }
  }
  const ProcessResult human = lint({"pl003_bad_version"});
  BOOST_TEST(human.out.find("error   PL003 plugin.toml:3: version '1.0'") != std::string::npos,
             human.out);
}

BOOST_AUTO_TEST_CASE(bad_and_duplicate_input_names_are_pl018_at_their_line) {
  const json::value report = json::parse(lint({"pl018_io_name", "--json"}).out);
  const auto messages = messages_of(report, "PL018");
  BOOST_TEST_REQUIRE(messages.size() == 2u);
  BOOST_TEST(messages[0] == "task 'alpha' input 'Bad Name': the name is not [a-z][a-z0-9_]*");
  BOOST_TEST(messages[1] == "task 'alpha' input 'value' is declared twice");
  const auto& finding = report.at("plugins").at(0).at("findings").at(0);
  BOOST_TEST(finding.at("line").to_number<std::int64_t>() == 16);  // inputs =
}

BOOST_AUTO_TEST_CASE(a_register_tasks_message_that_is_not_utf8_is_pl027_with_it) {
  // It made the probe's JSON unreadable: PL020, the message lost.
  const ProcessResult r =
      run_pyoco({"plugins", "lint", "hostile", "--json"},
                {.cwd = fixture_dir(), .env = {{"PYOCO_FIXTURE_HOSTILE", "bad_utf8"}}});
  const json::value report = json::parse(r.out);
  BOOST_TEST(rules_of(report) == std::multiset<std::string>{"PL027"}, r.out);
  const auto messages = messages_of(report, "PL027");
  BOOST_TEST_REQUIRE(messages.size() == 1u);
  BOOST_TEST(
      messages[0].find("register_tasks failed: no database \\xff\\xfe here") != std::string::npos,
      messages[0]);
}

BOOST_AUTO_TEST_CASE(a_directory_of_plugins_lints_each_of_them) {
  const ProcessResult r = lint({".", "--json", "--timeout", "1"});
  const json::value report = json::parse(r.out);
  BOOST_TEST(report.at("plugins").as_array().size() >= std::size(kCases));
  BOOST_TEST(r.exit_code == 1);
}

BOOST_AUTO_TEST_CASE(an_unknown_target_is_a_usage_error) {
  const ProcessResult r = lint({"no_such_plugin"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(
      r.err.find("'no_such_plugin' is neither a path nor a plugin name") != std::string::npos,
      r.err);
  BOOST_TEST(r.err.find("looked in:") != std::string::npos);
}

// A plugin.toml that is a symlink to itself: a finding of its plugin
// (PL001), exit 1, not an uncaught exception (abort, exit 134) nor a
// filesystem error that stops every other target.
BOOST_AUTO_TEST_CASE(a_looping_symlink_is_an_error_line_not_an_abort) {
  const fs::path dir = fs::temp_directory_path() / ("pyoco-lint-loop-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_symlink("plugin.toml", dir / "plugin.toml");
  const ProcessResult r = run_pyoco({"plugins", "lint", dir.string()}, {});
  fs::remove_all(dir);
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(r.out.find("PL001 plugin.toml: cannot open it: Too many levels of symbolic links") !=
                 std::string::npos,
             r.out << r.err);
}

// A plugin.toml over 1 MiB: PL001, whose fix said "fix the key the message
// names", which a size error has none of.
BOOST_AUTO_TEST_CASE(a_manifest_over_1_mib_gets_a_fix_that_fits) {
  const fs::path dir = fs::temp_directory_path() / ("pyoco-lint-big-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "plugin.toml") << "# " << std::string((1u << 20) + 1, 'x') << "\n";
  const ProcessResult r = run_pyoco({"plugins", "lint", dir.string()}, {});
  fs::remove_all(dir);
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(r.out.find("PL001 plugin.toml: ") != std::string::npos, r.out << r.err);
  BOOST_TEST(r.out.find("over the 1 MiB limit") != std::string::npos, r.out << r.err);
  BOOST_TEST(r.out.find("fix: fix what the message names: the file (readable, TOML, at most 1 "
                        "MiB) or the key in it") != std::string::npos,
             r.out << r.err);
}

// A plugin's source project (plugin.toml, no library) linted while another
// copy is on the search path: the note said `--plugin-path <the source>`,
// from which nothing can load (PL008 right under it); it names the build.
BOOST_AUTO_TEST_CASE(a_source_folder_gets_a_note_naming_its_build) {
  const fs::path dir = fs::temp_directory_path() / ("pyoco-lint-src-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "hello");
  fs::copy_file(fixture_dir() / "pl016_shadowed/plugin.toml", dir / "hello/plugin.toml");
  ProcessResult r = run_pyoco({"plugins", "lint", (dir / "hello").string()}, {});
  BOOST_TEST(r.out.find("this directory has no library to load (the source, not a build): build "
                        "it, and `--plugin-path` with the build directory puts the build "
                        "first\n") != std::string::npos,
             r.out << r.err);
  fs::create_directories(dir / "hello/build");
  fs::copy(fixture_dir() / "pl016_shadowed", dir / "hello/build/hello");
  r = run_pyoco({"plugins", "lint", (dir / "hello").string()}, {});
  fs::remove_all(dir);
  BOOST_TEST(
      r.out.find("`pyoco run` loads that one; this directory has no library to load (the "
                 "source, not a build): `--plugin-path " +
                 (dir / "hello/build").string() + "` puts its build first\n") != std::string::npos,
      r.out << r.err);
  BOOST_TEST(r.out.find("`--plugin-path " + (dir / "hello").string() + "`") == std::string::npos,
             r.out);
}

// PL020 for a library that calls exit(3) in register_tasks said "the probe
// exited 3 without a result"; `pyoco run` says "called exit(3) while loading".
BOOST_AUTO_TEST_CASE(an_exit_while_loading_is_pl020_saying_so) {
  const ProcessResult r =
      run_pyoco({"plugins", "lint", "hostile", "--json"},
                {.cwd = fixture_dir(), .env = {{"PYOCO_FIXTURE_HOSTILE", "exit"}}});
  const json::value report = json::parse(r.out);
  const auto messages = messages_of(report, "PL020");
  BOOST_TEST_REQUIRE(messages.size() == 1u, r.out);
  BOOST_TEST(messages[0].find("called exit(3) while loading (in its code run at load or in "
                              "register_tasks)") == 0,
             messages[0]);
}

// A build linted while another copy of the plugin is on the search path (a
// release installed with `cmake --install`, as the tutorial's "Share it"
// says; here the shipped hello): a note saying which copy `pyoco run`
// loads and how to put this one first. It is no "never loaded" warning,
// and --strict passes.
BOOST_AUTO_TEST_CASE(a_build_beside_an_installed_copy_gets_a_note_that_strict_passes) {
  const fs::path build = fixture_dir() / "pl016_shadowed";  // a plugin called hello
  ProcessResult r = lint({"pl016_shadowed", "--strict"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(
      r.out.find("  ok\n  note    PL016 plugin.toml:2: plugin 'hello' at ") != std::string::npos,
      r.out);
  BOOST_TEST(r.out.find(" is on the search path, this one is not: `pyoco run` loads that one; "
                        "`--plugin-path " +
                        build.string() + "` puts this one first\n") != std::string::npos,
             r.out);
  BOOST_TEST(r.out.find("never loaded") == std::string::npos, r.out);
  BOOST_TEST(r.out.find("fix:") == std::string::npos, r.out);
  BOOST_TEST(
      r.out.find("1 plugin linted: 0 errors, 0 warnings, 1 note (strict)\n") != std::string::npos,
      r.out);

  // With this one first on the path, the shipped hello is the shadowed one:
  // a note on it, and still a pass.
  const json::value list =
      json::parse(run_pyoco({"plugins", "list", "--json", "--plugin-path", build.string()}).out);
  std::string shipped_dir;
  for (const auto& p : list.at("plugins").as_array()) {
    if (p.at("name").as_string() == "hello" && !p.at("shadowed_by").is_null()) {
      shipped_dir = p.at("path").as_string();
    }
  }
  BOOST_TEST_REQUIRE(!shipped_dir.empty(), json::serialize(list));
  r = lint({shipped_dir, "--plugin-path", build.string(), "--strict", "--json"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  const json::value report = json::parse(r.out);
  BOOST_TEST(report.at("notes").as_int64() == 1);
  BOOST_TEST(report.at("warnings").as_int64() == 0);
  const auto& shipped = report.at("plugins").at(0);
  BOOST_TEST(shipped.at("path").as_string() == shipped_dir);
  BOOST_TEST_REQUIRE(shipped.at("findings").as_array().size() == 1u, r.out);
  const auto& finding = shipped.at("findings").at(0);
  BOOST_TEST(finding.at("severity").as_string() == "note");
  BOOST_TEST(finding.at("message").as_string() ==
             "plugin 'hello' at " + build.string() +
                 " comes first on the search path: `pyoco run` loads that one; `--plugin-path " +
                 shipped_dir + "` puts this one first");
}

// Two plugin directories of one name in one directory: from it, only the
// first by name is ever loaded, wherever it is on the path; the other is
// warned on, and --strict fails.
BOOST_AUTO_TEST_CASE(two_copies_in_one_directory_warn_on_the_one_never_loaded) {
  TempDir dir;
  const fs::path plugins = dir.path() / "plugins";
  for (const char* sub : {"b_second", "a_first"}) {
    fs::create_directories(plugins / sub);
    fs::copy(fixture_dir() / "clean", plugins / sub, fs::copy_options::recursive);
  }
  ProcessResult r = run_pyoco({"plugins", "lint", plugins.string(), "--strict", "--json"});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  json::value report = json::parse(r.out);
  BOOST_TEST(report.at("warnings").as_int64() == 1);
  BOOST_TEST(report.at("notes").as_int64() == 0);
  const auto pl016 = messages_of(report, "PL016");
  BOOST_TEST_REQUIRE(pl016.size() == 1u, r.out);
  BOOST_TEST(pl016[0] == "plugin 'clean' at " + (plugins / "a_first").string() +
                             " is in the same directory and comes first by name: from " +
                             plugins.string() + " this one is never loaded; remove or rename one");
  for (const auto& p : report.at("plugins").as_array()) {
    const bool second = p.at("path").as_string() == (plugins / "b_second").string();
    BOOST_TEST(p.at("findings").as_array().size() == (second ? 1u : 0u), r.out);
  }
  // The same when the directory is on the search path.
  r = run_pyoco({"plugins", "lint", "clean", "--plugin-path", plugins.string(), "--strict"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);  // the first, which is loaded
  r = run_pyoco({"plugins", "lint", (plugins / "b_second").string(), "--plugin-path",
                 plugins.string(), "--strict"});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(r.out.find("warning PL016") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("this one is never loaded") != std::string::npos, r.out);
}

// Two copies in two directories of PYOCO_PLUGIN_PATH: a `pyoco run` given
// no --plugin-path never loads the later one, which a CI lint must catch (a
// warning, --strict fails). Put first only by lint's own --plugin-path, the
// other copy gets a note.
BOOST_AUTO_TEST_CASE(two_copies_on_the_configured_path_warn_on_the_later_one) {
  TempDir dir;
  const fs::path first = dir.path() / "first", later = dir.path() / "later";
  for (const fs::path& d : {first, later}) {
    fs::create_directories(d / "clean");
    fs::copy(fixture_dir() / "clean", d / "clean", fs::copy_options::recursive);
  }
  ProcessOptions both;
  both.env["PYOCO_PLUGIN_PATH"] = first.string() + ":" + later.string();
  ProcessResult r = run_pyoco({"plugins", "lint", (later / "clean").string(), "--strict"}, both);
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  BOOST_TEST(r.out.find("warning PL016") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("plugin 'clean' at " + (first / "clean").string() +
                        " comes first on the search path: this one is shadowed and never loaded "
                        "there") != std::string::npos,
             r.out);
  ProcessOptions one;
  one.env["PYOCO_PLUGIN_PATH"] = later.string();
  r = run_pyoco(
      {"plugins", "lint", (later / "clean").string(), "--plugin-path", first.string(), "--strict"},
      one);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("note    PL016") != std::string::npos, r.out);
}
