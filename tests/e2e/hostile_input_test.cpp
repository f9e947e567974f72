// Hostile and careless input meets the `pyoco` command as users give it
// (issue 12): each case must end quickly with one clear message naming the
// file and the problem, never hang, crash or eat the machine.
#include <pyoco/plugins/manifest.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
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

// Reads and writes little-endian fields of an ELF64 file held in memory.
std::uint64_t get_le(const std::string& b, std::size_t at, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i)
    v |= std::uint64_t(static_cast<unsigned char>(b[at + i])) << 8 * i;
  return v;
}

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
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
       "f.yaml:1:37: error: a YAML alias inside its own anchor &f would repeat it for ever"},
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
       "f.yaml: error: is a FIFO, not a regular file"},
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
      // It said PL008 "not in the plugin directory", of an entry that is there.
      {"a directory where the library should be (lint)",
       [](const fs::path& d) {
         copy_std_plugin(d / "plugins");
         fs::remove(d / "plugins" / "std" / "libpyoco_std.so");
         fs::create_directories(d / "plugins" / "std" / "libpyoco_std.so");
       },
       {"plugins", "lint", "plugins/std"},
       1,
       "PL033 libpyoco_std.so: a directory, not the library file"},
      {"a FIFO as plugin.toml (lint)",
       [](const fs::path& d) { fifo(d / "plugins" / "p" / "plugin.toml"); },
       {"plugins", "lint", "plugins/p"},
       1,
       "PL001 plugin.toml: is a FIFO, not a regular file"},
      // A symlink loop: a finding of its plugin, or a target that says so;
      // it stopped lint with a filesystem error.
      {"a plugin.toml that links to itself (lint)",
       [](const fs::path& d) {
         fs::create_directories(d / "plugins" / "p");
         fs::create_symlink("plugin.toml", d / "plugins" / "p" / "plugin.toml");
       },
       {"plugins", "lint", "plugins/p"},
       1,
       "PL001 plugin.toml: cannot open it: Too many levels of symbolic links"},
      {"a lint target that is a symlink loop",
       [](const fs::path& d) {
         fs::create_symlink("loopb", d / "loopa");
         fs::create_symlink("loopa", d / "loopb");
       },
       {"plugins", "lint", "loopa"},
       2,
       "pyoco plugins lint: loopa: cannot follow it: Too many levels of symbolic links"},
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
      {"more plain nodes than the run's task limit",
       [](const fs::path& d) { loop_flow(d, "a >> b: a >> c: a"); },
       {"run", "f.yaml", "--non-cute"},
       2,
       "pyoco run: flow 'x' has 3 tasks, over the run's limit of 2 tasks (PYOCO_MAX_TASKS): "
       "raise the limit or split the flow",
       {{"PYOCO_MAX_TASKS", "2"}}},
      {"a limit that is not a number",
       [](const fs::path& d) { loop_flow(d, "a"); },
       {"run", "f.yaml"},
       2,
       "pyoco run: PYOCO_MAX_TASKS=-5: expected a whole number",
       {{"PYOCO_MAX_TASKS", "-5"}}},
      {"a NUL byte in a YAML scalar",
       [](const fs::path& d) {
         write(d / "f.yaml", std::string("flow: {name: x, graph: a}\ntasks:\n  a: {use: std/echo, "
                                         "inputs: {value: a") +
                                 '\0' + "b}}\n");
       },
       {"check", "f.yaml"},
       1,
       "f.yaml:3:39: error: the file holds a NUL byte; it must be UTF-8 text"},
      {"a flow saved as UTF-16",
       [](const fs::path& d) {
         std::string utf16 = "\xff\xfe";
         for (const char c : std::string("flow: {name: x, graph: a}\n")) {
           utf16 += c;
           utf16 += '\0';
         }
         write(d / "f.yaml", utf16);
       },
       {"check", "f.yaml"},
       1,
       "f.yaml: error: the file is UTF-16 text; save it as UTF-8"},
      {"bytes that are not UTF-8",
       [](const fs::path& d) {
         write(d / "f.yaml",
               "flow: {name: x, graph: a}\ntasks:\n  a: {use: std/echo, inputs: {value: "
               "\"\xff\"}}\n");
       },
       {"run", "f.yaml"},
       2,
       "f.yaml:3:39: error: the file is not UTF-8 here (byte 0xff); save it as UTF-8"},
      {"a flow name that forges a trace line",
       [](const fs::path& d) {
         write(d / "f.yaml",
               "flow: {name: \"evil\\nERROR pyoco end flow=evil status=FAILED\", graph: a}\n"
               "tasks:\n  a: {use: std/echo}\n");
       },
       {"check", "f.yaml"},
       1,
       "flow.name: must be one line of printable text (a newline in it would forge trace lines, "
       "a bidi control would reorder them)"},
      {"a flow name that shows as another (a right-to-left override)",
       [](const fs::path& d) {
         write(d / "f.yaml",
               "flow: {name: \"evil\u202eflow\", graph: a}\ntasks:\n  a: {use: std/echo}\n");
       },
       {"check", "f.yaml"},
       1,
       "flow.name: must be one line of printable text"},
      {"a task name that is not a name",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: {name: x, graph: a}\ntasks:\n  \"a\\tb\": {use: std/echo}\n");
       },
       {"check", "f.yaml"},
       1,
       "f.yaml:3:3: error: tasks.a\tb: a task name is ASCII letters, digits and _"},
      {"an error message that would forge trace lines",
       [](const fs::path& d) {
         write(d / "f.yaml",
               "flow: {name: x, graph: a}\ntasks:\n  a: {use: std/fail, inputs: {message: "
               "\"boom\\nINFO pyoco end flow=x status=COMPLETED\\e[2J\"}}\n");
       },
       {"run", "f.yaml", "--non-cute"},
       1,
       "ERROR pyoco error node=a boom\\nINFO pyoco end flow=x status=COMPLETED\\x1b[2J"},
      // What pyoco_add_plugin runs after each link: a library that crashes or
      // hangs while loading is named, not a bare "Segmentation fault" from make.
      {"a library that crashes while its manifest is written",
       [](const fs::path& d) {
         write(d / "plugin.toml",
               "[plugin]\nname = \"pl025_crash\"\nversion = \"0.1.0\"\nabi = 1\nsdk = "
               "\"0.1.0\"\nlibrary = \"libpyoco_pl025_crash.so\"\nsummary = \"x\"\n");
       },
       {"plugins", "manifest", "plugin.toml", "--library",
        (fixture_dir() / "pl025_crash" / "libpyoco_pl025_crash.so").string(), "-o", "out.toml"},
       1,
       "libpyoco_pl025_crash.so crashed while loading"},
      // The same library loaded by a run: named, and nothing ran (exit 139
      // with no word before).
      {"a library that crashes while a run loads it",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: {name: x, graph: a}\ntasks:\n  a: {use: pl025_crash/alpha}\n");
       },
       {"run", "f.yaml", "--plugin-path", (fixture_dir() / "pl025_crash").string()},
       2,
       "libpyoco_pl025_crash.so crashed while loading (a fault in its code run at load or in "
       "register_tasks); nothing ran"},
      // A manifest that cannot be read is skipped: a flow using its tasks
      // says so, not only that no plugin provides them.
      {"a flow whose plugin's manifest was skipped",
       [](const fs::path& d) {
         fs::create_directories(d / "plugins" / "acme");
         write(d / "plugins" / "acme" / "plugin.toml",
               "[plugin]\nname = \"acme\"\nversion = \"0.1.0\"\nabi = \"1\"\nsdk = "
               "\"0.1.0\"\nlibrary = \"libacme.so\"\nsummary = \"x\"\n");
         write(d / "f.yaml", "flow: {name: x, graph: a}\ntasks:\n  a: {use: acme/cooldown}\n");
       },
       {"run", "f.yaml", "--plugin-path", "plugins"},
       2,
       "plugin.toml:4 was skipped: [plugin] abi: expected an integer"},
      {"a plugin whose manifest names another ABI",
       [](const fs::path& d) {
         write(d / "f.yaml",
               "flow: {name: x, graph: a}\ntasks:\n  a: {use: pl004_manifest_abi/alpha}\n");
       },
       {"run", "f.yaml", "--plugin-path", (fixture_dir() / "pl004_manifest_abi").string()},
       2,
       "abi = 2, this runtime speaks ABI 1.1 (PL004; see `pyoco plugins lint"},
      {"a plugin whose name is not a name",
       [](const fs::path& d) {
         write(d / "f.yaml", "flow: {name: x, graph: a}\ntasks:\n  a: {use: Bad-Name/alpha}\n");
       },
       {"run", "f.yaml", "--plugin-path", (fixture_dir() / "pl002_bad_name").string()},
       2,
       "plugin name 'Bad-Name' is not [a-z][a-z0-9_]* (PL002; see `pyoco plugins lint"},
      {"a task that returns another type than it declares",
       [](const fs::path& d) {
         write(d / "f.yaml",
               "flow: {name: x, graph: a >> b}\ntasks:\n  a: {use: typed_output/alpha, inputs: "
               "{value: three}}\n  b: {use: std/echo, inputs: {value: \"$node.a.output\"}}\n");
       },
       {"run", "f.yaml", "--non-cute", "--plugin-path", (fixture_dir() / "typed_output").string()},
       1,
       "ERROR pyoco error node=a typed_output/alpha returned a string, but the task declares its "
       "output 'value' as int (a bug of the task or of its declaration)"},
      // docs/plugins.md "Where pyoco finds plugins": the line a cut library gives, to its end
      {"a truncated plugin library names what is missing",
       [](const fs::path& d) {
         copy_std_plugin(d / "plugins");
         fs::resize_file(d / "plugins" / "std" / "libpyoco_std.so", 100000);
         write(d / "f.yaml", kEchoFlow);
       },
       {"run", "f.yaml", "--plugin-path", "plugins"},
       2,
       " of a 100000-byte file (rebuild or reinstall the plugin)\n"},
      // docs/flows.md "Limits": --params-file is read as the flow file is
      {"a params file over 16 MiB",
       [](const fs::path& d) {
         write(d / "f.yaml", kEchoFlow);
         write(d / "params.json", "{}");
         fs::resize_file(d / "params.json", (16u << 20) + 1);
       },
       {"run", "f.yaml", "--params-file", "params.json"},
       2,
       "params.json: is 16777217 bytes, over the 16 MiB limit"},
      {"a FIFO as the params file",
       [](const fs::path& d) {
         fifo(d / "params.json");
         write(d / "f.yaml", kEchoFlow);
       },
       {"run", "f.yaml", "--params-file", "params.json"},
       2,
       "params.json: is a FIFO, not a regular file"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout 1e16",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "1e16"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout nan",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "nan"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout inf",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "inf"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout 1e10",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "1e10"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout 1e-9",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "1e-9"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout 0",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "0"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout -1",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "-1"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      // docs/cli.md: numbers in options are checked, not wrapped
      {"plugins lint --timeout 10x",
       [](const fs::path&) {},
       {"plugins", "lint", "std", "--timeout", "10x"},
       2,
       "--timeout: must be between 0.1 and 86400 seconds"},
      {"worker --drain-timeout nan",
       [](const fs::path&) {},
       {"worker", "--drain-timeout", "nan"},
       2,
       "--drain-timeout: must be between 0 and 3600 seconds"},
      {"worker --progress-interval inf",
       [](const fs::path&) {},
       {"worker", "--progress-interval", "inf"},
       2,
       "--progress-interval: must be between 0.05 and 600 seconds"},
      {"worker --plugin-sync-interval 1e300",
       [](const fs::path&) {},
       {"worker", "--plugin-sync-interval", "1e300"},
       2,
       "--plugin-sync-interval: must be between 0.05 and 3600 seconds"},
      // A thread each: 100000 failed with only "Resource temporarily
      // unavailable" (and left a worker record); 0 was the cores, silently.
      {"worker --jobs 100000",
       [](const fs::path&) {},
       {"worker", "--jobs", "100000"},
       2,
       "--jobs: expected a whole number from 1 to 1024"},
      {"worker --jobs 0",
       [](const fs::path&) {},
       {"worker", "--jobs", "0"},
       2,
       "--jobs: expected a whole number from 1 to 1024"},
      {"server --jobs 0",
       [](const fs::path&) {},
       {"server", "--with-worker", "--jobs", "0"},
       2,
       "--jobs: expected a whole number from 1 to 1024"},
      // A worker id names a NATS key and directories: "a b/c" failed as a
      // race on the record that never happened, 300 letters registered and
      // then crashed on a file name, and "" was the host name, silently.
      {"worker --worker-id 'a b/c'",
       [](const fs::path&) {},
       {"worker", "--worker-id", "a b/c"},
       2,
       "--worker-id: a worker id is 1 to 128 letters, digits, '-', '_' and '.' ('.' not first, "
       "last "
       "or twice in a row)"},
      {"worker --worker-id of 300 letters",
       [](const fs::path&) {},
       {"worker", "--worker-id", std::string(300, 'w')},
       2,
       "--worker-id: a worker id is 1 to 128 letters"},
      // NATS refuses such a key: it failed at the registry's write.
      {"worker --worker-id w1.",
       [](const fs::path&) {},
       {"worker", "--worker-id", "w1."},
       2,
       "--worker-id: a worker id is 1 to 128 letters"},
      {"worker --worker-id a..b",
       [](const fs::path&) {},
       {"worker", "--worker-id", "a..b"},
       2,
       "--worker-id: a worker id is 1 to 128 letters"},
      {"worker --worker-id ''",
       [](const fs::path&) {},
       {"worker", "--worker-id", ""},
       2,
       "--worker-id: empty: leave --worker-id out to use the host name"},
      {"server --with-worker --worker-id ../x",
       [](const fs::path&) {},
       {"server", "--with-worker", "--worker-id", "../x"},
       2,
       "--worker-id: a worker id is 1 to 128 letters"},
      // Every run submitted by name failed, each with a dead letter.
      {"worker --flows that does not exist",
       [](const fs::path&) {},
       {"worker", "--flows", "no-such-dir"},
       2,
       "--flows: no such directory"},
      {"server --with-worker --flows that is a file",
       [](const fs::path& d) { write(d / "f.yaml", kEchoFlow); },
       {"server", "--with-worker", "--flows", "f.yaml"},
       2,
       "--flows: not a directory"},
      // The engine saw infinity where the history recorded null.
      {"a param too large for a double",
       [](const fs::path& d) { write(d / "f.yaml", kEchoFlow); },
       {"run", "f.yaml", "-p", "x=[1, 1e400]"},
       2,
       "--param x.1: a number too large for a double; quote it to keep it as text"},
  };
  return table;
}

}  // namespace

