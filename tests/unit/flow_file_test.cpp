// The flow-file loader (FLOWS.md "flow.yaml"): YAML and TOML read into the
// same FlowSpec, and every mistake is a FlowError naming file, line and key.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/graph_dsl.hpp>

#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "temp_dir.hpp"

using namespace pyoco::core;

namespace {

// Everything a FlowSpec holds except locations, as one comparable string.
std::string describe(const FlowSpec& s) {
  std::string out =
      "name=" + s.name + "\ndefaults=" + to_json_text(s.defaults) + "\ngraph=" + s.graph + "\n";
  for (const PipeSpec& p : s.pipes) out += "pipe " + p.name + "=" + p.graph + "\n";
  for (const TaskSpec& t : s.tasks) {
    out += "task " + t.name + " use=" + t.use;
    for (const InputBinding& in : t.inputs) out += " in." + in.name + "=" + to_json_text(in.value);
    for (const std::string& o : t.outputs) out += " out=" + o;
    out += " retries=" + std::to_string(t.retries) +
           " backoff=" + std::to_string(t.backoff.initial_ms) + "/" +
           std::to_string(t.backoff.factor) + "/" + std::to_string(t.backoff.max_ms) + "/" +
           (t.backoff.jitter ? "jitter" : "exact") + " timeout=" + std::to_string(t.timeout_sec) +
           " policy=" + (t.fail_policy == FailPolicy::Stop ? "stop" : "isolate") + "\n";
  }
  return out;
}

const char* kYaml = R"(version: 1
flow:
  name: hello
  defaults: {x: 1, mode: "fast", items: [1, 2.5, true, null]}
  graph: |
    fetch_data >> process_data >> save_result
pipes:
  setup: "prepare >> choose_mode"
tasks:
  fetch_data:   {use: "hello/fetch_data"}
  process_data: {use: "hello/process_data", inputs: {data: "$node.fetch_data.output"}}
  save_result:
    use: "hello/save_result"
    inputs: {result: "$node.process_data.output", n: 3, flag: false}
    outputs: ["params.saved"]
    retries: 2
    retry_backoff: {initial_ms: 100, factor: 2.0, max_ms: 5000, jitter: true}
    timeout_sec: 30
    fail_policy: isolate
)";

const char* kToml = R"(version = 1

[flow]
name = "hello"
defaults = {x = 1, mode = "fast", items = [1, 2.5, true]}
graph = """
fetch_data >> process_data >> save_result
"""

[pipes]
setup = "prepare >> choose_mode"

[tasks.fetch_data]
use = "hello/fetch_data"

[tasks.process_data]
use = "hello/process_data"
inputs = {data = "$node.fetch_data.output"}

[tasks.save_result]
use = "hello/save_result"
inputs = {result = "$node.process_data.output", n = 3, flag = false}
outputs = ["params.saved"]
retries = 2
retry_backoff = {initial_ms = 100, factor = 2.0, max_ms = 5000, jitter = true}
timeout_sec = 30
fail_policy = "isolate"
)";

struct Invalid {
  const char* file;  // its extension picks the format
  const char* text;
  const char* message;  // a fragment of FlowError::problem()
  std::uint32_t line, column;
};

}  // namespace

BOOST_AUTO_TEST_CASE(yaml_and_toml_of_one_flow_give_the_same_spec) {
  // TOML has no null: leave it out of the YAML list for this comparison.
  std::string yaml = kYaml;
  yaml.replace(yaml.find(", null]"), 7, "]");
  const FlowSpec y = parse_flow_text(yaml, "flow.yaml");
  const FlowSpec t = parse_flow_text(kToml, "flow.toml");
  BOOST_TEST(describe(y) == describe(t));
  BOOST_TEST(describe(y) ==
             "name=hello\n"
             "defaults={\"x\":1,\"mode\":\"fast\",\"items\":[1,2.5,true]}\n"
             "graph=fetch_data >> process_data >> save_result\n\n"
             "pipe setup=prepare >> choose_mode\n"
             "task fetch_data use=hello/fetch_data retries=0 "
             "backoff=100.000000/2.000000/5000.000000/jitter timeout=0.000000 policy=stop\n"
             "task process_data use=hello/process_data in.data=\"$node.fetch_data.output\" "
             "retries=0 backoff=100.000000/2.000000/5000.000000/jitter timeout=0.000000 "
             "policy=stop\n"
             "task save_result use=hello/save_result in.result=\"$node.process_data.output\" "
             "in.n=3 in.flag=false out=params.saved retries=2 "
             "backoff=100.000000/2.000000/5000.000000/jitter timeout=30.000000 policy=isolate\n");
}

BOOST_AUTO_TEST_CASE(plugins_names_the_least_version_of_each) {
  const FlowSpec f = parse_flow_text(
      "plugins: {std: \"1.2.0\", acme: \"2.0.0-rc.1\"}\nflow: {graph: a}\ntasks: {a: {use: "
      "std/echo}}\n",
      "flow.yaml");
  BOOST_REQUIRE(f.plugins.size() == 2u);
  BOOST_TEST(f.plugins[0].name == "std");
  BOOST_TEST(f.plugins[0].min_version == "1.2.0");
  BOOST_TEST(f.plugins[1].min_version == "2.0.0-rc.1");
  BOOST_TEST(f.plugins[0].where.to_string() == "flow.yaml:1:11");
  const FlowSpec t = parse_flow_text(
      "[plugins]\nstd = \"1.2.0\"\n[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"std/echo\"\n",
      "flow.toml");
  BOOST_REQUIRE(t.plugins.size() == 1u);
  BOOST_TEST(t.plugins[0].min_version == "1.2.0");
}

