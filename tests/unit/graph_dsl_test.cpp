// The graph DSL (FLOWS.md "Graph DSL"), table-driven: every form parses to
// the tree it means, and every mistake is a FlowError with the expected
// message at the expected line and column.
#include <pyoco/core/graph_dsl.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace pyoco::core;
using namespace pyoco::core::dsl;

namespace {

std::string render(const Pipeline& p);

std::string render_loop(const LoopTerm& l) {
  std::string s;
  switch (l.kind) {
    case LoopTerm::Kind::Repeat:
      s = "repeat(count=" +
          (l.count_expr.empty() ? std::to_string(l.count) : "{{" + l.count_expr.text() + "}}");
      break;
    case LoopTerm::Kind::Foreach:
      s = "foreach(over=" + l.over.text() + ",item=" + l.item + ",index=" + l.index +
          ",parallel=" + std::to_string(l.parallel);
      break;
    case LoopTerm::Kind::Until:
      s = "until(cond=" + l.cond.text() + ",max_iter=" + std::to_string(l.max_iter);
      break;
  }
  return s + ",collect=" + to_string(l.collect) + "){" + render(l.body.front()) + "}";
}

// A compact, unambiguous picture of a parsed term.
std::string render(const Term& t) {
  if (const auto* n = std::get_if<NodeTerm>(&t)) {
    return n->name == n->task ? n->name : n->name + ":" + n->task;
  }
  if (const auto* g = std::get_if<GroupTerm>(&t)) {
    std::string s = "(";
    for (std::size_t i = 0; i < g->branches.size(); ++i) {
      s += (i == 0 ? "" : (g->any ? "|" : "&")) + render(g->branches[i]);
    }
    return s + ")";
  }
  if (const auto* p = std::get_if<PipeTerm>(&t)) return "pipe(" + p->name + ")";
  if (const auto* sw = std::get_if<SwitchTerm>(&t)) {
    std::string s = "switch(" + sw->on.text() + "){";
    for (const SwitchCase& c : sw->cases) {
      s += (c.is_default ? std::string("default") : to_json_text(c.match)) + ":" +
           render(c.body.front()) + ";";
    }
    return s + "}";
  }
  return render_loop(std::get<LoopTerm>(t));
}

std::string render(const Pipeline& p) {
  std::string s;
  for (std::size_t i = 0; i < p.terms.size(); ++i) s += (i == 0 ? "" : ">>") + render(p.terms[i]);
  return s;
}

std::string render(const Graph& g) {
  std::string s;
  for (std::size_t i = 0; i < g.statements.size(); ++i) {
    s += (i == 0 ? "" : "\n") + render(g.statements[i]);
  }
  return s;
}

const SourceLocation kOrigin{"flow.yaml", 1, 1};

Graph parse(const std::string& text) { return parse_graph(text, kOrigin); }

struct Valid {
  const char* text;
  const char* tree;
};

struct Invalid {
  const char* text;
  const char* message;  // a fragment of FlowError::problem()
  std::uint32_t line, column;
};

}  // namespace

