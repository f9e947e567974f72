// Hostile and careless input meets the `pyoco` command as users give it
// (issue 12): each case must end quickly with one clear message naming the
// file and the problem, never hang, crash or eat the machine.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
}

void fifo(const fs::path& file) {
  fs::create_directories(file.parent_path());
  BOOST_TEST_REQUIRE(::mkfifo(file.c_str(), 0600) == 0);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// A copy of the std plugin in `dir`/std, for breaking its files.
void copy_std_plugin(const fs::path& dir) {
  const fs::path from = binary_dir() / "lib" / "pyoco" / "plugins" / "std";
  fs::create_directories(dir / "std");
  fs::copy_file(from / "plugin.toml", dir / "std" / "plugin.toml");
  fs::copy_file(from / "libpyoco_std.so", dir / "std" / "libpyoco_std.so");
}

const char* kEchoFlow =
    "flow: {name: hostile, graph: a}\ntasks:\n  a: {use: std/echo, inputs: {value: 1}}\n";

struct Case {
  const char* name;
  std::function<void(const fs::path&)> setup;  // builds files in the case's directory
  std::vector<std::string> args;               // run in that directory
  int exit_code;
  std::string message;  // must appear in stdout or stderr
  std::map<std::string, std::string> env = {};
};

void loop_flow(const fs::path& d, const std::string& graph) {
  write(d / "f.yaml", "flow: {name: x, graph: \"" + graph +
                          "\"}\ntasks:\n  a: {use: std/echo, inputs: {value: 1}}\n");
}

const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      {"graph of 10,000 nested '('",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: {name: x, graph: \"" + repeat("(", 10000) + "a" +
                                 repeat(")", 10000) + "\"}\ntasks:\n  a: {use: std/echo}\n");
       },
       {"check", "f.yaml"},
       1,
       "f.yaml:1:89: error: groups, switches and loops nest more than 64 levels deep here"},
      {"10,000 nested repeat{}",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: {name: x, graph: \"" + repeat("repeat(count=1) {", 10000) +
                                 "a" + repeat("}", 10000) + "\"}\ntasks:\n  a: {use: std/echo}\n");
       },
       {"run", "f.yaml"},
       2,
       "nest more than 64 levels deep"},
      {"100,000 'not' in an expression",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: {name: x, graph: \"switch(on={{" + repeat("not ", 100000) +
                                 "1}}){default: a}\"}\ntasks:\n  a: {use: std/echo}\n");
       },
       {"check", "f.yaml"},
       1,
       "nested more than 200 levels deep"},
      {"an alias inside its own anchor",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: &f {name: x, defaults: {self: *f}, graph: \"a\"}\n");
       },
       {"check", "f.yaml"},
       1,
       "f.yaml:1:7: error: nested more than 64 levels deep (a YAML alias inside its own anchor?)"},
      {"a billion laughs",
       [](const fs::path& d) {
         std::string y =
             "flow:\n  name: x\n  graph: a\n  defaults:\n    a0: &a0 [x,x,x,x,x,x,x,x,x]\n";
         for (int i = 1; i < 10; ++i) {
           const std::string p = "*a" + std::to_string(i - 1);
           y += "    a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" +
                repeat(p + ",", 8) + p + "]\n";
         }
         write(d / "f.yaml", y);
       },
       {"run", "f.yaml"},
       2,
       "YAML aliases repeat more than 100000 values"},
      {"a FIFO as the flow file (check)",
       [](const fs::path& d) { fifo(d / "f.yaml"); },
       {"check", "f.yaml"},
       1,
       "f.yaml: error: is a FIFO, not a regular file"},
      {"a FIFO as the flow file (run)",
       [](const fs::path& d) { fifo(d / "f.yaml"); },
       {"run", "f.yaml"},
       2,
       "f.yaml: is a FIFO, not a regular file"},
      {"a FIFO as a plugin's library",
       [](const fs::path& d) {
         copy_std_plugin(d / "plugins");
         fs::remove(d / "plugins" / "std" / "libpyoco_std.so");
         fifo(d / "plugins" / "std" / "libpyoco_std.so");
         write(d / "f.yaml", kEchoFlow);
       },
       {"run", "f.yaml", "--plugin-path", "plugins"},
       2,
       "cannot load libpyoco_std.so: it is a FIFO, not a regular file"},
      {"a truncated plugin library (run)",
       [](const fs::path& d) {
         copy_std_plugin(d / "plugins");
         fs::resize_file(d / "plugins" / "std" / "libpyoco_std.so", 100000);
         write(d / "f.yaml", kEchoFlow);
       },
       {"run", "f.yaml", "--plugin-path", "plugins"},
       2,
       "cannot load libpyoco_std.so: it is truncated or corrupt: "},
      {"a truncated plugin library (lint)",
       [](const fs::path& d) {
         copy_std_plugin(d / "plugins");
         fs::resize_file(d / "plugins" / "std" / "libpyoco_std.so", 100000);
       },
       {"plugins", "lint", "plugins/std"},
       1,
       "PL033 libpyoco_std.so: truncated or corrupt: "},
      {"a FIFO as plugin.toml (lint)",
       [](const fs::path& d) { fifo(d / "plugins" / "p" / "plugin.toml"); },
       {"plugins", "lint", "plugins/p"},
       1,
       "PL001 plugin.toml: is a FIFO, not a regular file"},
      {"a FIFO as plugin.toml (list)",
       [](const fs::path& d) { fifo(d / "plugins" / "p" / "plugin.toml"); },
       {"plugins", "list", "--plugin-path", "plugins"},
       0,
       "warning: skipped plugins/p/plugin.toml: is a FIFO, not a regular file"},
      {"repeat(count=1000000000000)",
       [](const fs::path& d) { loop_flow(d, "repeat(count=1000000000000) { a }"); },
       {"check", "f.yaml"},
       1,
       "count=1000000000000 is over the limit of 1000000 iterations"},
      {"until(max_iter=1000000000000)",
       [](const fs::path& d) {
         loop_flow(d, "until(cond={{false}}, max_iter=1000000000000) { a }");
       },
       {"run", "f.yaml"},
       2,
       "max_iter=1000000000000 is over the limit of 1000000 iterations"},
      {"foreach(parallel=1000000000)",
       [](const fs::path& d) { loop_flow(d, "foreach(over={{[1]}}, parallel=1000000000) { a }"); },
       {"check", "f.yaml"},
       1,
       "parallel=1000000000 is over the limit of 10000 iterations at a time"},
      {"a loop past the run's task limit",
       [](const fs::path& d) { loop_flow(d, "repeat(count=100) { a }"); },
       {"run", "f.yaml", "--non-cute"},
       1,
       "this run reached its limit of 50 tasks (PYOCO_MAX_TASKS)",
       {{"PYOCO_MAX_TASKS", "50"}}},
      {"a limit that is not a number",
       [](const fs::path& d) { loop_flow(d, "a"); },
       {"run", "f.yaml"},
       2,
       "pyoco run: PYOCO_MAX_TASKS=-5: expected a whole number",
       {{"PYOCO_MAX_TASKS", "-5"}}},
      {"a FIFO as the params file",
       [](const fs::path& d) {
         fifo(d / "params.json");
         write(d / "f.yaml", kEchoFlow);
       },
       {"run", "f.yaml", "--params-file", "params.json"},
       2,
       "params.json: is a FIFO, not a regular file"},
  };
  return table;
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_hostile_input_gets_one_clear_message_and_no_hang) {
  for (const Case& c : cases()) {
    BOOST_TEST_CONTEXT(c.name) {
      TempDir dir;
      c.setup(dir.path());
      ProcessOptions o;
      o.cwd = dir.path();
      o.env = c.env;
      o.timeout = std::chrono::seconds(30);
      const auto start = std::chrono::steady_clock::now();
      const ProcessResult r = run_pyoco(c.args, o);
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      BOOST_TEST_REQUIRE(!r.timed_out, "hung: killed after 30 s");
      BOOST_TEST(r.signal == 0, "died of signal " << r.signal << ": " << r.err);
      BOOST_TEST(r.exit_code == c.exit_code, r.out << r.err);
      BOOST_TEST((r.out + r.err).find(c.message) != std::string::npos, r.out << r.err);
      BOOST_TEST(seconds < 10.0);
    }
  }
}