// What a task returns need not be UTF-8 or printable (here: an escape
// sequence and a stray byte from a shell command). Every JSON output stays
// JSON, and no console line is broken or steered by it.
BOOST_AUTO_TEST_CASE(bytes_from_a_task_never_break_json_or_a_console_line) {
  TempDir dir;
  write(dir.path() / "f.yaml",
        "flow: {name: bytes, graph: s}\ntasks:\n  s: {use: std/shell, inputs: {command: "
        "\"printf 'ok\\\\033[2J\\\\377\\\\nline2'\"}}\n");
  ProcessOptions o;
  o.cwd = dir.path();
  const ProcessResult json_trace = run_pyoco({"run", "f.yaml", "--trace-format", "json"}, o);
  BOOST_TEST_REQUIRE(json_trace.exit_code == 0, json_trace.out << json_trace.err);
  std::istringstream lines(json_trace.out);
  std::size_t parsed = 0;
  for (std::string line; std::getline(lines, line); ++parsed) {
    boost::system::error_code ec;
    boost::json::parse(line, ec);
    BOOST_TEST(!ec, "not JSON: " << line);
  }
  BOOST_TEST(parsed >= 4u);
  const ProcessResult list = run_pyoco({"runs", "list", "--json", "--flow", "bytes"}, o);
  const auto runs = boost::json::parse(list.out).as_array();
  BOOST_TEST_REQUIRE(!runs.empty());
  const std::string id(runs[0].at("run_id").as_string());
  const ProcessResult show = run_pyoco({"runs", "show", id, "--json"}, o);
  boost::system::error_code ec;
  const auto shown = boost::json::parse(show.out, ec);
  BOOST_TEST_REQUIRE(!ec, "not JSON: " << show.out);
  const std::string output(shown.at("tasks").at(0).at("output_summary").as_string());
  BOOST_TEST(output.find("\xEF\xBF\xBD") != std::string::npos, output);  // U+FFFD for \377
  // The whole output too: the byte is replaced, the escape kept as text.
  const std::string stdout_(shown.at("tasks").at(0).at("output").at("stdout").as_string());
  BOOST_TEST(stdout_.find("\xEF\xBF\xBD") != std::string::npos, stdout_);
  const ProcessResult one = run_pyoco({"runs", "output", id, "s"}, o);
  BOOST_TEST(!boost::json::parse(one.out, ec).is_null());
  BOOST_TEST(!ec, "not JSON: " << one.out);
  const ProcessResult table = run_pyoco({"runs", "show", id}, o);
  BOOST_TEST(table.out.find('\x1b') == std::string::npos, table.out);
}

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

