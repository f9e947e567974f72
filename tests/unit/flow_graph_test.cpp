// Building a flow's DAG and checking it (FLOWS.md "Graph DSL", "References
// in inputs", "pyoco check"): pipe cycles, duplicate node names, bad
// references, $loop.<var> inside and outside loops, and the exports.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/subprocess.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace pyoco::core;

namespace {

CompiledFlow compile(const std::string& yaml) {
  return compile_flow(std::make_shared<const FlowSpec>(parse_flow_text(yaml, "flow.yaml")));
}

// Every "p/<task>" exists; "p/needs_value" requires an input `value`.
class FakeTasks : public TaskResolver {
 public:
  TaskInfo resolve(const std::string& name) const override {
    TaskInfo info;
    info.exists = name.rfind("p/", 0) == 0;
    if (name == "p/needs_value") {
      info.required_inputs = {"value"};
      info.inputs = {"value"};
    }
    if (name == "p/typed") {  // a plugin task: it declares all it takes
      info.inputs = {"value", "times", "ratio", "items", "flag"};
      info.inputs_complete = true;
      info.input_types = {{"value", "any"},
                          {"times", "int"},
                          {"ratio", "number"},
                          {"items", "array"},
                          {"flag", "bool"}};
    }
    return info;
  }
};

std::vector<Diagnostic> check(const std::string& yaml) {
  return check_flow(compile(yaml), FakeTasks(), from_json(boost::json::parse("{}")));
}

std::string errors(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (const Diagnostic& d : ds) {
    if (d.severity == Diagnostic::Severity::Error)
      out += d.where.to_string() + ": " + d.message + "\n";
  }
  return out;
}

// "file:line:col: message" of each warning whose message starts with `prefix`.
std::vector<std::string> warnings_of(const std::vector<Diagnostic>& ds,
                                     std::string_view prefix = {}) {
  std::vector<std::string> out;
  for (const Diagnostic& d : ds) {
    if (d.severity == Diagnostic::Severity::Warning && d.message.starts_with(prefix)) {
      out.push_back(d.where.to_string() + ": " + d.message);
    }
  }
  return out;
}

struct Invalid {
  const char* yaml;
  const char* message;
  std::uint32_t line, column;
};

}  // namespace

