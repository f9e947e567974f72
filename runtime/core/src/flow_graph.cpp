// Building a flow's DAG from its parsed graph: nodes, requirements, pipes
// expanded, successors and the cycle check. Checking and export are their own files.
#include <pyoco/core/flow_graph.hpp>

#include <algorithm>
#include <map>
#include <optional>
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

bool FlowGraph::guaranteed_before(std::uint32_t ancestor, std::uint32_t node) const {
  // Backwards from `node`, each node decided once its predecessors are:
  // it is "after `ancestor` for sure" when one of its requirements makes it
  // so — an "all" through any of its nodes, an "any" through every one.
  enum : std::uint8_t { kUnseen, kOpen, kNo, kYes };
  std::vector<std::uint8_t> state(nodes.size(), kUnseen);
  auto sure = [&](std::uint32_t p) { return p == ancestor || state[p] == kYes; };
  std::vector<std::uint32_t> stack = {node};
  while (!stack.empty()) {
    const std::uint32_t n = stack.back();
    if (state[n] == kNo || state[n] == kYes) {
      stack.pop_back();
      continue;
    }
    state[n] = kOpen;
    bool pushed = false;
    for (const Requirement& r : nodes[n].requirements) {
      for (std::uint32_t p : r.nodes) {
        if (p != ancestor && state[p] == kUnseen) {
          stack.push_back(p);
          pushed = true;
        }
      }
    }
    if (pushed) continue;
    stack.pop_back();
    bool yes = false;
    for (const Requirement& r : nodes[n].requirements) {
      yes = r.any ? std::all_of(r.nodes.begin(), r.nodes.end(), sure)
                  : std::any_of(r.nodes.begin(), r.nodes.end(), sure);
      if (yes) break;
    }
    state[n] = yes ? kYes : kNo;
  }
  return state[node] == kYes;
}

namespace {

constexpr std::size_t kMaxPipeDepth = 128;
// Terms reached through pipes: nested pipes can expand exponentially. Terms
// written out in the graph itself are not limited (flows of 100,000 nodes).
constexpr std::size_t kMaxExpandedTerms = 4096;
// Edges of the whole graph: a wide group after a wide group joins every
// pair, so 200 KB of `(a0 & ... & a12000) >> (b0 & ... & b12000)` would
// make 144 million edges (gigabytes, and minutes to compile).
constexpr std::size_t kMaxEdges = 2'000'000;

using Exit = std::vector<Requirement>;

class Builder {
 public:
  Builder(CompiledFlow& out, bool collect) : out_(out), spec_(*out.spec), collect_(collect) {
    tasks_.reserve(spec_.tasks.size());
    for (const TaskSpec& t : spec_.tasks) tasks_.emplace(t.name, &t);
  }

  void build_top() {
    for (const dsl::Pipeline& p : out_.ast->statements) pipeline(out_.graph, p, {});
    finish(out_.graph);
    std::vector<const FlowGraph*> around;
    refuse_names_taken_around(out_.graph, around);
  }