// A library whose program header says a segment has more bytes in the file
// than in memory (one byte of p_filesz changed, as a bit flip or a bad copy
// would): the loader mapped file bytes over memory it did not own, the run
// completed, and pyoco died afterwards of SIGSEGV in a lazy symbol lookup
// of another thread. It is refused before it is mapped, in one line that
// names it, as lint's PL033 (docs/plugins.md "Where pyoco finds plugins").
BOOST_AUTO_TEST_CASE(a_damaged_program_header_is_refused_before_the_library_is_mapped) {
  TempDir dir;
  copy_std_plugin(dir.path() / "plugins");
  write(dir.path() / "f.yaml", kEchoFlow);
  const fs::path lib = dir.path() / "plugins" / "std" / "libpyoco_std.so";
  std::string b = read_all(lib);
  const std::size_t phoff = get_le(b, 32, 8), third = phoff + 2 * 56;
  BOOST_TEST_REQUIRE(get_le(b, third, 4) == 1u, "the third program header is PT_LOAD");
  b[third + 32 + 2] = char(0x85);  // p_filesz: 0x85xxxx, past p_memsz
  BOOST_TEST_REQUIRE(get_le(b, third + 8, 8) + get_le(b, third + 32, 8) <= b.size(),
                     "the damaged segment still ends inside the file");
  std::ofstream(lib, std::ios::binary | std::ios::trunc) << b;

  ProcessOptions o;
  o.cwd = dir.path();
  o.timeout = std::chrono::seconds(30);
  const ProcessResult run = run_pyoco({"run", "f.yaml", "--plugin-path", "plugins"}, o);
  BOOST_TEST(run.signal == 0, "died of signal " << run.signal << ": " << run.err);
  BOOST_TEST(run.exit_code == 2, run.out << run.err);
  const std::string line =
      "cannot load libpyoco_std.so: it is truncated or corrupt: its program header 3 of " +
      std::to_string(get_le(b, 56, 2)) + " is damaged: its loadable segment's file size (";
  BOOST_TEST(run.err.find(line) != std::string::npos, run.err);
  BOOST_TEST(std::count(run.err.begin(), run.err.end(), '\n') == 1, run.err);
  BOOST_TEST(run.out.find("pyoco start") == std::string::npos, run.out);

  const ProcessResult lint = run_pyoco({"plugins", "lint", "plugins/std"}, o);
  BOOST_TEST(lint.exit_code == 1, lint.out << lint.err);
  BOOST_TEST(
      lint.out.find("PL033 libpyoco_std.so: truncated or corrupt: its program header 3 of") !=
          std::string::npos,
      lint.out);
}