BOOST_AUTO_TEST_CASE(locations_point_into_the_file) {
  const FlowSpec y = parse_flow_text(kYaml, "flow.yaml");
  // The block graph's text starts on the line after `graph: |`.
  BOOST_TEST(y.graph_where.to_string() == "flow.yaml:6:5");
  BOOST_TEST(y.tasks.at(2).where.to_string() == "flow.yaml:12:3");
  BOOST_TEST(y.tasks.at(1).inputs.at(0).where.line == 11u);
  BOOST_TEST(y.pipes.at(0).where.to_string() == "flow.yaml:8:11");  // after the quote
  const FlowSpec t = parse_flow_text(kToml, "flow.toml");
  BOOST_TEST(t.graph_where.line == 7u);         // a multi-line string starts after its quotes
  BOOST_TEST(t.tasks.at(0).where.line == 13u);  // its [tasks.fetch_data] header
}

namespace {

// What foreach(over=...) of the flow's graph gives, evaluated on nothing.
std::string foreach_over(const std::string& text, const std::string& file) {
  struct Nothing : Expression::Scope {
    std::optional<Value> lookup(PathRoot, std::string_view, std::string&) const override {
      return std::nullopt;
    }
  };
  const FlowSpec f = parse_flow_text(text, file);
  const dsl::Graph g = dsl::parse_graph(f.graph, f.graph_where);
  const auto& loop = std::get<dsl::LoopTerm>(g.statements.at(0).terms.at(0));
  return to_json_text(loop.over.evaluate(Nothing()));
}

}  // namespace

// docs/flows.md "Backslashes in a flow file": an expression's string escapes
// are read after YAML or TOML has read the file's own. A block scalar, a
// plain or single-quoted YAML string and a TOML literal string pass a
// backslash through; a double-quoted YAML string and a TOML basic string
// take one themselves, so there `\\n` reaches the expression as `\n`.
BOOST_AUTO_TEST_CASE(a_graphs_escapes_reach_its_expressions_as_the_format_delivers_them) {
  const std::string want = "[\"5\\n\",\"t\\tx\",\"q's\",\"A\u00e9\"]";
  const std::vector<std::pair<std::string, std::string>> table = {
      {R"(flow:
  graph: |
    foreach(over={{['5\n', "t\tx", 'q\'s', "\x41\u00e9"]}}) { e }
)",
       "f.yaml"},
      {R"(flow:
  graph: 'foreach(over={{["5\n", "t\tx", "q\''s", "\x41\u00e9"]}}) { e }'
)",
       "f.yaml"},
      {R"(flow:
  graph: "foreach(over={{['5\\n', 't\\tx', 'q\\'s', '\\x41\\u00e9']}}) { e }"
)",
       "f.yaml"},
      {R"([flow]
graph = '''foreach(over={{['5\n', "t\tx", 'q\'s', "\x41\u00e9"]}}) { e }'''
)",
       "f.toml"},
      {R"([flow]
graph = "foreach(over={{['5\\n', 't\\tx', 'q\\'s', '\\x41\\u00e9']}}) { e }"
)",
       "f.toml"},
  };
  for (const auto& [text, file] : table) {
    BOOST_TEST_CONTEXT(text) { BOOST_TEST(foreach_over(text, file) == want); }
  }
  // A malformed escape is an error at its backslash, line and column in the file.
  try {
    foreach_over("flow:\n  graph: |\n    foreach(over={{['ok', '\\x4']}}) { e }\n", "f.yaml");
    BOOST_ERROR("parsed, but should not have");
  } catch (const FlowError& e) {
    BOOST_TEST(e.where().to_string() == "f.yaml:3:28", e.what());
    BOOST_TEST(e.problem().find("'\\x' needs exactly 2 hex digits") != std::string::npos);
  }
}

// pyoco's `use: <entry>`: an alias runs its entry's task with the entry's
// inputs under its own, the entry's outputs then its own, and the entry's
// policies unless it gives its own; aliases of aliases resolve in turn.
BOOST_AUTO_TEST_CASE(use_naming_an_entry_is_an_alias_of_it) {
  const FlowSpec f = parse_flow_text(R"(flow: {graph: "c >> b"}
tasks:
  c: {use: b, inputs: {message: own}, outputs: ["scratch.c"], retries: 1}
  b: {use: base, inputs: {value: 2}}
  base: {callable: "std:echo", inputs: {value: 1, message: base}, outputs: ["params.x"], retries: 3, timeout_sec: 5}
)",
                                     "flow.yaml");
  const TaskSpec* c = f.find_task("c");
  const TaskSpec* b = f.find_task("b");
  BOOST_TEST_REQUIRE(c != nullptr);
  BOOST_TEST_REQUIRE(b != nullptr);
  BOOST_TEST(b->use == "std/echo");
  BOOST_TEST(b->alias_of == "base");
  BOOST_TEST_REQUIRE(b->inputs.size() == 2u);
  BOOST_TEST(b->inputs[0].name == "value");
  BOOST_TEST(to_json_text(b->inputs[0].value) == "2");
  BOOST_TEST(c->use == "std/echo");
  BOOST_TEST(c->alias_of == "b");
  BOOST_TEST_REQUIRE(c->inputs.size() == 2u);
  BOOST_TEST(to_json_text(c->inputs[0].value) == "2");
  BOOST_TEST(to_json_text(c->inputs[1].value) == "\"own\"");
  BOOST_TEST(c->outputs == (std::vector<std::string>{"params.x", "scratch.c"}),
             boost::test_tools::per_element());
  BOOST_TEST(c->retries == 1u);
  BOOST_TEST(c->timeout_sec == 5.0);
}

