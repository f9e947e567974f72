// The safe expression language of flow files: `{{mode}}`,
// `{{params.n > 3 and not scratch.done}}`, `{{loop.item in ["a", "b"]}}`.
//
// Literals (numbers, strings, true/false/null, [lists]); paths rooted at
// params, results, scratch, loop, env (a bare name means params.<name>;
// `$ctx.params.x` and `$env.X` are accepted too); `and or not`;
// comparisons `== != < <= > >= in`; arithmetic `+ - * / %`. No calls, no
// attribute access on values beyond path keys: a flow file never runs code.
#pragma once

#include <pyoco/core/flow_spec.hpp>
#include <pyoco/core/value.hpp>

#include <memory>
#include <string>
#include <vector>

namespace pyoco::core {

// Where a path looks its first segment up.
enum class PathRoot { Params, Results, Scratch, Loop, Env };

struct ExprNode;

class Expression {
 public:
  Expression() = default;
  // Parses `text` (without the braces); errors are FlowErrors at `origin`
  // shifted to the offending column.
  static Expression parse(std::string_view text, const SourceLocation& origin);

  // What an expression reads: evaluate() asks this for each path.
  class Scope {
   public:
    virtual ~Scope() = default;
    // Null when absent.
    virtual Value lookup(PathRoot root, const std::vector<std::string>& path) const = 0;
  };

  // Throws FlowError (at the expression's location) on a type error, e.g.
  // comparing a string with a number by < or dividing by zero.
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

}  // namespace pyoco::core