// Any one byte of the ELF header and the program headers, changed to any
// value (a fixed seed): pyoco run refuses the library, or loads and runs
// it, and never dies of a signal. Under a sanitizer a pyoco run takes
// about a second: there the seed's first 50 damages, enough to exercise the
// checks for memory errors and races, and CI stays within its time.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDamagedBytes = 50;
#else
constexpr int kDamagedBytes = 200;
#endif
BOOST_AUTO_TEST_CASE(one_damaged_byte_in_a_library_s_elf_headers_never_kills_pyoco_run) {
  TempDir dir;
  copy_std_plugin(dir.path() / "plugins");
  write(dir.path() / "f.yaml", kEchoFlow);
  const fs::path lib = dir.path() / "plugins" / "std" / "libpyoco_std.so";
  const std::string whole = read_all(lib);
  const std::size_t end = get_le(whole, 32, 8) + get_le(whole, 56, 2) * 56;
  std::mt19937 random(20251201);
  ProcessOptions o;
  o.cwd = dir.path();
  o.timeout = std::chrono::seconds(30);
  int refused = 0, ran = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kDamagedBytes; ++i) {
    std::string b = whole;
    const std::size_t at = std::uniform_int_distribution<std::size_t>(0, end - 1)(random);
    char value = char(std::uniform_int_distribution<int>(0, 255)(random));
    if (value == b[at]) value = char(~value);
    b[at] = value;
    std::ofstream(lib, std::ios::binary | std::ios::trunc) << b;
    const ProcessResult r = run_pyoco({"run", "f.yaml", "--plugin-path", "plugins"}, o);
    BOOST_TEST_CONTEXT("byte " << at << " set to " << int(static_cast<unsigned char>(value))) {
      BOOST_TEST(!r.timed_out);
      BOOST_TEST(r.signal == 0, "died of signal " << r.signal << ": " << r.err);
      BOOST_TEST((r.exit_code >= 0 && r.exit_code <= 2), r.exit_code << ": " << r.out << r.err);
    }
    (r.exit_code == 0 ? ran : refused) += 1;
  }
  BOOST_TEST_MESSAGE(
      ran << " ran, " << refused << " refused in "
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
          << " s");
  BOOST_TEST(refused > 0);
}

