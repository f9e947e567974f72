// plugin.toml parsing: every error names the file, the line and the key.
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/plugins/lint.hpp>
#include <pyoco/plugins/manifest.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::plugins;
using pyoco::testing::TempDir;

namespace {

const char* kGood = R"([plugin]
name = "acme"
version = "1.2.3"
abi = 1
sdk = "0.1.0"
library = "libpyoco_acme.so"
summary = "Acme tasks"
authors = ["A. Coyote"]
status = "beta"

[plugin.platform]
os = "linux"
arch = "x86_64"

[[tasks]]
name = "rocket"
summary = "Launches"
usage = "r: {use: \"acme/rocket\"}"
tags = ["space"]
inputs = [{name = "speed", type = "number", required = true, description = "how fast"}]
outputs = [{name = "ok", type = "bool"}]
)";

fs::path write_plugin(const TempDir& dir, const std::string& name, const std::string& toml) {
  const fs::path p = dir.path() / name;
  fs::create_directories(p);
  std::ofstream(p / "plugin.toml") << toml;
  return p;
}

// The ManifestError for `toml`, or fails the test when it parses.
ManifestError error_for(const std::string& toml) {
  TempDir dir;
  const fs::path p = write_plugin(dir, "x", toml);
  try {
    read_manifest(p);
  } catch (const ManifestError& e) {
    return e;
  }
  BOOST_FAIL("parsed, but should not have:\n" << toml);
  throw;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_every_field) {
  TempDir dir;
  const Manifest m = read_manifest(write_plugin(dir, "acme", kGood));
  BOOST_TEST(m.name == "acme");
  BOOST_TEST(m.version == "1.2.3");
  BOOST_TEST(m.abi == 1);
  BOOST_TEST(m.status == "beta");
  BOOST_TEST(m.platform_arch == "x86_64");
  BOOST_TEST(m.library_path() == dir.path() / "acme" / "libpyoco_acme.so");
  BOOST_TEST_REQUIRE(m.tasks.size() == 1u);
  BOOST_TEST(m.tasks[0].line == 15u);
  BOOST_TEST(m.tasks[0].tags.at(0) == "space");
  BOOST_TEST_REQUIRE(m.tasks[0].inputs.size() == 1u);
  BOOST_TEST(m.tasks[0].inputs[0].required);
  BOOST_TEST(m.tasks[0].inputs[0].type == "number");
  BOOST_TEST(m.tasks[0].outputs[0].name == "ok");
}

