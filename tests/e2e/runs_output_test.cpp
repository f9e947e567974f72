// `pyoco runs output` and `runs show --json` give a task's whole output, not
// the trace's 200-character summary; and a param given with --secret is
// masked as *** in everything pyoco writes, while tasks still get it.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include "process.hpp"
#include "runs_fixture.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// A run history of its own, and flow files written into it.
struct Fixture : RunsFixture {
  fs::path flow(const std::string& name, const std::string& text) {
    write_text(dir.path() / name, text);
    return dir.path() / name;
  }
};

const json::object* task_of(const json::object& run, const std::string& node) {
  for (const auto& t : run.at("tasks").as_array()) {
    if (t.at("node").as_string() == node) return &t.as_object();
  }
  return nullptr;
}

// An output of ~500 bytes: far past the 200-character summary.
const std::string kRow = std::string(110, 'x');
const std::string kBigFlow = R"(flow:
  name: big
  defaults: {items: [10, 20]}
  graph: "make >> foreach(over={{items}}, item=value) { each } >> broken"
tasks:
  make:
    use: std/echo
    inputs:
      value: {name: "carrot", rows: [)" +
                             kRow + ", " + kRow + ", " + kRow + ", " + kRow +
                             R"(], n: 3, ok: true, none: null}
  each: {use: std/echo}
  broken: {use: std/fail}
)";
const std::string kMake = R"({"name":"carrot","rows":[")" + kRow + R"(",")" + kRow + R"(",")" +
                          kRow + R"(",")" + kRow + R"("],"n":3,"ok":true,"none":null})";

}  // namespace

BOOST_FIXTURE_TEST_CASE(whole_outputs_are_kept_and_printed, Fixture) {
  const fs::path f = flow("big.yaml", kBigFlow);
  ProcessResult r = pyoco({"run", f.string(), "--run-id", "big-1"});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);  // `broken` fails, after the rest

  r = pyoco({"runs", "output", "big-1", "make"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out == kMake + "\n");

  // Loop iterations by their node names, and the loop's own output.
  r = pyoco({"runs", "output", "big-1", "each[1]"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out == "20\n");
  r = pyoco({"runs", "output", "big-1", "foreach_1"});
  BOOST_TEST(r.out == "[10,20]\n", r.err);

  // All of them, by node; the failed task has none.
  r = pyoco({"runs", "output", "big"});
  BOOST_TEST(r.exit_code == 0, r.err);
  const json::object all = json::parse(r.out).as_object();
  BOOST_TEST(json::serialize(all.at("make")) == kMake);
  BOOST_TEST(all.at("each[0]").as_int64() == 10);
  BOOST_TEST(!all.contains("broken"));

  // runs show --json: the whole value, and the summary beside it.
  const json::object run = show_json("big-1");
  const json::object* make = task_of(run, "make");
  BOOST_TEST_REQUIRE(make != nullptr);
  BOOST_TEST(json::serialize(make->at("output")) == kMake);
  BOOST_TEST(make->at("output_summary").as_string().size() <= 210u);
  BOOST_TEST(task_of(run, "broken")->at("output").is_null());

  // A task that did not succeed, and one that does not exist.
  r = pyoco({"runs", "output", "big-1", "broken"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err, "broken has no output: it is FAILED"), r.err);
  r = pyoco({"runs", "output", "big-1", "nope"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "run big-1 has no task nope"), r.err);
  r = pyoco({"runs", "output", "no-such-run"});
  BOOST_TEST(r.exit_code == 2);
}

BOOST_FIXTURE_TEST_CASE(outputs_past_the_limits_keep_their_size_only, Fixture) {
  env["PYOCO_MAX_OUTPUT_BYTES"] = "100";
  const fs::path f = flow("big.yaml", kBigFlow);
  pyoco({"run", f.string(), "--run-id", "capped"});

  ProcessResult r = pyoco({"runs", "output", "capped", "make"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err ==
             "pyoco runs output: the output of make was not kept: more than "
             "PYOCO_MAX_OUTPUT_BYTES=100 bytes as JSON\n");
  r = pyoco({"runs", "output", "capped", "each[0]"});  // small ones still are
  BOOST_TEST(r.out == "10\n");
  const json::object capped = show_json("capped");
  const json::object* make = task_of(capped, "make");
  BOOST_TEST_REQUIRE(make != nullptr);
  BOOST_TEST(make->at("output").is_null());
  BOOST_TEST(make->at("output_bytes").as_int64() == 101);  // measured no further than the limit
  BOOST_TEST(make->at("output_dropped").as_string() == "PYOCO_MAX_OUTPUT_BYTES=100");
  // Params are kept to the same size: past it, what they were is said.
  BOOST_TEST(capped.at("params") == json::parse(R"({"items":[10,20]})"), capped.at("params"));
  pyoco({"run", f.string(), "--run-id", "wordy", "-p", "note=" + std::string(200, 'n')});
  const json::object wordy = show_json("wordy");
  BOOST_TEST(wordy.at("params") ==
                 json::parse(R"({"params_not_kept": "the params were 227 bytes as JSON, )"
                             R"(more than PYOCO_MAX_OUTPUT_BYTES=100"})"),
             wordy.at("params"));

  // The run's budget: the first outputs fit, the ones past it do not.
  env.erase("PYOCO_MAX_OUTPUT_BYTES");
  env["PYOCO_MAX_RUN_OUTPUT_BYTES"] = std::to_string(kMake.size() + 3);
  pyoco({"run", f.string(), "--run-id", "budget"});
  BOOST_TEST(pyoco({"runs", "output", "budget", "make"}).exit_code == 0);
  BOOST_TEST(pyoco({"runs", "output", "budget", "each[0]"}).out == "10\n");
  r = pyoco({"runs", "output", "budget", "each[1]"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(has(r.err, "was not kept: 2 bytes, past PYOCO_MAX_RUN_OUTPUT_BYTES=" +
                            std::to_string(kMake.size() + 3) + " with the run's other outputs"),
             r.err);

  env["PYOCO_MAX_OUTPUT_BYTES"] = "lots";
  r = pyoco({"run", f.string()});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "PYOCO_MAX_OUTPUT_BYTES=lots: expected a whole number"), r.err);
}