// A manifest's text (summary, description, a task's summary) reaches the
// terminal escaped in `plugins list --verbose` and `plugins info`, as in
// `pyoco tasks` and lint: raw, it cleared the screen, set the window title
// and forged a trace line. The JSON outputs keep it exact.
BOOST_AUTO_TEST_CASE(a_manifest_s_control_characters_never_reach_the_terminal) {
  TempDir dir;
  copy_std_plugin(dir.path() / "plugins");
  const fs::path toml = dir.path() / "plugins" / "std" / "plugin.toml";
  std::string text = read_all(toml);
  const std::string summary = R"(ok\u001b[2J\u001b[31mRED\nERROR pyoco end flow=x status=FAILED)";
  const std::size_t s = text.find("summary = \"");
  BOOST_TEST_REQUIRE(s != std::string::npos);
  text.replace(s, text.find('\n', s) - s, "summary = \"" + summary + "\"");
  const std::size_t d = text.find("description = \"\"\"");
  BOOST_TEST_REQUIRE(d != std::string::npos);
  text.replace(d, text.find("\"\"\"\n", d + 20) + 4 - d,
               "description = \"d\\u001b]0;pwned-title\\u0007\\nline two\"\n");
  const std::size_t t = text.find("summary = \"", text.find("[[tasks]]"));
  text.insert(t + 11, R"(\u001b[31m)");
  std::ofstream(toml, std::ios::binary | std::ios::trunc) << text;

  ProcessOptions o;
  o.cwd = dir.path();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"plugins", "list", "--verbose", "--plugin-path", "plugins"},
        std::vector<std::string>{"plugins", "info", "plugins/std"},
        std::vector<std::string>{"plugins", "info", "std", "--plugin-path", "plugins"}}) {
    BOOST_TEST_CONTEXT(args[1]) {
      const ProcessResult r = run_pyoco(args, o);
      BOOST_TEST(r.exit_code == 0, r.out << r.err);
      BOOST_TEST(r.out.find('\x1b') == std::string::npos, r.out);
      BOOST_TEST(r.out.find('\x07') == std::string::npos, r.out);
      BOOST_TEST(r.out.find("\nERROR pyoco end") == std::string::npos, r.out);
      BOOST_TEST(r.out.find(R"(ok\x1b[2J\x1b[31mRED\nERROR pyoco end flow=x)") != std::string::npos,
                 r.out);
    }
  }
  const ProcessResult info = run_pyoco({"plugins", "info", "plugins/std"}, o);
  BOOST_TEST(info.out.find("d\\x1b]0;pwned-title\\x07\nline two\n") != std::string::npos, info.out);
  const ProcessResult json = run_pyoco({"plugins", "info", "plugins/std", "--json"}, o);
  const auto v = boost::json::parse(json.out);
  BOOST_TEST(std::string(v.at("summary").as_string()) ==
             "ok\x1b[2J\x1b[31mRED\nERROR pyoco end flow=x status=FAILED");
  BOOST_TEST(std::string(v.at("description").as_string()) == "d\x1b]0;pwned-title\x07\nline two");
}