BOOST_AUTO_TEST_CASE(graphs_that_cannot_be_built_are_flow_errors) {
  const std::vector<Invalid> table = {
      // a pipe cycle, a -> b -> a through pipes
      {"flow: {graph: \"pipe(a)\"}\n"
       "pipes:\n  a: \"x >> pipe(b)\"\n  b: \"pipe(a)\"\n"
       "tasks:\n  x: {use: p/x}\n",
       "pipe cycle: a -> b -> a", 4, 7},
      {"flow: {graph: \"pipe(a)\"}\npipes:\n  a: \"x >> pipe(a)\"\ntasks:\n  x: {use: p/x}\n",
       "pipe cycle: a -> a", 3, 12},
      {"flow: {graph: \"pipe(nope)\"}\npipes:\n  a: x\ntasks:\n  x: {use: p/x}\n",
       "unknown pipe 'nope' (pipes: a)", 1, 16},
      {"flow: {graph: \"pipe(a)\"}\npipes:\n  a: \"x\\ny\"\ntasks:\n  x: {use: p/x}\n"
       "  y: {use: p/y}\n",
       "pipe 'a' must be one pipeline (one line)", 3, 7},
      // a repeated bare name is the same node: a cycle
      {"flow: {graph: \"a >> b >> a\"}\ntasks:\n  a: {use: p/a}\n  b: {use: p/b}\n",
       "cycle: a -> b -> a (a repeated name is the same node; use name: task for a second one)", 1,
       16},
      // duplicate node names: one name, two tasks
      {"flow: {graph: \"first: a >> first: b\"}\ntasks:\n  a: {use: p/a}\n  b: {use: p/b}\n",
       "node 'first' already runs task 'a'; give this one another name", 1, 28},
      {"flow: {graph: \"a >> a: b\"}\ntasks:\n  a: {use: p/a}\n  b: {use: p/b}\n",
       "node 'a' already runs task 'a'", 1, 21},
      {"flow: {graph: \"a >> b\"}\ntasks:\n  a: {use: p/a}\n",
       "unknown node 'b': add it under tasks:", 1, 21},
      {"flow: {graph: \"n: zz\"}\ntasks:\n  a: {use: p/a}\n",
       "node 'n' uses task 'zz', which is not under tasks:", 1, 16},
  };
  for (const Invalid& bad : table) {
    BOOST_TEST_CONTEXT(bad.yaml) {
      try {
        compile(bad.yaml);
        BOOST_ERROR("compiled, but should not have");
      } catch (const FlowError& e) {
        BOOST_TEST(e.problem().find(bad.message) != std::string::npos, e.problem());
        BOOST_TEST(e.where().line == bad.line);
        BOOST_TEST(e.where().column == bad.column);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(duplicate_task_names_are_rejected_by_the_loader) {
  BOOST_CHECK_THROW(compile("flow: {graph: a}\ntasks:\n  a: {use: p/a}\n  a: {use: p/b}\n"),
                    FlowError);
}

BOOST_AUTO_TEST_CASE(bad_references_fail_check_naming_the_reference) {
  const std::vector<Invalid> table = {
      {"$ctx.parms.x", "input 'v': unsupported reference '$ctx.parms.x'", 4, 26},
      {"$nodes.a.output", "input 'v': unsupported reference '$nodes.a.output'", 4, 26},
      {"$node.missing.output",
       "input 'v': '$node.missing.output' names node 'missing', which is not in the graph", 4, 26},
      {"$node.a.outptu", "input 'v': '$node.a.outptu' must go on with .output", 4, 26},
      {"$node.c.output", "input 'v': node 'c' does not run before 'b' (add c >> b)", 4, 26},
      {"$ctx.params.", "input 'v': '$ctx.params.' names no param", 4, 26},
      // an empty key resolved to null, or to the whole of what is before it
      {"$ctx.params.x..y", "input 'v': '$ctx.params.x..y' has an empty key", 4, 26},
      {"$ctx.params.x.", "input 'v': '$ctx.params.x.' has an empty key", 4, 26},
      {"$node.a.output..x", "input 'v': '$node.a.output..x' has an empty key", 4, 26},
      {"$node.a.output.", "input 'v': '$node.a.output.' has an empty key", 4, 26},
      {"$node..output", "input 'v': '$node..output' has an empty key", 4, 26},
      {"$env.", "input 'v': '$env.' names no variable", 4, 26},
      {"$loop.it", "input 'v': '$loop.it' is outside a loop", 4, 26},
      {"$params.x", "write $node.<name>.output[.key...], $ctx.params.<name>, $env.<NAME>", 4, 26},
  };
  for (const Invalid& bad : table) {
    BOOST_TEST_CONTEXT(bad.yaml) {
      const std::string yaml = std::string("flow: {graph: \"a >> b >> c\"}\n") +
                               "tasks:\n  a: {use: p/a}\n  b: {use: p/b, inputs: {v: \"" +
                               bad.yaml + "\"}}\n  c: {use: p/c}\n";
      const auto ds = check(yaml);
      BOOST_TEST_REQUIRE(ds.size() == 1u, errors(ds));
      BOOST_TEST((ds[0].severity == Diagnostic::Severity::Error));
      BOOST_TEST(ds[0].message.find(bad.message) != std::string::npos, ds[0].message);
      BOOST_TEST(ds[0].where.line == bad.line);
      BOOST_TEST(ds[0].where.column == bad.column);
    }
  }
}

BOOST_AUTO_TEST_CASE(good_references_pass_check) {
  const auto ds = check(R"(flow: {graph: "a >> b", defaults: {x: 1}}
tasks:
  a: {use: p/a, inputs: {v: "$ctx.params.x", h: "$env.HOME", lit: [1, "$not-a-ref-in-a-list"]}}
  b: {use: p/b, inputs: {v: "$node.a.output", w: "$node.a.output.key.0"}}
)");
  BOOST_TEST(errors(ds) == "");
}

BOOST_AUTO_TEST_CASE(loop_variables_are_valid_references_in_a_loop_body) {
  // foreach's item and index aliases, repeat's and until's index, and an
  // outer loop's variables inside an inner loop or a switch.
  const auto ds = check(R"(flow:
  defaults: {items: [1, 2], mode: a}
  graph: |
    foreach(over={{items}}, item=it, index=i) { a >> repeat(count=2) { b } >> switch(on={{mode}}) { a: c; default: d } }
    until(cond={{scratch.done}}, max_iter=3) { e }
tasks:
  a: {use: p/a, inputs: {x: "$loop.it", y: "$loop.i", z: "$loop.it.key"}}
  b: {use: p/b, inputs: {x: "$loop.it", y: "$loop.index"}}
  c: {use: p/c, inputs: {x: "$loop.it"}}
  d: {use: p/needs_value, inputs: {x: "$loop.i"}}
  e: {use: p/e, inputs: {x: "$loop.index"}}
)");
  // d's required input `value` is not a loop variable here: that is the one error.
  BOOST_TEST(errors(ds) ==
             "flow.yaml:4:116: node 'd': required input 'value' of p/needs_value is not in "
             "inputs:, not a param, and no upstream node is named so\n");
}

BOOST_AUTO_TEST_CASE(a_loop_variable_fills_a_required_input_of_its_name) {
  const auto ds = check(R"(flow:
  defaults: {items: [1, 2]}
  graph: "foreach(over={{items}}, item=value) { n }"
tasks:
  n: {use: p/needs_value}
)");
  BOOST_TEST(errors(ds) == "");
}

BOOST_AUTO_TEST_CASE(loop_variables_outside_their_loop_fail_check) {
  const auto ds = check(R"(flow:
  defaults: {items: [1, 2]}
  graph: |
    foreach(over={{items}}, item=it) { a } >> b
    repeat(count=2) { c }
tasks:
  a: {use: p/a, inputs: {x: "$loop.item"}}
  b: {use: p/b, inputs: {x: "$loop.it"}}
  c: {use: p/c, inputs: {x: "$loop.it"}}
)");
  BOOST_TEST(errors(ds) ==
             "flow.yaml:7:26: input 'x': '$loop.item' names no loop variable here (index, it)\n"
             "flow.yaml:8:26: input 'x': '$loop.it' is outside a loop: $loop.<var> works only in "
             "the body of foreach, repeat or until\n"
             "flow.yaml:9:26: input 'x': '$loop.it' names no loop variable here (index)\n");
}

BOOST_AUTO_TEST_CASE(a_body_reads_nodes_that_run_before_its_loop_or_switch) {
  // The engine looks $node.<name> up in the body, then in the graphs around
  // it; check accepts what it resolves and names the loop a later node
  // would have to precede.
  const auto ds = check(R"(flow:
  defaults: {items: [1, 2], mode: x}
  graph: |
    a >> foreach(over={{items}}) { b >> switch(on={{mode}}) { x: c; default: d } } >> e
tasks:
  a: {use: p/a}
  b: {use: p/b, inputs: {v: "$node.a.output"}}
  c: {use: p/c, inputs: {v: "$node.a.output.k", w: "$node.b.output"}}
  d: {use: p/needs_value, inputs: {v: "$node.e.output"}}
  e: {use: p/e}
)");
  // d's `value` comes from no param and no node named so; e runs after the loop.
  BOOST_TEST(errors(ds) ==
             "flow.yaml:4:78: node 'd': required input 'value' of p/needs_value is not in "
             "inputs:, not a param, and no upstream node is named so\n"
             "flow.yaml:9:36: input 'v': node 'e' does not run before 'foreach_1' (add e >> "
             "foreach_1)\n");
}

BOOST_AUTO_TEST_CASE(an_upstream_node_outside_the_body_fills_a_required_input) {
  const auto ds = check(R"(flow:
  defaults: {items: [1, 2]}
  graph: "value: a >> foreach(over={{items}}) { n }"
tasks:
  a: {use: p/a}
  n: {use: p/needs_value}
)");
  BOOST_TEST(errors(ds) == "");
}

BOOST_AUTO_TEST_CASE(check_reports_unbounded_until_and_a_switch_without_default) {
  const auto ds = check(R"(flow: {graph: "until(cond={{done}}) { a } >> switch(on={{m}}) { x: b }"}
tasks:
  a: {use: p/a}
  b: {use: p/b}
)");
  BOOST_TEST(errors(ds) == "");
  bool warned = false, unbounded = false;
  for (const auto& d : ds) {
    warned = warned || d.message.find("switch has no default") == 0;
    unbounded = unbounded || d.message ==
                                 "until has no max_iter: it fails after 1000 iterations with its "
                                 "condition still false; write max_iter=N";
  }
  BOOST_TEST(warned);
  BOOST_TEST(unbounded);
}

// retry_backoff's max_ms caps every wait: `initial_ms: 10000` with the
// default max_ms (5000) waited 5000 ms without a word.
BOOST_AUTO_TEST_CASE(check_warns_that_max_ms_cuts_initial_ms) {
  const auto ds = check(R"(flow: {graph: "a >> b >> c >> d"}
tasks:
  a: {use: p/a, retries: 2, retry_backoff: {initial_ms: 10000, jitter: false}}
  b: {use: p/b, retries: 1, retry_backoff: {initial_ms: 300, max_ms: 200.5}}
  c: {use: p/a, retries: 2, retry_backoff: {initial_ms: 10000, max_ms: 10000}}
  d: {use: p/b, retry_backoff: {initial_ms: 10000}}
)");
  BOOST_TEST(errors(ds) == "");
  const std::vector<std::string> warnings = warnings_of(ds);
  const std::vector<std::string> expected = {
      "flow.yaml:3:3: task 'a': retry_backoff initial_ms 10000 is over max_ms 5000 (the "
      "default), which caps every wait: each retry waits 5000 ms; set max_ms to 10000 or more "
      "(retry_backoff: {..., max_ms: N}), or a smaller initial_ms",
      "flow.yaml:4:3: task 'b': retry_backoff initial_ms 300 is over max_ms 200.5, which caps "
      "every wait: each retry waits 200.5 ms; set max_ms to 300 or more (retry_backoff: {..., "
      "max_ms: N}), or a smaller initial_ms"};
  BOOST_TEST(warnings == expected, boost::test_tools::per_element());
}

// `null:` is a YAML habit, but a label of the graph DSL is the string
// "null" (as pyoco compiles it): a null subject never takes that case.
BOOST_AUTO_TEST_CASE(check_warns_that_a_null_case_label_is_a_string) {
  const auto ds = check(R"(flow: {graph: "switch(on={{m}}) { null: a; None: a; default: b }"}
tasks:
  a: {use: p/a}
  b: {use: p/b}
)");
  BOOST_TEST(errors(ds) == "");
  const std::vector<std::string> warnings = warnings_of(ds, "case '");
  const std::vector<std::string> expected = {
      "flow.yaml:1:35: case 'null' is the string \"null\" (as in pyoco), not null: a null "
      "subject does not match it; to catch null write default:, or switch on {{x == null}} with "
      "true:",
      "flow.yaml:1:44: case 'None' is the string \"None\" (as in pyoco), not null: a null "
      "subject does not match it; to catch null write default:, or switch on {{x == null}} with "
      "true:"};
  BOOST_TEST(warnings == expected, boost::test_tools::per_element());
}

// As in pyoco, a reference is resolved only as a whole input value (pyoco's
// Context.resolve looks at a top-level string): one inside a mapping or a
// list reaches the task as text, which check says, once per input.
BOOST_AUTO_TEST_CASE(check_warns_of_a_reference_inside_a_mapping_or_a_list) {
  const auto ds = check(R"(flow: {graph: "a >> b"}
tasks:
  a:
    use: p/a
    inputs: {env: {HOME: "$HOME", N: "$ctx.params.n", M: "$node.x.output"}, n: 1}
  b:
    use: p/b
    inputs:
      value: ["$ctx.params.last", 1, "$5"]
      deep: {rows: [{id: "$loop.it"}]}
      plain: {a: "$", b: "$ cost", c: "x $env.HOME"}
)");
  BOOST_TEST(errors(ds) == "");
  const std::vector<std::string> warnings = warnings_of(ds);
  const std::string advice =
      ": references are resolved only as a whole input value, so the task gets that text; bind "
      "all of '";
  const std::string rest =
      "' to one reference instead (a param holding the whole value, or the output of a node "
      "that builds it), or pass the value as an input of its own";
  const std::vector<std::string> expected = {
      "flow.yaml:5:14: input 'env.N' holds '$ctx.params.n' inside a mapping (and 1 more in "
      "'env')" +
          advice + "env" + rest,
      "flow.yaml:9:7: input 'value.0' holds '$ctx.params.last' inside a list" + advice + "value" +
          rest,
      "flow.yaml:10:7: input 'deep.rows.0.id' holds '$loop.it' inside a mapping" + advice + "deep" +
          rest};
  BOOST_TEST(warnings == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(mermaid_escapes_quotes_in_labels) {
  const CompiledFlow flow =
      compile(R"(flow: {name: sw, graph: "switch(on={{mode}}) { \"a\": x; default: y }"}
tasks:
  x: {use: p/x}
  y: {use: p/y}
)");
  const std::string m = export_mermaid(flow);
  BOOST_TEST(m == R"(flowchart LR
  switch_1{"switch_1"}
  subgraph switch_1_0_["switch_1: #quot;a#quot;"]
  switch_1_0_x["x<br/>p/x"]
  end
  switch_1 -.-> switch_1_0_x
  subgraph switch_1_1_["switch_1: default"]
  switch_1_1_y["y<br/>p/y"]
  end
  switch_1 -.-> switch_1_1_y
)");
  // Every quoted label closes where it should: no '"' inside one.
  std::istringstream lines(m);
  for (std::string line; std::getline(lines, line);) {
    BOOST_TEST_CONTEXT(line) {
      BOOST_TEST(std::count(line.begin(), line.end(), '"') % 2 == 0);
      const auto open = line.find("[\"");
      if (open != std::string::npos) BOOST_TEST(line.find('"', open + 2) == line.size() - 2);
    }
  }
  // dot escapes with backslashes.
  BOOST_TEST(export_dot(flow).find("label=\"switch_1: \\\"a\\\"\"") != std::string::npos,
             export_dot(flow));
  // Labels are read as HTML: a case's '<' and '>' are shown, never markup.
  const CompiledFlow tags =
      compile(R"(flow: {name: sw, graph: "switch(on={{mode}}) { \"<b>x</b>\": x; default: y }"}
tasks:
  x: {use: p/x}
  y: {use: p/y}
)");
  BOOST_TEST(export_mermaid(tags).find(R"(["switch_1: #quot;#lt;b#gt;x#lt;/b#gt;#quot;"])") !=
                 std::string::npos,
             export_mermaid(tags));
}

// What `check` says so that a run cannot fail, or not, by timing or typo
// (issue 12, point 9).
BOOST_AUTO_TEST_CASE(check_and_run_agree_on_references_inputs_and_types) {
  struct Case {
    const char* graph;
    const char* inputs;  // of node c
    const char* message;
  };
  const std::vector<Case> table = {
      // After an OR-join, neither branch is sure to have run.
      {"(a | b) >> c", "{value: \"$node.b.output\"}",
       "input 'value': node 'b' may not have run when 'c' starts: an OR-join '|' between them "
       "goes on as soon as one branch succeeds; read a node that every path to 'c' runs"},
      // A node of another case: say where it is.
      {"switch(on={{x}}) { 1: a; default: b >> c }", "{value: \"$node.a.output\"}",
       "input 'value': '$node.a.output' names node 'a', which is in case '1' of switch_1: it is "
       "seen inside it, and after it by the nodes that run after it"},
      // A loop body's node, read by a node that does not wait for the loop.
      {"(repeat(count=2) { a } & c)", "{value: \"$node.a.output\"}",
       "input 'value': node 'a' does not run before 'c'"},
      {"a >> c", "{value: \"$node.c.output\"}",
       "input 'value': node 'c' reads its own output, which does not exist before it ends"},
      {"a >> c", "{valu: 1}",
       "input 'valu' is not an input of p/typed (did you mean 'value'?); it takes: value, "
       "times, ratio, items, flag"},
      {"a >> c", "{times: \"3\"}",
       "input 'times' of p/typed is an int; the flow gives a string (\"3\")"},
      {"a >> c", "{ratio: [1]}",
       "input 'ratio' of p/typed is a number; the flow gives an array ([1])"},
      {"a >> c", "{flag: 1}", "input 'flag' of p/typed is a bool; the flow gives an int (1)"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.graph << " " << c.inputs) {
      const std::string yaml = std::string("flow: {graph: \"") + c.graph +
                               "\", defaults: {x: 1}}\ntasks:\n  a: {use: p/a}\n  b: {use: p/b}\n"
                               "  c: {use: p/typed, inputs: " +
                               c.inputs + "}\n";
      const auto ds = check(yaml);
      BOOST_TEST(errors(ds).find(c.message) != std::string::npos, errors(ds));
    }
  }
  // What is fine stays fine: a node before the join, a ratio given an int,
  // a reference whose type is known only at run time.
  const auto ok = check(R"(flow: {graph: "x >> (a | b) >> c"}
tasks:
  x: {use: p/x}
  a: {use: p/a}
  b: {use: p/b}
  c: {use: p/typed, inputs: {value: "$node.x.output", ratio: 2, times: "$node.x.output"}}
)");
  BOOST_TEST(errors(ok) == "");
  // After a loop or a switch, its body's nodes are read as pyoco reads
  // results.<node>: the last run of each.
  const auto after = check(
      R"(flow: {graph: "repeat(count=2) { a } >> switch(on={{x}}) { 1: b; default: x } >> c", defaults: {x: 1}}
tasks:
  x: {use: p/x}
  a: {use: p/a}
  b: {use: p/b}
  c: {use: p/typed, inputs: {value: "$node.a.output", items: "$node.b.output"}}
)");
  BOOST_TEST(errors(after) == "");
}

// Node names Mermaid reads as syntax get an id of their own; the label
// still shows the name (issue 12).
BOOST_AUTO_TEST_CASE(mermaid_ids_never_collide_with_its_keywords) {
  const CompiledFlow flow = compile(R"(flow: {name: kw, graph: "end >> graph >> subgraph >> style"}
tasks:
  end: {use: p/a}
  graph: {use: p/b}
  subgraph: {use: p/c}
  style: {use: p/d}
)");
  BOOST_TEST(export_mermaid(flow) == R"(flowchart LR
  end_node["end<br/>p/a"]
  graph_node["graph<br/>p/b"]
  end_node --> graph_node
  subgraph_node["subgraph<br/>p/c"]
  graph_node --> subgraph_node
  style_node["style<br/>p/d"]
  subgraph_node --> style_node
)");
}

// A cycle no longer hides every other problem (issue 12): compiled for
// check, each cycle is an error and the rest of the flow is still checked.
BOOST_AUTO_TEST_CASE(cycles_are_reported_with_every_other_error) {
  const CompiledFlow flow = compile_flow_for_check(std::make_shared<const FlowSpec>(
      parse_flow_text("flow: {graph: \"a >> b >> a\\nc >> d >> c\"}\ntasks:\n  a: {use: p/a}\n"
                      "  b: {use: p/b, inputs: {v: \"$node.zz.output\"}}\n  c: {use: p/c}\n"
                      "  d: {use: p/d}\n",
                      "flow.yaml")));
  BOOST_TEST_REQUIRE(flow.errors.size() == 2u);
  BOOST_TEST(flow.errors[0].message.find("cycle: a -> b -> a") == 0u, flow.errors[0].message);
  BOOST_TEST(flow.errors[1].message.find("cycle: c -> d -> c") == 0u, flow.errors[1].message);
  BOOST_TEST(flow.errors[1].where.line == 2u);
  const auto ds = check_flow(flow, FakeTasks(), from_json(boost::json::parse("{}")));
  BOOST_TEST(errors(ds).find("'$node.zz.output' names node 'zz'") != std::string::npos, errors(ds));
  // What was cut to go on is a DAG.
  for (std::uint32_t i = 0; i < flow.graph.nodes.size(); ++i) {
    BOOST_TEST(!flow.graph.precedes(i, i));
  }
  // compile_flow still refuses it at the first cycle.
  BOOST_CHECK_THROW(
      compile("flow: {graph: \"a >> b >> a\"}\ntasks:\n  a: {use: p/a}\n  b: {use: p/b}\n"),
      FlowError);
}

// `name: foreach(...)` names a control node (issue 12): references to it do
// not shift when another loop is added, and a later statement may use it.
BOOST_AUTO_TEST_CASE(control_nodes_can_be_named) {
  const CompiledFlow flow = compile(
      R"(flow: {graph: "repeat(count=1) { a }\neach: foreach(over={{xs}}) { a }\npick: switch(on={{x}}) { default: b }\neach >> c\nrepeat(count=2) { b }"}
tasks:
  a: {use: p/a}
  b: {use: p/b}
  c: {use: p/c, inputs: {v: "$node.each.output"}}
)");
  std::vector<std::string> names;
  for (const GraphNode& n : flow.graph.nodes) names.push_back(n.name);
  BOOST_TEST(names == (std::vector<std::string>{"repeat_1", "each", "pick", "c", "repeat_2"}),
             boost::test_tools::per_element());
  const auto c = static_cast<std::uint32_t>(flow.graph.find("c"));
  BOOST_TEST(flow.graph.guaranteed_before(static_cast<std::uint32_t>(flow.graph.find("each")), c));
  BOOST_TEST(errors(check_flow(flow, FakeTasks(),
                               from_json(boost::json::parse(R"({"xs": [], "x": 1})")))) == "");
  // A name a step has already is refused.
  BOOST_CHECK_EXCEPTION(
      compile("flow: {graph: \"a >> a: repeat(count=1) { b }\"}\ntasks:\n  a: {use: p/a}\n  b: "
              "{use: p/b}\n"),
      FlowError, [](const FlowError& e) {
        return e.problem() ==
               "node 'a' is already a step of this graph; give the repeat another name";
      });
}

// A node in a loop body or switch case named as a node of a graph around it
// (before or after it) passed check, and `$node.a.output` then read the
// outer one (docs/flows.md "Control node names"). Bodies side by side may
// each have a node of one name.
BOOST_AUTO_TEST_CASE(a_body_node_may_not_take_a_name_of_the_graph_around_it) {
  const auto refused = [](const std::string& graph, const std::string& problem) {
    BOOST_TEST_CONTEXT(graph) {
      BOOST_CHECK_EXCEPTION(compile("flow:\n  defaults: {xs: [1]}\n  graph: |\n" + graph +
                                    "tasks:\n  a: {use: p/a}\n  b: {use: p/b}\n"),
                            FlowError, [&](const FlowError& e) {
                              BOOST_TEST(e.problem() == problem);
                              return e.where().line > 0 && e.where().column > 0;
                            });
    }
  };
  refused("    a\n    e: foreach(over=xs) { a: b }\n",
          "node 'a' in the body of e is already a node of the graph around it (line 4, column "
          "5); give one of them another name (name: task)");
  refused("    e: foreach(over=xs) { a: b }\n    e >> a\n",
          "node 'a' in the body of e is already a node of the graph around it (line 5, column "
          "10); give one of them another name (name: task)");
  refused("    a >> repeat(count=1) { a }\n",
          "node 'a' in the body of repeat_1 is already a node of the graph around it (line 4, "
          "column 5); give one of them another name (name: task)");
  refused("    b >> repeat(count=1) { switch(on=1) { default: b } }\n",
          "node 'b' in a case of switch_1 is already a node of the graph around it (line 4, "
          "column 5); give one of them another name (name: task)");
  refused("    repeat(count=1) { b >> repeat(count=1) { b } }\n",
          "node 'b' in the body of repeat_2 is already a node of the graph around it (line 4, "
          "column 23); give one of them another name (name: task)");
  // Side by side: each body its own.
  const CompiledFlow flow = compile(
      "flow: {graph: \"repeat(count=1) { a }\\nrepeat(count=2) { a }\\nswitch(on=1) { 1: b; "
      "default: b }\"}\ntasks:\n  a: {use: p/a}\n  b: {use: p/b}\n");
  BOOST_TEST(flow.graph.nodes.size() == 3u);
}

// A chain of 100,000 `use:` aliases, the last one in the graph: every
// entry of it is used (no orphan warnings), found by name through a map
// (a scan of the tasks for each took 16 s).
BOOST_AUTO_TEST_CASE(a_long_chain_of_aliases_is_checked_in_a_moment) {
  constexpr int kChain = 100000;
  std::string yaml = "flow: {graph: t" + std::to_string(kChain - 1) + "}\ntasks:\n";
  yaml += "  t0: {use: p/x}\n";
  for (int i = 1; i < kChain; ++i) {
    yaml += "  t" + std::to_string(i) + ": {use: t" + std::to_string(i - 1) + "}\n";
  }
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Diagnostic> found = check(yaml);
  BOOST_TEST(found.empty(), found.size() << " diagnostics, the first: "
                                         << (found.empty() ? "" : found.front().message));
  // 60 s: minutes with the bug, tens of seconds under -O0 sanitizers without it.
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::seconds(60)));
}

namespace {

// The DOT text outside its quoted strings, reading \x inside one as an
// escaped x (as C-like readers do; Graphviz keeps \\ whole, and reads the
// same strings either way once backslashes are escaped).
std::string outside_strings(const std::string& dot) {
  std::string out;
  bool in = false;
  for (std::size_t i = 0; i < dot.size(); ++i) {
    if (in && dot[i] == '\\') {
      ++i;
    } else if (dot[i] == '"') {
      in = !in;
    } else if (!in) {
      out += dot[i];
    }
  }
  BOOST_TEST(!in, dot);
  return out;
}

}  // namespace

// A switch case holding '"' wrote `\\"` into the DOT label: the string
// ended there for a reader of \\ as one backslash, and the rest was DOT.
BOOST_AUTO_TEST_CASE(dot_escapes_backslashes_and_quotes_once) {
  const CompiledFlow flow = compile(
      R"(flow: {name: "n\"x", graph: "switch(on={{mode}}) { 'x\"]; \"INJECTED\" [shape=star]; z [\"': a; default: b; }"}
tasks:
  a: {use: p/a}
  b: {use: "p/b\\c"}
)");
  const std::string dot = export_dot(flow);
  BOOST_TEST(outside_strings(dot).find("INJECTED") == std::string::npos, dot);
  BOOST_TEST(dot.find(R"(label="switch_1: \"x\\\"]; \\\"INJECTED\\\" [shape=star]; z [\\\"\"")") !=
                 std::string::npos,
             dot);
  BOOST_TEST(dot.find(R"(digraph "n\"x")") != std::string::npos, dot);
  BOOST_TEST(dot.find(R"([label="b\np/b\\c"])") != std::string::npos, dot);
  // Graphviz itself reads it: one node per task, none injected.
  if (std::filesystem::exists("/usr/bin/dot")) {
    ProcessOptions o;
    o.stdin_data = dot;
    const ProcessResult r = run_process({"/usr/bin/dot", "-Tjson"}, o);
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
    std::vector<std::string> names;
    const boost::json::value drawn = boost::json::parse(r.out);
    for (const auto& object : drawn.at("objects").as_array()) {
      names.emplace_back(object.at("name").as_string());
    }
    std::sort(names.begin(), names.end());
    const std::vector<std::string> expected = {"cluster_1", "cluster_2", "switch_1", "switch_1/0/a",
                                               "switch_1/1/b"};
    BOOST_TEST(names == expected, boost::test_tools::per_element());
  }
}
