// The `pyoco` binary's --version, --help, usage errors, and the commands
// that later issues fill in: they must fail clearly, never pretend.
#include <pyoco/abi.h>
#include <pyoco/version.h>

#include <boost/test/unit_test.hpp>

#include "process.hpp"

using namespace pyoco::testing;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(version_prints_version_and_abi) {
  const ProcessResult r = run_pyoco({"--version"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == std::string("pyoco ") + PYOCO_VERSION_STRING + "\nplugin ABI " +
                          std::to_string(PYOCO_ABI_VERSION_MAJOR) + "." +
                          std::to_string(PYOCO_ABI_VERSION_MINOR) + "\n");
}

BOOST_AUTO_TEST_CASE(help_lists_every_command_and_teaches) {
  const ProcessResult r = run_pyoco({"--help"});
  BOOST_TEST(r.exit_code == 0);
  for (const char* command :
       {"run", "check", "graph", "tasks", "plugins", "runs", "server", "worker"}) {
    BOOST_TEST(contains(r.out, std::string("  ") + command), "--help lacks " << command);
  }
  BOOST_TEST(contains(r.out, "Examples:"));
  BOOST_TEST(contains(r.out, "Exit codes:"));
}

BOOST_AUTO_TEST_CASE(group_help_lists_its_commands) {
  const ProcessResult r = run_pyoco({"plugins", "--help"});
  BOOST_TEST(r.exit_code == 0);
  for (const char* command : {"list", "lint", "info", "new"}) {
    BOOST_TEST(contains(r.out, command), "plugins --help lacks " << command);
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
  BOOST_TEST(contains(r.err, "list"));
  BOOST_TEST(contains(r.err, "cancel"));
}

BOOST_AUTO_TEST_CASE(unknown_command_is_a_usage_error) {
  const ProcessResult r = run_pyoco({"frobnicate"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(contains(r.err, "frobnicate"));
}

BOOST_AUTO_TEST_CASE(unbuilt_commands_fail_and_say_so) {
  const std::vector<std::vector<std::string>> commands = {
      {"server"},
      {"worker"},
  };
  for (const auto& args : commands) {
    const ProcessResult r = run_pyoco(args);
    std::string name = args[0];
    BOOST_TEST(r.exit_code == 69, name << " exited " << r.exit_code);
    BOOST_TEST(contains(r.err, "pyoco " + name + ": not implemented yet"), name << ": " << r.err);
    BOOST_TEST(r.out.empty(), name << " printed to stdout: " << r.out);
  }
}