// The secret appears in a log line, an error, an output and the params; the
// task that writes it to an artifact gets the real value.
const char* kSecretFlow = R"(flow:
  name: secretive
  graph: "say >> save >> leak"
tasks:
  say: {use: std/echo, inputs: {value: "$ctx.params.token", message: "$ctx.params.token"}}
  save: {use: std/write_file, inputs: {name: token.txt, content: "$ctx.params.token"}}
  leak: {use: std/fail, inputs: {message: "$ctx.params.token"}}
)";

BOOST_FIXTURE_TEST_CASE(secrets_are_masked_everywhere_pyoco_writes, Fixture) {
  const std::string secret = "s3cr3t-t0k3n-1234";
  const fs::path f = flow("secret.yaml", kSecretFlow);
  const fs::path trace = dir.path() / "trace.jsonl";
  ProcessResult r = pyoco({"run", f.string(), "--run-id", "sec-1", "--secret", "token=" + secret,
                           "--trace-format", "json", "--trace-file", trace.string()});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);  // `leak` fails, with the secret as its message
  BOOST_TEST(!has(r.out + r.err, secret), r.out << r.err);
  BOOST_TEST(has(r.out, "***"), r.out);
  const std::string file = read_text(trace);
  BOOST_TEST(!has(file, secret));
  BOOST_TEST(has(file, R"("message":"***")"), file);

  const ProcessResult show = pyoco({"runs", "show", "sec-1", "--json"});
  BOOST_TEST(!has(show.out, secret), show.out);
  const json::object run = json::parse(show.out).as_object();
  BOOST_TEST(json::serialize(run.at("params")) == R"({"token":"***"})");
  BOOST_TEST(json::serialize(task_of(run, "say")->at("output")) == R"("***")");
  const std::string error(task_of(run, "leak")->at("error").as_string());
  BOOST_TEST(has(error, "***"), error);
  for (const std::vector<std::string>& args : {std::vector<std::string>{"runs", "show", "sec-1"},
                                               {"runs", "logs", "sec-1"},
                                               {"runs", "output", "sec-1"}}) {
    r = pyoco(args);
    BOOST_TEST(!has(r.out, secret), r.out);
  }
  BOOST_TEST(has(pyoco({"runs", "logs", "sec-1"}).out, "say: ***\n"));
  // Nothing in the history file holds it.
  BOOST_TEST(
      !has(read_text(dir.path() / "home/state.db") + read_text(dir.path() / "home/state.db-wal"),
           secret));
  // The task received the real value.
  BOOST_TEST(read_text(dir.path() / "a/sec-1/token.txt") == secret);
}