// A key, a file name or an id from outside reaches a diagnostic of `check`,
// `run` or `graph` escaped, as the trace writes it (docs/flows.md "The
// trace"): raw, the key's escape cleared the screen and its newline forged a
// second diagnostic line. `check --json` keeps them exact.
BOOST_AUTO_TEST_CASE(control_characters_in_a_diagnostic_are_escaped) {
  TempDir dir;
  const std::string bad_key =
      "flow: {name: x, graph: a}\n\"\\e[2J\\nfake: line\": 1\n"
      "tasks:\n  a: {use: std/echo, inputs: {value: 1}}\n";
  write(dir.path() / "k.yaml", bad_key);
  const std::string odd_name = "bad\n\x1b[31mname.yaml";
  write(dir.path() / odd_name, bad_key);
  write(dir.path() / "f.yaml", kEchoFlow);
  ProcessOptions o;
  o.cwd = dir.path();
  const std::vector<std::vector<std::string>> commands = {
      {"check", "k.yaml"},
      {"run", "k.yaml"},
      {"graph", "k.yaml"},
      {"check", odd_name},
      {"run", odd_name},
      {"graph", odd_name},
      {"check", "no\n\x1b[2Jfile"},
      {"run", "f.yaml", "--run-id", "a\nb\x1b[2J"},
      {"run", "f.yaml", "--trace-file", "no\ndir\x1b[2J/t"}};
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const auto& args = commands[i];
    BOOST_TEST_CONTEXT(args[0] << " (case " << i << ")") {
      const ProcessResult r = run_pyoco(args, o);
      BOOST_TEST(r.exit_code != 0, r.out << r.err);
      const std::string all = r.out + r.err;
      BOOST_TEST(all.find('\x1b') == std::string::npos, all);
      BOOST_TEST(all.find("\nfake: line") == std::string::npos, all);
      BOOST_TEST(all.find("bad\n") == std::string::npos, all);
      BOOST_TEST(all.find("a\nb") == std::string::npos, all);
      BOOST_TEST(all.find("no\n") == std::string::npos, all);
      BOOST_TEST(all.find("\\x1b[2J") != std::string::npos, all);
    }
  }
  const ProcessResult check = run_pyoco({"check", "k.yaml"}, o);
  BOOST_TEST(
      check.err.find("k.yaml:2:1: error: \\x1b[2J\\nfake: line: unknown key") != std::string::npos,
      check.err);
  const ProcessResult named = run_pyoco({"check", odd_name}, o);
  BOOST_TEST(named.err.find("bad\\n\\x1b[31mname.yaml: 1 error") != std::string::npos, named.err);
  const ProcessResult json = run_pyoco({"check", odd_name, "--json"}, o);
  const auto v = boost::json::parse(json.out);
  BOOST_TEST(std::string(v.at("file").as_string()) == odd_name);
  BOOST_TEST(std::string(v.at("diagnostics").at(0).at("message").as_string()) ==
             "\x1b[2J\nfake: line: unknown key (known here: flow, pipes, plugins, tasks, version)");
}