BOOST_AUTO_TEST_CASE(every_form_parses_to_what_it_means) {
  const std::vector<Valid> table = {
      {"a", "a"},
      {"a >> b >> c", "a>>b>>c"},
      {"a>>b", "a>>b"},
      {"first: emit >> second: emit", "first:emit>>second:emit"},
      {"a >> b\nc >> d", "a>>b\nc>>d"},
      {"a >> b; c", "a>>b\nc"},
      {"a >>\n  b", "a>>b"},
      // pyoco's layout: a line that starts with '>>' goes on with the one before
      {"a\n  >> b\n  >> c", "a>>b>>c"},
      {"a\n\n  # why\n  >> b\nc", "a>>b\nc"},
      {"pipe(setup) >> a", "pipe(setup)>>a"},
      {"(a & b)", "(a&b)"},
      {"a >> (b & c & d) >> e", "a>>(b&c&d)>>e"},
      {"(x | y) >> z", "(x|y)>>z"},
      {"((a >> b) & c) >> d", "((a>>b)&c)>>d"},
      {"(a >> b & c >> d)", "(a>>b&c>>d)"},
      {"(a\n & b)", "(a&b)"},
      {"switch(on={{mode}}) { fast: f; \"slow one\": s; default: d; }",
       "switch(mode){\"fast\":f;\"slow one\":s;default:d;}"},
      {"switch(on={{mode}}) { 'a': x; b: y }", "switch(mode){\"a\":x;\"b\":y;}"},
      {"switch(on={{n}}) { 1: one; 2.5: half; }", "switch(n){1:one;\"2.5\":half;}"},
      {"switch(on=mode) { a: x >> y; }", "switch(mode){\"a\":x>>y;}"},
      {"repeat(count=3) { tick }", "repeat(count=3,collect=list){tick}"},
      // pyoco: a count may be an expression (a bare name is a param)
      {"repeat(count={{n * 2}}) { tick }", "repeat(count={{n * 2}},collect=list){tick}"},
      {"repeat(count=n) { tick }", "repeat(count={{n}},collect=list){tick}"},
      {"repeat(count=0, collect=last) { tick }", "repeat(count=0,collect=last){tick}"},
      {"foreach(over={{items}}) { shout }",
       "foreach(over=items,item=item,index=index,parallel=1,collect=list){shout}"},
      {"foreach(over={{items}}, item=it, index=i, collect=flatten, parallel=4) { a >> b }",
       "foreach(over=items,item=it,index=i,parallel=4,collect=flatten){a>>b}"},
      {"foreach(over={{params.xs}}, collect=first) { a }",
       "foreach(over=params.xs,item=item,index=index,parallel=1,collect=first){a}"},
      {"until(cond={{params.done}}, max_iter=5, collect=last) { step }",
       "until(cond=params.done,max_iter=5,collect=last){step}"},
      {"until(cond={{scratch.n >= 3}}) { step }",
       "until(cond=scratch.n >= 3,max_iter=0,collect=list){step}"},
      {"repeat(count=2) { foreach(over={{xs}}) { (a | b) } }",
       "repeat(count=2,collect=list){foreach(over=xs,item=item,index=index,parallel=1,collect="
       "list){(a|b)}}"},
      {"# a comment\na >> b  # trailing\n# another", "a>>b"},
      {"a >> b # not >> c", "a>>b"},
      {"\n\n  a\n\n", "a"},
      // docs/flows.md: a bare name, number or quoted string is an expression too
      {"switch(on=3) { 3: a; }", "switch(3){3:a;}"},
      {"switch(on=\"x y\") { \"x y\": a; }", "switch(\"x y\"){\"x y\":a;}"},
      {"switch(on={{mode}}) { true: a; False: b; }", "switch(mode){true:a;\"False\":b;}"},
      // pyoco's quoted branch: the string holds a pipeline
      {"switch(on={{m}}) { c: \"c >> z\"; default: d }", "switch(m){\"c\":c>>z;default:d;}"},
      {"foreach(over=items) { a }",
       "foreach(over=items,item=item,index=index,parallel=1,collect=list){a}"},
      // the limits, just inside
      {"repeat(count=1000000) { a }", "repeat(count=1000000,collect=list){a}"},
      {"until(cond={{d}}, max_iter=1000000) { a }",
       "until(cond=d,max_iter=1000000,collect=list){a}"},
      {"foreach(over={{xs}}, parallel=10000) { a }",
       "foreach(over=xs,item=item,index=index,parallel=10000,collect=list){a}"},
  };
  for (const Valid& v : table) {
    BOOST_TEST_CONTEXT(v.text) { BOOST_TEST(render(parse(v.text)) == v.tree); }
  }
}

