#include <pyoco/core/flow_graph.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace pyoco::core {

std::uint32_t FlowGraph::add(GraphNode node) {
  const auto id = static_cast<std::uint32_t>(nodes.size());
  index_.emplace(node.name, id);
  nodes.push_back(std::move(node));
  return id;
}

std::int64_t FlowGraph::find(std::string_view name) const {
  if (index_.size() == nodes.size()) {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? -1 : static_cast<std::int64_t>(it->second);
  }
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].name == name) return static_cast<std::int64_t>(i);
  }
  return -1;
}

std::vector<std::uint32_t> FlowGraph::roots() const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].requirements.empty()) out.push_back(i);
  }
  return out;
}

bool FlowGraph::precedes(std::uint32_t ancestor, std::uint32_t node) const {
  std::vector<bool> seen(nodes.size(), false);
  std::vector<std::uint32_t> stack = {node};
  while (!stack.empty()) {
    const std::uint32_t n = stack.back();
    stack.pop_back();
    for (const Requirement& r : nodes[n].requirements) {
      for (std::uint32_t p : r.nodes) {
        if (p == ancestor) return true;
        if (!seen[p]) {
          seen[p] = true;
          stack.push_back(p);
        }
      }
    }
  }
  return false;
}

namespace {

constexpr std::size_t kMaxPipeDepth = 128;
// Terms reached through pipes: nested pipes can expand exponentially. Terms
// written out in the graph itself are not limited (flows of 100,000 nodes).
constexpr std::size_t kMaxExpandedTerms = 4096;

using Exit = std::vector<Requirement>;

class Builder {
 public:
  explicit Builder(CompiledFlow& out) : out_(out), spec_(*out.spec) {
    tasks_.reserve(spec_.tasks.size());
    for (const TaskSpec& t : spec_.tasks) tasks_.emplace(t.name, &t);
  }

  void build_top() {
    for (const dsl::Pipeline& p : out_.ast->statements) pipeline(out_.graph, p, {});
    finish(out_.graph);
  }

 private:
  Exit pipeline(FlowGraph& g, const dsl::Pipeline& p, Exit incoming) {
    for (const dsl::Term& t : p.terms) incoming = term(g, t, std::move(incoming));
    return incoming;
  }

  Exit term(FlowGraph& g, const dsl::Term& t, const Exit& incoming) {
    if (!pipe_stack_.empty() && ++expanded_ > kMaxExpandedTerms) {
      throw FlowError(spec_.graph_where, "the graph expands to more than " +
                                             std::to_string(kMaxExpandedTerms) +
                                             " steps: pipes are probably nested too deep");
    }
    if (const auto* n = std::get_if<dsl::NodeTerm>(&t)) {
      const std::uint32_t id = task_node(g, *n);
      attach(g, id, incoming);
      return {Requirement{{id}, false}};
    }
    if (const auto* grp = std::get_if<dsl::GroupTerm>(&t)) {
      Exit out;
      std::vector<std::uint32_t> any_nodes;
      for (const dsl::Pipeline& branch : grp->branches) {
        Exit e = pipeline(g, branch, incoming);
        if (grp->any) {
          any_nodes.push_back(collapse(g, e, grp->where));
        } else {
          out.insert(out.end(), e.begin(), e.end());
        }
      }
      if (grp->any) out.push_back(Requirement{any_nodes, true});
      return out;
    }
    if (const auto* pipe = std::get_if<dsl::PipeTerm>(&t)) return expand_pipe(g, *pipe, incoming);
    if (const auto* sw = std::get_if<dsl::SwitchTerm>(&t)) {
      const std::uint32_t id = control_node(g, GraphNode::Kind::Switch, "switch", sw->where);
      g.nodes[id].switch_term = sw;
      for (const dsl::SwitchCase& c : sw->cases) {
        g.nodes[id].children.push_back(child(c.body.front()));
      }
      attach(g, id, incoming);
      return {Requirement{{id}, false}};
    }
    const auto& loop = std::get<dsl::LoopTerm>(t);
    const char* kind = loop.kind == dsl::LoopTerm::Kind::Repeat    ? "repeat"
                       : loop.kind == dsl::LoopTerm::Kind::Foreach ? "foreach"
                                                                   : "until";
    const std::uint32_t id = control_node(g, GraphNode::Kind::Loop, kind, loop.where);
    g.nodes[id].loop_term = &loop;
    g.nodes[id].children.push_back(child(loop.body.front()));
    attach(g, id, incoming);
    return {Requirement{{id}, false}};
  }