// A repeatable option takes one value per occurrence (issue 12): it used to
// swallow the positionals after it ("flow is required", lint of everything).
BOOST_AUTO_TEST_CASE(each_repeatable_option_takes_one_value) {
  TempDir dir;
  write(dir.path() / "f.yaml", kEchoFlow);
  fs::create_directories(dir.path() / "empty");
  ProcessOptions o;
  o.cwd = dir.path();
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  const std::vector<Case> table = {
      {{"run", "--plugin-path", "empty", "f.yaml", "--non-cute"}, "status=COMPLETED"},
      {{"run", "-p", "x=1", "--param", "y=2", "f.yaml", "--non-cute"}, "status=COMPLETED"},
      {{"check", "--plugin-path", "empty", "f.yaml"}, "f.yaml: ok"},
      {{"plugins", "lint", "--plugin-path", "empty", "std"}, "1 plugin linted"},
      {{"plugins", "new", "--task", "greet", "carrots", "--dir", "carrots"},
       "Created plugin 'carrots'"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.args[0] + " " + c.args[1] + " " + c.args[2]) {
      const ProcessResult r = run_pyoco(c.args, o);
      BOOST_TEST(r.exit_code == 0, r.out << r.err);
      BOOST_TEST((r.out + r.err).find(c.expect) != std::string::npos, r.out << r.err);
    }
  }
  // And a second value without its flag is a positional, told apart.
  const ProcessResult extra = run_pyoco({"run", "-p", "x=1", "y=2", "f.yaml"}, o);
  BOOST_TEST(extra.exit_code == 2);
  BOOST_TEST(extra.err.find("The following argument was not expected: f.yaml") != std::string::npos,
             extra.err);
  // A word where a command belongs names the commands there are (it said
  // "The following arguments were not expected: X watch").
  const ProcessResult typo = run_pyoco({"runs", "watch", "X"}, o);
  BOOST_TEST(typo.exit_code == 2);
  BOOST_TEST(typo.err ==
                 "pyoco runs: 'watch' is not a command; the commands are list, show, output, "
                 "logs, cancel, artifacts (`pyoco runs --help` tells more)\n",
             typo.err);
  const ProcessResult near = run_pyoco({"plugins", "lnt"}, o);
  BOOST_TEST(near.exit_code == 2);
  BOOST_TEST(near.err.find("pyoco plugins: 'lnt' is not a command (did you mean 'lint'?)") !=
                 std::string::npos,
             near.err);
  BOOST_TEST(near.err.find("__probe") == std::string::npos, near.err);  // internal: not offered
}