BOOST_AUTO_TEST_CASE(knows_the_line_of_each_plugin_key) {
  TempDir dir;
  const Manifest m = read_manifest(write_plugin(dir, "acme", kGood));
  BOOST_TEST(m.line_of("name") == 2u);
  BOOST_TEST(m.line_of("version") == 3u);
  BOOST_TEST(m.line_of("status") == 9u);
  BOOST_TEST(m.line_of("platform.arch") == 13u);
  // A key that is absent: the [plugin] table's line.
  BOOST_TEST(m.line_of("license") == 1u);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

BOOST_AUTO_TEST_CASE(errors_name_file_line_and_key) {
  struct Case {
    std::string toml;
    std::uint32_t line;
    std::string key;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {replace(kGood, "version = \"1.2.3\"", "version = 123"), 3, "[plugin] version",
       "expected a string"},
      {replace(kGood, "name = \"acme\"\n", ""), 1, "[plugin] name", "required key is missing"},
      {replace(kGood, "summary = \"Acme tasks\"", "sumary = \"x\""), 7, "[plugin] sumary",
       "unknown key"},
      {replace(kGood, "abi = 1", "abi = \"1\""), 4, "[plugin] abi", "expected an integer"},
      {replace(kGood, "required = true", "required = \"yes\""), 20,
       "[[tasks]] rocket.inputs.required", "expected true or false"},
      {replace(kGood, "tags = [\"space\"]", "tags = \"space\""), 19, "[[tasks]] rocket.tags",
       "expected an array of strings"},
      {replace(kGood, "library = \"libpyoco_acme.so\"", "library = \"lib/x.so\""), 6,
       "[plugin] library", "not a path"},
      {replace(kGood, "library = \"libpyoco_acme.so\"", "library = \"\""), 6, "[plugin] library",
       "empty: name the shared library"},
      {replace(kGood, "library = \"libpyoco_acme.so\"", "library = \"..\""), 6, "[plugin] library",
       "a file name in the plugin directory, not \"..\""},
      {replace(kGood, "abi = 1", "abi = = 1"), 4, "", "not valid TOML"},
      {"tasks = 5\n" + std::string(kGood).substr(0, std::string(kGood).find("[[tasks]]")), 1,
       "tasks", "expected [[tasks]] tables"},
      {"[other]\n", 1, "other", "unknown key"},
      // toml++ recursed once per part: a 100 KB header overflowed the stack
      {"[" + repeat("a.", 49999) + "a]\n", 1, "", "more than 128 parts: nested too deep"},
      // toml++'s own limit, said without the name of its build setting
      {"x = " + repeat("[", 300) + repeat("]", 300) + "\n", 1, "",
       "exceeded maximum nested value depth of 256"},
  };
  for (const Case& c : cases) {
    const ManifestError e = error_for(c.toml);
    BOOST_TEST_CONTEXT(e.what()) {
      BOOST_TEST(e.line() == c.line);
      BOOST_TEST(e.key() == c.key);
      BOOST_TEST(e.problem().find(c.problem) != std::string::npos);
      BOOST_TEST(e.problem().find("TOML_") == std::string::npos);
      BOOST_TEST(std::string(e.what()).find("plugin.toml:" + std::to_string(c.line) + ": ") !=
                 std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(name_and_version_rules) {
  BOOST_TEST(is_valid_name("a"));
  BOOST_TEST(is_valid_name("json_get2"));
  BOOST_TEST(!is_valid_name(""));
  BOOST_TEST(!is_valid_name("2x"));
  BOOST_TEST(!is_valid_name("Acme"));
  BOOST_TEST(!is_valid_name("a-b"));
  BOOST_TEST(is_semver("0.1.0"));
  BOOST_TEST(is_semver("1.0.0-rc.1+build.5"));
  BOOST_TEST(!is_semver("1.0"));
  BOOST_TEST(!is_semver("01.0.0"));
  BOOST_TEST(!is_semver("v1.0.0"));
  // semver.org's grammar, piece by piece
  BOOST_TEST(is_semver("1.0.0-alpha"));
  BOOST_TEST(is_semver("1.0.0-0.3.7"));
  BOOST_TEST(is_semver("1.0.0-x.7.z.92"));
  BOOST_TEST(is_semver("1.0.0-x-y-z.--"));
  BOOST_TEST(is_semver("1.0.0-0a.01a"));  // not only digits: leading zeros allowed
  BOOST_TEST(is_semver("1.0.0+001"));     // build metadata: anything alphanumeric
  BOOST_TEST(is_semver("1.0.0-beta+exp.sha.5114f85"));
  BOOST_TEST(is_semver("10.20.30"));
  BOOST_TEST(!is_semver("1.0.0-01"));  // a numeric pre-release identifier, leading zero
  BOOST_TEST(!is_semver("1.0.0-"));
  BOOST_TEST(!is_semver("1.0.0+"));
  BOOST_TEST(!is_semver("1.0.0-a..b"));
  BOOST_TEST(!is_semver("1.0.0+a+b"));
  BOOST_TEST(!is_semver("1.0.0-a_b"));
  BOOST_TEST(!is_semver("1.0.0.0"));
  BOOST_TEST(!is_semver("1..0"));
  BOOST_TEST(!is_semver("1.0.0 "));
  BOOST_TEST(!is_semver(""));
  // std::regex recursed once per character: a 200 KB version overflowed the
  // stack of `plugins lint` (fuzz/regressions/manifest/long_version).
  BOOST_TEST(is_semver("1.0.0-" + std::string(1'000'000, 'a')));
  BOOST_TEST(!is_semver("1.0.0-" + std::string(1'000'000, 'a') + "!"));
}

// A name or version becomes a directory of each worker that takes the
// plugin (<name>/<version>-<sha256 prefix>): at most 64 characters each,
// and no number past 64 bits (one typo would outrank every later release).
BOOST_AUTO_TEST_CASE(names_and_versions_are_bounded) {
  BOOST_TEST(plugin_name_problem(std::string(64, 'x')).empty());
  BOOST_TEST(plugin_name_problem(std::string(65, 'x')).find("is 65 characters long: at most 64") !=
             std::string::npos);
  BOOST_TEST(plugin_name_problem("worker.lock").find("is not [a-z][a-z0-9_]*") !=
             std::string::npos);
  BOOST_TEST(plugin_version_problem("1.0.0-" + std::string(58, 'a')).empty());
  BOOST_TEST(plugin_version_problem("1.0.0-" + std::string(59, 'a'))
                 .find("is 65 characters long: at most 64") != std::string::npos);
  BOOST_TEST(plugin_version_problem("18446744073709551615.0.0").empty());
  BOOST_TEST(plugin_version_problem("1.0.0-x.18446744073709551615").empty());
  BOOST_TEST(plugin_version_problem("1.0.0-x-18446744073709551616").empty());  // not a number
  BOOST_TEST(plugin_version_problem("1.0.0+18446744073709551616").empty());    // build metadata
  for (const char* v : {"18446744073709551616.0.0", "1.99999999999999999999.0",
                        "1.0.18446744073709551616", "1.0.0-rc.18446744073709551616"}) {
    BOOST_TEST(plugin_version_problem(v).find("does not fit in 64 bits") != std::string::npos, v);
  }

  // lint: PL002 and PL003, errors, naming the limit.
  auto findings = [](const std::string& toml) {
    TempDir dir;
    return check_manifest(read_manifest(write_plugin(dir, "x", toml)));
  };
  auto says = [](const std::vector<LintFinding>& fs, const std::string& rule,
                 const std::string& text) {
    return std::any_of(fs.begin(), fs.end(), [&](const LintFinding& f) {
      return f.rule == rule && f.severity == Severity::Error &&
             f.message.find(text) != std::string::npos;
    });
  };
  BOOST_TEST(
      says(findings(replace(kGood, "name = \"acme\"", "name = \"" + std::string(300, 'x') + "\"")),
           "PL002", "is 300 characters long: at most 64"));
  BOOST_TEST(says(findings(replace(kGood, "version = \"1.2.3\"",
                                   "version = \"0.7.0-" + std::string(250, 'a') + "\"")),
                  "PL003", "is 256 characters long: at most 64"));
  BOOST_TEST(says(
      findings(replace(kGood, "version = \"1.2.3\"", "version = \"99999999999999999999.0.0\"")),
      "PL003", "99999999999999999999 does not fit in 64 bits"));
  BOOST_TEST(!says(findings(kGood), "PL002", ""));
  BOOST_TEST(!says(findings(kGood), "PL003", ""));
}

BOOST_AUTO_TEST_CASE(catalog_shadows_later_plugins_of_the_same_name) {
  TempDir a, b;
  write_plugin(a, "acme", kGood);
  write_plugin(b, "acme", replace(kGood, "1.2.3", "9.9.9"));
  write_plugin(b, "broken", "[plugin]\nname = 1\n");
  const Catalog c = Catalog::discover({a.path(), b.path(), b.path() / "missing"});
  BOOST_TEST_REQUIRE(c.plugins().size() == 2u);
  BOOST_TEST(c.find_plugin("acme")->manifest.version == "1.2.3");
  BOOST_TEST(!c.plugins()[0].shadowed_by.has_value());
  BOOST_TEST(c.plugins()[1].shadowed_by.value() == a.path() / "acme");
  BOOST_TEST_REQUIRE(c.problems().size() == 1u);
  BOOST_TEST(c.problems()[0].key() == "[plugin] name");
  BOOST_TEST(c.find_task("acme/rocket")->task->summary == "Launches");
}

BOOST_AUTO_TEST_CASE(a_search_path_entry_may_be_a_plugin_directory_itself) {
  TempDir a;
  const fs::path p = write_plugin(a, "acme", kGood);
  const Catalog c = Catalog::discover({p});
  BOOST_TEST(c.plugins().size() == 1u);
}