// YAML 1.1 merge keys, as PyYAML reads them (pyoco 0.7 flows use them):
// a key the mapping gives itself wins; among merged mappings, the first.
BOOST_AUTO_TEST_CASE(yaml_merge_keys_merge_as_pyyaml_merges) {
  const FlowSpec f = parse_flow_text(R"(flow:
  graph: a >> b >> c
  defaults: {base: &d {x: 1, y: 2}, more: {<<: *d, y: 3, z: 4}}
tasks:
  a: &base
    use: std/echo
    inputs: {value: base}
    retries: 1
  b: {<<: *base, inputs: {value: own}}
  c:
    <<: [{retries: 2}, *base]
    timeout_sec: 5
)",
                                     "flow.yaml");
  BOOST_TEST(to_json_text(f.defaults.find("more")) == R"({"x":1,"y":3,"z":4})");
  const TaskSpec* b = f.find_task("b");
  const TaskSpec* c = f.find_task("c");
  BOOST_TEST_REQUIRE(b != nullptr);
  BOOST_TEST_REQUIRE(c != nullptr);
  BOOST_TEST(b->use == "std/echo");
  BOOST_TEST(b->retries == 1u);
  BOOST_TEST_REQUIRE(b->inputs.size() == 1u);
  BOOST_TEST(to_json_text(b->inputs[0].value) == "\"own\"");
  BOOST_TEST(c->use == "std/echo");
  BOOST_TEST(c->retries == 2u);
  BOOST_TEST(c->timeout_sec == 5.0);
  BOOST_TEST(to_json_text(c->inputs.at(0).value) == "\"base\"");
  // A quoted "<<" is a key like any other.
  try {
    parse_flow_text("flow: {graph: a}\ntasks:\n  a: {\"<<\": {use: p/t}}\n", "f.yaml");
    BOOST_ERROR("parsed, but should not have");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem().find("tasks.a.<<: unknown key") == 0u, e.problem());
  }
}

BOOST_AUTO_TEST_CASE(defaults_and_name_when_left_out) {
  const FlowSpec s =
      parse_flow_text("flow: {graph: a}\ntasks:\n  a: {use: \"p/t\"}\n", "some/dir/my_flow.yaml");
  BOOST_TEST(s.name == "my_flow");
  BOOST_TEST(to_json_text(s.defaults) == "{}");
  BOOST_TEST(s.tasks.at(0).retries == 0u);
  BOOST_TEST((s.tasks.at(0).fail_policy == FailPolicy::Stop));
}

// docs/flows.md "The flow file": `.toml` is TOML, every other file YAML;
// the default name is the file name up to its first `.`; flow.name is one
// printable line of at most 200 bytes; the retry_backoff bounds are inclusive.
BOOST_AUTO_TEST_CASE(format_name_and_bounds_as_the_docs_say) {
  const char* yaml = "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\"}\n";
  for (const char* file : {"dir/flow.yml", "dir/flow.txt", "dir/flow", "dir/flow.toml.yaml"}) {
    BOOST_TEST_CONTEXT(file) { BOOST_TEST(parse_flow_text(yaml, file).tasks.size() == 1u); }
  }
  BOOST_CHECK_THROW(parse_flow_text(yaml, "dir/flow.toml"), FlowError);  // not TOML
  BOOST_TEST(parse_flow_text(yaml, "dir/chain.yaml").name == "chain");
  BOOST_TEST(parse_flow_text(yaml, "dir/nightly.v2.yaml").name == "nightly");
  const std::string long_name(200, 'x');
  BOOST_TEST(parse_flow_text("flow: {graph: a, name: " + long_name + "}\n", "f.yaml").name ==
             long_name);
  try {
    parse_flow_text("flow: {graph: a, name: " + long_name + "x}\n", "f.yaml");
    BOOST_ERROR("a 201-byte name was taken");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "flow.name: must be at most 200 bytes");
  }
  const FlowSpec edges = parse_flow_text(
      "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: 1000, timeout_sec: 2592000, "
      "retry_backoff: {initial_ms: 0, factor: 1000, max_ms: 86400000}}\n  b: {use: \"p/t\", "
      "retry_backoff: {initial_ms: 86400000, factor: 1, max_ms: 0}}\n",
      "f.yaml");
  BOOST_TEST(edges.tasks.at(0).retries == 1000u);
  BOOST_TEST(edges.tasks.at(0).timeout_sec == 2592000.0);
  BOOST_TEST(edges.tasks.at(0).backoff.factor == 1000.0);
  BOOST_TEST(edges.tasks.at(1).backoff.initial_ms == 86400000.0);
}

// Every number a parser accepts is read as it is: a subnormal such as
// 1e-320 made std::stod throw out_of_range, which killed `pyoco check`
// (fuzz/regressions/flow_yaml/ and flow_toml/).
BOOST_AUTO_TEST_CASE(subnormal_numbers_are_numbers_not_a_crash) {
  const FlowSpec y = parse_flow_text(
      "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", timeout_sec: 1e-320}\n", "f.yaml");
  BOOST_TEST(y.tasks.at(0).timeout_sec > 0.0);
  BOOST_TEST(y.tasks.at(0).timeout_sec < 1e-300);
  const FlowSpec t = parse_flow_text(
      "[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"p/t\"\ntimeout_sec = 1e-320\n", "f.toml");
  BOOST_TEST(t.tasks.at(0).timeout_sec == y.tasks.at(0).timeout_sec);
  const FlowSpec d =
      parse_flow_text("flow: {graph: a, defaults: {x: 4.9e-324, y: 0.1}}\n", "f.yaml");
  BOOST_TEST(d.defaults.find("x").as_double() > 0.0);
  BOOST_TEST(d.defaults.find("y").as_double() == 0.1);  // exact, not printed and read back
}