// Texts cut before they are masked: std/shell's last 400 bytes of stderr
// (cut inside a long secret, and just after the start of a short one), the
// 200-character output summary, and an artifact named after a secret. Not
// even part of a secret may show.
const char* kCutFlow = R"yaml(flow:
  name: cuts
  graph: "show >> save >> (long & short)"
tasks:
  show: {use: std/echo, inputs: {value: "$ctx.params.TOKEN"}}
  save: {use: std/write_file, inputs: {name: "$ctx.params.NAME", content: "x"}}
  long:
    use: std/shell
    fail_policy: isolate
    inputs: {command: "printf '%s--' \"$TOKEN\" >&2; exit 1"}
  short:
    use: std/shell
    fail_policy: isolate
    inputs: {command: "printf '%s%0394d' \"$SHORT\" 0 >&2; exit 1"}
)yaml";

// Some run of `min` bytes of `secret` that `text` holds, or empty.
std::string part_of(const std::string& secret, const std::string& text, std::size_t min) {
  for (std::size_t i = 0; i + min <= secret.size(); ++i) {
    if (has(text, secret.substr(i, min))) return secret.substr(i, min);
  }
  return {};
}

BOOST_FIXTURE_TEST_CASE(no_part_of_a_secret_shows_where_a_text_was_cut, Fixture) {
  std::string token;
  for (int i = 0; token.size() < 400; ++i) token += "T" + std::to_string(i * 7919 % 10007) + "k";
  token.resize(400);
  const std::string short_secret = "sh0rt-Zq9w";  // the shell keeps its last 6 bytes
  const std::string name = "nm-Vb7Pq2Lx.txt";
  env["TOKEN"] = token;
  env["SHORT"] = short_secret;
  env["NAME"] = name;
  const fs::path f = flow("cuts.yaml", kCutFlow);
  const fs::path trace = dir.path() / "trace.jsonl";
  ProcessResult r =
      pyoco({"run", f.string(), "--run-id", "cut-1", "--secret", "TOKEN", "--secret", "SHORT",
             "--secret", "NAME", "--trace-format", "json", "--trace-file", trace.string()});
  BOOST_TEST(r.exit_code == 1, r.out << r.err);
  const ProcessResult show = pyoco({"runs", "show", "cut-1", "--json"});
  const ProcessResult artifacts = pyoco({"runs", "artifacts", "cut-1", "--json"});
  BOOST_TEST_REQUIRE(show.exit_code == 0, show.err);
  const std::map<std::string, std::string> texts{{"console", r.out + r.err},
                                                 {"trace file", read_text(trace)},
                                                 {"runs show --json", show.out},
                                                 {"runs artifacts --json", artifacts.out}};
  for (const auto& [where, text] : texts) {
    BOOST_TEST(part_of(token, text, 8).empty(), where << ": " << part_of(token, text, 8));
    BOOST_TEST(part_of(short_secret, text, 4).empty(), where << ": " << text);
    BOOST_TEST(part_of(name, text, 8).empty(), where << ": " << text);
  }
  const json::object run = json::parse(show.out).as_object();
  BOOST_TEST(json::serialize(task_of(run, "show")->at("output")) == R"("***")");
  BOOST_TEST(task_of(run, "show")->at("output_summary").as_string() == R"("***")");
  BOOST_TEST(task_of(run, "long")->at("error").as_string() == "command exited 1: ...***--");
  const std::string short_error(task_of(run, "short")->at("error").as_string());
  BOOST_TEST(short_error.starts_with("command exited 1: ...***000"), short_error);
  BOOST_TEST(has(artifacts.out, R"("name":"***")"), artifacts.out);
  // The tasks had the real values.
  BOOST_TEST(fs::exists(dir.path() / "a/cut-1" / name));
}