  std::shared_ptr<FlowGraph> child(const dsl::Pipeline& body) {
    auto g = std::make_shared<FlowGraph>();
    pipeline(*g, body, {});
    finish(*g);
    return g;
  }

  std::uint32_t task_node(FlowGraph& g, const dsl::NodeTerm& n) {
    const auto found = tasks_.find(n.task);
    const TaskSpec* task = found == tasks_.end() ? nullptr : found->second;
    if (task == nullptr) {
      throw FlowError(n.where, n.task == n.name
                                   ? "unknown node '" + n.name + "': add it under tasks:"
                                   : "node '" + n.name + "' uses task '" + n.task +
                                         "', which is not under tasks:");
    }
    const std::int64_t existing = g.find(n.name);
    if (existing >= 0) {
      GraphNode& node = g.nodes[static_cast<std::size_t>(existing)];
      if (node.task != task) {
        throw FlowError(n.where, "node '" + n.name + "' already runs task '" +
                                     (node.task != nullptr ? node.task->name : "?") +
                                     "'; give this one another name");
      }
      return static_cast<std::uint32_t>(existing);
    }
    GraphNode node;
    node.kind = GraphNode::Kind::Task;
    node.name = n.name;
    node.task = task;
    node.where = n.where;
    return g.add(std::move(node));
  }

  std::uint32_t control_node(FlowGraph& g, GraphNode::Kind kind, const char* label,
                             const SourceLocation& where) {
    GraphNode node;
    node.kind = kind;
    node.name = std::string(label) + "_" + std::to_string(++controls_[label]);
    node.where = where;
    return g.add(std::move(node));
  }

  // One node standing for an exit (an OR-join needs one node per branch).
  std::uint32_t collapse(FlowGraph& g, const Exit& e, const SourceLocation& where) {
    if (e.size() == 1 && e.front().nodes.size() == 1 && !e.front().any) {
      return e.front().nodes.front();
    }
    GraphNode join;
    join.kind = GraphNode::Kind::Join;
    join.name = "join_" + std::to_string(++controls_["join"]);
    join.where = where;
    const std::uint32_t id = g.add(std::move(join));
    attach(g, id, e);
    return id;
  }

  void attach(FlowGraph& g, std::uint32_t id, const Exit& incoming) {
    auto& reqs = g.nodes[id].requirements;
    // Several "all" requirements mean what one holding all their nodes
    // means: keep one, so a fan-in of 10,000 branches is one requirement.
    std::optional<std::size_t> all;  // an index: pushes below may move the vector
    std::unordered_set<std::uint32_t> in_all;
    for (const Requirement& r : incoming) {
      if (r.nodes.empty()) continue;
      if (r.any) {
        const bool dup = std::any_of(reqs.begin(), reqs.end(), [&](const Requirement& x) {
          return x.any && x.nodes == r.nodes;
        });
        if (!dup) reqs.push_back(r);
        continue;
      }
      if (!all) {
        auto it =
            std::find_if(reqs.begin(), reqs.end(), [](const Requirement& x) { return !x.any; });
        if (it == reqs.end()) it = reqs.insert(reqs.end(), Requirement{});
        all = static_cast<std::size_t>(it - reqs.begin());
        in_all.insert(reqs[*all].nodes.begin(), reqs[*all].nodes.end());
      }
      for (std::uint32_t n : r.nodes) {
        if (in_all.insert(n).second) reqs[*all].nodes.push_back(n);
      }
    }
  }