// YAML 1.2 reads nan, inf and infinity (any case) as strings: `who: Nan`
// is a name, not a NaN that a run would record as null. TOML's nan and
// inf are refused: JSON holds neither.
BOOST_AUTO_TEST_CASE(nan_and_inf_are_strings_in_yaml_and_refused_in_toml) {
  const FlowSpec y = parse_flow_text(
      "flow: {graph: a, defaults: {who: Nan, a: nan, b: -inf, c: Infinity, d: .nan, e: 1e5, "
      "f: -2.5}}\n",
      "f.yaml");
  // 1e999 was a string too: a float out of range is refused now (below).
  for (const char* key : {"who", "a", "b", "c", "d"}) {
    BOOST_TEST(y.defaults.find(key).is_string(), key);
  }
  BOOST_TEST(y.defaults.find("who").as_string() == "Nan");
  BOOST_TEST(y.defaults.find("e").as_double() == 1e5);
  BOOST_TEST(y.defaults.find("f").as_double() == -2.5);
  for (const char* value : {"nan", "inf", "-inf"}) {
    try {
      parse_flow_text(std::string("[flow]\ngraph = \"a\"\n[flow.defaults]\nx = ") + value + "\n",
                      "f.toml");
      BOOST_ERROR("parsed " << value);
    } catch (const FlowError& e) {
      BOOST_TEST(
          e.problem().find("nan and inf are not numbers a run can record") != std::string::npos,
          e.problem());
      BOOST_TEST(e.where().line == 4u);
    }
  }
}

// A tab in an indentation: yaml-cpp says "illegal map value"; the line
// with the tab is named.
BOOST_AUTO_TEST_CASE(a_tab_in_an_indentation_is_named) {
  try {
    parse_flow_text("flow:\n  graph: a\ntasks:\n\ta: {use: std/echo}\n", "f.yaml");
    BOOST_ERROR("parsed");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem().find("line 4 is indented with a tab, which YAML does not allow") !=
                   std::string::npos,
               e.problem());
  }
}

// An unclosed '{' or '[': yaml-cpp says "end of map flow not found" where
// it gave up (the next line); the bracket is named, quotes and comments
// with brackets in them not counted (an outside tester).
BOOST_AUTO_TEST_CASE(an_unclosed_bracket_is_named_where_it_opened) {
  auto problem_of = [](const std::string& text) {
    try {
      parse_flow_text(text, "f.yaml");
    } catch (const FlowError& e) {
      return e.problem();
    }
    return std::string("parsed");
  };
  BOOST_TEST(problem_of("flow: {graph: a >> b}\ntasks:\n  a: {use: \"std/echo\", note: \"{\"  # {\n"
                        "  b: {use: std/echo}\n") ==
             "not valid YAML: end of map flow not found (the '{' at line 3, column 6 is not "
             "closed: end it with '}')");
  const std::string list = problem_of(
      "flow: {graph: a}\ntasks:\n  a:\n    use: std/echo\n"
      "    inputs:\n      value: [1, 2\n    retries: 1\n");
  BOOST_TEST(list.find("(the '[' at line 6, column 14 is not closed: end it with ']')") !=
                 std::string::npos,
             list);
}

// YAML allows a key of at most 1024 characters; yaml-cpp says only "illegal
// map value" of a longer one (an outside tester's task name of 1025).
BOOST_AUTO_TEST_CASE(a_key_past_1024_characters_is_said_so) {
  const std::string name(1025, 'n');
  for (const std::string& key : {name, "\"" + name + "\""}) {
    BOOST_TEST_CONTEXT(key.size()) {
      try {
        parse_flow_text("flow:\n  graph: " + name + "\ntasks:\n  " + key + ": {use: std/echo}\n",
                        "f.yaml");
        BOOST_FAIL("parsed");
      } catch (const FlowError& e) {
        BOOST_TEST(e.problem() == "not valid YAML: illegal map value (the key before it is " +
                                      std::to_string(key.size()) +
                                      " characters long, past the 1024 YAML allows a key: "
                                      "shorten the name)");
      }
    }
  }
  // 1024 is read.
  const std::string fits(1024, 'n');
  BOOST_TEST(
      parse_flow_text("flow:\n  graph: " + fits + "\ntasks:\n  " + fits + ": {use: std/echo}\n",
                      "f.yaml")
          .tasks.size() == 1u);
}

// A quote never closed took in the rest of the file without a word from
// yaml-cpp, and the error named something else ("flow.graph: is missing").
BOOST_AUTO_TEST_CASE(a_quote_never_closed_is_named_where_it_opened) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      parse_flow_text(text, "f.yaml");
    } catch (const FlowError& e) {
      return e.where().to_string() + ": " + e.problem();
    }
    return "parsed";
  };
  BOOST_TEST(
      error_of("flow:\n  name: \"hello\n  graph: a\ntasks:\n  a: {use: std/echo}\n") ==
      "f.yaml:2:9: not valid YAML: the string that opens with \" here is never closed, so it "
      "takes in the rest of the file: end it with \"");
  BOOST_TEST(
      error_of("flow: {graph: a}\ntasks:\n  a: {use: std/echo, note: 'it''s\n") ==
      "f.yaml:3:28: not valid YAML: the string that opens with ' here is never closed, so it "
      "takes in the rest of the file: end it with '");
  // Closed ones, with their escapes, and an apostrophe in a plain scalar.
  BOOST_TEST(error_of("flow: {graph: a, name: \"say \\\"hi\\\"\"}\ntasks:\n"
                      "  a: {use: std/echo, inputs: {m: 'don''t', n: it's}}\n") == "parsed");
  // After a byte-order mark (which yaml-cpp's positions do not count).
  BOOST_TEST(error_of("\xEF\xBB\xBF"
                      "flow: {graph: a, defaults: {m: ['', \"x\"]}}\ntasks:\n"
                      "  a: {use: std/echo}\n") == "parsed");
  BOOST_TEST(error_of("\xEF\xBB\xBF"
                      "flow: {graph: a, name: \"x}\n")
                 .find("never closed") != std::string::npos);
}

