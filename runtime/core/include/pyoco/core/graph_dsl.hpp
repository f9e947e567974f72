// The graph DSL of flow files, parsed by a real lexer and parser (never
// evaluated as code):
//
//   pipeline := term (">>" term)*
//   term     := node | "(" group ")" | pipe(NAME) | switch | repeat | foreach | until
//   node     := IDENT | IDENT ":" IDENT        # second form: a named node reusing a task
//   group    := pipeline ("&" pipeline)*      # parallel branches, AND-join
//             | pipeline ("|" pipeline)*      # OR-join: the next runs when any branch succeeds
//   switch(on={{mode}}) { a: p1; "b": p2; 3: "p3 >> p4"; default: p5; }
//   repeat(count=3, collect=list) { pipeline }       # count={{n}} too
//   foreach(over={{items}}, item=it, index=i, collect=list, parallel=4) { pipeline }
//   until(cond={{params.done}}, max_iter=5, collect=last) { pipeline }
//
// Statements are separated by new lines (a line ending in >>, & or | goes
// on); `#` starts a comment. Errors are FlowErrors at the offending column.
#pragma once

#include <pyoco/core/expression.hpp>
#include <pyoco/core/flow_spec.hpp>

#include <string>
#include <variant>
#include <vector>

namespace pyoco::core::dsl {

enum class Collect { List, Last, First, Flatten };
const char* to_string(Collect c);

struct Pipeline;

struct NodeTerm {
  std::string name;  // the node
  std::string task;  // the tasks: entry it runs (== name unless "name: task")
  SourceLocation where;
};

struct GroupTerm {
  bool any = false;  // true: OR-join (|), false: AND-join (&)
  std::vector<Pipeline> branches;
  SourceLocation where;
};

struct PipeTerm {
  std::string name;
  SourceLocation where;
};

struct SwitchCase {
  bool is_default = false;
  // As pyoco compiles a label: `true`/`false` (quoted or not) a bool, digits
  // an int, anything else the string as written ("2.5", "True").
  Value match;
  std::vector<Pipeline> body;  // exactly one pipeline (vector: Pipeline is incomplete here)
  SourceLocation where;
};

struct SwitchTerm {
  std::string name;  // `name: switch(...)`; empty: numbered (switch_1, ...)
  Expression on;
  std::vector<SwitchCase> cases;
  SourceLocation where;
};

// The most iterations a loop may be given (count=, max_iter=, and a count
// an expression gives at run time): a typo of a few zeros would otherwise
// run, and record, for days.
inline constexpr std::int64_t kMaxIterations = 1'000'000;

// How many iterations an until without max_iter may run (pyoco's default).
inline constexpr std::int64_t kDefaultUntilMaxIter = 1000;

struct LoopTerm {
  enum class Kind { Repeat, Foreach, Until } kind;
  std::string name;           // `name: foreach(...)`; empty: numbered (foreach_1, ...)
  std::int64_t count = 0;     // repeat
  Expression count_expr;      // repeat(count={{n}}): evaluated when the loop starts
  Expression over;            // foreach
  std::string item = "item";  // foreach: loop.<item>
  std::string index = "index";
  std::int64_t parallel = 1;  // foreach
  Expression cond;            // until
  std::int64_t max_iter = 0;  // until; 0 = not given: kDefaultUntilMaxIter (check warns)
  Collect collect = Collect::List;
  std::vector<Pipeline> body;  // exactly one
  SourceLocation where;
};

// "repeat", "foreach" or "until".
const char* to_string(LoopTerm::Kind k);

using Term = std::variant<NodeTerm, GroupTerm, PipeTerm, SwitchTerm, LoopTerm>;

struct Pipeline {
  std::vector<Term> terms;
};

struct Graph {
  std::vector<Pipeline> statements;
};

// Parses graph text; `origin` is where its first character is in the file.
Graph parse_graph(std::string_view text, const SourceLocation& origin);

}  // namespace pyoco::core::dsl
