// The safe expression language of flow files: `{{mode}}`,
// `{{params.n > 3 and not scratch.done}}`, `{{loop.item in ["a", "b"]}}`.
//
// Literals (numbers, strings, true/false/null, [lists]); paths rooted at
// params, results, scratch, loop, env (a bare name means params.<name>), and
// pyoco's `$ctx.<path>` and `$env.X`; `and or not`; comparisons
// `== != < <= > >= in not in`, chained; arithmetic `+ - * / % **` with
// Python's semantics. A path that does not exist is an error, never null.
// No calls, no attribute access on values beyond path keys: a flow file
// never runs code.
#pragma once

#include <pyoco/core/flow_spec.hpp>
#include <pyoco/core/value.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pyoco::core {

// Where a path looks its first segment up.
enum class PathRoot {
  Params,     // params.x, $ctx.params.x, a bare name
  Results,    // results.node, $ctx.results.node
  Scratch,    // scratch.k, $ctx.scratch.k
  Loop,       // loop.x: a loop variable, else a field of the innermost loop
  Vars,       // $ctx.x: a loop variable only (pyoco's context vars)
  LoopFrame,  // $ctx.loop.field: the innermost loop (index, iteration, count, ...)
  Loops,      // $ctx.loops: every enclosing loop, outermost first
  Artifacts,  // $ctx.artifacts.name: what a task saved ({path, type, size, sha256})
  Env         // env.X, $env.X
};

struct ExprNode;

class Expression {
 public:
  Expression() = default;
  // Parses `text` (without the braces); errors are FlowErrors at `origin`
  // shifted to the offending column.
  static Expression parse(std::string_view text, const SourceLocation& origin);

  // What an expression reads: evaluate() asks this for each path's first
  // segment and walks the rest itself.
  class Scope {
   public:
    virtual ~Scope() = default;
    // The value `name` has under `root` (`name` empty: the whole root), or
    // nullopt when there is none; `why` may then say why ("it has not run").
    virtual std::optional<Value> lookup(PathRoot root, std::string_view name,
                                        std::string& why) const = 0;
  };

  // Throws FlowError (at the expression's location) on a type error, e.g.
  // comparing a string with a number by <, dividing by zero, or a path that
  // does not exist.
  Value evaluate(const Scope& scope) const;

  const std::string& text() const { return text_; }
  const SourceLocation& where() const { return where_; }
  bool empty() const { return root_ == nullptr; }

  // Every path the expression reads, for validation.
  struct PathUse {
    PathRoot root;
    std::vector<std::string> path;
  };
  std::vector<PathUse> paths() const;

 private:
  std::shared_ptr<const ExprNode> root_;
  std::string text_;
  SourceLocation where_;
};

// Truthiness as in Python: null, false, 0, "", [] and {} are false.
bool truthy(const Value& v);

// Python's ==: a bool is the int 0 or 1, 1 == 1.0, lists and objects equal
// member by member.
bool python_equal(const Value& a, const Value& b);

}  // namespace pyoco::core