// YAML 1.2's integers, as PyYAML (the Python pyoco's reader) reads them:
// 0x and 0o ones, a sign; one that 64 bits cannot hold is refused at its
// place (it became the float 1e+20, which failed as "not an integer" later).
BOOST_AUTO_TEST_CASE(yaml_integers_are_read_as_yaml_1_2_says_or_refused) {
  const FlowSpec y = parse_flow_text(
      "flow: {graph: a, defaults: {h: 0x1F, o: 0o17, p: +5, n: -3, q: \"0x10\", w: 0xZZ, "
      "m: 9223372036854775807}}\n",
      "f.yaml");
  BOOST_TEST(y.defaults.find("h").as_int() == 31);
  BOOST_TEST(y.defaults.find("o").as_int() == 15);
  BOOST_TEST(y.defaults.find("p").as_int() == 5);
  BOOST_TEST(y.defaults.find("n").as_int() == -3);
  BOOST_TEST(y.defaults.find("q").as_string() == "0x10");  // quoted: text
  BOOST_TEST(y.defaults.find("w").as_string() == "0xZZ");  // not hex: text
  BOOST_TEST(y.defaults.find("m").as_int() == INT64_MAX);
  for (const char* big : {"99999999999999999999", "-99999999999999999999", "0x10000000000000000"}) {
    try {
      parse_flow_text(std::string("flow:\n  graph: a\n  defaults: {n: ") + big + "}\n", "f.yaml");
      BOOST_ERROR("parsed " << big);
    } catch (const FlowError& e) {
      BOOST_TEST(e.problem().find("too large for a 64-bit integer") != std::string::npos,
                 e.problem());
      BOOST_TEST(e.where().line == 3u);
    }
  }
}

// YAML 1.2's core schema reads 1e400 as a float, which a double cannot
// hold: it became the string "1e400". Refused at its line; quoted it is text.
BOOST_AUTO_TEST_CASE(a_yaml_float_out_of_range_is_refused_at_its_line) {
  for (const char* big : {"1e400", "-1.5e999", "+1E400"}) {
    try {
      parse_flow_text(std::string("flow:\n  graph: a\n  defaults: {x: ") + big + "}\n", "f.yaml");
      BOOST_ERROR("parsed " << big);
    } catch (const FlowError& e) {
      BOOST_TEST(
          e.problem() ==
              std::string(big) + ": number out of range for a double; quote it to keep it as text",
          e.problem());
      BOOST_TEST(e.where().line == 3u);
    }
  }
  const FlowSpec y = parse_flow_text(
      "flow: {graph: a, defaults: {q: \"1e400\", tiny: 1e-400, e: 1e300}}\n", "f.yaml");
  BOOST_TEST(y.defaults.find("q").as_string() == "1e400");
  BOOST_TEST(y.defaults.find("tiny").as_double() == 0.0);
  BOOST_TEST(y.defaults.find("e").as_double() == 1e300);
}

