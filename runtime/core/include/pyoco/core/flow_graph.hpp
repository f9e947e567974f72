// A flow's DAG, built from its parsed graph: nodes, what each waits for,
// and the sub-graphs of switch and loop nodes. Independent of plugins: the
// engine binds tasks to it, `check` validates it, `graph` prints it.
#pragma once

#include <pyoco/core/flow_spec.hpp>
#include <pyoco/core/graph_dsl.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace pyoco::core {

// A node runs once every requirement holds. An "all" requirement holds when
// each of its nodes succeeded; an "any" requirement (an OR-join) when one did.
struct Requirement {
  std::vector<std::uint32_t> nodes;
  bool any = false;
};

class FlowGraph;

struct GraphNode {
  enum class Kind { Task, Join, Switch, Loop };
  Kind kind = Kind::Task;
  std::string name;                // unique in its graph; joins are "join_N" and hidden
  const TaskSpec* task = nullptr;  // Kind::Task
  std::vector<Requirement> requirements;
  std::vector<std::uint32_t> successors;
  // For each successor, every requirement of it this node is part of, grouped
  // by successor in `successors` order: the scheduler counts a finished node
  // without searching the successor's requirements (fan-in stays linear).
  struct Release {
    std::uint32_t node;
    std::uint32_t requirement;
  };
  std::vector<Release> releases;
  const dsl::SwitchTerm* switch_term = nullptr;  // Kind::Switch
  const dsl::LoopTerm* loop_term = nullptr;      // Kind::Loop
  // Switch: one graph per case, in case order. Loop: the body.
  std::vector<std::shared_ptr<FlowGraph>> children;
  SourceLocation where;

  bool visible() const { return kind != Kind::Join; }
};

class FlowGraph {
 public:
  std::vector<GraphNode> nodes;

  // Appends a node (its name must be new) and indexes it by name.
  std::uint32_t add(GraphNode node);
  // Index of a node by name, or -1.
  std::int64_t find(std::string_view name) const;
  // Nodes that wait for nothing.
  std::vector<std::uint32_t> roots() const;
  // True when `ancestor` must finish before `node` can start.
  bool precedes(std::uint32_t ancestor, std::uint32_t node) const;
  // True when `ancestor` has surely succeeded when `node` starts: not only
  // upstream, but on every path (an OR-join `(a | b) >> c` goes on when one
  // branch succeeds, so c can be sure of neither a nor b).
  bool guaranteed_before(std::uint32_t ancestor, std::uint32_t node) const;

 private:
  std::unordered_map<std::string, std::uint32_t> index_;  // of nodes added with add()
};

// A problem `check` reports. Errors stop a run; warnings do not.
struct Diagnostic {
  enum class Severity { Error, Warning } severity;
  SourceLocation where;
  std::string message;
};

// The parsed and built flow; owns the AST its graph points into.
struct CompiledFlow {
  std::shared_ptr<const FlowSpec> spec;
  std::shared_ptr<const dsl::Graph> ast;
  std::vector<std::shared_ptr<const dsl::Graph>> pipe_asts;
  FlowGraph graph;
  // What makes it unrunnable, found while building (cycles), when it was
  // compiled for check: the graph then leaves out each cycle's closing edge.
  // The engine refuses a flow with any.
  std::vector<Diagnostic> errors;
};

// Parses the graph DSL and builds the DAG. Throws FlowError for what makes
// a graph impossible to build (syntax, unknown pipe, pipe cycle, a node name
// with no tasks: entry, a cycle between nodes).
CompiledFlow compile_flow(std::shared_ptr<const FlowSpec> spec);
// As compile_flow, but every cycle is recorded in `errors` (its closing edge
// left out of the graph) instead of the first being thrown, so that
// `pyoco check` reports cycles together with everything else.
CompiledFlow compile_flow_for_check(std::shared_ptr<const FlowSpec> spec);
// The same for a graph built in code rather than parsed (the C++ flow API).
CompiledFlow compile_flow(std::shared_ptr<const FlowSpec> spec,
                          std::shared_ptr<const dsl::Graph> graph);

// What check asks about the world outside the file.
class TaskResolver {
 public:
  virtual ~TaskResolver() = default;
  struct TaskInfo {
    bool exists = false;
    std::vector<std::string> required_inputs;
    std::vector<std::string> inputs;  // every declared input
    // `inputs` is all the task takes (a plugin's manifest): a name not in it
    // is a mistake. False for tasks that declare nothing (in-process ones).
    bool inputs_complete = false;
    // The declared type of each input that has one: any, null, bool, int,
    // number, string, bytes, array or object.
    std::unordered_map<std::string, std::string> input_types;
    // When it does not exist: what may explain it (a plugin of that name
    // whose manifest was skipped, and why), or empty.
    std::string why_missing;
  };
  virtual TaskInfo resolve(const std::string& qualified_name) const = 0;
};

// Everything `pyoco check` reports beyond compile errors: unknown tasks,
// orphans, references that cannot resolve, inputs nothing provides, switch
// without default, unbounded until. `params` are the run's params (defaults
// merged with --param).
std::vector<Diagnostic> check_flow(const CompiledFlow& flow, const TaskResolver& tasks,
                                   const Value& params);

// The DAG for people: Graphviz dot or Mermaid.
std::string export_dot(const CompiledFlow& flow);
std::string export_mermaid(const CompiledFlow& flow);

}  // namespace pyoco::core
