// `pyoco run | check | graph` as a user runs them: exit codes, the trace
// (golden, with run id and durations masked), JSON forms, Ctrl+C.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

#include "child.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

fs::path flow(const char* name) { return source_dir() / "tests/e2e/flows" / name; }
fs::path hello() { return source_dir() / "examples/hello/flow.yaml"; }

struct RunFixture {
  TempDir dir;
  ProcessResult pyoco(std::vector<std::string> args) {
    ProcessOptions o;
    o.cwd = dir.path();
    o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "artifacts").string();
    o.unset_env = {"PYOCO_CUTE"};
    return run_pyoco(std::move(args), o);
  }
};

std::string mask(std::string s) {
  s = std::regex_replace(
      s, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
      "<run_id>");
  s = std::regex_replace(s, std::regex("dur_ms=[0-9.]+"), "dur_ms=<ms>");
  s = std::regex_replace(s, std::regex("\\([0-9.]+ ms\\)"), "(<ms> ms)");
  return s;
}

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(run_cli, RunFixture)

BOOST_AUTO_TEST_CASE(hello_plain_trace_is_golden) {
  const ProcessResult r = pyoco({"run", hello().string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(mask(r.out) == R"(INFO pyoco start flow=hello_pyoco run_id=<run_id>
INFO pyoco start node=fetch_data
INFO pyoco log node=fetch_data 🐰 Fetching data...
INFO pyoco end node=fetch_data dur_ms=<ms>
INFO pyoco start node=process_data
INFO pyoco log node=process_data 🥕 Processing: carrot
INFO pyoco end node=process_data dur_ms=<ms>
INFO pyoco start node=save_result
INFO pyoco log node=save_result ✨ Saved: CARROT
INFO pyoco end node=save_result dur_ms=<ms>
INFO pyoco end flow=hello_pyoco status=COMPLETED
)");
}

BOOST_AUTO_TEST_CASE(hello_cute_trace_is_the_seed_readme) {
  const ProcessResult r = pyoco({"run", hello().string(), "--cute"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(mask(r.out) == R"(🐇 pyoco > start flow=hello_pyoco run_id=<run_id>
🏃 start node=fetch_data
🐰 Fetching data...
✅ done node=fetch_data (<ms> ms)
🏃 start node=process_data
🥕 Processing: carrot
✅ done node=process_data (<ms> ms)
🏃 start node=save_result
✨ Saved: CARROT
✅ done node=save_result (<ms> ms)
🥕 done flow=hello_pyoco
)");
}

BOOST_AUTO_TEST_CASE(pyoco_cute_0_and_a_pipe_mean_plain) {
  ProcessOptions o;
  o.env["PYOCO_CUTE"] = "0";
  const ProcessResult r = run_pyoco({"run", hello().string(), "--cute"}, o);
  // --cute wins over the environment; without it PYOCO_CUTE=0 gives plain.
  BOOST_TEST(has(r.out, "🐇 pyoco > start"));
  const ProcessResult plain = run_pyoco({"run", hello().string()}, o);
  BOOST_TEST(has(plain.out, "INFO pyoco start flow=hello_pyoco"));
}

BOOST_AUTO_TEST_CASE(json_trace_is_one_object_per_line) {
  const ProcessResult r = pyoco({"run", flow("chain.yaml").string(), "--trace-format", "json"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  std::vector<std::string> events;
  std::istringstream lines(r.out);
  std::string run_id;
  for (std::string line; std::getline(lines, line);) {
    const json::value v = json::parse(line);
    events.emplace_back(v.at("event").as_string());
    if (run_id.empty()) run_id = std::string(v.at("run_id").as_string());
    BOOST_TEST(v.at("run_id").as_string() == run_id);
    BOOST_TEST(v.at("ts").as_string().size() == 27u);  // 2026-11-22T16:21:39.123456Z
  }
  const std::vector<std::string> expected = {"run_start",  "node_start", "node_done",
                                             "node_start", "log",        "node_done",
                                             "node_start", "node_done",  "run_end"};
  BOOST_TEST(events == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(trace_file_gets_plain_lines_too) {
  const fs::path file = dir.path() / "trace.log";
  const ProcessResult r = pyoco({"run", hello().string(), "--cute", "--trace-file", file.string()});
  BOOST_TEST(r.exit_code == 0);
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  BOOST_TEST(has(text.str(), "INFO pyoco end flow=hello_pyoco status=COMPLETED"), text.str());
  BOOST_TEST(has(r.out, "🥕 done flow=hello_pyoco"));
  BOOST_TEST(r.err.empty(), r.err);
  // A trace file that cannot be written (a full disk) is said, with the
  // reason, not lost silently; as for standard output the run is recorded
  // COMPLETED and the exit code (1) says its trace is not whole.
  const ProcessResult full = pyoco({"run", hello().string(), "--trace-file", "/dev/full"});
  BOOST_TEST(full.exit_code == 1);
  BOOST_TEST(has(full.err,
                 "pyoco run: --trace-file /dev/full: the trace was not "
                 "written whole (a write failed: No space left on device)"),
             full.err);
}

// What a task of run `id` saved as artifact `name` (params.yaml saves each param it reads).
std::string saved(const fs::path& dir, const std::string& id, const std::string& name) {
  std::ifstream in(dir / "artifacts" / id / name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

BOOST_AUTO_TEST_CASE(params_override_defaults) {
  const ProcessResult r =
      pyoco({"run", flow("params.yaml").string(), "--non-cute", "--param", "greeting=[1,2]", "-p",
             "n=3", "-p", "who=pyoco", "--run-id", "param-1"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  // The tasks got the list [1,2] (its second item is 2), the number 3 and
  // the string pyoco, which is not JSON.
  BOOST_TEST(saved(dir.path(), "param-1", "greeting") == "[1,2]");
  BOOST_TEST(saved(dir.path(), "param-1", "second") == "2");
  BOOST_TEST(saved(dir.path(), "param-1", "n") == "3");
  BOOST_TEST(saved(dir.path(), "param-1", "who") == "pyoco");
  const ProcessResult shown = pyoco({"runs", "show", "param-1"});
  for (const char* param : {R"("greeting":[1,2])", R"("n":3)", R"("who":"pyoco")"}) {
    BOOST_TEST(has(shown.out, param), shown.out);  // the params the run ran with
  }

  // Without them, the defaults.
  BOOST_TEST_REQUIRE(
      pyoco({"run", flow("params.yaml").string(), "--run-id", "param-0"}).exit_code == 0);
  BOOST_TEST(saved(dir.path(), "param-0", "greeting") == R"(["hi","there"])");
  BOOST_TEST(saved(dir.path(), "param-0", "n") == "0");
  // The history keeps the params a run ran with, defaults merged (docs/history.md).
  const ProcessResult defaults = pyoco({"runs", "show", "param-0"});
  for (const char* param : {R"("greeting":["hi","there"])", R"("n":0)", R"("who":"nobody")"}) {
    BOOST_TEST(has(defaults.out, param), defaults.out);
  }

  // A string that looks like a list stays a string: a task reading into it fails.
  const ProcessResult quoted =
      pyoco({"run", flow("params.yaml").string(), "--non-cute", "-p", R"(greeting="[1,2]")"});
  BOOST_TEST(quoted.exit_code == 1, quoted.out << quoted.err);
  BOOST_TEST(has(quoted.out,
                 "ERROR pyoco error node=second input 'content' "
                 "($ctx.params.greeting.1): param 'greeting' has no '1'\n"),
             quoted.out);

  const ProcessResult bad = pyoco({"run", flow("chain.yaml").string(), "--param", "oops"});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(has(bad.err, "--param oops: expected KEY=VALUE"), bad.err);
  // A param named "a.b" is one that $ctx.params.a.b (key b of param a) never reads.
  const ProcessResult dotted = pyoco({"run", flow("params.yaml").string(), "-p", "a.b=5"});
  BOOST_TEST(dotted.exit_code == 2);
  BOOST_TEST(has(dotted.err,
                 "pyoco run: --param a.b: a param name holds no '.' "
                 "($ctx.params.a.b reads key 'b' of param 'a'); give the whole "
                 "param: -p 'a={...}' or --params-file"),
             dotted.err);

  // Not rounded to the double 12345678901234567168: refused, as in a flow file.
  const ProcessResult big =
      pyoco({"run", flow("params.yaml").string(), "-p", "n=12345678901234567890"});
  BOOST_TEST(big.exit_code == 2);
  BOOST_TEST(has(big.err,
                 "pyoco run: --param n: 12345678901234567890: too large for a 64-bit integer; "
                 "quote it to keep it as text (-p 'n=\"12345678901234567890\"')"),
             big.err);
}

// docs/flows.md: defaults, then --params-file (a JSON object or a YAML
// flow-style mapping), then each --param, later ones winning.
BOOST_AUTO_TEST_CASE(params_file_sits_between_the_defaults_and_each_param) {
  std::ofstream(dir.path() / "p.json") << R"({"who": "json file", "n": 1, "greeting": [5, 6]})";
  std::ofstream(dir.path() / "p.yaml") << "{who: yaml file, n: 1, greeting: [7, 8]}\n";
  std::ofstream(dir.path() / "b.yaml") << "---\n# block style\nwho: |\n  block\n  file\nn: 1\n"
                                          "greeting:\n  - 9\n  - 10\n";
  struct Case {
    const char* file;
    const char* who;
    const char* second;
  };
  for (const Case c : {Case{"p.json", "json file", "6"}, Case{"p.yaml", "yaml file", "8"},
                       Case{"b.yaml", "block\nfile\n", "10"}}) {
    BOOST_TEST_CONTEXT(c.file) {
      const std::string id = std::string("file-") + c.file[0] + c.file[2];
      const ProcessResult r =
          pyoco({"run", flow("params.yaml").string(), "--non-cute", "--params-file",
                 (dir.path() / c.file).string(), "-p", "n=3", "--run-id", id});
      BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
      BOOST_TEST(saved(dir.path(), id, "who") == c.who);        // the file over the default
      BOOST_TEST(saved(dir.path(), id, "second") == c.second);  // a list from the file
      BOOST_TEST(saved(dir.path(), id, "n") == "3");            // --param over the file
    }
  }
  std::ofstream(dir.path() / "array.json") << "[1, 2]";
  const ProcessResult not_object =
      pyoco({"run", flow("params.yaml").string(), "--params-file", "array.json"});
  BOOST_TEST(not_object.exit_code == 2);
  BOOST_TEST(has(not_object.err, "pyoco run: --params-file array.json: expected an object"),
             not_object.err);
  BOOST_TEST(not_object.out.empty(), not_object.out);
  const ProcessResult missing =
      pyoco({"run", flow("params.yaml").string(), "--params-file", "none.json"});
  BOOST_TEST(missing.exit_code == 2);
  BOOST_TEST(has(missing.err, "pyoco run: --params-file none.json: "), missing.err);
  // YAML as editors and people write it: a byte order mark, directives,
  // comments and markers around the one document, an inline document, CRLF.
  const std::vector<std::pair<std::string, std::string>> yamls{
      {"\xEF\xBB\xBFwho: bom\n", "bom"},
      {"\xEF\xBB\xBF{\"who\": \"bom json\"}", "bom json"},
      {"%YAML 1.2\n# params\n--- # the one document\nwho: directive\n...\nwho: ignored\n",
       "directive"},
      {"--- {who: inline}\n", "inline"},
      {"who: \"crlf\r\n  line\"\r\nn: 2\r\n", "crlf line"}};
  for (std::size_t i = 0; i < yamls.size(); ++i) {
    const std::string name = "y" + std::to_string(i) + ".yaml";
    std::ofstream(dir.path() / name, std::ios::binary) << yamls[i].first;
    const ProcessResult r = pyoco({"run", flow("params.yaml").string(), "--params-file", name,
                                   "--run-id", "yaml-" + std::to_string(i)});
    BOOST_TEST(r.exit_code == 0, name << ": " << r.err);
    BOOST_TEST(saved(dir.path(), "yaml-" + std::to_string(i), "who") == yamls[i].second, name);
  }
  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"# nothing\n", "only.yaml: holds no params; expected an object"},
           {"who: a\n---\nwho: b\n", "only.yaml:2: a second YAML document"},
           {"who: [a,\n", "only.yaml:1: not JSON, and as YAML not an object of params"},
           // the bracket's place in the message, as the file numbers it too
           {"a: 1\nb: 2\nx: [1, 2\n",
            "only.yaml:3: not JSON, and as YAML not an object of params: not valid YAML: end of "
            "sequence flow not found (the '[' at line 3, column 4 is not closed"},
           {"# c\nwho: a\nn: 1\nwho: b\n",
            "only.yaml:4:1: not JSON, and as YAML not an object of "
            "params: params.who: duplicate key (first at line 2)"},
           // the tab's line, as the file numbers it (not the reader's own)
           {"who: a\nn:\n\tx: 2\n",
            "only.yaml:3:3: not JSON, and as YAML not an object of params: not valid YAML: "
            "illegal map value (line 3 is indented with a tab"},
           {"{\"who\": [1, 1e999]}", "only.yaml: params.who.1: a number too large for a double"},
           // the names -p refuses, with its rule (they went into the history,
           // where no $ctx.params reference could read them)
           {"who: a\na.b: 5\n",
            "only.yaml: a.b: a param name holds no '.' ($ctx.params.a.b reads key 'b' of param "
            "'a'); give the whole param: a: {b: ...}"},
           // rounded to a double (12345678901234567168), as a YAML file's is not
           {"{\"who\": \"x\",\n \"n\": 12345678901234567890}",
            "only.yaml:2:7: 12345678901234567890: too large for a 64-bit integer; quote it to "
            "keep it as text"}}) {
    std::ofstream(dir.path() / "only.yaml") << text;
    const ProcessResult r =
        pyoco({"run", flow("params.yaml").string(), "--params-file", "only.yaml"});
    BOOST_TEST(r.exit_code == 2);
    BOOST_TEST(has(r.err, "pyoco run: --params-file " + says), r.err);
  }
  // Named .json, it is JSON alone: a slip YAML would take (b as null) is
  // refused at its place; a key written twice is refused in JSON as in YAML,
  // in a file and in a -p value alike.
  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"{\"who\": \"a\",\n \"b\": }", "only.json:2:7: not JSON: syntax error"},
           {"{\"x\": \"ok\", \"\": 1}",
            "only.json: \"\": a param name is never empty (no $ctx.params reference reads "
            "\"\"); give it a name"},
           {"{\"who\": {\"x\": [{\"k\": 1, \"k\": 2}]}}",
            "only.json: params.who.x.0.k: the key is written twice in one object; keep one of "
            "them"}}) {
    std::ofstream(dir.path() / "only.json") << text;
    const ProcessResult r =
        pyoco({"run", flow("params.yaml").string(), "--params-file", "only.json"});
    BOOST_TEST(r.exit_code == 2);
    BOOST_TEST(has(r.err, "pyoco run: --params-file " + says), r.err);
  }
  const ProcessResult twice =
      pyoco({"run", flow("params.yaml").string(), "-p", R"(who={"a": 1, "a": 2})"});
  BOOST_TEST(twice.exit_code == 2);
  BOOST_TEST(has(twice.err, "pyoco run: --param who.a: the key is written twice in one object"),
             twice.err);
  // Neither JSON nor YAML: the error names the file's own line and column.
  std::ofstream(dir.path() / "broken.yaml") << "who: me\nn: [1, 2\nx: 3\n";
  const ProcessResult broken =
      pyoco({"run", flow("params.yaml").string(), "--params-file", "broken.yaml"});
  BOOST_TEST(broken.exit_code == 2);
  BOOST_TEST(has(broken.err, "pyoco run: --params-file broken.yaml:3:"), broken.err);
  BOOST_TEST(has(broken.err, ": not JSON, and as YAML not an object of params: not valid YAML"),
             broken.err);
}

// Out of descriptors (many commands at once under a low `ulimit -n`): a
// command that cannot start says what to do, not only "Too many open files".
BOOST_AUTO_TEST_CASE(shell_out_of_descriptors_says_what_to_do) {
  std::ofstream(dir.path() / "many.yaml")
      << "flow:\n  graph: |\n    r: foreach(over={{params.items}}, parallel=100) { s }\n"
         "  defaults:\n    items: [" +
             [] {
               std::string items;
               for (int i = 0; i < 100; ++i) items += (i == 0 ? "" : ",") + std::to_string(i);
               return items;
             }() +
             "]\ntasks:\n  s: {use: std/shell, inputs: {command: \"sleep 0.3\"}}\n";
  ProcessOptions o;
  o.cwd = dir.path();
  o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "artifacts").string();
  o.unset_env = {"PYOCO_CUTE", "PYOCO_PLUGIN_PATH"};
  const ProcessResult r =
      run_process({"/bin/sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\"", pyoco_exe().string(),
                   "run", (dir.path() / "many.yaml").string(), "--non-cute"},
                  o);
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(has(r.out,
                 "Too many open files (each running command holds a few: run fewer at "
                 "once, a lower foreach parallel=, or raise the limit"),
             r.out << r.err);
}

BOOST_AUTO_TEST_CASE(a_failed_run_exits_1_and_names_the_node) {
  const ProcessResult r = pyoco({"run", flow("fails.yaml").string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.out, "ERROR pyoco error node=broken disk on fire (call 1)"), r.out);
  BOOST_TEST(has(r.out, "WARN pyoco cancelled node=never"), r.out);
  BOOST_TEST(has(r.out, "ERROR pyoco end flow=fails status=FAILED failed=broken"), r.out);
}

BOOST_AUTO_TEST_CASE(a_broken_flow_exits_2_with_file_line_and_column) {
  const ProcessResult r = pyoco({"run", flow("broken.yaml").string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "broken.yaml:4:7: error: a lone '>': use '>>' to chain steps"), r.err);
  BOOST_TEST(has(r.err, "pyoco run: " + flow("broken.yaml").string() +
                            " has errors; nothing ran (see `pyoco check`)\n"),
             r.err);
  BOOST_TEST(r.out.empty());
}

// A flow file that does not load said `pyoco run: nothing ran`, a flow that
// does not check the line docs/flows.md "Running" shows: now both say it.
BOOST_AUTO_TEST_CASE(a_flow_file_that_does_not_load_says_what_docs_show) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"malformed.yaml", "flow: {name: x, graph: a\n"},
      {"empty.yaml", ""},
      {"big.yaml",
       "flow: {name: x, graph: a}\ntasks:\n  a: {use: std/echo, inputs: {value: "
       "99999999999999999999}}\n"},
      {"outputs.yaml", "flow: {name: x, graph: a, outputs: 5}\ntasks:\n  a: {use: std/echo}\n"},
  };
  for (const auto& [name, text] : files) {
    BOOST_TEST_CONTEXT(name) {
      std::ofstream(dir.path() / name) << text;
      const ProcessResult r = pyoco({"run", name});
      BOOST_TEST(r.exit_code == 2, r.out << r.err);
      BOOST_TEST(has(r.err, name + ":"), r.err);
      BOOST_TEST(
          has(r.err, "pyoco run: " + name + " has errors; nothing ran (see `pyoco check`)\n"),
          r.err);
      BOOST_TEST(r.out.empty(), r.out);
    }
  }
  // A file that is not there has no errors of its own: the line before says so.
  const ProcessResult missing = pyoco({"run", "nope.yaml"});
  BOOST_TEST(has(missing.err, "nope.yaml: error: no such file"), missing.err);
  BOOST_TEST(has(missing.err, "pyoco run: nothing ran\n"), missing.err);
}

BOOST_AUTO_TEST_CASE(a_flow_that_fails_check_runs_nothing) {
  const ProcessResult r = pyoco({"run", flow("unchecked.yaml").string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "unchecked.yaml:4:3: error: task 'a' uses \"std/nope\""), r.err);
  BOOST_TEST(has(r.err, "nothing ran"));
  BOOST_TEST(r.out.empty());
}

// A run that runs out of memory in an engine thread aborted with
// "terminate called after throwing an instance of 'std::bad_alloc'" (134).
// It ends with one line and exit 1; the history shows the run FAILED
// (interrupted), as docs/flows.md "Limits" says.
BOOST_AUTO_TEST_CASE(out_of_memory_is_one_line_and_exit_1) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  BOOST_TEST_MESSAGE("skipped: a sanitizer reserves more address space than the limit");
#else
  std::ofstream(dir.path() / "mem.yaml")
      << "flow:\n  name: mem\n  graph: \"repeat(count=1000) { repeat(count=1000) { t } }\"\n"
         "tasks:\n  t: {use: std/echo, inputs: {value: 1}}\n";
  ProcessOptions o;
  o.cwd = dir.path();
  o.env["PYOCO_HOME"] = (dir.path() / "home").string();
  o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "artifacts").string();
  o.env["PYOCO_MAX_TASKS"] = "100000000";
  o.timeout = std::chrono::seconds(120);
  const ProcessResult r =
      run_process({"sh", "-c", "ulimit -v 400000 && exec \"$0\" run mem.yaml --jobs 2 >/dev/null",
                   pyoco_exe().string()},
                  o);
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(r.signal == 0, r.err);
  BOOST_TEST(!has(r.err, "terminate called"), r.err);
  BOOST_TEST(has(r.err,
                 "pyoco run: out of memory; exiting (a run it was running is recorded "
                 "FAILED, interrupted)\n"),
             r.err);
  const ProcessResult list = run_pyoco({"runs", "list", "--json"}, o);
  const auto runs = json::parse(list.out).as_array();
  BOOST_TEST_REQUIRE(runs.size() == 1u, list.out);
  BOOST_TEST(runs[0].at("status").as_string() == "FAILED", list.out);
#endif
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_a_usage_error) {
  const ProcessResult r = pyoco({"run", "nope.yaml"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "nope.yaml: error: no such file"), r.err);
}