// toml++ recursed once per part of a dotted key: `[a.a.a...]` of 50,000
// parts (a 100 KB file) overflowed the stack. Such a key is refused where
// it reaches 128 parts; dots in strings, comments and numbers are no keys.
BOOST_AUTO_TEST_CASE(a_dotted_toml_key_too_deep_is_refused_not_a_crash) {
  std::string parts;
  for (int i = 0; i < 50000; ++i) parts += "a.";
  try {
    parse_flow_text("[flow]\ngraph = \"a\"\n[" + parts + "a]\n", "f.toml");
    BOOST_FAIL("a key of 50,001 parts was read");
  } catch (const FlowError& e) {
    BOOST_TEST(std::string(e.what()).find("f.toml:3:257") != std::string::npos, e.what());
    BOOST_TEST(
        std::string(e.what()).find("more than 128 parts: nested too deep") != std::string::npos,
        e.what());
  }
  std::string dots(300, '.');
  const FlowSpec t =
      parse_flow_text("# " + dots + "\n[flow]\ngraph = \"a\"\n" + "defaults = {s = \"" + dots +
                          "\", m = \"\"\"\n" + dots + "\n\"\"\", l = '" + dots +
                          "', f = [1.5, 2.5, 3.5]}\n" + "[tasks.a]\nuse = \"p/t\"\n",
                      "f.toml");
  BOOST_TEST(t.defaults.find("s").as_string() == dots);
  BOOST_TEST(t.defaults.find("l").as_string() == dots);
  // 128 parts pass the guard (the flow schema's own limit of 64 levels then speaks)
  std::string key = "x";
  for (int i = 1; i < 128; ++i) key += ".x";
  try {
    parse_flow_text("[flow]\ngraph = \"a\"\ndefaults = {" + key + " = 1}\n", "f.toml");
  } catch (const FlowError& e) {
    BOOST_TEST(std::string(e.what()).find("dotted key") == std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(callable_is_a_synonym_of_use) {
  const FlowSpec y = parse_flow_text(
      "flow: {graph: a}\ntasks:\n  a: {callable: \"hello:fetch_data\"}\n", "flow.yaml");
  BOOST_TEST(y.tasks.at(0).use == "hello/fetch_data");
  const FlowSpec t = parse_flow_text(
      "[flow]\ngraph = \"a\"\n[tasks.a]\ncallable = \"hello:fetch_data\"\n", "flow.toml");
  BOOST_TEST(t.tasks.at(0).use == "hello/fetch_data");
}

BOOST_AUTO_TEST_CASE(mistakes_name_file_line_and_key) {
  const std::vector<Invalid> table = {
      // use / callable
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", callable: \"p:t\"}\n",
       "tasks.a.callable: give use or callable, not both", 3, 29},
      {"f.toml", "[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"p/t\"\ncallable = \"p:t\"\n",
       "tasks.a.callable: give use or callable, not both", 5, 12},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {inputs: {}}\n",
       "tasks.a.use: is missing (e.g. use: \"std/echo\")", 3, 3},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {callable: \"p.t\"}\n",
       "tasks.a.callable: expected \"<plugin>:<task>\", found \"p.t\"", 3, 17},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"pt\"}\n",
       "tasks.a.use: \"pt\" is not \"<plugin>/<task>\" and no entry of tasks: is named so", 3, 12},
      // pyoco's aliases (use: <entry>) that cannot resolve
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: b}\n  b: {use: c}\n  c: {use: a}\n",
       "tasks.a.use: aliases go round: a -> b -> c -> a", 3, 12},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: a}\n", "aliases go round: a -> a", 3, 12},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/\"}\n", "expected \"<plugin>/<task>\"",
       3, 12},
      // durations and counts that would overflow or never end (issue 12)
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", timeout_sec: 1e10}\n",
       "tasks.a.timeout_sec: must be at most 2592000 (30 days; leave it out for no timeout)", 3,
       32},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: 1000000000}\n",
       "tasks.a.retries: must be at most 1000 (for more, write a loop)", 3, 28},
      {"f.yaml",
       "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retry_backoff: {initial_ms: 1e13}}\n",
       "tasks.a.retry_backoff.initial_ms: must be at most 86400000 (a day)", 3, 47},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retry_backoff: {max_ms: 1e19}}\n",
       "tasks.a.retry_backoff.max_ms: must be at most 86400000 (a day)", 3, 43},
      {"f.toml", "[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"p/t\"\ntimeout_sec = nan\n",
       "tasks.a.timeout_sec: expected a number, found NaN", 5, 15},
      {"f.toml", "[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"p/t\"\ntimeout_sec = inf\n",
       "tasks.a.timeout_sec: must be at most 2592000", 5, 15},
      // YAML's float words (kept as text): named as the numbers they meant
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", timeout_sec: .nan}\n",
       "tasks.a.timeout_sec: expected a number, found NaN", 3, 32},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", timeout_sec: .Inf}\n",
       "tasks.a.timeout_sec: must be at most 2592000 (30 days; leave it out for no timeout)", 3,
       32},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", inputs: {v: \"\\ud800\"}}\n",
       "not valid YAML: an escape of U+D800, which is no character (half of a UTF-16 surrogate "
       "pair: write the character itself, or \\UXXXXXXXX with its code point)",
       3, 38},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: .inf}\n",
       "tasks.a.retries: must be at most 1000 (for more, write a loop)", 3, 28},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: -.inf}\n",
       "tasks.a.retries: must be at least 0", 3, 28},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: .NaN}\n",
       "tasks.a.retries: expected an integer, found NaN", 3, 28},
      // unknown keys, with what to write instead
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a:\n    use: \"p/t\"\n    retry: 3\n",
       "tasks.a.retry: unknown key (known here: callable, fail_policy, inputs, outputs, retries, "
       "retry_backoff, timeout_sec, use)",
       5, 5},
      {"f.toml", "[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"p/t\"\nretry = 3\n",
       "tasks.a.retry: unknown key", 5, 1},
      {"f.yaml", "flow: {graph: a, title: x}\n",
       "flow.title: unknown key (known here: defaults, "
       "graph, name)",
       1, 18},
      {"f.yaml", "flow: {graph: a}\nextra: 1\n",
       "extra: unknown key (known here: flow, pipes, plugins, tasks, version)", 2, 1},
      {"f.yaml",
       "flow: {graph: a}\ntasks:\n  a:\n    use: \"p/t\"\n    retry_backoff: {initial: 1}\n",
       "tasks.a.retry_backoff.initial: unknown key", 5, 21},
      {"f.yaml", "flows:\n  - name: x\n",
       "flows: one flow per file: write `flow:` with name and graph", 1, 1},
      {"f.toml", "[flows]\nname = \"x\"\n", "flows: one flow per file: write `flow:`", 1, 2},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {<<: 5, use: p/t}\n",
       "tasks.a.<<: a merge key takes a mapping or a list of mappings (<<: *base, <<: [*a, *b]), "
       "found int",
       3, 11},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {<<: [{use: p/t}, x]}\n",
       "tasks.a.<<: a merge key takes a mapping or a list of mappings", 3, 24},
      // a second YAML document was dropped: its flow never ran
      {"f.yaml",
       "flow: {graph: a}\ntasks: {a: {use: p/t}}\n---\nflow: {graph: b}\ntasks: {b: {use: p/t}}\n",
       "a second YAML document (after ---): one flow per file; put the other flow in a file of "
       "its own",
       3, 1},
      {"f.yaml", "---\nflow: {graph: a}\ntasks: {a: {use: p/t}}\n...\n---\n",
       "a second YAML document (after ---): one flow per file", 5, 1},
      {"f.yaml", "discovery:\n  entry_points: [x]\nflow: {graph: a}\n",
       "discovery: tasks come from plugins: give each task `use: \"<plugin>/<task>\"` and drop "
       "discovery",
       1, 1},
      // duplicate keys
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\"}\n  a: {use: \"p/u\"}\n",
       "tasks.a: duplicate key (first at line 3)", 4, 3},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a:\n    use: \"p/t\"\n    use: \"p/u\"\n",
       "tasks.a.use: duplicate key (first at line 4)", 5, 5},
      {"f.yaml", "flow: {graph: a}\nflow: {graph: b}\n", "flow: duplicate key (first at line 1)", 2,
       1},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", inputs: {x: 1, x: 2}}\n",
       "tasks.a.inputs.x: duplicate key", 3, 34},
      {"f.yaml", "flow: {graph: a, defaults: {k: 1, k: 2}}\n", "flow.defaults.k: duplicate key", 1,
       35},
      {"f.toml", "[flow]\ngraph = \"a\"\n[tasks.a]\nuse = \"p/t\"\n[tasks.a]\nuse = \"p/u\"\n",
       "not valid TOML", 5, 1},
      {"f.toml", "[flow]\ngraph = \"a\"\ngraph = \"b\"\n", "not valid TOML", 3, 9},
      // shapes and values
      {"f.yaml", "", "the file is empty: it needs flow: and tasks:", 0, 0},
      {"f.yaml", "- a\n- b\n", "the file: expected a mapping, found a list", 1, 1},
      {"f.yaml", "tasks: {}\n", "flow: is missing (it holds the graph)", 1, 1},
      {"f.yaml", "flow: {name: x}\n", "flow.graph: is missing", 1, 7},
      {"f.yaml", "flow: {graph: 3}\n", "flow.graph: expected a string, found int", 1, 15},
      {"f.yaml", "version: 2\nflow: {graph: a}\n", "version: this pyoco reads version 1 flow files",
       1, 10},
      {"f.yaml", "flow: {graph: a}\ntasks: [a]\n", "tasks: expected a mapping, found a list", 2, 8},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", fail_policy: later}\n",
       "tasks.a.fail_policy: expected stop or isolate, found \"later\"", 3, 32},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: -1}\n",
       "tasks.a.retries: must be at least 0", 3, 28},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retries: two}\n",
       "tasks.a.retries: expected an integer, found string", 3, 28},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", timeout_sec: 0}\n",
       "tasks.a.timeout_sec: must be greater than 0", 3, 32},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", outputs: params.x}\n",
       "tasks.a.outputs: expected a list, found string", 3, 28},
      // outputs: paths (issue 13: nested keys, as pyoco; bounded)
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", outputs: [\"typo.x\"]}\n",
       "\"typo.x\" must start with params., scratch. or results.", 3, 29},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", outputs: [\"scratch.a..b\"]}\n",
       "\"scratch.a..b\" has an empty key", 3, 29},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", outputs: [\"params\"]}\n",
       "\"params\" names no key", 3, 29},
      {"f.yaml",
       "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", outputs: "
       "[\"scratch.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k.k."
       "k\"]}\n",
       "is deeper than 32 keys", 3, 29},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retry_backoff: {jitter: 1}}\n",
       "tasks.a.retry_backoff.jitter: expected true or false, found int", 3, 43},
      // docs/flows.md: the ranges of retry_backoff, names
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retry_backoff: {factor: 0.5}}\n",
       "tasks.a.retry_backoff.factor: must be at least 1", 3, 43},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retry_backoff: {factor: 1001}}\n",
       "tasks.a.retry_backoff.factor: must be at most 1000", 3, 43},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\", retry_backoff: {initial_ms: -1}}\n",
       "tasks.a.retry_backoff.initial_ms: must be at least 0", 3, 47},
      {"f.yaml", "flow: {graph: a}\ntasks:\n  1a: {use: \"p/t\"}\n",
       "tasks.1a: a task name is ASCII letters, digits and _, not starting with a digit", 3, 3},
      {"f.yaml", "flow: {graph: a}\npipes:\n  a-b: \"x\"\n",
       "pipes.a-b: a pipe name is ASCII letters, digits and _, not starting with a digit", 3, 3},
      // docs/flows.md: plugins: names the least version, as MAJOR.MINOR.PATCH
      {"f.yaml", "plugins: {std: \"1.2\"}\nflow: {graph: a}\n",
       "plugins.std: \"1.2\" is not a version", 1, 16},
      {"f.yaml", "plugins: {std: 1}\nflow: {graph: a}\n", "plugins.std: expected a string", 1, 16},
      {"f.yaml", "plugins: [std]\nflow: {graph: a}\n", "plugins: expected a mapping", 1, 10},
      // syntax
      {"f.yaml", "flow:\n  graph: [a\n", "not valid YAML", 3, 1},
      {"f.toml", "[flow\ngraph = \"a\"\n", "not valid TOML", 1, 6},
  };
  for (const Invalid& bad : table) {
    BOOST_TEST_CONTEXT(bad.file << ":\n" << bad.text) {
      try {
        parse_flow_text(bad.text, bad.file);
        BOOST_ERROR("loaded, but should not have");
      } catch (const FlowError& e) {
        BOOST_TEST(e.problem().find(bad.message) != std::string::npos, e.problem());
        BOOST_TEST(e.where().file == bad.file);
        BOOST_TEST(e.where().line == bad.line);
        BOOST_TEST(e.where().column == bad.column);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_missing_file_and_a_directory_are_told_apart) {
  pyoco::testing::TempDir dir;
  try {
    load_flow_file(dir.path() / "nope.yaml");
    BOOST_ERROR("loaded");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "no such file");
  }
  // A directory opens as an empty stream; it must not be called an empty file.
  try {
    load_flow_file(dir.path());
    BOOST_ERROR("loaded");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "is a directory, not a flow file (give a flow.yaml or flow.toml)");
    BOOST_TEST(e.where().file == dir.path().string());
  }
  std::ofstream(dir.path() / "ok.yaml") << "flow: {graph: a}\ntasks:\n  a: {use: \"p/t\"}\n";
  BOOST_TEST(load_flow_file(dir.path() / "ok.yaml").name == "ok");
}