BOOST_AUTO_TEST_CASE(mistakes_name_the_problem_at_its_line_and_column) {
  const std::vector<Invalid> table = {
      {"a > b", "a lone '>': use '>>' to chain steps", 1, 3},
      {"a >> b\n  b > c", "use '>>'", 2, 5},
      {"(a & b", "expected ')' to close the group, found end of graph", 1, 7},
      {"a >> b)", "expected '>>' or the end of the line, found ')'", 1, 7},
      {"a & b", "steps that run together are a group in parentheses: write (a & b)", 1, 3},
      {"a >> b | c", "a group in parentheses: write (a | b), or (a | b) >> c", 1, 8},
      {"(a & b) )", "found ')'", 1, 9},
      {"()", "expected a step", 1, 2},
      {"(a & b | c)", "mixing '&' and '|' in one group: add parentheses", 1, 8},
      {"a >>",
       "expected a step (a task name, '(' or switch/repeat/foreach/until/pipe), found "
       "end of graph",
       1, 5},
      {"a >> >> b", "expected a step", 1, 6},
      {"a b", "expected '>>' or the end of the line, found 'b'", 1, 3},
      {"", "the graph is empty", 1, 1},
      {"# only a comment", "the graph is empty", 1, 17},
      {"a >> $b", "unexpected character '$'", 1, 6},
      {"foreach(over=params.items) { a }",
       "unexpected character '.'; an expression is written in {{ }}: over={{params.items}}", 1, 20},
      {"foreach(over=$ctx.params.items) { a }",
       "unexpected character '$'; an expression is written in {{ }}: over={{$ctx.params.items}}", 1,
       14},
      {"a \xE2\x87\x92 b", "unexpected character '\xE2\x87\x92'", 1, 3},  // ⇒, whole
      {"first: ",
       "expected a name after ':' (name: task, or name: switch/loop(...)), found end of graph", 1,
       8},
      {"call(x)", "'call(' is not a step", 1, 1},
      {"pipe()", "expected a name in pipe(NAME), found ')'", 1, 6},
      {"pipe(a b)", "expected ')' after the pipe's name, found 'b'", 1, 8},
      {"repeat(count=3, times=2) { a }",
       "repeat has no argument 'times' (it takes count=, collect=)", 1, 17},
      {"foreach(over={{xs}}, count=2) { a }",
       "foreach has no argument 'count' (it takes over=, item=, index=, parallel=, collect=)", 1,
       22},
      {"until(cond={{done}}, parallel=2) { a }",
       "until has no argument 'parallel' (it takes cond=, max_iter=, collect=)", 1, 22},
      {"switch(mode={{m}}) { a: x }", "switch has no argument 'mode' (it takes on=)", 1, 8},
      {"repeat(collect=list) { a }", "repeat needs count=", 1, 1},
      {"foreach(item=x) { a }", "foreach needs over=", 1, 1},
      {"until(max_iter=3) { a }", "until needs cond=", 1, 1},
      {"switch() { a: x }", "switch needs on=", 1, 1},
      {"repeat(count=2.5) { a }", "count must be an integer", 1, 14},
      {"repeat(count=-1) { a }", "count must be at least 0", 1, 14},
      {"foreach(over={{xs}}, parallel=0) { a }", "parallel must be at least 1", 1, 31},
      {"until(cond={{d}}, max_iter=0) { a }", "max_iter must be at least 1", 1, 28},
      {"repeat(count=2, collect=all) { a }",
       "collect must be list, last, first or flatten, not 'all'", 1, 25},
      {"foreach(over={{xs}}, item=\"it\") { a }", "item must be a name", 1, 27},
      {"repeat(count=2) a", "expected '{' to open repeat's body, found 'a'", 1, 17},
      {"repeat(count=2) { a", "expected '}' to close the body, found end of graph", 1, 20},
      {"repeat(count 2) { a }", "expected '=' after 'count', found '2'", 1, 14},
      {"repeat(count=) { a }", "expected a value for 'count', found ')'", 1, 14},
      {"switch(on={{m}}) { a: x; a: y }", "this switch already has a case 'a'", 1, 26},
      {"switch(on={{m}}) { default: x; default: y }", "already has a case 'default'", 1, 32},
      {"switch(on={{m}}) { }", "switch has no cases", 1, 1},
      {"switch(on={{m}}) { a x }", "expected ':' after the case label, found 'x'", 1, 22},
      {"switch(on={{m}}) { (a): x }", "expected a case label", 1, 20},
      {"switch(on={{m}}) { a: x b: y }", "to close the switch (separate cases with ';')", 1, 25},
      {"switch(on={{m}}) { a: x", "to close the switch", 1, 24},
      {"a >> \"b", "unterminated string", 1, 6},
      {"foreach(over={{xs) { a }", "'{{' without a closing '}}'", 1, 14},
      {"switch(on={{m ==}}) { a: x }", "in expression 'm ==': the expression ends too soon", 1, 17},
      {"until(cond={{f(1)}}, max_iter=2) { a }", "expressions cannot call functions", 1, 14},
      {"a >> b\n\n  c >> (d", "expected ')' to close the group", 3, 10},
      // docs/flows.md "Limits": just past them, said at the argument
      {"repeat(count=1000001) { a }", "count=1000001 is over the limit of 1000000 iterations", 1,
       14},
      {"until(cond={{d}}, max_iter=1000001) { a }",
       "max_iter=1000001 is over the limit of 1000000 iterations", 1, 28},
      {"foreach(over={{xs}}, parallel=10001) { a }",
       "parallel=10001 is over the limit of 10000 iterations at a time", 1, 31},
      // a quoted branch's mistakes are said where they are in the string
      {"switch(on={{m}}) { a: \"x >> >> y\" }", "expected a step", 1, 29},
      {"switch(on={{m}}) { a: \"x; y\" }", "a quoted branch holds one pipeline, not 2", 1, 23},
  };
  for (const Invalid& bad : table) {
    BOOST_TEST_CONTEXT(bad.text) {
      try {
        parse(bad.text);
        BOOST_ERROR("parsed, but should not have");
      } catch (const FlowError& e) {
        BOOST_TEST(e.problem().find(bad.message) != std::string::npos, e.problem());
        BOOST_TEST(e.where().file == "flow.yaml");
        BOOST_TEST(e.where().line == bad.line);
        BOOST_TEST(e.where().column == bad.column);
        // what() is the one line users see: file:line:column: problem
        BOOST_TEST(std::string(e.what()) == e.where().to_string() + ": " + e.problem());
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(locations_are_relative_to_where_the_graph_starts_in_the_file) {
  // A graph block starting at line 5, column 5 of its file.
  const Graph g = parse_graph("a >> b\n    c >> d", SourceLocation{"f.yaml", 5, 5});
  const auto& c = std::get<NodeTerm>(g.statements.at(1).terms.at(0));
  BOOST_TEST(c.where.line == 6u);
  BOOST_TEST(c.where.column == 9u);
  const auto& b = std::get<NodeTerm>(g.statements.at(0).terms.at(1));
  BOOST_TEST(b.where.line == 5u);
  BOOST_TEST(b.where.column == 10u);
  try {
    parse_graph("a >> b\n  c > d", SourceLocation{"f.yaml", 5, 5});
    BOOST_ERROR("parsed");
  } catch (const FlowError& e) {
    BOOST_TEST(e.where().to_string() == "f.yaml:6:9");
  }
}

BOOST_AUTO_TEST_CASE(a_named_node_keeps_name_and_task_apart) {
  const Graph g = parse("first: emit >> emit");
  const auto& first = std::get<NodeTerm>(g.statements.front().terms.at(0));
  const auto& bare = std::get<NodeTerm>(g.statements.front().terms.at(1));
  BOOST_TEST(first.name == "first");
  BOOST_TEST(first.task == "emit");
  BOOST_TEST(bare.name == "emit");
  BOOST_TEST(bare.task == "emit");
}

// Labels compile as pyoco compiles them (graph.py _compile_case_value):
// true/false are bools and digits ints, quoted or not; anything else is the
// string as written.
BOOST_AUTO_TEST_CASE(switch_labels_compile_as_pyoco_compiles_them) {
  const Graph g = parse(
      "switch(on={{n}}) { 5: a; \"2\": b; true: c; \"false\": d; 2.5: e; True: f; x: g; "
      "default: h; }");
  const auto& sw = std::get<SwitchTerm>(g.statements.front().terms.front());
  BOOST_TEST_REQUIRE(sw.cases.size() == 8u);
  BOOST_TEST(sw.cases[0].match.is_int());
  BOOST_TEST(sw.cases[0].match.as_int() == 5);
  BOOST_TEST(sw.cases[1].match.is_int());
  BOOST_TEST(sw.cases[1].match.as_int() == 2);
  BOOST_TEST(sw.cases[2].match.is_bool());
  BOOST_TEST(sw.cases[2].match.as_bool());
  BOOST_TEST(sw.cases[3].match.is_bool());
  BOOST_TEST(!sw.cases[3].match.as_bool());
  BOOST_TEST(sw.cases[4].match.as_string() == "2.5");
  BOOST_TEST(sw.cases[5].match.as_string() == "True");
  BOOST_TEST(sw.cases[6].match.as_string() == "x");
  BOOST_TEST(sw.cases[7].is_default);
  // "1" and 1 are the same label, and so are 1 and true (Python's ==)
  BOOST_CHECK_THROW(parse("switch(on={{n}}) { 1: a; \"1\": b }"), FlowError);
  BOOST_CHECK_THROW(parse("switch(on={{n}}) { 1: a; true: b }"), FlowError);
}

// Repeated labels are found by key, not by comparing every pair of cases
// (100,000 cases took over 20 s).
BOOST_AUTO_TEST_CASE(a_switch_of_100000_cases_is_checked_for_repeats_in_a_moment) {
  std::string text = "switch(on={{m}}) { ";
  for (int i = 0; i < 100000; ++i) text += "c" + std::to_string(i) + ": a; ";
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(parse(text + "default: b }").statements.size() == 1u);
  try {
    parse(text + "c99999: b }");
    BOOST_ERROR("parsed, but should not have");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem() == "this switch already has a case 'c99999'");
  }
  // 60 s: minutes with the bug, seconds under -O0 sanitizers without it.
  BOOST_TEST((std::chrono::steady_clock::now() - start < std::chrono::seconds(60)));
}

// A label of digits past int64 is an error, never a crash (std::stod threw
// out_of_range out of the parser: fuzz/regressions/graph_dsl/).
BOOST_AUTO_TEST_CASE(a_number_label_out_of_range_is_an_error_not_a_crash) {
  try {
    parse("switch(on={{m}}) { " + std::string(400, '9') + ": a }");
    BOOST_ERROR("parsed, but should not have");
  } catch (const FlowError& e) {
    BOOST_TEST(e.problem().find("is out of range for an integer") != std::string::npos,
               e.problem());
    BOOST_TEST(e.where().column == 20u);
  }
}

// Hostile nesting is an error at the line and column where it goes too
// deep, never a stack overflow (issue 12).
BOOST_AUTO_TEST_CASE(nesting_beyond_the_limit_is_an_error_not_a_crash) {
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  const std::vector<std::string> table = {
      repeat("(", 10000) + "a" + repeat(")", 10000),
      repeat("repeat(count=1) {", 10000) + "a" + repeat("}", 10000),
      repeat("switch(on={{x}}) {default: ", 5000) + "a" + repeat("}", 5000),
      repeat("(a & ", 70) + "b" + repeat(")", 70),
  };
  for (const std::string& text : table) {
    BOOST_TEST_CONTEXT(text.substr(0, 20)) {
      try {
        parse_graph(text, SourceLocation{"f.yaml", 2, 5});
        BOOST_ERROR("parsed, but should not have");
      } catch (const FlowError& e) {
        BOOST_TEST(e.problem() ==
                   "groups, switches and loops nest more than 64 levels deep here; flatten the "
                   "graph");
        BOOST_TEST(e.where().line == 2u);
        BOOST_TEST(e.where().column > 5u);
      }
    }
  }
  // 64 levels are fine.
  const Graph g =
      parse_graph(repeat("(", 64) + "a" + repeat(")", 64), SourceLocation{"f.yaml", 2, 5});
  BOOST_TEST(g.statements.size() == 1u);
}