BOOST_FIXTURE_TEST_CASE(a_secret_from_the_environment_and_bad_secrets, Fixture) {
  const fs::path f = flow("secret.yaml", kSecretFlow);
  env["API_TOKEN"] = "from-the-env-0001";
  ProcessResult r = pyoco({"run", f.string(), "--run-id", "sec-env", "--secret", "API_TOKEN",
                           "--param", "token=$never"});
  BOOST_TEST(!has(r.out, "from-the-env-0001"), r.out);
  const json::object run = show_json("sec-env");
  BOOST_TEST(run.at("params").at("API_TOKEN").as_string() == "***");

  r = pyoco({"run", f.string(), "--secret", "NOT_SET_ANYWHERE"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "--secret NOT_SET_ANYWHERE: no environment variable NOT_SET_ANYWHERE"),
             r.err);
  r = pyoco({"run", f.string(), "--secret", "token=abc"});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "--secret token: a secret must be at least 4 bytes long"), r.err);
  // One value per --secret: the flow file is not swallowed.
  r = pyoco({"run", "--secret", "token=abcdef", f.string(), "--run-id", "sec-order"});
  BOOST_TEST(r.exit_code == 1, r.err);  // ran (and `leak` failed)
}

namespace {

std::string nested_list(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

json::value parse_deep(const std::string& text) {
  json::parse_options options;
  options.max_depth = 100;
  return json::parse(text, {}, options);
}

}  // namespace

// Values up to 64 levels deep, the documented limit, are kept whole in the
// history: boost::json's default depth of 32 made a 40-level output null, a
// 32-level param a string in the JSON views, and -p of 33 levels a string.
BOOST_FIXTURE_TEST_CASE(values_up_to_64_levels_deep_are_kept, Fixture) {
  std::string value = "1";
  for (int i = 0; i < 40; ++i) value = "{a: " + value + "}";
  const fs::path f = flow("deep.yaml",
                          "flow: {name: deep, graph: a}\ntasks:\n  a: {use: std/echo, "
                          "inputs: {value: " +
                              value + "}}\n");
  write_text(dir.path() / "params.json", R"({"x":)" + nested_list(32) + "}");
  ProcessResult r = pyoco({"run", f.string(), "--run-id", "deep-1", "--params-file",
                           (dir.path() / "params.json").string(), "-p", "y=" + nested_list(60)});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);

  r = pyoco({"runs", "output", "deep-1", "a"});
  BOOST_TEST(r.exit_code == 0, r.err);
  std::string expected = "1";
  for (int i = 0; i < 40; ++i) expected = R"({"a":)" + expected + "}";
  BOOST_TEST(r.out == expected + "\n");