// Hostile flow files (issue 12): each is an error naming the file, line
// and column, found quickly and with bounded memory, never a crash or a
// hang.
BOOST_AUTO_TEST_CASE(hostile_yaml_is_an_error_not_a_crash_or_a_memory_bomb) {
  std::string laughs = "flow:\n  graph: a\n  defaults:\n    a0: &a0 [x,x,x,x,x,x,x,x,x]\n";
  for (int i = 1; i < 10; ++i) {
    const std::string prev = "*a" + std::to_string(i - 1);
    laughs += "    a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev;
    for (int k = 1; k < 9; ++k) laughs += "," + prev;
    laughs += "]\n";
  }
  std::string deep = "flow:\n  graph: a\n  defaults:\n    d: ";
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  deep += "\n";
  // Past yaml-cpp's own guard, which says only "bad file".
  std::string deeper = "flow:\n  graph: a\n  defaults:\n    d: ";
  for (int i = 0; i < 3000; ++i) deeper += "[";
  for (int i = 0; i < 3000; ++i) deeper += "]";
  deeper += "\n";
  std::string wide = "flow:\n  graph: a\n  defaults:\n    big: [";
  for (int i = 0; i < 1'000'001; ++i) wide += i ? ",1" : "1";
  wide += "]\n";
  // 3 GB of text from a 1 MB file: no value count sees it.
  std::string big_string_aliased =
      "flow:\n  graph: a\n  defaults:\n    s: &s " + std::string(1'000'000, 'x') + "\n    l: [*s";
  for (int i = 1; i < 3000; ++i) big_string_aliased += ",*s";
  big_string_aliased += "]\n";
  // 55 anchors nested around one list of 100,000 values, no alias at all:
  // each anchor keeps its own copy (5.5 million values).
  std::string nested_anchors = "flow:\n  graph: a\n  defaults:\n    d: ";
  for (int i = 0; i < 55; ++i) nested_anchors += "&n" + std::to_string(i) + " [";
  for (int i = 0; i < 100'000; ++i) nested_anchors += i ? ",1" : "1";
  for (int i = 0; i < 55; ++i) nested_anchors += "]";
  nested_anchors += "\n";
  struct Case {
    const char* name;
    std::string text;
    const char* message;
    std::uint32_t line;
  };
  const std::vector<Case> table = {
      {"an alias inside its own anchor", "flow: &f {name: x, defaults: {self: *f}, graph: a}\n",
       "a YAML alias inside its own anchor &f would repeat it for ever", 1},
      {"a 1 MB string aliased 3,000 times", big_string_aliased,
       "YAML aliases repeat more than 16 MiB of text (each alias copies its anchor &s)", 5},
      {"a billion laughs", laughs,
       "YAML aliases repeat more than 100000 values (nested aliases multiply)", 0},
      {"lists 100 deep", deep, "nested more than 64 levels deep", 4},
      {"lists 3000 deep", deeper, "nested more than 64 levels deep; flatten the file", 4},
      {"a million values", wide, "the file holds more than 1000000 values; split it up", 0},
      {"anchors nested around a large list", nested_anchors,
       "YAML anchors keep more than 1000000 values (each anchor inside another copies it again)",
       4},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.name) {
      const auto start = std::chrono::steady_clock::now();
      try {
        parse_flow_text(c.text, "bomb.yaml");
        BOOST_ERROR("parsed, but should not have");
      } catch (const FlowError& e) {
        BOOST_TEST(e.problem().find(c.message) != std::string::npos, e.problem());
        BOOST_TEST(e.where().file == "bomb.yaml");
        if (c.line != 0) BOOST_TEST(e.where().line == c.line);
      }
      // 60 s: a bomb expanded takes minutes (or all memory); -O0 sanitizers
      // make the refusal itself take seconds.
      BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::seconds(60)));
    }
  }
  // Aliases within reason still work.
  const FlowSpec ok = parse_flow_text(
      "flow:\n  graph: a\n  defaults:\n    base: &b {x: 1, y: [1, 2]}\n    one: *b\n    two: *b\n"
      "tasks:\n  a: {use: p/t}\n",
      "ok.yaml");
  BOOST_TEST(ok.defaults.find("two").find("y").at(1).as_int() == 2);
}