// Each task of a new plugin is a C++ struct named after it: `a_b` and
// `a__b` were both `AB`, and the project written did not compile.
BOOST_AUTO_TEST_CASE(new_refuses_task_names_that_would_be_one_struct) {
  TempDir dir;
  ProcessOptions o;
  o.cwd = dir.path();
  const ProcessResult r =
      run_pyoco({"plugins", "new", "tricky", "--task", "a_b", "--task", "a__b"}, o);
  BOOST_TEST(r.exit_code == 2, r.out << r.err);
  BOOST_TEST(r.err ==
                 "pyoco plugins new: tasks 'a_b' and 'a__b' differ only in underscores: both would "
                 "be the C++ struct AB; rename one\n",
             r.err);
  BOOST_TEST(!fs::exists(dir.path() / "tricky"));
}

// The author goes into plugin.toml between quotes: a `"` and a newline in
// it wrote keys of its own (and a file lint called invalid TOML).
BOOST_AUTO_TEST_CASE(an_author_cannot_write_keys_into_the_new_plugin_toml) {
  TempDir dir;
  ProcessOptions o;
  o.cwd = dir.path();
  const std::string author = "x\"]\nlicense = \"evil\"\n[evil]\nk = \"\\ \t";
  const ProcessResult r =
      run_pyoco({"plugins", "new", "inj", "--dir", "inj", "--author", author}, o);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  const pyoco::plugins::Manifest m =
      pyoco::plugins::read_manifest(dir.path() / "inj" / "plugin.toml");
  BOOST_TEST_REQUIRE(m.authors.size() == 1u);
  BOOST_TEST(m.authors.front() == author);
  const ProcessResult bad =
      run_pyoco({"plugins", "new", "inj2", "--dir", "inj2", "--author", std::string("caf\xe9")}, o);
  BOOST_TEST(bad.exit_code != 0);
  BOOST_TEST(bad.err.find("--author must be UTF-8") != std::string::npos, bad.err);
}