  r = pyoco({"runs", "list", "--json"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  const json::value listed = parse_deep(r.out).as_array().at(0).at("params");
  BOOST_TEST_REQUIRE(listed.is_object(), r.out);
  BOOST_TEST(json::serialize(listed.at("x")) == nested_list(32));
  BOOST_TEST(json::serialize(listed.at("y")) == nested_list(60));  // not a string
  r = pyoco({"runs", "show", "deep-1", "--json"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  const json::value shown = parse_deep(r.out).at("params");
  BOOST_TEST_REQUIRE(shown.is_object(), r.out);
  BOOST_TEST(json::serialize(shown.at("y")) == nested_list(60));

  // Past the limit: an error that says so, not a string.
  r = pyoco({"run", f.string(), "-p", "y=" + nested_list(65)});
  BOOST_TEST(r.exit_code == 2, r.out << r.err);
  BOOST_TEST(has(r.err, "y: nested more than 64 levels deep"), r.err);
  write_text(dir.path() / "deep.json", R"({"x":)" + nested_list(65) + "}");
  r = pyoco({"run", f.string(), "--params-file", (dir.path() / "deep.json").string()});
  BOOST_TEST(r.exit_code == 2, r.out << r.err);
  BOOST_TEST(has(r.err, "nested more than 64 levels deep"), r.err);
}

// A secret with a byte that is not UTF-8: the params line of the trace was
// made valid UTF-8 before it was masked, and its last 2 bytes showed
// (`***\xEF\xBF\xBDkl`). Masked in the value first, none of it shows.
BOOST_FIXTURE_TEST_CASE(a_secret_that_is_not_utf8_is_masked_whole_in_the_params, Fixture) {
  const std::string secret = "s3cr3t\xFFtok3nkl";
  env["TOKEN"] = secret;
  const fs::path f = flow("p.yaml", "flow: {name: p, graph: a}\ntasks:\n  a: {use: std/echo}\n");
  const fs::path trace = dir.path() / "trace.txt";
  ProcessResult r = pyoco({"run", f.string(), "--run-id", "bad-utf8", "--secret", "TOKEN",
                           "--trace-format", "json", "--trace-file", trace.string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  for (const std::string& text : {r.out, read_text(trace)}) {
    BOOST_TEST(!has(text, "kl"), text);
    BOOST_TEST(!has(text, "\xEF\xBF\xBD"), text);  // no U+FFFD of the secret's byte
  }
  // The params line of `runs show`, from the run's start event.
  r = pyoco({"runs", "show", "bad-utf8"});
  BOOST_TEST(has(r.out, R"({"TOKEN":"***"})"), r.out);
  BOOST_TEST(!has(r.out, "kl"), r.out);
  r = pyoco({"runs", "show", "bad-utf8", "--json"});
  BOOST_TEST(json::serialize(json::parse(r.out).at("params")) == R"({"TOKEN":"***"})", r.out);
}

namespace {

// `pyoco args...` with its standard output on /dev/full.
ProcessResult to_dev_full(const Fixture& f, std::vector<std::string> args,
                          const std::string& redirect = ">/dev/full") {
  std::vector<std::string> argv{"/bin/bash", "-c", "set -o pipefail; \"$@\" " + redirect, "sh",
                                pyoco_exe().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions o;
  o.cwd = f.dir.path();
  o.env = f.env;
  o.unset_env = {"PYOCO_PLUGIN_PATH"};
  return run_process(argv, o);
}

}  // namespace

// Output lost on a full disk was an exit 0: every command now checks that
// standard output took what it printed, as coreutils do. `pyoco run`
// still runs and records the run; a reader that left (EPIPE) is no error.
BOOST_FIXTURE_TEST_CASE(a_write_error_on_stdout_fails_the_command, Fixture) {
  const fs::path f = flow("w.yaml",
                          "flow: {name: w, graph: a}\ntasks:\n  a: {use: std/echo, "
                          "inputs: {value: [1, 2], message: hi}}\n");
  ProcessResult r = to_dev_full(*this, {"run", f.string(), "--run-id", "full-1"});
  BOOST_TEST(r.exit_code == 1, r.err);
  BOOST_TEST(has(r.err, "pyoco run: cannot write to standard output: No space left on device"),
             r.err);
  const auto runs = runs_json();
  BOOST_TEST_REQUIRE(runs.size() == 1u);
  BOOST_TEST(runs[0].at("status").as_string() == "COMPLETED");  // the run itself went on

  const std::vector<std::vector<std::string>> commands = {{"runs", "output", "full-1", "a"},
                                                          {"runs", "logs", "full-1"},
                                                          {"runs", "list", "--json"},
                                                          {"runs", "show", "full-1", "--json"},
                                                          {"plugins", "list", "--json"},
                                                          {"tasks", "--json"},
                                                          {"graph", f.string()},
                                                          {"check", f.string()}};
  for (const auto& args : commands) {
    r = to_dev_full(*this, args);
    std::string name = "pyoco";
    for (const std::string& a : args) {
      if (a.starts_with("-") || a == f.string() || a == "full-1" || a == "a") break;
      name += " " + a;
    }
    BOOST_TEST(r.exit_code == 1, name << ": " << r.err);
    BOOST_TEST(has(r.err, name + ": cannot write to standard output: No space left on device"),
               name << ": " << r.err);
  }
  // A reader that leaves early is normal use: no message, no failure.
  r = to_dev_full(*this, {"run", f.string()}, "| true");
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(!has(r.err, "cannot write"), r.err);
  r = to_dev_full(*this, {"runs", "logs", "full-1"}, "| head -c 1 >/dev/null");
  BOOST_TEST(!has(r.err, "cannot write"), r.err);
}

// --trace-file naming the flow file appended the trace to the flow, which
// the next `check` refused; a FIFO nobody reads held the run for ever.
BOOST_FIXTURE_TEST_CASE(the_trace_file_is_never_the_flow_or_params_file, Fixture) {
  const std::string text = "flow: {name: t, graph: a}\ntasks:\n  a: {use: std/echo}\n";
  const fs::path f = flow("t.yaml", text);
  write_text(dir.path() / "p.json", "{\"x\": 1}");
  fs::create_symlink(f, dir.path() / "link.yaml");
  for (const fs::path& trace : {f, dir.path() / "link.yaml", dir.path() / "." / "t.yaml"}) {
    const ProcessResult r = pyoco({"run", f.string(), "--trace-file", trace.string()});
    BOOST_TEST(r.exit_code == 2, r.err);
    BOOST_TEST(has(r.err, "pyoco run: --trace-file " + trace.string() + ": is the flow file " +
                              f.string() + "; the trace would be appended to it"),
               r.err);
  }
  ProcessResult r = pyoco({"run", f.string(), "--params-file", (dir.path() / "p.json").string(),
                           "--trace-file", (dir.path() / "p.json").string()});
  BOOST_TEST(r.exit_code == 2, r.err);
  BOOST_TEST(has(r.err, ": is the params file "), r.err);
  BOOST_TEST(read_text(f) == text);
  BOOST_TEST(read_text(dir.path() / "p.json") == "{\"x\": 1}");
  BOOST_TEST(pyoco({"check", f.string()}).exit_code == 0);

  // Nor the run history's database, its WAL or its shared memory (the trace
  // appended to them broke the history), by another path or not made yet.
  BOOST_TEST_REQUIRE(pyoco({"run", f.string()}).exit_code == 0);
  const fs::path home = dir.path() / "home";
  const auto db_before = fs::file_size(home / "state.db");
  fs::create_symlink(home / "state.db", dir.path() / "db-link");
  for (const fs::path& trace :
       {home / "state.db", home / "state.db-wal", home / "state.db-shm", home / "." / "state.db",
        dir.path() / "db-link", home / "state.db-journal"}) {
    BOOST_TEST_CONTEXT(trace) {
      r = pyoco({"run", f.string(), "--trace-file", trace.string()});
      BOOST_TEST(r.exit_code == 2, r.err);
      BOOST_TEST(has(r.err, "pyoco run: --trace-file " + trace.string() + ": is "), r.err);
      BOOST_TEST(has(r.err,
                     ", a file of the run history's database; the trace would be "
                     "appended to it (choose another file)"),
                 r.err);
    }
  }
  BOOST_TEST(fs::file_size(home / "state.db") == db_before);
  BOOST_TEST(!fs::exists(home / "state.db-journal"));
  BOOST_TEST(runs_json().size() == 1u);

  const fs::path fifo = dir.path() / "fifo";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  r = pyoco({"run", f.string(), "--trace-file", fifo.string()});
  BOOST_TEST(r.exit_code == 2, r.err);
  BOOST_TEST(has(r.err, "a FIFO that no process reads"), r.err);
}

// Two histories, one artifact directory and one --run-id: the second run
// wrote over the first one's artifacts. It is refused before it starts.
BOOST_FIXTURE_TEST_CASE(a_run_id_whose_artifacts_are_there_already_is_refused, Fixture) {
  const fs::path f = flow("s.yaml",
                          "flow: {name: s, graph: save}\ntasks:\n  save: {use: "
                          "std/write_file, inputs: {name: n.txt, content: first}}\n");
  ProcessResult r = pyoco({"run", f.string(), "--run-id", "same"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  env["PYOCO_HOME"] = (dir.path() / "home2").string();
  r = pyoco({"run", f.string(), "--run-id", "same"});
  BOOST_TEST(r.exit_code == 2, r.err);
  BOOST_TEST(has(r.err, "--run-id same: artifacts of a run with this id are already there: " +
                            (dir.path() / "a" / "same").string()),
             r.err);
  BOOST_TEST(read_text(dir.path() / "a/same/n.txt") == "first");
  // Not claimed in the second history either: another id runs.
  BOOST_TEST(runs_json().empty());
  BOOST_TEST(pyoco({"run", f.string(), "--run-id", "other"}).exit_code == 0);
}