  Exit expand_pipe(FlowGraph& g, const dsl::PipeTerm& p, const Exit& incoming) {
    const PipeSpec* pipe = spec_.find_pipe(p.name);
    if (pipe == nullptr) {
      std::string known;
      for (const auto& ps : spec_.pipes) known += (known.empty() ? "" : ", ") + ps.name;
      throw FlowError(
          p.where, "unknown pipe '" + p.name + "'" +
                       (known.empty() ? " (the file has no pipes:)" : " (pipes: " + known + ")"));
    }
    if (std::find(pipe_stack_.begin(), pipe_stack_.end(), p.name) != pipe_stack_.end()) {
      std::string cycle;
      for (const auto& n : pipe_stack_) cycle += n + " -> ";
      throw FlowError(p.where, "pipe cycle: " + cycle + p.name);
    }
    if (pipe_stack_.size() >= kMaxPipeDepth) {
      throw FlowError(p.where, "pipes nest deeper than " + std::to_string(kMaxPipeDepth));
    }
    auto ast = std::make_shared<const dsl::Graph>(dsl::parse_graph(pipe->graph, pipe->where));
    out_.pipe_asts.push_back(ast);
    if (ast->statements.size() != 1) {
      throw FlowError(pipe->where, "pipe '" + p.name + "' must be one pipeline (one line)");
    }
    pipe_stack_.push_back(p.name);
    Exit e = pipeline(g, ast->statements.front(), incoming);
    pipe_stack_.pop_back();
    return e;
  }

  // Successors and releases, then a cycle check.
  void finish(FlowGraph& g) {
    for (auto& n : g.nodes) {
      n.successors.clear();
      n.releases.clear();
    }
    for (std::uint32_t i = 0; i < g.nodes.size(); ++i) {
      const auto& reqs = g.nodes[i].requirements;
      for (std::uint32_t r = 0; r < reqs.size(); ++r) {
        for (std::uint32_t p : reqs[r].nodes) {
          GraphNode& pred = g.nodes[p];
          if (pred.successors.empty() || pred.successors.back() != i) pred.successors.push_back(i);
          pred.releases.push_back({i, r});
        }
      }
    }
    // Depth-first search with colours finds a cycle and its path; iterative,
    // so a chain of 100,000 nodes does not exhaust the stack.
    std::vector<int> colour(g.nodes.size(), 0);
    std::vector<std::pair<std::uint32_t, std::size_t>> stack;  // node, next successor
    for (std::uint32_t root = 0; root < g.nodes.size(); ++root) {
      if (colour[root] != 0) continue;
      colour[root] = 1;
      stack.emplace_back(root, 0);
      while (!stack.empty()) {
        auto& [n, next] = stack.back();
        const auto& succ = g.nodes[n].successors;
        if (next == succ.size()) {
          colour[n] = 2;
          stack.pop_back();
          continue;
        }
        const std::uint32_t s = succ[next++];
        if (colour[s] == 1) {
          std::string cycle;
          auto from = std::find_if(stack.begin(), stack.end(),
                                   [&](const auto& frame) { return frame.first == s; });
          for (auto it = from; it != stack.end(); ++it) cycle += g.nodes[it->first].name + " -> ";
          throw FlowError(g.nodes[s].where, "cycle: " + cycle + g.nodes[s].name +
                                                " (a repeated name is the same node; use "
                                                "name: task for a second one)");
        }
        if (colour[s] == 0) {
          colour[s] = 1;
          stack.emplace_back(s, 0);
        }
      }
    }
  }

  CompiledFlow& out_;
  const FlowSpec& spec_;
  std::unordered_map<std::string_view, const TaskSpec*> tasks_;  // spec_.tasks by name
  std::vector<std::string> pipe_stack_;
  std::size_t expanded_ = 0;
  std::map<std::string, int> controls_;
};

}  // namespace

CompiledFlow compile_flow(std::shared_ptr<const FlowSpec> spec,
                          std::shared_ptr<const dsl::Graph> graph) {
  CompiledFlow out;
  out.spec = std::move(spec);
  out.ast = std::move(graph);
  Builder(out).build_top();
  return out;
}

CompiledFlow compile_flow(std::shared_ptr<const FlowSpec> spec) {
  auto graph = std::make_shared<const dsl::Graph>(dsl::parse_graph(spec->graph, spec->graph_where));
  return compile_flow(std::move(spec), std::move(graph));
}

// ---- check ----------------------------------------------------------------

namespace {

class Checker {
 public:
  Checker(const CompiledFlow& flow, const TaskResolver& tasks, const Value& params)
      : flow_(flow), tasks_(tasks), params_(params) {}

