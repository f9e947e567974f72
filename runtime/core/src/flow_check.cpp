// `pyoco check`: what a compiled flow gets wrong beyond compile errors. Its own
// file: it reads the graph and the task catalog, and builds nothing.
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/text.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pyoco::core {

namespace {

// 10000, 2.5: a number of the flow file as it was written.
std::string number_text(double d) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return r.ec == std::errc() ? std::string(buf, r.ptr) : std::to_string(d);
}

class Checker {
 public:
  Checker(const CompiledFlow& flow, const TaskResolver& tasks, const Value& params)
      : flow_(flow), tasks_(tasks), params_(params) {}

  std::vector<Diagnostic> run() {
    std::set<std::string> used;
    walk(flow_.graph, used, {});
    // An entry that a used alias runs as (`use: base`) is used too. By
    // name through a map: a file may chain 100,000 aliases.
    std::unordered_map<std::string_view, const TaskSpec*> by_name;
    for (const TaskSpec& t : flow_.spec->tasks) by_name.emplace(t.name, &t);
    for (const TaskSpec& t : flow_.spec->tasks) {
      if (used.count(t.name) == 0) continue;
      for (const TaskSpec* a = &t; !a->alias_of.empty() && used.insert(a->alias_of).second;) {
        const auto base = by_name.find(a->alias_of);
        if (base == by_name.end()) break;
        a = base->second;
      }
    }
    for (const TaskSpec& t : flow_.spec->tasks) {
      if (used.count(t.name) == 0) {
        warn(t.where, "task '" + t.name + "' is never used in the graph (orphan)");
      } else if (t.retries > 0 && t.backoff.initial_ms > t.backoff.max_ms) {
        // The documented formula caps every wait at max_ms: an initial_ms
        // over it (max_ms is 5000 unless set) is cut without a word.
        const bool default_max = t.backoff.max_ms == RetryBackoff{}.max_ms;
        warn(t.where, "task '" + t.name + "': retry_backoff initial_ms " +
                          number_text(t.backoff.initial_ms) + " is over max_ms " +
                          number_text(t.backoff.max_ms) + (default_max ? " (the default)" : "") +
                          ", which caps every wait: each retry waits " +
                          number_text(t.backoff.max_ms) + " ms; set max_ms to " +
                          number_text(t.backoff.initial_ms) +
                          " or more (retry_backoff: {..., max_ms: N}), or a smaller initial_ms");
      }
    }
    std::stable_sort(out_.begin(), out_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return a.where.line < b.where.line ||
             (a.where.line == b.where.line && a.where.column < b.where.column);
    });
    return out_;
  }

 private:
  void error(const SourceLocation& w, std::string m) {
    out_.push_back({Diagnostic::Severity::Error, w, std::move(m)});
  }
  void warn(const SourceLocation& w, std::string m) {
    out_.push_back({Diagnostic::Severity::Warning, w, std::move(m)});
  }

  // `loop_vars`: the loop variables the nodes of `g` see (those of every
  // enclosing loop, as the engine gives them: foreach's item and index
  // aliases, repeat's and until's index).
  void walk(const FlowGraph& g, std::set<std::string>& used,
            const std::set<std::string>& loop_vars) {
    for (std::uint32_t i = 0; i < g.nodes.size(); ++i) {
      const GraphNode& n = g.nodes[i];
      std::set<std::string> inner = loop_vars;
      if (n.kind == GraphNode::Kind::Task) {
        used.insert(n.task->name);
        check_task(g, i, loop_vars);
      } else if (n.kind == GraphNode::Kind::Switch) {
        check_expression(n.switch_term->on, !loop_vars.empty());
        check_labels(*n.switch_term);
        const bool has_default =
            std::any_of(n.switch_term->cases.begin(), n.switch_term->cases.end(),
                        [](const dsl::SwitchCase& c) { return c.is_default; });
        if (!has_default) {
          warn(n.where, "switch has no default: a value no case matches fails the run");
        }
      } else if (n.kind == GraphNode::Kind::Loop) {
        const dsl::LoopTerm& l = *n.loop_term;
        if (l.kind == dsl::LoopTerm::Kind::Foreach) {
          check_expression(l.over, !loop_vars.empty());
          inner.insert(l.item);
          inner.insert(l.index);
        } else {
          inner.insert("index");
        }
        if (!l.count_expr.empty()) check_expression(l.count_expr, !loop_vars.empty());
        if (l.kind == dsl::LoopTerm::Kind::Until) {
          check_expression(l.cond, true);  // evaluated in the iteration
          if (l.max_iter == 0) {
            warn(n.where, "until has no max_iter: it fails after " +
                              std::to_string(dsl::kDefaultUntilMaxIter) +
                              " iterations with its condition still false; write max_iter=N");
          }
        }
      }
      enclosing_.emplace_back(&g, i);
      for (const auto& c : n.children) walk(*c, used, inner);
      enclosing_.pop_back();
    }
  }

  // Where `$node.<name>` from node `id` of `g` resolves, as the engine looks
  // it up: in this graph, else in the graphs around this switch or loop body,
  // innermost first. `before`: the node finishes before `waiter`, which is
  // the node that reads it or the switch or loop holding that node.
  struct Upstream {
    bool found = false;
    bool before = false;  // surely succeeded first, on every path
    bool maybe = false;   // upstream, but only on some paths (an OR-join between)
    std::string waiter;
  };
  Upstream upstream(const FlowGraph& g, std::uint32_t id, const std::string& name) const {
    const FlowGraph* graph = &g;
    std::uint32_t node = id;
    for (std::size_t level = enclosing_.size();;) {
      std::int64_t found = graph->find(name);
      // A node inside a loop body or a switch case is read after that loop
      // or switch (its last run), as pyoco's results.<node> is.
      for (std::uint32_t c = 0; found < 0 && c < graph->nodes.size(); ++c) {
        if (c != node && holds(graph->nodes[c], name)) found = c;
      }
      if (found >= 0) {
        const auto f = static_cast<std::uint32_t>(found);
        const bool sure = graph->guaranteed_before(f, node);
        return {true, sure, !sure && graph->precedes(f, node), graph->nodes[node].name};
      }
      if (level == 0) return {};
      --level;
      graph = enclosing_[level].first;
      node = enclosing_[level].second;
    }
  }

  // Whether a node of this name is somewhere inside control node `n`.
  static bool holds(const GraphNode& n, const std::string& name) {
    for (const auto& child : n.children) {
      if (child->find(name) >= 0) return true;
      for (const GraphNode& inner : child->nodes) {
        if (holds(inner, name)) return true;
      }
    }
    return false;
  }

  // Where a node of this name is, anywhere in the flow: "in case 'fast' of
  // switch_1", "in the body of foreach_2"; empty when nowhere.
  std::string locate(const std::string& name) const { return locate_in(flow_.graph, name); }
  static std::string locate_in(const FlowGraph& g, const std::string& name) {
    for (const GraphNode& n : g.nodes) {
      for (std::size_t c = 0; c < n.children.size(); ++c) {
        const FlowGraph& child = *n.children[c];
        std::string here;
        if (n.kind == GraphNode::Kind::Switch) {
          const dsl::SwitchCase& sc = n.switch_term->cases[c];
          here = sc.is_default ? "in the default case of " + n.name
                               : "in case '" + to_json_text(sc.match) + "' of " + n.name;
        } else {
          here = "in the body of " + n.name;
        }
        if (child.find(name) >= 0) return here;
        if (std::string deeper = locate_in(child, name); !deeper.empty()) {
          return deeper + ", " + here;
        }
      }
    }
    return {};
  }

  // What an expression reads that cannot be there when it runs fails the
  // run then, as in pyoco: said here as warnings.
  void check_expression(const Expression& e, bool in_loop) {
    for (const auto& use : e.paths()) {
      const std::string first = use.path.empty() ? "" : use.path[0];
      switch (use.root) {
        case PathRoot::Params:
          if (!first.empty() && !params_.contains(first) && !written("params", first)) {
            warn(e.where(), "'" + first +
                                "' is not a param in flow.defaults: the run fails when it reads "
                                "it (pass --param " +
                                first + "=...)");
          }
          break;
        case PathRoot::Results:
          if (!first.empty() && locate(first).empty() && flow_.graph.find(first) < 0 &&
              !written("results", first)) {
            warn(e.where(), "'results." + first + "': no node '" + first +
                                "' is in the graph: the run fails when it reads it");
          }
          break;
        case PathRoot::Loop:
        case PathRoot::Vars:
        case PathRoot::LoopFrame:
          if (!in_loop) {
            warn(e.where(), "'" + e.text() +
                                "' reads a loop's variables outside any loop: the run fails "
                                "when it reads them");
          }
          break;
        default:
          break;
      }
    }
  }

  // Labels pyoco compiles to strings that look like something else.
  void check_labels(const dsl::SwitchTerm& s) {
    for (const dsl::SwitchCase& c : s.cases) {
      if (c.is_default || !c.match.is_string()) continue;
      const std::string text(c.match.as_string());
      if (text == "True" || text == "False" || text == "TRUE" || text == "FALSE") {
        warn(c.where, "case '" + text + "' is the string \"" + text +
                          "\" (as in pyoco): a boolean subject matches only true: or false:");
      } else if (means_null(text)) {
        // A YAML habit (`null:` as a key): the label is no null, so a
        // subject that is null (a param set to null) falls to the default.
        warn(c.where, "case '" + text + "' is the string \"" + text +
                          "\" (as in pyoco), not null: a null subject does not match it; to "
                          "catch null write default:, or switch on {{x == null}} with true:");
      } else if (looks_numeric(text)) {
        warn(c.where, "case '" + text + "' is the string \"" + text +
                          "\" (as in pyoco, only digits make a number label): a number " + text +
                          " does not match it; switch on a string, or on {{x == " + text + "}}");
      }
    }
  }
  // How YAML, JSON and Python spell null (expressions read all of these).
  static bool means_null(const std::string& t) {
    return t == "null" || t == "Null" || t == "NULL" || t == "None" || t == "none";
  }
  static bool looks_numeric(const std::string& t) {
    if (t.empty()) return false;
    char* end = nullptr;
    std::strtod(t.c_str(), &end);
    return end == t.c_str() + t.size() && t.find_first_of("0123456789") != std::string::npos;
  }

  // Whether some task's `outputs:` writes <root>.<name> (results.x, params.x).
  bool written(const std::string& root, const std::string& name) const {
    const std::string path = root + "." + name;
    for (const TaskSpec& t : flow_.spec->tasks) {
      for (const std::string& o : t.outputs) {
        if (o == path || o.rfind(path + ".", 0) == 0) return true;
      }
    }
    return false;
  }

  void check_task(const FlowGraph& g, std::uint32_t id, const std::set<std::string>& loop_vars) {
    const GraphNode& n = g.nodes[id];
    const TaskSpec& t = *n.task;
    const TaskResolver::TaskInfo info = tasks_.resolve(t.use);
    if (!info.exists) {
      error(t.where, "task '" + t.name + "' uses \"" + t.use +
                         "\", which no plugin on the search path provides" +
                         (info.why_missing.empty() ? " (see `pyoco tasks`)" : info.why_missing));
    }
    std::set<std::string> bound;
    for (const InputBinding& b : t.inputs) {
      bound.insert(b.name);
      if (info.exists) check_declared(t, b, info);
      if (b.value.is_array() || b.value.is_object()) check_nested(b);
      if (!b.value.is_string() || b.value.as_string().empty() || b.value.as_string()[0] != '$') {
        continue;
      }
      check_reference(g, id, b, loop_vars);
    }
    if (!info.exists) return;
    for (const std::string& input : info.required_inputs) {
      if (bound.count(input) != 0 || params_.contains(input) || loop_vars.count(input) != 0) {
        continue;
      }
      if (upstream(g, id, input).before) continue;
      error(n.where, "node '" + n.name + "': required input '" + input + "' of " + t.use +
                         " is not in inputs:, not a param, and no upstream node is named so");
    }
  }

  // An input the task does not declare is a typo the task would never see;
  // a literal of another type than declared fails the task at run time.
  void check_declared(const TaskSpec& t, const InputBinding& b,
                      const TaskResolver::TaskInfo& info) {
    if (info.inputs_complete &&
        std::find(info.inputs.begin(), info.inputs.end(), b.name) == info.inputs.end()) {
      const std::string hint = nearest_name(b.name, info.inputs);
      std::string list;
      for (const std::string& known : info.inputs) list += (list.empty() ? "" : ", ") + known;
      error(b.where, "input '" + b.name + "' is not an input of " + t.use +
                         (hint.empty() ? "" : " (did you mean '" + hint + "'?)") + "; " +
                         (list.empty() ? "it takes none" : "it takes: " + list));
      return;
    }
    const auto type = info.input_types.find(b.name);
    if (type == info.input_types.end() || is_reference(b.value)) return;
    if (!fits_type(b.value, type->second)) {
      error(b.where, "input '" + b.name + "' of " + t.use + " is " + article(type->second) + " " +
                         type->second + "; the flow gives " + article(to_string(b.value.kind())) +
                         " " + to_string(b.value.kind()) + " (" + shown(b.value) + ")");
    }
  }

  static bool is_reference(const Value& v) {
    return v.is_string() && !v.as_string().empty() && v.as_string()[0] == '$';
  }
  static std::string article(const std::string& word) {
    return std::string("aeiou").find(word.empty() ? 'x' : word[0]) == std::string::npos ? "a"
                                                                                        : "an";
  }
  static std::string shown(const Value& v) {
    std::string text = to_json_text(v);
    return text.size() > 40 ? text.substr(0, 37) + "..." : text;
  }
  // As in pyoco, a reference is resolved only as a whole input value: a
  // `$ctx.params.n` inside a mapping or list reaches the task as that text.
  // Said once per input (a generated list may hold thousands).
  void check_nested(const InputBinding& b) {
    struct Item {
      Value value;
      std::string path;
      bool in_list;
    };
    std::vector<Item> todo{{b.value, b.name, false}};
    std::size_t found = 0;
    std::string first, first_path;
    bool first_in_list = false;
    while (!todo.empty()) {
      Item it = std::move(todo.back());
      todo.pop_back();
      if (it.value.is_string()) {
        const std::string_view text = it.value.as_string();
        if (text.rfind("$node.", 0) == 0 || text.rfind("$ctx.", 0) == 0 ||
            text.rfind("$loop.", 0) == 0 || text.rfind("$env.", 0) == 0) {
          if (found++ == 0) first = text, first_path = it.path, first_in_list = it.in_list;
        }
      } else if (it.value.is_array()) {
        // Pushed last to first: the first one found is the first written.
        for (std::size_t i = it.value.size(); i-- > 0;) {
          todo.push_back({it.value.at(i), it.path + "." + std::to_string(i), true});
        }
      } else if (it.value.is_object()) {
        for (std::size_t i = it.value.size(); i-- > 0;) {
          auto [key, v] = it.value.member(i);
          todo.push_back({v, it.path + "." + std::string(key), false});
        }
      }
    }
    if (found == 0) return;
    warn(b.where,
         "input '" + first_path + "' holds '" + first + "' inside " +
             (first_in_list ? "a list" : "a mapping") +
             (found > 1 ? " (and " + std::to_string(found - 1) + " more in '" + b.name + "')"
                        : std::string()) +
             ": references are resolved only as a whole input value, so the task gets that "
             "text; bind all of '" +
             b.name +
             "' to one reference instead (a param holding the whole value, or the output of a "
             "node that builds it), or pass the value as an input of its own");
  }

  void check_reference(const FlowGraph& g, std::uint32_t id, const InputBinding& b,
                       const std::set<std::string>& loop_vars) {
    const std::string ref(b.value.as_string());
    const std::string hint =
        "; write $node.<name>.output[.key...], $ctx.params.<name>, $env.<NAME> or, in a loop's "
        "body, $loop.<var>";
    // An empty key read as a key: "a..b" found nothing (null), "a." the
    // whole of a, at run time and without a word. $ctx.params. alone is
    // told below.
    const bool keyed = ref.rfind("$node.", 0) == 0 || ref.rfind("$loop.", 0) == 0 ||
                       (ref.rfind("$ctx.params.", 0) == 0 && ref.size() > 12);
    if (keyed && (ref.find("..") != std::string::npos || ref.back() == '.')) {
      error(b.where, "input '" + b.name + "': '" + ref +
                         "' has an empty key (two dots, or a dot at the end): write one dot "
                         "between keys");
      return;
    }
    if (ref.rfind("$node.", 0) == 0) {
      const std::size_t dot = ref.find('.', 6);
      const std::string node = ref.substr(6, dot - 6);
      const std::string rest = dot == std::string::npos ? "" : ref.substr(dot + 1);
      if (rest != "output" && rest.rfind("output.", 0) != 0) {
        error(b.where, "input '" + b.name + "': '" + ref + "' must go on with .output" + hint);
        return;
      }
      const Upstream target = upstream(g, id, node);
      if (!target.found && written("results", node)) {
        return;  // a name a task's outputs: writes (results.<name>), read when it runs
      }
      if (!target.found) {
        const std::string where = locate(node);
        error(b.where, "input '" + b.name + "': '" + ref + "' names node '" + node + "', " +
                           (where.empty() ? "which is not in the graph"
                                          : "which is " + where +
                                                ": it is seen inside it, and after it by the "
                                                "nodes that run after it"));
      } else if (node == g.nodes[id].name && target.waiter == node) {
        error(b.where, "input '" + b.name + "': node '" + node +
                           "' reads its own output, which does not exist before it ends");
      } else if (target.maybe) {
        error(b.where, "input '" + b.name + "': node '" + node + "' may not have run when '" +
                           target.waiter +
                           "' starts: an OR-join '|' between them goes on as soon as one "
                           "branch succeeds; read a node that every path to '" +
                           target.waiter + "' runs");
      } else if (!target.before) {
        error(b.where, "input '" + b.name + "': node '" + node + "' does not run before '" +
                           target.waiter + "' (add " + node + " >> " + target.waiter + ")");
      }
    } else if (ref.rfind("$ctx.params.", 0) == 0) {
      if (ref.size() == 12) error(b.where, "input '" + b.name + "': '" + ref + "' names no param");
    } else if (ref.rfind("$loop.", 0) == 0) {
      const std::size_t dot = ref.find('.', 6);
      const std::string var = ref.substr(6, dot == std::string::npos ? dot : dot - 6);
      if (loop_vars.empty()) {
        error(b.where, "input '" + b.name + "': '" + ref +
                           "' is outside a loop: $loop.<var> works only in the body of "
                           "foreach, repeat or until");
      } else if (loop_vars.count(var) == 0) {
        std::string known;
        for (const auto& v : loop_vars) known += (known.empty() ? "" : ", ") + v;
        error(b.where,
              "input '" + b.name + "': '" + ref + "' names no loop variable here (" + known + ")");
      }
    } else if (ref.rfind("$env.", 0) == 0) {
      if (ref.size() == 5)
        error(b.where, "input '" + b.name + "': '" + ref + "' names no variable");
    } else {
      error(b.where, "input '" + b.name + "': unsupported reference '" + ref + "'" + hint);
    }
  }

  const CompiledFlow& flow_;
  const TaskResolver& tasks_;
  const Value& params_;
  std::vector<Diagnostic> out_;
  // The switch and loop nodes around the body being walked, outermost first.
  std::vector<std::pair<const FlowGraph*, std::uint32_t>> enclosing_;
};

}  // namespace

std::vector<Diagnostic> check_flow(const CompiledFlow& flow, const TaskResolver& tasks,
                                   const Value& params) {
  return Checker(flow, tasks, params).run();
}

}  // namespace pyoco::core