BOOST_AUTO_TEST_CASE(deep_toml_is_an_error_not_a_crash) {
  std::string deep = "[flow]\ngraph = \"a\"\n[flow.defaults]\nd = ";
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  deep += "\n";
  try {
    parse_flow_text(deep, "deep.toml");
    BOOST_ERROR("parsed, but should not have");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem().find("nested more than 64 levels deep") != std::string::npos,
               e.problem());
    BOOST_TEST(e.where().line == 4u);
  }
}

BOOST_AUTO_TEST_CASE(only_a_regular_file_of_bounded_size_is_read) {
  pyoco::testing::TempDir dir;
  const auto fifo = dir.path() / "fifo.yaml";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  try {
    load_flow_file(fifo);  // nobody writes to it: reading it would block forever
    BOOST_ERROR("loaded");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "is a FIFO, not a regular file");
  }
  try {
    load_flow_file("/dev/zero");  // would never end
    BOOST_ERROR("loaded");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "is a character device, not a regular file");
  }
  const auto big = dir.path() / "big.yaml";
  { std::ofstream touch(big); }
  std::filesystem::resize_file(big, (16u << 20) + 1);
  try {
    load_flow_file(big);
    BOOST_ERROR("loaded");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "is 16777217 bytes, over the 16 MiB limit");
  }
}
