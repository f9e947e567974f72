// The `pyoco` binary's --version, --help, usage errors, and the commands
// that later issues fill in: they must fail clearly, never pretend.
#include <pyoco/abi.h>
#include <pyoco/version.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco::testing;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The command names listed under "Subcommands:" in a help text, in order.
std::vector<std::string> subcommands(const std::string& help) {
  std::vector<std::string> names;
  std::istringstream lines(help.substr(std::min(help.find("Subcommands:"), help.size())));
  std::string line;
  std::getline(lines, line);  // the heading
  while (std::getline(lines, line) && line.starts_with("  ")) {
    names.push_back(line.substr(2, line.find(' ', 2) - 2));
  }
  return names;
}

// A command docs/cli.md's table names ("`pyoco runs logs ID`": runs, logs)
// and the options its row gives in backquotes ("`--tail N`": --tail).
struct DocCommand {
  std::vector<std::string> words;
  std::vector<std::string> options;
};

std::vector<DocCommand> documented_commands() {
  std::ifstream in(source_dir() / "docs/cli.md");
  std::vector<DocCommand> out;
  // The command column ends at the first " | ": `\|` inside it has no spaces.
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("| `pyoco ")) continue;
    const std::size_t first_end = line.find(" | ");
    const std::string commands = line.substr(2, first_end - 2);
    const std::size_t second_end = line.find(" | ", first_end + 3);
    const std::string what = line.substr(first_end + 3, second_end - first_end - 3);
    std::vector<std::string> options;
    for (std::size_t at = what.find("`-"); at != std::string::npos; at = what.find("`-", at + 1)) {
      const std::string quoted = what.substr(at + 1, what.find('`', at + 1) - at - 1);
      options.push_back(quoted.substr(0, quoted.find(' ')));
    }
    const std::regex command("`pyoco ([^`]*)`");
    for (std::sregex_iterator m(commands.begin(), commands.end(), command), e; m != e; ++m) {
      DocCommand c;
      std::istringstream words((*m)[1].str());
      for (std::string w; words >> w && std::regex_match(w, std::regex("[a-z][a-z-]*"));) {
        c.words.push_back(w);
      }
      c.options = options;
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(version_prints_version_and_abi) {
  const ProcessResult r = run_pyoco({"--version"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == std::string("pyoco ") + PYOCO_VERSION_STRING + "\nplugin ABI " +
                          std::to_string(PYOCO_ABI_VERSION_MAJOR) + "." +
                          std::to_string(PYOCO_ABI_VERSION_MINOR) + "\n");
}

// Every command docs/cli.md's table names is in `pyoco --help` (or its
// group's), and nothing else: whole names, so `runs` cannot stand in for `run`.
BOOST_AUTO_TEST_CASE(help_lists_every_command_and_teaches) {
  const std::vector<DocCommand> documented = documented_commands();
  BOOST_TEST_REQUIRE(documented.size() > 10u);
  // Each command's words under its group ("" for the top level,
  // "plugins", "plugins remote"), each word once.
  std::map<std::string, std::vector<std::string>> groups;
  for (const DocCommand& c : documented) {
    std::string group;
    for (const std::string& word : c.words) {
      auto& listed = groups[group];
      if (std::find(listed.begin(), listed.end(), word) == listed.end()) listed.push_back(word);
      group += (group.empty() ? "" : " ") + word;
    }
  }
  for (auto& [group, expected] : groups) {
    BOOST_TEST_CONTEXT("pyoco " << group << " --help") {
      std::vector<std::string> args;
      std::istringstream words(group);
      for (std::string w; words >> w;) args.push_back(w);
      args.push_back("--help");
      const ProcessResult r = run_pyoco(args);
      BOOST_TEST(r.exit_code == 0);
      std::vector<std::string> listed = subcommands(r.out);
      std::sort(listed.begin(), listed.end());
      std::sort(expected.begin(), expected.end());
      BOOST_TEST(listed == expected, boost::test_tools::per_element());
    }
  }
  const ProcessResult r = run_pyoco({"--help"});
  BOOST_TEST(contains(r.out, "Examples:"));
  BOOST_TEST(contains(r.out, "Exit codes:"));
}

// docs/cli.md: `pyoco COMMAND --help` explains one command, with the
// options its row in the table names.
BOOST_AUTO_TEST_CASE(each_command_s_help_explains_its_options) {
  for (const DocCommand& c : documented_commands()) {
    std::string name;
    for (const auto& w : c.words) name += (name.empty() ? "" : " ") + w;
    BOOST_TEST_CONTEXT("pyoco " << name << " --help") {
      std::vector<std::string> args = c.words;
      args.push_back("--help");
      const ProcessResult r = run_pyoco(args);
      BOOST_TEST(r.exit_code == 0);
      BOOST_TEST(contains(r.out, "Usage: pyoco " + name + " "), r.out);
      for (const std::string& option : c.options) {
        BOOST_TEST((contains(r.out, "  " + option + " ") || contains(r.out, "," + option + " ")),
                   "lacks " << option << ":\n"
                            << r.out);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(no_command_is_a_usage_error_that_shows_help) {
  const ProcessResult r = run_pyoco({});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(contains(r.err, "Usage:"));
}

BOOST_AUTO_TEST_CASE(a_group_without_a_command_shows_the_group_help) {
  const ProcessResult r = run_pyoco({"runs"});
  BOOST_TEST(r.exit_code == 2);
  // The group's help, on stderr (which commands it has: help_lists_every_command_and_teaches).
  const std::vector<std::string> expected = subcommands(run_pyoco({"runs", "--help"}).out);
  BOOST_TEST(expected.size() >= 5u);
  BOOST_TEST(subcommands(r.err) == expected, boost::test_tools::per_element());
  BOOST_TEST(r.out.empty(),
             r.out);  // With its whole name, as `pyoco runs --help` says it ("Usage: runs").
  for (const char* group : {"runs", "plugins"}) {
    const ProcessResult g = run_pyoco({group});
    BOOST_TEST(contains(g.err, std::string("Usage: pyoco ") + group + " [OPTIONS]"), g.err);
  }
}

// A cluster command with no NATS to reach says where it looked and what to
// do, at once, with the usage exit code.
BOOST_AUTO_TEST_CASE(cluster_commands_without_nats_say_so) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"worker", "--nats", "nats://127.0.0.1:1"},
        {"server", "--nats", "nats://127.0.0.1:1", "--listen", "127.0.0.1:0"},
        {"cluster", "status", "--nats", "127.0.0.1:1"}}) {
    const ProcessResult r = run_pyoco(args);
    BOOST_TEST(r.exit_code == 2, args[0] << " exited " << r.exit_code);
    BOOST_TEST(contains(r.err, "cannot reach NATS at nats://127.0.0.1:1"), r.err);
  }
}

// A mistake in keys create's arguments is said before NATS is asked (here
// there is none): a day that does not exist is refused, never moved on to
// the next month; an expiry past 100 years is a typo, not a plan.
BOOST_AUTO_TEST_CASE(keys_create_checks_its_arguments_first) {
  for (const auto& [expires, says] : std::vector<std::pair<std::string, std::string>>{
           {"2027-02-30", "--expires 2027-02-30: no such day (that month has fewer days)"},
           {"99999999d", "--expires 99999999d: more than 100 years from now (36500d)"},
           {"2020-01-01", "--expires 2020-01-01: that day has passed"},
           {"soon", "--expires soon: a duration from now (30d, 12h, 90m, 3600s) or a UTC date"}}) {
    const ProcessResult r = run_pyoco({"keys", "create", "--tenant", "t", "--scope", "runs:read",
                                       "--expires", expires, "--nats", "nats://127.0.0.1:1"});
    BOOST_TEST(r.exit_code == 2, expires << ": " << r.err);
    BOOST_TEST(contains(r.err, "pyoco keys create: " + says), r.err);
  }
}

// The cluster commands are pyoco-cluster's, run in pyoco's place; a pyoco
// without it beside it says what is missing (and runs locally as before).
BOOST_AUTO_TEST_CASE(a_pyoco_without_its_cluster_half_says_so) {
  TempDir dir;
  const std::filesystem::path lone = dir.path() / "pyoco";
  std::filesystem::copy_file(pyoco_exe(), lone);
  ProcessResult r = run_process({lone.string(), "server", "--help"});
  BOOST_TEST(r.exit_code == 127);
  BOOST_TEST(contains(r.err, "pyoco server: cannot run " + (dir.path() / "pyoco-cluster").string()),
             r.err);
  BOOST_TEST(contains(r.err, "installed beside pyoco"), r.err);
  r = run_process({lone.string(), "plugins", "remote", "list"});
  BOOST_TEST(r.exit_code == 127);
  BOOST_TEST(contains(r.err, "pyoco plugins remote: cannot run"), r.err);
  r = run_process({lone.string(), "plugins", "--help"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(contains(r.out, "remote"), r.out);
}

// A help flag before a cluster command still gets that command's whole
// help (from pyoco-cluster), not the bare entry pyoco lists it by.
BOOST_AUTO_TEST_CASE(help_before_a_cluster_command_is_its_help) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--help", "server"},
                                               {"-h", "worker"},
                                               {"plugins", "--help", "push"}}) {
    const ProcessResult r = run_pyoco(args);
    BOOST_TEST(r.exit_code == 0, r.err);
    BOOST_TEST(contains(r.out, "Usage: pyoco " + std::string(args.size() == 3 ? "plugins " : "") +
                                   args.back() + " [OPTIONS]"),
               r.out);
    BOOST_TEST(contains(r.out, args.back() == "push" ? "--tags" : "--nats"), r.out);
  }
}

BOOST_AUTO_TEST_CASE(unknown_command_is_a_usage_error) {
  const ProcessResult r = run_pyoco({"frobnicate"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(contains(r.err, "frobnicate"));
}