  std::vector<Diagnostic> run() {
    std::set<std::string> used;
    walk(flow_.graph, used, {});
    for (const TaskSpec& t : flow_.spec->tasks) {
      if (used.count(t.name) == 0) {
        warn(t.where, "task '" + t.name + "' is never used in the graph (orphan)");
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
        check_expression(n.switch_term->on);
        const bool has_default =
            std::any_of(n.switch_term->cases.begin(), n.switch_term->cases.end(),
                        [](const dsl::SwitchCase& c) { return c.is_default; });
        if (!has_default) {
          warn(n.where, "switch has no default: a value no case matches fails the run");
        }
      } else if (n.kind == GraphNode::Kind::Loop) {
        const dsl::LoopTerm& l = *n.loop_term;
        if (l.kind == dsl::LoopTerm::Kind::Foreach) {
          check_expression(l.over);
          inner.insert(l.item);
          inner.insert(l.index);
        } else {
          inner.insert("index");
        }
        if (l.kind == dsl::LoopTerm::Kind::Until) {
          check_expression(l.cond);
          if (l.max_iter == 0) {
            error(n.where, "until has no max_iter: add max_iter=N so it cannot loop forever");
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
    bool before = false;
    std::string waiter;
  };
  Upstream upstream(const FlowGraph& g, std::uint32_t id, const std::string& name) const {
    const FlowGraph* graph = &g;
    std::uint32_t node = id;
    for (std::size_t level = enclosing_.size();;) {
      const std::int64_t found = graph->find(name);
      if (found >= 0) {
        return {true, graph->precedes(static_cast<std::uint32_t>(found), node),
                graph->nodes[node].name};
      }
      if (level == 0) return {};
      --level;
      graph = enclosing_[level].first;
      node = enclosing_[level].second;
    }
  }

  void check_expression(const Expression& e) {
    for (const auto& use : e.paths()) {
      if (use.root == PathRoot::Params && !use.path.empty() && !params_.contains(use.path[0])) {
        warn(e.where(), "'" + use.path[0] + "' is not a param in flow.defaults: pass --param " +
                            use.path[0] + "=...");
      }
    }
  }

  void check_task(const FlowGraph& g, std::uint32_t id, const std::set<std::string>& loop_vars) {
    const GraphNode& n = g.nodes[id];
    const TaskSpec& t = *n.task;
    const TaskResolver::TaskInfo info = tasks_.resolve(t.use);
    if (!info.exists) {
      error(t.where, "task '" + t.name + "' uses \"" + t.use +
                         "\", which no plugin on the search path provides (see `pyoco tasks`)");
    }
    std::set<std::string> bound;
    for (const InputBinding& b : t.inputs) {
      bound.insert(b.name);
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

  void check_reference(const FlowGraph& g, std::uint32_t id, const InputBinding& b,
                       const std::set<std::string>& loop_vars) {
    const std::string ref(b.value.as_string());
    const std::string hint =
        "; write $node.<name>.output[.key...], $ctx.params.<name>, $env.<NAME> or, in a loop's "
        "body, $loop.<var>";
    if (ref.rfind("$node.", 0) == 0) {
      const std::size_t dot = ref.find('.', 6);
      const std::string node = ref.substr(6, dot - 6);
      const std::string rest = dot == std::string::npos ? "" : ref.substr(dot + 1);
      if (rest != "output" && rest.rfind("output.", 0) != 0) {
        error(b.where, "input '" + b.name + "': '" + ref + "' must go on with .output" + hint);
        return;
      }
      const Upstream target = upstream(g, id, node);
      if (!target.found) {
        error(b.where, "input '" + b.name + "': '" + ref + "' names node '" + node +
                           "', which is not in the graph");
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

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\\\"") : std::string(1, c);
  return out + "\"";
}

std::string node_label(const GraphNode& n) {
  if (n.kind == GraphNode::Kind::Task) {
    return n.name == n.task->name ? n.name + "\\n" + n.task->use
                                  : n.name + " (" + n.task->name + ")\\n" + n.task->use;
  }
  return n.name;
}

void dot_graph(const FlowGraph& g, const std::string& prefix, std::string& out, int& clusters) {
  for (std::uint32_t i = 0; i < g.nodes.size(); ++i) {
    const GraphNode& n = g.nodes[i];
    const std::string id = quoted(prefix + n.name);
    if (n.kind == GraphNode::Kind::Join) {
      out += "  " + id + " [shape=point];\n";
    } else if (n.kind == GraphNode::Kind::Task) {
      out += "  " + id + " [label=" + quoted(node_label(n)) + "];\n";
    } else {
      out += "  " + id + " [shape=diamond, label=" + quoted(n.name) + "];\n";
      for (std::size_t c = 0; c < n.children.size(); ++c) {
        std::string label = n.name;
        if (n.kind == GraphNode::Kind::Switch) {
          const auto& sc = n.switch_term->cases[c];
          label += sc.is_default ? ": default" : ": " + to_json_text(sc.match);
        }
        const std::string sub = prefix + n.name + "/" + std::to_string(c) + "/";
        out += "  subgraph cluster_" + std::to_string(++clusters) +
               " {\n    label=" + quoted(label) + ";\n";
        std::string inner;
        dot_graph(*n.children[c], sub, inner, clusters);
        out += inner;
        out += "  }\n";
        for (std::uint32_t r : n.children[c]->roots()) {
          out += "  " + id + " -> " + quoted(sub + n.children[c]->nodes[r].name) +
                 " [style=dashed];\n";
        }
      }
    }
    for (const Requirement& r : n.requirements) {
      for (std::uint32_t p : r.nodes) {
        out += "  " + quoted(prefix + g.nodes[p].name) + " -> " + id +
               (r.any ? " [style=dotted, label=\"any\"]" : "") + ";\n";
      }
    }
  }
}

std::string mermaid_id(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

// Text inside a quoted Mermaid label: a '"' would end it, so it is written
// as the entity #quot; (and '#' as #35; so that text is never read as one).
std::string mermaid_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') {
      out += "#quot;";
    } else if (c == '#') {
      out += "#35;";
    } else {
      out += c;
    }
  }
  return out;
}

void mermaid_graph(const FlowGraph& g, const std::string& prefix, std::string& out) {
  for (const GraphNode& n : g.nodes) {
    const std::string id = mermaid_id(prefix + n.name);
    if (n.kind == GraphNode::Kind::Join) {
      out += "  " + id + "(( ))\n";
    } else if (n.kind == GraphNode::Kind::Task) {
      out +=
          "  " + id + "[\"" + mermaid_text(n.name) + "<br/>" + mermaid_text(n.task->use) + "\"]\n";
    } else {
      out += "  " + id + "{\"" + mermaid_text(n.name) + "\"}\n";
      for (std::size_t c = 0; c < n.children.size(); ++c) {
        const std::string sub = prefix + n.name + "_" + std::to_string(c) + "_";
        std::string label = n.name;
        if (n.kind == GraphNode::Kind::Switch) {
          const auto& sc = n.switch_term->cases[c];
          label += sc.is_default ? ": default" : ": " + std::string(to_json_text(sc.match));
        }
        out += "  subgraph " + mermaid_id(sub) + "[\"" + mermaid_text(label) + "\"]\n";
        mermaid_graph(*n.children[c], sub, out);
        out += "  end\n";
        for (std::uint32_t r : n.children[c]->roots()) {
          out += "  " + id + " -.-> " + mermaid_id(sub + n.children[c]->nodes[r].name) + "\n";
        }
      }
    }
    for (const Requirement& r : n.requirements) {
      for (std::uint32_t p : r.nodes) {
        out += "  " + mermaid_id(prefix + g.nodes[p].name) + (r.any ? " -. any .-> " : " --> ") +
               id + "\n";
      }
    }
  }
}

}  // namespace

std::vector<Diagnostic> check_flow(const CompiledFlow& flow, const TaskResolver& tasks,
                                   const Value& params) {
  return Checker(flow, tasks, params).run();
}

std::string export_dot(const CompiledFlow& flow) {
  std::string out =
      "digraph " + quoted(flow.spec->name) + " {\n  rankdir=LR;\n  node [shape=box];\n";
  int clusters = 0;
  dot_graph(flow.graph, "", out, clusters);
  return out + "}\n";
}

std::string export_mermaid(const CompiledFlow& flow) {
  std::string out = "flowchart LR\n";
  mermaid_graph(flow.graph, "", out);
  return out;
}

}  // namespace pyoco::core