// `-` read as a file name said "no such file".
BOOST_AUTO_TEST_CASE(standard_input_is_not_a_flow_file_and_says_so) {
  for (const char* command : {"run", "check", "graph"}) {
    BOOST_TEST_CONTEXT(command) {
      const ProcessResult r = pyoco({command, "-"});
      BOOST_TEST(r.exit_code != 0);
      BOOST_TEST(has(r.err,
                     "-: error: a flow from standard input is not supported: save it to a "
                     "file and give its path"),
                 r.err);
      BOOST_TEST(!has(r.err, "no such file"), r.err);
    }
  }
  const ProcessResult params = pyoco({"run", hello().string(), "--params-file", "-"});
  BOOST_TEST(params.exit_code == 2);
  BOOST_TEST(has(params.err,
                 "pyoco run: --params-file -: params from standard input are not "
                 "supported"),
             params.err);
}

BOOST_AUTO_TEST_CASE(toml_flows_and_loops_run) {
  const ProcessResult r = pyoco({"run", flow("loops.toml").string(), "--trace-format", "json"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.out, R"("node":"echo[1]")"), r.out);
  BOOST_TEST(has(r.out, R"("event":"run_end")"));
}

BOOST_AUTO_TEST_CASE(dry_run_prints_the_plan_and_runs_nothing) {
  const ProcessResult r = pyoco({"run", hello().string(), "--dry-run"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == R"(plan for flow hello_pyoco:
  1. fetch_data  hello/fetch_data
  2. process_data  hello/process_data  (after fetch_data)
  3. save_result  hello/save_result  (after process_data)
)");
}

BOOST_AUTO_TEST_CASE(first_ctrl_c_cancels_and_exits_130) {
  ChildProcess p({pyoco_exe().string(), "run", flow("sleepy.yaml").string(), "--non-cute"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=nap"), p.out() << p.err());
  p.send_signal(SIGINT);
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  const std::string out = p.out();
  BOOST_TEST(has(out, "WARN pyoco cancel flow=sleepy"), out);
  // The running nap was told to stop and ended CANCELLED; after it, nothing started.
  BOOST_TEST(has(out, "WARN pyoco cancelled node=nap"), out);
  BOOST_TEST(!has(out, "end node=nap"), out);
  BOOST_TEST(has(out, "WARN pyoco cancelled node=after"), out);
  BOOST_TEST(!has(out, "start node=after"), out);
  BOOST_TEST(has(out, "WARN pyoco end flow=sleepy status=CANCELLED"), out);
  BOOST_TEST(out.find("cancelled node=nap") < out.find("end flow=sleepy"), out);
}

namespace {

// stubborn.yaml's command has run its `trap` once its `sleep` runs: a
// cancel before that would end it at once, not show how pyoco stops a
// command that ignores SIGTERM.
bool stubborn_and_holding(int pyoco, std::vector<int>& pids) {
  pids = descendants_of(pyoco);
  return std::any_of(pids.begin(), pids.end(),
                     [](int pid) { return process_name(pid) == "sleep"; });
}

}  // namespace

BOOST_AUTO_TEST_CASE(first_ctrl_c_ends_the_run_at_once_even_with_a_stubborn_task) {
  // The task ignores SIGTERM; the run does not wait for it, and pyoco stops
  // the command it left before exiting.
  ChildProcess p(
      {pyoco_exe().string(), "run", flow("stubborn.yaml").string(), "--non-cute", "--jobs", "1"},
      {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}}, dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
  std::vector<int> pids;  // the guard, the shell and its sleep
  BOOST_TEST_REQUIRE(eventually([&] { return stubborn_and_holding(p.pid(), pids); }));
  p.send_signal(SIGINT);
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=hold"), p.out());
  BOOST_TEST(has(p.out(), "WARN pyoco end flow=stubborn status=CANCELLED"), p.out());
  for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
}

BOOST_AUTO_TEST_CASE(second_ctrl_c_kills_what_the_tasks_started_and_exits) {
  ChildProcess p({pyoco_exe().string(), "run", flow("stubborn.yaml").string(), "--non-cute",
                  "--run-id", "twice"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
  std::vector<int> pids;  // the guard, the shell and its sleep
  BOOST_TEST_REQUIRE(eventually([&] { return stubborn_and_holding(p.pid(), pids); }));
  p.send_signal(SIGINT);
  // The second as soon as pyoco has taken the first: waiting for the
  // cancel's trace line instead could miss the grace the first gives the
  // command (about a second) on a busy machine, and pyoco would be gone.
  BOOST_TEST_REQUIRE(eventually([&] { return !signal_pending(p.pid(), SIGINT); }));
  p.send_signal(SIGINT);  // while pyoco still gives the command its grace
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  BOOST_TEST(has(p.err(), "interrupted again; killed what the tasks started"), p.out() << "---\n"
                                                                                       << p.err());
  for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
  // docs/history.md: the first Ctrl+C has already ended the run CANCELLED,
  // and the history has it so, the running task too.
  const ProcessResult shown = pyoco({"runs", "show", "twice"});
  BOOST_TEST(has(shown.out, "status    CANCELLED\n"), shown.out);
  BOOST_TEST(std::regex_search(shown.out, std::regex(R"(\nhold +std/shell +CANCELLED +1 )")),
             shown.out);
}

namespace {

// `pyoco run` of a one-task flow of the plain-C fixture `hostile`, whose
// library misbehaves while loading as PYOCO_FIXTURE_HOSTILE says (`mode`;
// empty: it behaves).
struct HostileRun {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
};

HostileRun hostile_run(const fs::path& dir, const std::string& mode,
                       std::vector<std::string> extra_args = {}) {
  std::ofstream(dir / "calm.yaml")
      << "flow: {name: calm, graph: a}\ntasks:\n  a: {use: \"hostile/calm\"}\n";
  HostileRun r;
  r.argv = {pyoco_exe().string(), "run",           (dir / "calm.yaml").string(),
            "--non-cute",         "--plugin-path", (fixture_dir() / "hostile").string()};
  r.argv.insert(r.argv.end(), extra_args.begin(), extra_args.end());
  r.env = {{"PYOCO_ARTIFACT_DIR", (dir / "a").string()}, {"PYOCO_HOME", (dir / "home").string()}};
  if (!mode.empty()) r.env["PYOCO_FIXTURE_HOSTILE"] = mode;
  return r;
}

ProcessResult run_hostile(const fs::path& dir, const std::string& mode) {
  HostileRun h = hostile_run(dir, mode);
  ProcessOptions o;
  o.cwd = dir;
  o.env = std::move(h.env);
  return run_pyoco(std::vector<std::string>(h.argv.begin() + 1, h.argv.end()), o);
}

}  // namespace

BOOST_AUTO_TEST_CASE(ctrl_c_while_the_plugins_load_is_not_lost) {
  // The plugin's library never returns from being loaded (a static
  // constructor). Before, pyoco watched for interrupts only once it had
  // loaded it: the first Ctrl+C was lost, or ignored where the shell ignores
  // SIGINT for a background job. Then the first only promised to cancel the
  // run once it started, which it never did. Now the first leaves at once,
  // naming the library.
  std::ofstream(dir.path() / "stuck.yaml")
      << "flow: {name: stuck, graph: a}\ntasks:\n  a: {use: \"pl026_hang/alpha\"}\n";
  ChildProcess p({pyoco_exe().string(), "run", (dir.path() / "stuck.yaml").string(), "--non-cute",
                  "--plugin-path", (fixture_dir() / "pl026_hang").string()},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}}, dir.path());
  BOOST_TEST_REQUIRE(maps_library(p.pid(), "libpyoco_pl026_hang.so"));
  p.send_signal(SIGINT);
  BOOST_TEST(p.wait(std::chrono::seconds(10)) == 130, p.out() << p.err());
  BOOST_TEST(has(p.err(), "pyoco run: interrupted while loading plugin pl026_hang (" +
                              (fixture_dir() / "pl026_hang/libpyoco_pl026_hang.so").string() +
                              "); nothing ran\n"),
             p.err());
  BOOST_TEST(!has(p.out(), "start node="), p.out());
}

BOOST_AUTO_TEST_CASE(a_task_that_ends_the_process_fails_the_run) {
  // It was a silent success: exit(0) inside a task ended pyoco with the
  // plugin's status, no word, and no run in the history.
  for (const auto& [mode, how] :
       {std::pair{"task_exit", "exit(0)"}, std::pair{"task_quick_exit", "quick_exit()"}}) {
    const std::string id = std::string("quits-") + mode;
    HostileRun h = hostile_run(dir.path(), mode, {"--run-id", id});
    ProcessOptions o;
    o.cwd = dir.path();
    o.env = h.env;
    const ProcessResult r =
        run_pyoco(std::vector<std::string>(h.argv.begin() + 1, h.argv.end()), o);
    BOOST_TEST(r.exit_code == 1, mode << ": " << r.out << r.err);
    // The running tasks are named once start() has returned; the task may
    // end the process before.
    BOOST_TEST(std::regex_search(
                   r.err, std::regex(std::string("pyoco run: a task called ") +
                                     (mode == std::string("task_exit") ? "exit\\(0\\)"
                                                                       : "quick_exit\\(\\)") +
                                     " while the run was going( \\(running: a\\))?; "
                                     "the run is recorded FAILED \\(a plugin must "
                                     "not end the process")),
               r.err);
    o.env.erase("PYOCO_FIXTURE_HOSTILE");
    const ProcessResult shown = run_pyoco({"runs", "show", id}, o);
    BOOST_TEST(has(shown.out, "status    FAILED  (a task called " + std::string(how)), shown.out);
  }
  // Two at once: the second exit waits for the first one's report; it does
  // not end pyoco with its own status meanwhile.
  std::ofstream(dir.path() / "both.yaml")
      << "flow: {name: both, graph: \"(a & b)\"}\ntasks:\n  a: {use: \"hostile/calm\"}\n  b: {use: "
         "\"hostile/calm\"}\n";
  ProcessOptions o;
  o.cwd = dir.path();
  o.env = {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()},
           {"PYOCO_HOME", (dir.path() / "home").string()},
           {"PYOCO_FIXTURE_HOSTILE", "task_exit"}};
  for (int round = 0; round < 5; ++round) {
    const std::string id = "both-" + std::to_string(round);
    const ProcessResult r =
        run_pyoco({"run", (dir.path() / "both.yaml").string(), "--non-cute", "--jobs", "2",
                   "--run-id", id, "--plugin-path", (fixture_dir() / "hostile").string()},
                  o);
    BOOST_TEST(r.exit_code == 1, r.out << r.err);
    BOOST_TEST(has(r.err, "the run is recorded FAILED"), r.err);
  }
}

BOOST_AUTO_TEST_CASE(a_run_whose_process_crashes_at_once_is_in_the_history) {
  // A task that aborts the moment it starts, in runs of pyoco's own ids:
  // the history's writer had not written them yet, and 5 runs of 6 were
  // nowhere, not even interrupted (an outside tester). Each run is claimed
  // before it starts now, and the next command finds it interrupted.
  const fs::path here = dir.path() / "crashes";
  fs::create_directories(here);
  // No core files (the children inherit the limit).
  const rlimit no_cores{0, 0};
  setrlimit(RLIMIT_CORE, &no_cores);
  constexpr std::size_t kRuns = 4;
  for (std::size_t i = 0; i < kRuns; ++i) {
    const ProcessResult r = run_hostile(here, "task_abort");
    BOOST_TEST(r.signal == SIGABRT, r.out << r.err);
  }
  ProcessOptions o;
  o.cwd = here;
  o.env = {{"PYOCO_HOME", (here / "home").string()}};
  const ProcessResult list = run_pyoco({"runs", "list", "--json"}, o);
  BOOST_TEST_REQUIRE(list.exit_code == 0, list.out << list.err);
  const auto runs = json::parse(list.out).as_array();
  BOOST_TEST(runs.size() == kRuns, list.out);
  for (const auto& run : runs) {
    BOOST_TEST(run.at("status").as_string() == "FAILED", run);
    BOOST_TEST(
        run.at("reason").as_string() == "crashed: abort() (SIGABRT) in task a (hostile/calm)", run);
    BOOST_TEST(run.at("flow").as_string() == "calm", run);
  }
}

BOOST_AUTO_TEST_CASE(a_task_that_crashes_the_process_is_named_on_stderr_and_in_the_history) {
  // A task after a short one aborts the process. The history is a moment
  // behind the run: it had the first task RUNNING and the one that crashed
  // PENDING, and the next command recorded just that (an outside tester:
  // "every record points at the wrong node"). The fault handler names the
  // task on stderr and leaves a note the next command reads.
  const fs::path here = dir.path() / "named";
  fs::create_directories(here);
  const rlimit no_cores{0, 0};
  setrlimit(RLIMIT_CORE, &no_cores);
  std::ofstream(here / "crash.yaml")
      << "flow: {name: crash, graph: \"first >> boom\"}\ntasks:\n  first: {use: std/sleep, "
         "inputs: {seconds: 0.2}}\n  boom: {use: \"hostile/calm\"}\n";
  ProcessOptions o;
  o.cwd = here;
  o.env = {{"PYOCO_HOME", (here / "home").string()},
           {"PYOCO_ARTIFACT_DIR", (here / "a").string()},
           {"PYOCO_FIXTURE_HOSTILE", "task_abort"}};
  const ProcessResult r =
      run_pyoco({"run", (here / "crash.yaml").string(), "--non-cute", "--run-id", "crashed",
                 "--plugin-path", (fixture_dir() / "hostile").string()},
                o);
  BOOST_TEST(r.signal == SIGABRT, r.out << r.err);
  BOOST_TEST(r.err.find("pyoco run: task boom (hostile/calm) crashed the process: abort() "
                        "(SIGABRT) in its plugin code\n") != std::string::npos,
             r.err);
  o.env.erase("PYOCO_FIXTURE_HOSTILE");
  const ProcessResult show = run_pyoco({"runs", "show", "crashed", "--json"}, o);
  BOOST_TEST_REQUIRE(show.exit_code == 0, show.out << show.err);
  const auto run = json::parse(show.out).as_object();
  BOOST_TEST(run.at("status").as_string() == "FAILED", run);
  BOOST_TEST(
      run.at("reason").as_string() == "crashed: abort() (SIGABRT) in task boom (hostile/calm)",
      run);
  bool named = false;
  for (const auto& t : run.at("tasks").as_array()) {
    if (t.at("node").as_string() != "boom") continue;
    named = true;
    BOOST_TEST(t.at("state").as_string() == "FAILED", t);
    BOOST_TEST(std::string(t.at("error").as_string()).find("crashed the pyoco process") == 0, t);
  }
  BOOST_TEST(named, run);
  BOOST_TEST(fs::is_empty(here / "home" / "crashes"));  // the note is read once, then removed
}

// The fault handler stays installed while the run goes: a SIGSEGV sent
// from outside (kill) is no fault of a task. It ends the process as it
// would without the handler (it was swallowed: the run went on), and no
// task is blamed.
BOOST_AUTO_TEST_CASE(a_fault_signal_sent_from_outside_ends_the_run_blaming_no_task) {
  const rlimit no_cores{0, 0};
  setrlimit(RLIMIT_CORE, &no_cores);
  std::ofstream(dir.path() / "nap.yaml")
      << "flow: {name: nap, graph: a}\ntasks:\n  a: {use: std/sleep, inputs: {seconds: 60}}\n";
  ChildProcess p({pyoco_exe().string(), "run", (dir.path() / "nap.yaml").string(), "--non-cute",
                  "--run-id", "sent-segv"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()},
                  {"PYOCO_HOME", (dir.path() / "home").string()}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("start node=a"), p.out() << p.err());
  p.send_signal(SIGSEGV);
  const int ended = p.wait(std::chrono::seconds(10));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The previous action is the sanitizer's: it reports and exits.
  BOOST_TEST(ended != -1, "still running 10 s after the signal: " << p.err());
#else
  BOOST_TEST(ended == 128 + SIGSEGV, p.err());
#endif
  BOOST_TEST(p.err().find("crashed the process") == std::string::npos, p.err());
  ProcessOptions o;
  o.env = {{"PYOCO_HOME", (dir.path() / "home").string()}};
  const ProcessResult show = run_pyoco({"runs", "show", "sent-segv", "--json"}, o);
  BOOST_TEST_REQUIRE(show.exit_code == 0, show.err);
  BOOST_TEST(json::parse(show.out).at("reason").as_string() == "interrupted", show.out);
}

BOOST_AUTO_TEST_CASE(a_task_that_exits_after_its_run_was_cancelled_keeps_the_cancel) {
  // A body deaf to the cancel that calls exit() once the run has ended
  // CANCELLED: pyoco said the run "was going" and exited 1.
  std::ofstream(dir.path() / "late.yaml")
      << "flow: {name: late, graph: \"(q & b)\"}\ntasks:\n  q: {use: \"hostile/calm\"}\n  b: {use: "
         "\"std/sleep\", inputs: {seconds: 100}}\n";
  const fs::path gate = dir.path() / "exit-now";
  ChildProcess p(
      {pyoco_exe().string(), "run", (dir.path() / "late.yaml").string(), "--non-cute", "--jobs",
       "2", "--run-id", "late-exit", "--plugin-path", (fixture_dir() / "hostile").string()},
      {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()},
       {"PYOCO_HOME", (dir.path() / "home").string()},
       {"PYOCO_FIXTURE_HOSTILE", "task_exit_after:" + gate.string()}},
      dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("start node=q"), p.out() << p.err());
  p.send_signal(SIGINT);
  BOOST_TEST_REQUIRE(p.wait_for_output("end flow=late status=CANCELLED"), p.out() << p.err());
  std::ofstream(gate) << "";
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  BOOST_TEST(has(p.err(),
                 "pyoco run: a task called exit(0) after the run ended CANCELLED (a body "
                 "that had not stopped when told to); the run is recorded CANCELLED"),
             p.err());
}

BOOST_AUTO_TEST_CASE(sigterm_while_register_tasks_hangs_ends_the_run_at_once) {
  // A plain-C plugin whose register_tasks never returns: one SIGTERM ends
  // pyoco run (it used to take a second), and the --run-id it claimed is
  // free again: nothing ran under it.
  const HostileRun hanging = hostile_run(dir.path(), "hang", {"--run-id", "hung-load"});
  ChildProcess p(hanging.argv, hanging.env, dir.path());
  BOOST_TEST_REQUIRE(maps_library(p.pid(), "libpyoco_hostile.so"));
  p.send_signal(SIGTERM);
  BOOST_TEST(p.wait(std::chrono::seconds(10)) == 130, p.out() << p.err());
  BOOST_TEST(has(p.err(), "interrupted while loading plugin hostile ("), p.err());
  BOOST_TEST(has(p.err(), "libpyoco_hostile.so); nothing ran\n"), p.err());

  const HostileRun calm = hostile_run(dir.path(), "", {"--run-id", "hung-load"});
  ChildProcess again(calm.argv, calm.env, dir.path());
  BOOST_TEST(again.wait(std::chrono::seconds(30)) == 0, again.out() << again.err());
}

BOOST_AUTO_TEST_CASE(a_plugin_that_exits_while_loading_is_named_and_nothing_ran) {
  // exit() in register_tasks ended pyoco run with the plugin's code (3) and
  // no word; now it says so, as a crash does, and exits 2.
  for (const auto& [how, said] :
       {std::pair<std::string, std::string>{"exit", "exit(3)"}, {"quick_exit", "quick_exit()"}}) {
    const ProcessResult r = run_hostile(dir.path(), how);
    BOOST_TEST_CONTEXT(how) {
      BOOST_TEST(r.exit_code == 2, r.out << r.err);
      BOOST_TEST(r.err == "pyoco run: " + (fixture_dir() / "hostile/libpyoco_hostile.so").string() +
                              " called " + said +
                              " while loading (in its code run at load or in register_tasks); "
                              "nothing ran (run `pyoco plugins lint` on its plugin)\n");
      BOOST_TEST(!has(r.out, "start node="), r.out);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_failing_register_tasks_s_message_is_escaped) {
  const ProcessResult r = run_hostile(dir.path(), "escape");
  BOOST_TEST(r.exit_code != 0);
  BOOST_TEST(has(r.err, "register_tasks failed: no database \\x1b[2J here"), r.err);
  BOOST_TEST(!has(r.err, "\x1b"), r.err);
}

BOOST_AUTO_TEST_CASE(an_exit_after_the_plugins_loaded_is_left_alone) {
  // The hook is armed while a library loads only: a run that ends normally
  // keeps its own exit code and says nothing of loading.
  const ProcessResult r = run_hostile(dir.path(), "");
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(!has(r.err, "while loading"), r.err);
}

BOOST_AUTO_TEST_CASE(a_command_dies_with_a_pyoco_killed_by_sigkill) {
  // Nothing can clean up after a SIGKILL: the command is told by the kernel
  // (PR_SET_PDEATHSIG). In a cluster the run is tried again elsewhere, and a
  // command left running would do its work twice.
  std::ofstream(dir.path() / "long.yaml")
      << "flow: {name: long, graph: hold}\ntasks:\n  hold: {use: \"std/shell\", inputs: "
         "{argv: [sleep, \"300\"]}}\n";
  ChildProcess p({pyoco_exe().string(), "run", (dir.path() / "long.yaml").string(), "--non-cute"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
  std::vector<int> pids;
  BOOST_TEST_REQUIRE(eventually([&] { return !(pids = descendants_of(p.pid())).empty(); }));
  p.send_signal(SIGKILL);
  BOOST_TEST(p.wait() == 128 + SIGKILL);
  for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
}

// What the command started goes too: its whole process group. Before, only
// the shell was killed (PR_SET_PDEATHSIG on it alone), and its children
// (here two sleeps, one in a subshell) lived on under PID 1, beside the
// run's next attempt in a cluster.
BOOST_AUTO_TEST_CASE(a_command_s_children_die_with_a_pyoco_killed_by_sigkill) {
  for (const char* jobs : {"1", "2"}) {
    std::ofstream(dir.path() / "tree.yaml")
        << "flow: {name: tree, graph: hold}\ntasks:\n  hold: {use: \"std/shell\", inputs: "
           "{command: \"sleep 300 & (sleep 301; true) & wait\"}}\n";
    ChildProcess p({pyoco_exe().string(), "run", (dir.path() / "tree.yaml").string(), "--non-cute",
                    "--jobs", jobs},
                   {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                   dir.path());
    BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
    // The shell, its two sleeps and the subshell (and the guard between
    // pyoco and the shell).
    std::vector<int> pids;
    BOOST_TEST_REQUIRE(eventually([&] { return (pids = descendants_of(p.pid())).size() >= 4; }),
                       jobs);
    p.send_signal(SIGKILL);
    BOOST_TEST(p.wait() == 128 + SIGKILL);
    for (int pid : pids)
      BOOST_TEST(eventually([&] { return process_gone(pid); }), jobs << ": " << pid);
  }
}

// The guard (pyoco-shell-guard) is built into libpyoco_std.so and run from
// a memfd: a std plugin of its library and manifest alone (as the plugin
// repository packs it, and a cluster worker installs it) runs its shell
// tasks guarded. Before, it had no guard beside it and every shell task
// failed ("... pyoco-shell-guard is missing; reinstall").
BOOST_AUTO_TEST_CASE(a_std_plugin_without_the_guard_file_beside_it_runs_commands_guarded) {
  const fs::path from = binary_dir() / "lib/pyoco/plugins/std";
  const fs::path std_dir = dir.path() / "plugins/std";
  fs::create_directories(std_dir);
  for (const char* file : {"plugin.toml", "libpyoco_std.so"}) {
    fs::copy_file(from / file, std_dir / file);
  }
  BOOST_TEST_REQUIRE(!fs::exists(std_dir / "pyoco-shell-guard"));
  std::ofstream(dir.path() / "sh.yaml")
      << "flow: {name: sh, graph: say}\ntasks:\n  say: {use: \"std/shell\", inputs: "
         "{command: \"echo ran > ran.txt\"}}\n";
  const ProcessResult r = pyoco({"run", "sh.yaml", "--non-cute", "--plugin-path", "plugins"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(fs::exists(dir.path() / "ran.txt"));

  // And still guarded: what the command started dies with a pyoco killed
  // by SIGKILL.
  std::ofstream(dir.path() / "tree.yaml")
      << "flow: {name: tree, graph: hold}\ntasks:\n  hold: {use: \"std/shell\", inputs: "
         "{command: \"sleep 300 & (sleep 301; true) & wait\"}}\n";
  ChildProcess p({pyoco_exe().string(), "run", (dir.path() / "tree.yaml").string(), "--non-cute",
                  "--plugin-path", (dir.path() / "plugins").string()},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
  std::vector<int> pids;
  BOOST_TEST_REQUIRE(eventually([&] { return (pids = descendants_of(p.pid())).size() >= 4; }));
  // The copy loaded, and the guard runs from its memfd.
  std::ifstream maps("/proc/" + std::to_string(p.pid()) + "/maps");
  const std::string mapped((std::istreambuf_iterator<char>(maps)),
                           std::istreambuf_iterator<char>());
  BOOST_TEST(has(mapped, (std_dir / "libpyoco_std.so").string()), mapped);
  bool from_memfd = false;
  for (int pid : pids) {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
    from_memfd = from_memfd || has(exe.string(), "memfd:pyoco-shell-guard");
  }
  BOOST_TEST(from_memfd);
  p.send_signal(SIGKILL);
  BOOST_TEST(p.wait() == 128 + SIGKILL);
  for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
}

// ---- with every worker busy (ARCHITECTURE.md §4a) ----------------------------

const std::string kBusyPath = (fixture_dir() / "busy").string();

BOOST_AUTO_TEST_CASE(a_deadline_fires_while_every_worker_is_held) {
  for (const char* jobs : {"1", "2"}) {
    const ProcessResult r = pyoco({"run", flow("saturated_timeout.yaml").string(), "--non-cute",
                                   "--jobs", jobs, "--plugin-path", kBusyPath});
    BOOST_TEST(r.exit_code == 1, jobs << ": " << r.out << r.err);
    // t's 0.1 s deadline ends it long before the holders' 1.5 s ones: it did
    // not wait for a worker to come free.
    const auto t_failed = r.out.find("ERROR pyoco error node=t timed out after 0.1 s");
    const auto hold_failed = r.out.find("ERROR pyoco error node=hold1 timed out after 1.5 s");
    BOOST_TEST_REQUIRE(t_failed != std::string::npos, jobs << ": " << r.out);
    BOOST_TEST_REQUIRE(hold_failed != std::string::npos, jobs << ": " << r.out);
    BOOST_TEST(t_failed < hold_failed, jobs << ": " << r.out);
    // t never got a worker: its error says so (it looked like a slow body).
    BOOST_TEST(has(r.out, "node=t timed out after 0.1 s waiting for a free worker thread (all " +
                              std::string(jobs) + " busy); its body never started"),
               r.out);
    BOOST_TEST(has(r.out, "ERROR pyoco error node=hold2 timed out after 1.5 s"), r.out);
    BOOST_TEST(has(r.out, "status=FAILED"), r.out);
  }
}

BOOST_AUTO_TEST_CASE(ctrl_c_cancels_while_every_worker_is_held) {
  for (const char* jobs : {"1", "2"}) {
    ChildProcess p({pyoco_exe().string(), "run", flow("saturated.yaml").string(), "--non-cute",
                    "--jobs", jobs, "--plugin-path", kBusyPath},
                   {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}}, dir.path());
    BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold2"), p.out() << p.err());
    p.send_signal(SIGINT);
    // The holders ignore cancellation for 60 s; the run ends without them.
    BOOST_TEST(p.wait(std::chrono::seconds(15)) == 130, jobs << ": " << p.out() << p.err());
    BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=hold1"), p.out());
    BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=hold2"), p.out());
    BOOST_TEST(has(p.out(), "WARN pyoco cancelled node=after"), p.out());
    BOOST_TEST(has(p.out(), "WARN pyoco end flow=saturated status=CANCELLED"), p.out());
  }
}

// std/shell beside a body that holds the only worker (`--jobs 1`): `gate`
// lets `hold` start once the command has started, and `go` (made by the
// test once `hold` has started) lets the command go on.
void write_shell_beside_a_held_worker(const fs::path& file, const std::string& node,
                                      const std::string& command, const std::string& extra) {
  std::ofstream(file) << "flow: {name: held, graph: \"(" << node << " & (gate >> hold))\"}\n"
                      << "tasks:\n  " << node << ": {use: std/shell" << extra
                      << ", inputs: {command: " << json::serialize(json::value(command)) << "}}\n"
                      << "  gate: {use: std/shell, inputs: {command: \"while [ ! -e started ]; "
                         "do sleep 0.01; done\"}}\n"
                      << "  hold: {use: busy/block, inputs: {seconds: 60}}\n";
}

// An endless output (`yes`) ran for ever; it fails the task at 16 MiB now,
// while the only worker is held, and its command is stopped.
BOOST_AUTO_TEST_CASE(endless_shell_output_fails_at_the_cap_while_every_worker_is_held) {
  for (const std::string stream : {"stdout", "stderr"}) {
    fs::remove(dir.path() / "go");
    fs::remove(dir.path() / "started");
    write_shell_beside_a_held_worker(
        dir.path() / "capped.yaml", "sh",
        std::string(": > started; while [ ! -e go ]; do sleep 0.01; done; exec yes") +
            (stream == "stderr" ? " >&2" : ""),
        "");
    ChildProcess p({pyoco_exe().string(), "run", (dir.path() / "capped.yaml").string(),
                    "--non-cute", "--jobs", "1", "--plugin-path", kBusyPath},
                   {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}}, dir.path());
    BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=hold"), p.out() << p.err());
    std::vector<int> pids;  // the guard and `yes`
    BOOST_TEST_REQUIRE(eventually([&] { return (pids = descendants_of(p.pid())).size() >= 2; }));
    std::ofstream(dir.path() / "go") << "";
    BOOST_TEST(p.wait(std::chrono::seconds(15)) == 1, stream << ": " << p.out() << p.err());
    BOOST_TEST(has(p.out(), "ERROR pyoco error node=sh the command's " + stream +
                                " passed 16 MiB (an output is kept in memory), and the command "
                                "was stopped; write large output to a file\n"),
               p.out());
    BOOST_TEST(has(p.out(), "status=FAILED"), p.out());
    for (int pid : pids) BOOST_TEST(eventually([&] { return process_gone(pid); }), pid);
  }
}

// A shell task stopped at its deadline or by a cancel kept nothing of what
// it had printed ("timed out after 0.5 s", and no log lines): its last
// lines are logged when it is stopped, into the trace and the history,
// while the only worker is held.
BOOST_AUTO_TEST_CASE(a_stopped_shell_task_logs_what_it_printed_while_every_worker_is_held) {
  const std::string command =
      "echo important-progress; echo warn-on-stderr >&2; : > started; exec sleep 600";
  const std::string logged =
      "INFO pyoco log node=slow stdout: important-progress\n"
      "INFO pyoco log node=slow stderr: warn-on-stderr\n";
  // At its deadline.
  write_shell_beside_a_held_worker(dir.path() / "timeout.yaml", "slow", command,
                                   ", timeout_sec: 4");
  ChildProcess timed(
      {pyoco_exe().string(), "run", (dir.path() / "timeout.yaml").string(), "--non-cute", "--jobs",
       "1", "--plugin-path", kBusyPath, "--run-id", "held-timeout"},
      {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}}, dir.path());
  BOOST_TEST(timed.wait(std::chrono::seconds(15)) == 1, timed.out() << timed.err());
  BOOST_TEST(has(timed.out(), "INFO pyoco start node=hold"), timed.out());
  BOOST_TEST(has(timed.out(),
                 "WARN pyoco log node=slow stopping the command (timed out); the "
                 "last it printed:\n" +
                     logged + "ERROR pyoco error node=slow timed out after 4 s\n"),
             timed.out());
  // By a Ctrl+C.
  fs::remove(dir.path() / "started");
  write_shell_beside_a_held_worker(dir.path() / "cancel.yaml", "slow", command, "");
  ChildProcess cancelled(
      {pyoco_exe().string(), "run", (dir.path() / "cancel.yaml").string(), "--non-cute", "--jobs",
       "1", "--plugin-path", kBusyPath, "--run-id", "held-cancel"},
      {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}}, dir.path());
  BOOST_TEST_REQUIRE(cancelled.wait_for_output("INFO pyoco start node=hold"),
                     cancelled.out() << cancelled.err());
  cancelled.send_signal(SIGINT);
  BOOST_TEST(cancelled.wait(std::chrono::seconds(15)) == 130, cancelled.out() << cancelled.err());
  BOOST_TEST(has(cancelled.out(),
                 "WARN pyoco log node=slow stopping the command (cancelled); "
                 "the last it printed:\n" +
                     logged),
             cancelled.out());
  // The history keeps them: `runs logs` has them, not "no log lines".
  for (const char* id : {"held-timeout", "held-cancel"}) {
    const ProcessResult shown = pyoco({"runs", "logs", id, "--task", "slow"});
    BOOST_TEST(shown.exit_code == 0, id << ": " << shown.out << shown.err);
    BOOST_TEST(has(shown.out, "INFO slow: stdout: important-progress\n"), id << ": " << shown.out);
    BOOST_TEST(has(shown.out, "INFO slow: stderr: warn-on-stderr\n"), id << ": " << shown.out);
  }
}

BOOST_AUTO_TEST_CASE(run_id_names_the_run_once) {
  const ProcessResult first = pyoco({"run", hello().string(), "--non-cute", "--run-id", "demo-1"});
  BOOST_TEST(first.exit_code == 0, first.err);
  BOOST_TEST(has(first.out, "INFO pyoco start flow=hello_pyoco run_id=demo-1\n"), first.out);
  const ProcessResult again = pyoco({"run", hello().string(), "--non-cute", "--run-id", "demo-1"});
  BOOST_TEST(again.exit_code == 2);
  BOOST_TEST(has(again.err, "--run-id demo-1: the history already has a run with this id"),
             again.err);
  BOOST_TEST(!has(again.out, "start node="), again.out);  // nothing ran
  const ProcessResult empty = pyoco({"run", hello().string(), "--run-id", ""});
  BOOST_TEST(empty.exit_code == 2);
  BOOST_TEST(has(empty.err, "--run-id: give a name, or leave --run-id out"), empty.err);
  BOOST_TEST(empty.out.empty(), empty.out);
  const ProcessResult bad = pyoco({"run", hello().string(), "--run-id", "../x"});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(has(bad.err, "run id '../x' is not allowed"), bad.err);
  for (const char* dots : {".", ".."}) {
    const ProcessResult d = pyoco({"run", hello().string(), "--run-id", dots});
    BOOST_TEST(d.exit_code == 2, d.err);
    BOOST_TEST(has(d.err, "it names a directory"), d.err);
    BOOST_TEST(pyoco({"runs", "show", dots}).exit_code != 0);  // nothing claimed for it
  }
  // `runs show -x` would read such an id as an option.
  for (const char* dash : {"--run-id=-x", "--run-id=--help"}) {
    const ProcessResult d = pyoco({"run", hello().string(), dash});
    BOOST_TEST(d.exit_code == 2, d.err);
    BOOST_TEST(has(d.err, "it starts with '-', which a command line reads as an option"), d.err);
  }
}

// A reader that goes away (`| head`) does not kill the run (SIGPIPE): it
// completes and is recorded; the commands tasks start still get SIGPIPE
// as usual (not inherited ignored from pyoco).
BOOST_AUTO_TEST_CASE(a_reader_that_goes_away_does_not_kill_the_run) {
  std::ofstream(dir.path() / "talky.yaml")
      << "flow: {name: talky, graph: a >> nap >> b >> sig}\ntasks:\n"
         "  a: {use: std/echo, inputs: {value: 1, message: first}}\n"
         "  nap: {use: std/sleep, inputs: {seconds: 0.5}}\n"
         "  b: {use: std/echo, inputs: {value: 2, message: later}}\n"
         "  sig: {use: std/shell, inputs: {command: \"grep SigIgn /proc/self/status\"}}\n";
  ProcessOptions o;
  o.cwd = dir.path();
  o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "artifacts").string();
  const ProcessResult r = pyoco::core::run_process(
      {"/bin/bash", "-c",
       "\"$0\" run talky.yaml --non-cute --run-id piped | head -1; echo \"pyoco=${PIPESTATUS[0]}\"",
       pyoco_exe().string()},
      o);
  BOOST_TEST(has(r.out, "pyoco=0"), r.out << r.err);
  const ProcessResult shown = pyoco({"runs", "show", "piped", "--json"});
  BOOST_TEST_REQUIRE(shown.exit_code == 0, shown.err);
  const auto v = boost::json::parse(shown.out).as_object();
  BOOST_TEST(v.at("status").as_string() == "COMPLETED", shown.out);
  const ProcessResult out = pyoco({"runs", "output", "piped", "sig"});
  BOOST_TEST_REQUIRE(out.exit_code == 0, out.err);
  // SigIgn is a hex mask; SIGPIPE (13) is its bit 0x1000.
  const std::string status(boost::json::parse(out.out).at("stdout").as_string());
  const auto at = status.find("SigIgn:");
  BOOST_TEST_REQUIRE(at != std::string::npos, out.out);
  const unsigned long ignored = std::stoul(status.substr(at + 7), nullptr, 16);
  BOOST_TEST((ignored & 0x1000UL) == 0UL, out.out);
}

// Closing the terminal (SIGHUP) cancels the run as Ctrl+C does: it was
// killed, recorded as interrupted, its commands left running.
BOOST_AUTO_TEST_CASE(sighup_cancels_the_run_like_ctrl_c) {
  ChildProcess p({pyoco_exe().string(), "run", flow("sleepy.yaml").string(), "--non-cute",
                  "--run-id", "hung-up"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("INFO pyoco start node=nap"), p.out() << p.err());
  p.send_signal(SIGHUP);
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  BOOST_TEST(has(p.out(), "WARN pyoco end flow=sleepy status=CANCELLED"), p.out());
  const ProcessResult shown = pyoco({"runs", "show", "hung-up", "--json"});
  BOOST_TEST_REQUIRE(shown.exit_code == 0, shown.err);
  BOOST_TEST(boost::json::parse(shown.out).at("status").as_string() == "CANCELLED", shown.out);
}

BOOST_AUTO_TEST_CASE(check_reports_every_problem_with_its_line) {
  const ProcessResult r = pyoco({"check", flow("unchecked.yaml").string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err, "unchecked.yaml:4:3: error: task 'a' uses \"std/nope\""), r.err);
  BOOST_TEST(
      has(r.err, "unchecked.yaml:5:33: error: input 'value': '$node.c.output' names node 'c'"),
      r.err);
  BOOST_TEST(has(r.err, "unchecked.yaml:6:3: warning: task 'lonely' is never used"), r.err);
  BOOST_TEST(has(r.err, "2 errors"), r.err);
}

BOOST_AUTO_TEST_CASE(check_json_for_machines) {
  const ProcessResult r = pyoco({"check", flow("unchecked.yaml").string(), "--json"});
  BOOST_TEST(r.exit_code == 1);
  const json::value v = json::parse(r.out);
  BOOST_TEST(!v.at("ok").as_bool());
  BOOST_TEST(v.at("errors").as_int64() == 2);
  BOOST_TEST(v.at("warnings").as_int64() == 1);
  const auto& first = v.at("diagnostics").at(0);
  BOOST_TEST(first.at("severity").as_string() == "error");
  BOOST_TEST(first.at("line").as_int64() == 4);
  BOOST_TEST(first.at("column").as_int64() == 3);

  const ProcessResult ok = pyoco({"check", hello().string(), "--json", "--dry-run"});
  BOOST_TEST(ok.exit_code == 0);
  const json::value okv = json::parse(ok.out);
  BOOST_TEST(okv.at("ok").as_bool());
  BOOST_TEST(okv.at("status").as_string() == "ok");
  BOOST_TEST(has(std::string(okv.at("plan").as_string()), "2. process_data"));
  // Warnings only: pyoco's "warning" (an orphan task here), still exit 0.
  write_text(
      dir.path() / "warn.yaml",
      "flow: {name: w, graph: a}\ntasks:\n  a: {use: std/echo}\n  lonely: {use: std/echo}\n");
  const ProcessResult warned = pyoco({"check", (dir.path() / "warn.yaml").string(), "--json"});
  BOOST_TEST(warned.exit_code == 0, warned.out << warned.err);
  BOOST_TEST(json::parse(warned.out).at("status").as_string() == "warning", warned.out);
  // Errors exit 1, or 2 with --dry-run (pyoco's codes), in both forms.
  const std::string bad = flow("unchecked.yaml").string();
  BOOST_TEST(pyoco({"check", bad, "--json"}).exit_code == 1);
  BOOST_TEST(pyoco({"check", bad, "--json", "--dry-run"}).exit_code == 2);
  BOOST_TEST(pyoco({"check", bad}).exit_code == 1);
  BOOST_TEST(pyoco({"check", flow("unchecked.yaml").string(), "--dry-run"}).exit_code == 2);
}

BOOST_AUTO_TEST_CASE(check_dry_run_prints_the_plan_after_ok) {
  const ProcessResult r = pyoco({"check", hello().string(), "--dry-run"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out == hello().string() + R"(: ok
plan for flow hello_pyoco:
  1. fetch_data  hello/fetch_data
  2. process_data  hello/process_data  (after fetch_data)
  3. save_result  hello/save_result  (after process_data)
)");
  BOOST_TEST(pyoco({"check", hello().string()}).out == hello().string() + ": ok\n");
  // It runs nothing: no artifact is saved, no run recorded.
  const ProcessResult saving = pyoco({"check", flow("artifacts.yaml").string(), "--dry-run"});
  BOOST_TEST(saving.exit_code == 0, saving.err);
  BOOST_TEST(!fs::exists(dir.path() / "artifacts"));
  BOOST_TEST(has(pyoco({"runs", "list", "--flow", "report"}).out, "no runs match"));
}

BOOST_AUTO_TEST_CASE(check_of_a_syntax_error_names_line_and_column) {
  const ProcessResult r = pyoco({"check", flow("broken.yaml").string(), "--json"});
  BOOST_TEST(r.exit_code == 1);
  const json::value v = json::parse(r.out);
  BOOST_TEST(v.at("diagnostics").at(0).at("line").as_int64() == 4);
  BOOST_TEST(v.at("diagnostics").at(0).at("column").as_int64() == 7);
}

BOOST_AUTO_TEST_CASE(check_accepts_loop_references_in_a_loop_body) {
  const ProcessResult r = pyoco({"check", flow("loop_refs.yaml").string()});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(!has(r.err, "error"), r.err);
}

// docs/flows.md: a loop or switch body may read a node outside it that runs
// before it, and $loop.<name> of the loop around it; check says so both ways.
BOOST_AUTO_TEST_CASE(a_body_reads_outer_nodes_and_loop_variables) {
  const char* tasks = R"(tasks:
  base: {use: "std/echo", inputs: {value: "B"}}
  first: {use: "std/echo", inputs: {value: 1, message: "$node.base.output"}}
  other: {use: "std/echo", inputs: {value: 2, message: "$loop.it"}}
)";
  std::ofstream(dir.path() / "outer.yaml")
      << "flow:\n  name: outer\n  defaults: {items: [\"a\", \"b\"]}\n  graph: |\n"
      << "    base >> foreach(over={{items}}, item=it) "
         "{ switch(on={{loop.it}}) { \"a\": first; default: other; } }\n"
      << tasks;
  const ProcessResult c = pyoco({"check", "outer.yaml"});
  BOOST_TEST(c.exit_code == 0, c.out << c.err);
  BOOST_TEST(c.out == "outer.yaml: ok\n", c.out << c.err);
  const ProcessResult r = pyoco({"run", "outer.yaml", "--non-cute"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(has(r.out, "INFO pyoco log node=first[0] B\n"), r.out);
  BOOST_TEST(has(r.out, "INFO pyoco log node=other[1] b\n"), r.out);

  // An outer node that runs only after the loop is refused, as the engine could not read it.
  std::ofstream(dir.path() / "late.yaml")
      << "flow:\n  name: late\n  defaults: {items: [\"a\"]}\n  graph: |\n"
      << "    foreach(over={{items}}, item=it) { first } >> base\n"
      << tasks;
  const ProcessResult late = pyoco({"check", "late.yaml"});
  BOOST_TEST(late.exit_code == 1);
  BOOST_TEST(has(late.err,
                 "late.yaml:8:47: error: input 'message': node 'base' does not run "
                 "before 'foreach_1' (add base >> foreach_1)"),
             late.err);
}

BOOST_AUTO_TEST_CASE(run_resolves_loop_references) {
  const ProcessResult r = pyoco({"run", flow("loop_refs.yaml").string(), "--non-cute"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(has(r.out, "INFO pyoco log node=echo[0] x"), r.out);
  BOOST_TEST(has(r.out, "INFO pyoco log node=echo[1] y"), r.out);
  BOOST_TEST(has(r.out, "INFO pyoco end flow=loop_refs status=COMPLETED"), r.out);
}

// `e: foreach(...) { a: echo_item }` beside a top-level `a` passed check,
// and `$node.a.output` read the top-level one.
BOOST_AUTO_TEST_CASE(check_refuses_a_body_node_named_as_a_top_level_node) {
  std::ofstream(dir.path() / "shadow.yaml")
      << "flow:\n  name: shadow\n  defaults: {xs: [1, 2]}\n  graph: |\n"
         "    a >> e: foreach(over={{xs}}) { a: echo_item }\n    e >> r\ntasks:\n"
         "  a: {use: std/echo, inputs: {value: top}}\n"
         "  echo_item: {use: std/echo, inputs: {value: item}}\n"
         "  r: {use: std/echo, inputs: {value: \"$node.a.output\"}}\n";
  const ProcessResult check = pyoco({"check", "shadow.yaml"});
  BOOST_TEST(check.exit_code == 1, check.out << check.err);
  BOOST_TEST(has(check.err,
                 "shadow.yaml:5:36: error: node 'a' in the body of e is already a "
                 "node of the graph around it (line 5, column 5)"),
             check.err);
  const ProcessResult run = pyoco({"run", "shadow.yaml"});
  BOOST_TEST(run.exit_code == 2, run.out << run.err);
  BOOST_TEST(!has(run.out, "start node"), run.out);
}

BOOST_AUTO_TEST_CASE(check_rejects_a_loop_reference_outside_a_loop) {
  const ProcessResult r = pyoco({"check", flow("loop_ref_outside.yaml").string()});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err,
                 "loop_ref_outside.yaml:6:36: error: input 'message': '$loop.it' is "
                 "outside a loop"),
             r.err);
  const ProcessResult run = pyoco({"run", flow("loop_ref_outside.yaml").string()});
  BOOST_TEST(run.exit_code == 2);
  BOOST_TEST(run.out.empty());
}

BOOST_AUTO_TEST_CASE(a_directory_is_not_a_flow_file) {
  const ProcessResult r = pyoco({"run", dir.path().string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, dir.path().string() +
                            ": error: is a directory, not a flow file (give a flow.yaml or "
                            "flow.toml)"),
             r.err);
  BOOST_TEST(!has(r.err, "empty"), r.err);
}

BOOST_AUTO_TEST_CASE(jobs_must_be_a_whole_number_from_1_to_1024) {
  for (const char* bad : {"0", "-1", "two", "1.5", "1025", "100000000"}) {
    BOOST_TEST_CONTEXT(bad) {
      const ProcessResult r = pyoco({"run", hello().string(), "--jobs", bad});
      BOOST_TEST(r.exit_code == 2);
      BOOST_TEST(has(r.err, "--jobs: expected a whole number from 1 to 1024"), r.err);
      BOOST_TEST(r.err.size() < 200u, r.err);  // no 300-digit bound
      BOOST_TEST(r.out.empty());
    }
  }
  const ProcessResult ok = pyoco({"run", hello().string(), "--jobs", "1", "--non-cute"});
  BOOST_TEST(ok.exit_code == 0, ok.err);
}

BOOST_AUTO_TEST_CASE(a_missing_plugin_path_is_a_warning_not_silence) {
  const fs::path missing = dir.path() / "no-such-plugins";
  const ProcessResult r =
      pyoco({"run", hello().string(), "--non-cute", "--plugin-path", missing.string()});
  BOOST_TEST(r.exit_code == 0, r.err);  // it goes on
  BOOST_TEST(has(r.err, "warning: --plugin-path " + missing.string() + ": no such directory"),
             r.err);
  BOOST_TEST(has(r.out, "status=COMPLETED"), r.out);
  const ProcessResult c = pyoco({"check", hello().string(), "--plugin-path", missing.string()});
  BOOST_TEST(c.exit_code == 0, c.err);
  BOOST_TEST(has(c.err, "no such directory"), c.err);
}

// A --plugin-path in a symlink loop is said as one, not as a missing directory.
BOOST_AUTO_TEST_CASE(a_plugin_path_in_a_symlink_loop_says_so) {
  fs::create_symlink(dir.path() / "b", dir.path() / "a");
  fs::create_symlink(dir.path() / "a", dir.path() / "b");
  const std::string loop = (dir.path() / "a").string();
  const ProcessResult c = pyoco({"check", hello().string(), "--plugin-path", loop});
  BOOST_TEST(c.exit_code == 0, c.err);
  BOOST_TEST(has(c.err, "warning: --plugin-path " + loop + ": Too many levels of symbolic links"),
             c.err);
  BOOST_TEST(!has(c.err, "no such directory"), c.err);
}

// A new build named like a shipped plugin, first with --plugin-path, hides
// it: a flow using a task only the shipped one has is told so, by check and
// by run.
BOOST_AUTO_TEST_CASE(a_task_only_a_shadowed_plugin_has_names_the_shadowing) {
  const fs::path shadow = fixture_dir() / "pl016_shadowed";  // a "hello" with task alpha
  for (const char* command : {"check", "run"}) {
    BOOST_TEST_CONTEXT(command) {
      const ProcessResult r = pyoco({command, hello().string(), "--plugin-path", shadow.string()});
      BOOST_TEST(r.exit_code == (command == std::string("run") ? 2 : 1), r.out << r.err);
      BOOST_TEST(has(r.err,
                     "uses \"hello/fetch_data\", which no plugin on the search path provides; "
                     "plugin 'hello' at "),
                 r.err);
      BOOST_TEST(has(r.err, " provides it but is shadowed by the one at " + shadow.string() +
                                ", which comes first on the search path and has no task "
                                "'fetch_data' (see `pyoco plugins list`)"),
                 r.err);
    }
  }
}

// A manifest whose name is no name (a control character in it) is reported
// as other broken manifests are, not left for "no plugin provides" alone.
BOOST_AUTO_TEST_CASE(a_plugin_named_with_a_control_character_is_said_to_be_skipped) {
  const fs::path plugin = dir.path() / "plugins/clean";
  fs::create_directories(plugin);
  std::ifstream in(fixture_dir() / "clean/plugin.toml");
  std::string toml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  toml.replace(toml.find("name = \"clean\""), 14, "name = \"cl\\u0000ean\"");
  std::ofstream(plugin / "plugin.toml") << toml;
  std::ofstream(dir.path() / "f.yaml")
      << "version: 1\nflow:\n  name: f\n  graph: a\ntasks:\n  a: {use: clean/alpha}\n";
  for (const char* command : {"check", "run"}) {
    BOOST_TEST_CONTEXT(command) {
      const ProcessResult r =
          pyoco({command, "f.yaml", "--plugin-path", (dir.path() / "plugins").string()});
      BOOST_TEST(r.exit_code == (command == std::string("run") ? 2 : 1), r.out << r.err);
      BOOST_TEST(has(r.err,
                     "uses \"clean/alpha\", which no plugin on the search path provides; "
                     "its plugin's manifest " +
                         (plugin / "plugin.toml").string() +
                         ":2 was skipped: name: plugin name 'cl\\x00ean' is not "
                         "[a-z][a-z0-9_]* (PL002; see `pyoco plugins lint`)"),
                 r.err);
    }
  }
}

BOOST_AUTO_TEST_CASE(json_trace_durations_are_plain_decimals) {
  const ProcessResult r = pyoco({"run", flow("chain.yaml").string(), "--trace-format", "json"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  std::istringstream lines(r.out);
  int done = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!has(line, "\"node_done\"")) continue;
    ++done;
    BOOST_TEST(std::regex_search(line, std::regex(R"("duration_ms":[0-9]+(\.[0-9]{1,3})?[,}])")),
               line);
    BOOST_TEST(!std::regex_search(line, std::regex(R"("duration_ms":[^,}]*[eE])")), line);
    BOOST_TEST(json::parse(line).at("duration_ms").is_number());
  }
  BOOST_TEST(done == 3);
}

BOOST_AUTO_TEST_CASE(graph_prints_dot_and_mermaid) {
  const ProcessResult dot = pyoco({"graph", hello().string()});
  BOOST_TEST(dot.exit_code == 0);
  BOOST_TEST(dot.out == R"(digraph "hello_pyoco" {
  rankdir=LR;
  node [shape=box];
  "fetch_data" [label="fetch_data\nhello/fetch_data"];
  "process_data" [label="process_data\nhello/process_data"];
  "fetch_data" -> "process_data";
  "save_result" [label="save_result\nhello/save_result"];
  "process_data" -> "save_result";
}
)");
  const ProcessResult mermaid = pyoco({"graph", hello().string(), "--format", "mermaid"});
  BOOST_TEST(mermaid.out == R"(flowchart LR
  fetch_data["fetch_data<br/>hello/fetch_data"]
  process_data["process_data<br/>hello/process_data"]
  fetch_data --> process_data
  save_result["save_result<br/>hello/save_result"]
  process_data --> save_result
)");
}

// A cycle's closing edge is left out of the graph check builds: graph drew
// `a >> b >> c >> a` as a -> b -> c and `a >> a` as one node, and exited 0.
// It refuses the flow as run does, with check's messages.
BOOST_AUTO_TEST_CASE(graph_refuses_a_cycle_rather_than_draw_it_wrong) {
  const std::string tasks =
      "tasks:\n  a: {use: std/echo, inputs: {value: 1}}\n  b: {use: std/echo, inputs: {value: "
      "1}}\n  c: {use: std/echo, inputs: {value: 1}}\n";
  std::ofstream(dir.path() / "cycle.yaml") << "flow: {name: c, graph: \"a >> b >> c >> a\"}\n"
                                           << tasks;
  std::ofstream(dir.path() / "self.yaml") << "flow: {name: s, graph: \"a >> a\"}\n" << tasks;
  for (const char* format : {"dot", "mermaid"}) {
    BOOST_TEST_CONTEXT(format) {
      const ProcessResult r = pyoco({"graph", "cycle.yaml", "--format", format});
      BOOST_TEST(r.exit_code == 2, r.out << r.err);
      BOOST_TEST(r.out.empty(), r.out);
      BOOST_TEST(has(r.err, "cycle.yaml:1:25: error: cycle: a -> b -> c -> a"), r.err);
      BOOST_TEST(has(r.err,
                     "pyoco graph: cycle.yaml has errors; nothing drawn (see `pyoco "
                     "check`)"),
                 r.err);
      const ProcessResult self = pyoco({"graph", "self.yaml", "--format", format});
      BOOST_TEST(self.exit_code == 2, self.out << self.err);
      BOOST_TEST(self.out.empty(), self.out);
      BOOST_TEST(has(self.err, "error: duplicate node name 'a'"), self.err);
    }
  }
  // check says the same of it.
  const ProcessResult check = pyoco({"check", "cycle.yaml"});
  BOOST_TEST(has(check.err, "cycle.yaml:1:25: error: cycle: a -> b -> c -> a"), check.err);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- docs/flows.md, as a user reads it ---------------------------------------
// Its examples are run as written there, and what it shows a command print
// is compared with what the command prints (run ids and durations masked).

namespace {

// The body of the first fenced block of docs/<page> that holds `needle`, or
// of the `after`-th block after it.
std::string doc_block(const char* page, const std::string& needle, int after = 0) {
  std::ifstream in(source_dir() / "docs" / page);
  std::vector<std::string> blocks;
  std::string line, body;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      if (inside) blocks.push_back(body);
      inside = !inside;
      body.clear();
    } else if (inside) {
      body += line + "\n";
    }
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (has(blocks[i], needle)) {
      BOOST_TEST_REQUIRE(i + after < blocks.size());
      return blocks[i + after];
    }
  }
  BOOST_FAIL("docs/" << page << " has no block with " << needle);
  return {};
}

// A console block without its `$ command` line.
std::string printed(std::string block) {
  if (block.rfind("$ ", 0) == 0) block = block.substr(block.find('\n') + 1);
  return block;
}

std::vector<std::string> sorted_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

void write_file(const fs::path& file, const std::string& text) { std::ofstream(file) << text; }

}  // namespace

BOOST_FIXTURE_TEST_CASE(docs_traces_of_the_examples_are_what_runs_print, RunFixture) {
  // The seed example and the retry and timeout examples: one order only.
  const ProcessResult hello_run =
      run_pyoco({"run", "examples/hello/flow.yaml", "--cute"},
                {.cwd = source_dir(),
                 .env = {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()},
                         {"PYOCO_HOME", (dir.path() / "home").string()}}});
  BOOST_TEST(hello_run.exit_code == 0, hello_run.err);
  BOOST_TEST(mask(hello_run.out) ==
             mask(printed(doc_block("flows.md", "$ pyoco run examples/hello/flow.yaml"))));

  struct Example {
    const char* file;    // the flow's name in the trace
    const char* needle;  // a line of its flow.yaml in the docs
    int exit_code;
  };
  for (const Example& e :
       {Example{"flaky.yaml", "name: flaky", 0}, Example{"timeout.yaml", "timeout_sec: 0.2}", 1}}) {
    BOOST_TEST_CONTEXT(e.file) {
      write_file(dir.path() / e.file, doc_block("flows.md", e.needle));
      const ProcessResult r = pyoco({"run", e.file, "--cute"});
      BOOST_TEST(r.exit_code == e.exit_code, r.err);
      BOOST_TEST(mask(r.out) == mask(doc_block("flows.md", e.needle, 1)));
    }
  }

  // isolate_demo: risky and safe run at once, so only the lines are the docs';
  // their order is the run's.
  write_file(dir.path() / "isolate.yaml", doc_block("flows.md", "name: isolate_demo"));
  const ProcessResult isolate = pyoco({"run", "isolate.yaml", "--cute"});
  BOOST_TEST(isolate.exit_code == 1, isolate.err);
  const std::string shown = mask(doc_block("flows.md", "name: isolate_demo", 1));
  BOOST_TEST(sorted_lines(mask(isolate.out)) == sorted_lines(shown),
             boost::test_tools::per_element());
  BOOST_TEST(mask(isolate.out).rfind("🐇 pyoco > start flow=isolate_demo run_id=<run_id>\n", 0) ==
             0u);
  BOOST_TEST(isolate.out.ends_with("💥 failed flow=isolate_demo (risky)\n"), isolate.out);
  // ... and its plan.
  const ProcessResult plan = pyoco({"check", "isolate.yaml", "--dry-run"});
  BOOST_TEST(plan.exit_code == 0, plan.err);
  BOOST_TEST(plan.out == printed(doc_block("flows.md", "$ pyoco check isolate.yaml --dry-run")));

  // The JSON trace's first lines, field by field.
  const ProcessResult json_run = pyoco({"run", hello().string(), "--trace-format", "json"});
  BOOST_TEST_REQUIRE(json_run.exit_code == 0, json_run.err);
  auto masked_json = [](std::string s) {
    s = std::regex_replace(s, std::regex(R"("ts":"[0-9T:.Z-]+")"), R"("ts":"<ts>")");
    return mask(s);
  };
  const std::string doc_json = masked_json(doc_block("flows.md", "\"event\":\"run_start\""));
  BOOST_TEST(masked_json(json_run.out).rfind(doc_json, 0) == 0u, json_run.out);
}

BOOST_FIXTURE_TEST_CASE(docs_cancel_trace_is_what_ctrl_c_prints, RunFixture) {
  ChildProcess p({pyoco_exe().string(), "run", flow("sleepy.yaml").string(), "--cute"},
                 {{"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}, {"PYOCO_PLUGIN_PATH", ""}},
                 dir.path());
  BOOST_TEST_REQUIRE(p.wait_for_output("🏃 start node=nap"), p.out() << p.err());
  p.send_signal(SIGINT);
  BOOST_TEST(p.wait() == 130, p.out() << p.err());
  BOOST_TEST(mask(p.out()) == mask(doc_block("flows.md", "🛑 cancelling flow=sleepy")));
}

BOOST_FIXTURE_TEST_CASE(docs_check_output_is_what_check_prints, RunFixture) {
  ProcessOptions in_source{.cwd = source_dir()};
  const ProcessResult unchecked = run_pyoco({"check", "tests/e2e/flows/unchecked.yaml"}, in_source);
  BOOST_TEST(unchecked.exit_code == 1);
  BOOST_TEST(unchecked.out + unchecked.err ==
             printed(doc_block("flows.md", "$ pyoco check tests/e2e/flows/unchecked.yaml")));

  // The --json form: these keys, in this order.
  const ProcessResult as_json =
      run_pyoco({"check", "tests/e2e/flows/unchecked.yaml", "--json"}, in_source);
  const json::object v = json::parse(as_json.out).as_object();
  std::vector<std::string> keys;
  for (const auto& kv : v) keys.emplace_back(kv.key());
  BOOST_TEST(keys == (std::vector<std::string>{"file", "flow", "ok", "status", "errors", "warnings",
                                               "diagnostics"}),
             boost::test_tools::per_element());
  BOOST_TEST(v.at("file").as_string() == "tests/e2e/flows/unchecked.yaml");
  BOOST_TEST(v.at("status").as_string() == "error");
  BOOST_TEST(v.at("flow").as_string() == "unchecked");
  const json::object& first = v.at("diagnostics").at(0).as_object();
  keys.clear();
  for (const auto& kv : first) keys.emplace_back(kv.key());
  BOOST_TEST(keys == (std::vector<std::string>{"severity", "file", "line", "column", "message"}),
             boost::test_tools::per_element());
  BOOST_TEST(first.at("message").as_string() ==
             "task 'a' uses \"std/nope\", which no plugin on the search path provides (see "
             "`pyoco tasks`)");

  // A misspelt key, and pyoco 0.7's flows: and discovery:.
  write_file(dir.path() / "flow.yaml",
             "version: 1\nflow:\n  nme: hello\n  graph: a\ntasks:\n  a: {use: \"std/echo\"}\n");
  const ProcessResult nme = pyoco({"check", "flow.yaml"});
  BOOST_TEST(nme.exit_code == 1);
  BOOST_TEST(nme.out + nme.err == printed(doc_block("flows.md", "$ pyoco check flow.yaml")));
  write_file(dir.path() / "flow.yaml", "flows:\n  - name: x\n");
  BOOST_TEST(has(pyoco({"check", "flow.yaml"}).err,
                 doc_block("flows.md", "error: flows: one flow per file").substr(0, 80)));

  // `pyoco run` checks first.
  fs::copy_file(flow("unchecked.yaml"), dir.path() / "flow.yaml",
                fs::copy_options::overwrite_existing);
  const ProcessResult run = pyoco({"run", "flow.yaml"});
  BOOST_TEST(run.exit_code == 2);
  BOOST_TEST(has(run.err, "pyoco run: flow.yaml has errors; nothing ran (see `pyoco check`)\n"),
             run.err);

  // Exit code 2: usage.
  BOOST_TEST(pyoco({"check"}).exit_code == 2);
  BOOST_TEST(pyoco({"check", "flow.yaml", "--no-such-option"}).exit_code == 2);
}

// "`pyoco check` warns when an expression reads a param that is not in
// flow.defaults (nor given with --param)"; `check` takes --param and
// --params-file like `run`.
BOOST_FIXTURE_TEST_CASE(check_warns_of_a_param_no_one_sets, RunFixture) {
  write_file(dir.path() / "f.yaml",
             "flow:\n  name: f\n  graph: \"switch(on={{mode}}) { a: x; default: y; }\"\n"
             "tasks:\n  x: {use: \"std/echo\"}\n  y: {use: \"std/echo\"}\n");
  const ProcessResult unset = pyoco({"check", "f.yaml"});
  BOOST_TEST(unset.exit_code == 0, unset.err);  // a warning, not an error
  BOOST_TEST(has(unset.out + unset.err,
                 "f.yaml:3:23: warning: 'mode' is not a param in flow.defaults: the run fails "
                 "when it reads it (pass --param mode=...)\n"),
             unset.out << unset.err);
  write_file(dir.path() / "p.json", R"({"mode": "a"})");
  for (const std::vector<std::string>& given : {std::vector<std::string>{"-p", "mode=a"},
                                                {"--param", "mode=a"},
                                                {"--params-file", "p.json"}}) {
    BOOST_TEST_CONTEXT(given[0]) {
      std::vector<std::string> args = {"check", "f.yaml"};
      args.insert(args.end(), given.begin(), given.end());
      const ProcessResult set = pyoco(args);
      BOOST_TEST(set.exit_code == 0, set.err);
      BOOST_TEST(!has(set.out + set.err, "warning"), set.out << set.err);
    }
  }
}

// The examples of "Named nodes", "The flow file" (TOML) and "Control node
// names" run as written; the plan indents switch cases and loop bodies.
BOOST_FIXTURE_TEST_CASE(docs_flow_examples_run, RunFixture) {
  write_file(dir.path() / "named.yaml", doc_block("flows.md", "name: named"));
  const ProcessResult named = pyoco({"run", "named.yaml", "--cute"});
  BOOST_TEST(named.exit_code == 0, named.out << named.err);
  BOOST_TEST(has(named.out, "🏃 start node=first\n"), named.out);
  BOOST_TEST(has(named.out, "🏃 start node=last\n"), named.out);

  write_file(dir.path() / "control.yaml", doc_block("flows.md", "name: control"));
  const ProcessResult control = pyoco({"run", "control.yaml", "--non-cute"});
  BOOST_TEST(control.exit_code == 0, control.out << control.err);
  BOOST_TEST(has(control.out, "INFO pyoco start node=quick\n"), control.out);
  BOOST_TEST(has(control.out, "INFO pyoco start node=load[2]\n"), control.out);
  BOOST_TEST(has(control.out, "status=COMPLETED"), control.out);
  const ProcessResult plan = pyoco({"check", "control.yaml", "--dry-run"});
  BOOST_TEST(plan.exit_code == 0, plan.out << plan.err);
  BOOST_TEST(has(plan.out, "case \"fast\":"), plan.out);
  BOOST_TEST(has(plan.out, "each iteration:"), plan.out);

  // The TOML block is tests/e2e/flows/loops.toml, comments aside.
  std::ifstream toml(flow("loops.toml"));
  std::string file;
  for (std::string line; std::getline(toml, line);) {
    if (line.rfind("#", 0) != 0) file += line + "\n";
  }
  BOOST_TEST(file == doc_block("flows.md", "name = \"loops\""));
}

// "The trace": which flag wins, and --trace-file follows --trace-format json.
BOOST_FIXTURE_TEST_CASE(trace_flags_win_as_the_docs_say, RunFixture) {
  struct Case {
    std::vector<std::string> flags;
    const char* env;    // PYOCO_CUTE, or nullptr
    const char* first;  // how the first line starts
  };
  const std::vector<Case> table = {
      {{"--trace-format", "json", "--cute"}, nullptr, "{\"ts\":"},
      {{"--trace-format", "json", "--non-cute"}, nullptr, "{\"ts\":"},
      {{"--non-cute", "--cute"}, nullptr, "INFO pyoco start"},
      {{"--trace-format", "plain", "--cute"}, nullptr, "INFO pyoco start"},
      {{"--trace-format", "cute"}, nullptr, "🐇 pyoco > start"},
      {{"--trace-format", "cute"}, "0", "🐇 pyoco > start"},
      {{"--cute"}, "0", "🐇 pyoco > start"},
      {{}, "0", "INFO pyoco start"},
      {{}, nullptr, "INFO pyoco start"},  // not a terminal
  };
  for (const Case& c : table) {
    std::string what;
    for (const auto& f : c.flags) what += f + " ";
    BOOST_TEST_CONTEXT(what << (c.env ? "PYOCO_CUTE=" : "") << (c.env ? c.env : "")) {
      std::vector<std::string> args = {"run", hello().string()};
      args.insert(args.end(), c.flags.begin(), c.flags.end());
      ProcessOptions o;
      o.cwd = dir.path();
      o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "artifacts").string();
      if (c.env != nullptr) {
        o.env["PYOCO_CUTE"] = c.env;
      } else {
        o.unset_env = {"PYOCO_CUTE"};
      }
      const ProcessResult r = run_pyoco(args, o);
      BOOST_TEST(r.exit_code == 0, r.err);
      BOOST_TEST(r.out.rfind(c.first, 0) == 0u, r.out);
    }
  }
  // JSON with --trace-format json, appended to what the file holds.
  const fs::path file = dir.path() / "trace.jsonl";
  for (int run = 0; run < 2; ++run) {
    const ProcessResult r =
        pyoco({"run", hello().string(), "--trace-format", "json", "--trace-file", file.string()});
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  }
  std::ifstream in(file);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    BOOST_TEST(json::parse(line).is_object(), line);
  }
  BOOST_TEST(lines == 2 * 11);  // two runs of hello: 11 events each
}

// "--artifact-dir DIR: DIR/<run_id>/... (else PYOCO_ARTIFACT_DIR, else
// .pyoco/artifacts)".
BOOST_FIXTURE_TEST_CASE(artifacts_go_where_the_docs_say, RunFixture) {
  write_file(dir.path() / "save.yaml",
             "flow:\n  name: save\n  graph: s\ntasks:\n  s: {use: \"std/write_file\", inputs: "
             "{name: \"out.txt\", content: \"hi\"}}\n");
  struct Case {
    const char* id;
    bool flag, env;
    fs::path expected;
  };
  const std::vector<Case> table = {
      {"both", true, true, dir.path() / "flag/both/out.txt"},
      {"env", false, true, dir.path() / "env/env/out.txt"},
      {"neither", false, false, dir.path() / ".pyoco/artifacts/neither/out.txt"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.id) {
      std::vector<std::string> args = {"run", "save.yaml", "--run-id", c.id};
      if (c.flag) args.insert(args.end(), {"--artifact-dir", "flag"});
      ProcessOptions o;
      o.cwd = dir.path();
      if (c.env) {
        o.env["PYOCO_ARTIFACT_DIR"] = (dir.path() / "env").string();
      } else {
        o.unset_env = {"PYOCO_ARTIFACT_DIR"};
      }
      const ProcessResult r = run_pyoco(args, o);
      BOOST_TEST(r.exit_code == 0, r.out << r.err);
      BOOST_TEST(fs::is_regular_file(c.expected), c.expected);
    }
  }
  BOOST_TEST(!fs::exists(dir.path() / "env/both"));
}

// "Drawing": -f is --format; a switch or loop is a diamond with its bodies
// as clusters (dashed edges); OR-join edges are dotted and labelled `any`.
BOOST_FIXTURE_TEST_CASE(graph_draws_joins_switches_and_loops_as_the_docs_say, RunFixture) {
  write_file(
      dir.path() / "g.yaml",
      "flow:\n  name: g\n  graph: |\n    (a | b) >> c\n    pick: switch(on={{m}}) { x: a2: a; "
      "default: b2: b; }\ntasks:\n  a: {use: \"std/echo\"}\n  b: {use: \"std/echo\"}\n"
      "  c: {use: \"std/echo\"}\n");
  const ProcessResult dot = pyoco({"graph", "g.yaml"});
  BOOST_TEST(dot.exit_code == 0, dot.err);
  BOOST_TEST(has(dot.out, "\"a\" -> \"c\" [style=dotted, label=\"any\"];"), dot.out);
  BOOST_TEST(has(dot.out, "[shape=diamond, label=\"pick\"]"), dot.out);
  BOOST_TEST(has(dot.out, "subgraph cluster_"), dot.out);
  BOOST_TEST(has(dot.out, "[style=dashed];"), dot.out);
  const ProcessResult mermaid = pyoco({"graph", "g.yaml", "-f", "mermaid"});
  BOOST_TEST(mermaid.exit_code == 0, mermaid.err);
  BOOST_TEST(mermaid.out.rfind("flowchart LR\n", 0) == 0u, mermaid.out);
  BOOST_TEST(has(mermaid.out, "a -. any .-> c"), mermaid.out);
  BOOST_TEST(mermaid.out == pyoco({"graph", "g.yaml", "--format", "mermaid"}).out);
  BOOST_TEST(has(pyoco({"graph", "g.yaml", "-f", "svg"}).err, "svg"));
}