 private:
  // A node in a switch case or loop body may not take the name of a node
  // in a graph around it (the top level included, before or after it):
  // `$node.a.output` and the run's results name one node. Bodies side by
  // side may each have theirs (only one runs at a time, and a reference
  // from outside reads the last run). Nesting is at most 64 deep.
  static void refuse_names_taken_around(const FlowGraph& g, std::vector<const FlowGraph*>& around,
                                        const GraphNode* holder = nullptr) {
    for (const GraphNode& n : g.nodes) {
      if (holder == nullptr || n.kind == GraphNode::Kind::Join) continue;
      for (const FlowGraph* outer : around) {
        const std::int64_t taken = outer->find(n.name);
        if (taken < 0) continue;
        const GraphNode& other = outer->nodes[static_cast<std::size_t>(taken)];
        if (other.kind == GraphNode::Kind::Join) continue;
        const std::string at = other.where.line > 0
                                   ? " (line " + std::to_string(other.where.line) + ", column " +
                                         std::to_string(other.where.column) + ")"
                                   : std::string();
        throw FlowError(
            n.where, "node '" + n.name + "' in " +
                         (holder->kind == GraphNode::Kind::Switch ? "a case of " : "the body of ") +
                         holder->name + " is already a node of the graph around it" + at +
                         "; give one of them another name (name: task)");
      }
    }
    around.push_back(&g);
    for (const GraphNode& n : g.nodes) {
      for (const auto& child : n.children) refuse_names_taken_around(*child, around, &n);
    }
    around.pop_back();
  }

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
      const std::uint32_t id =
          control_node(g, GraphNode::Kind::Switch, "switch", sw->name, sw->where);
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
    const std::uint32_t id = control_node(g, GraphNode::Kind::Loop, kind, loop.name, loop.where);
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
    // A bare name may be a named switch or loop met before: the same node.
    if (n.task == n.name) {
      if (const std::int64_t named = g.find(n.name);
          named >= 0 && g.nodes[static_cast<std::size_t>(named)].kind != GraphNode::Kind::Task &&
          tasks_.find(n.name) == tasks_.end()) {
        return static_cast<std::uint32_t>(named);
      }
    }
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
                             const std::string& name, const SourceLocation& where) {
    GraphNode node;
    node.kind = kind;
    if (name.empty()) {
      do {  // past a name the flow gave a step itself
        node.name = std::string(label) + "_" + std::to_string(++controls_[label]);
      } while (g.find(node.name) >= 0);
    } else {
      if (g.find(name) >= 0) {
        throw FlowError(where, "node '" + name + "' is already a step of this graph; give the " +
                                   label + " another name");
      }
      node.name = name;
    }
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

  void count_edges(std::size_t n) {
    edges_ += n;
    if (edges_ > kMaxEdges) {
      throw FlowError(spec_.graph_where,
                      "the graph has more than " + std::to_string(kMaxEdges) +
                          " edges: a wide group followed by another wide group waits for every "
                          "pair; put one step between them");
    }
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
        if (!dup) {
          count_edges(r.nodes.size());
          reqs.push_back(r);
        }
        continue;
      }
      if (!all) {
        auto it =
            std::find_if(reqs.begin(), reqs.end(), [](const Requirement& x) { return !x.any; });
        if (it == reqs.end()) it = reqs.insert(reqs.end(), Requirement{});
        all = static_cast<std::size_t>(it - reqs.begin());
        in_all.insert(reqs[*all].nodes.begin(), reqs[*all].nodes.end());
      }
      count_edges(r.nodes.size());
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

  static void link(FlowGraph& g) {
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
  }

  // Successors and releases, then a cycle check. Collecting, each cycle is
  // recorded and its closing edge left out, so that check goes on to report
  // everything else as well.
  void finish(FlowGraph& g) {
    link(g);
    std::vector<std::pair<std::uint32_t, std::uint32_t>> closing;  // from, to
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
          // `first: t >> first: t`: pyoco's "duplicate node name".
          const std::string message =
              s == n ? "duplicate node name '" + g.nodes[s].name +
                           "': a repeated name is the same node, which cannot follow itself; "
                           "give the second one another name (name: task)"
                     : "cycle: " + cycle + g.nodes[s].name +
                           " (a repeated name is the same node; use name: task for a second one)";
          if (!collect_) throw FlowError(g.nodes[s].where, message);
          out_.errors.push_back({Diagnostic::Severity::Error, g.nodes[s].where, message});
          closing.emplace_back(n, s);
          continue;
        }
        if (colour[s] == 0) {
          colour[s] = 1;
          stack.emplace_back(s, 0);
        }
      }
    }
    if (closing.empty()) return;
    for (const auto& [from, to] : closing) {
      auto& reqs = g.nodes[to].requirements;
      for (Requirement& r : reqs) std::erase(r.nodes, from);
      std::erase_if(reqs, [](const Requirement& r) { return r.nodes.empty(); });
    }
    link(g);
  }

  CompiledFlow& out_;
  const FlowSpec& spec_;
  std::unordered_map<std::string_view, const TaskSpec*> tasks_;  // spec_.tasks by name
  std::vector<std::string> pipe_stack_;
  std::size_t expanded_ = 0;
  std::size_t edges_ = 0;  // requirement entries made: kMaxEdges
  bool collect_ = false;
  std::map<std::string, int> controls_;
};

}  // namespace

namespace {

CompiledFlow compile(std::shared_ptr<const FlowSpec> spec, std::shared_ptr<const dsl::Graph> graph,
                     bool collect) {
  CompiledFlow out;
  out.spec = std::move(spec);
  out.ast = std::move(graph);
  Builder(out, collect).build_top();
  return out;
}

std::shared_ptr<const dsl::Graph> parsed_graph(const FlowSpec& spec) {
  return std::make_shared<const dsl::Graph>(dsl::parse_graph(spec.graph, spec.graph_where));
}

}  // namespace

CompiledFlow compile_flow(std::shared_ptr<const FlowSpec> spec,
                          std::shared_ptr<const dsl::Graph> graph) {
  return compile(std::move(spec), std::move(graph), false);
}

CompiledFlow compile_flow(std::shared_ptr<const FlowSpec> spec) {
  auto graph = parsed_graph(*spec);
  return compile(std::move(spec), std::move(graph), false);
}

CompiledFlow compile_flow_for_check(std::shared_ptr<const FlowSpec> spec) {
  auto graph = parsed_graph(*spec);
  return compile(std::move(spec), std::move(graph), true);
}

}  // namespace pyoco::core
