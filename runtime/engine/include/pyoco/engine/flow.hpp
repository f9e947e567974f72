// Flows in C++, for embedding:
//
//   pyoco::Flow flow{"hello"};
//   auto fetch = flow.task("fetch_data", "hello/fetch_data");       // a plugin task
//   auto process = flow.task("process_data", "hello/process_data")
//                      .input("data", "$node.fetch_data.output");
//   auto shout = flow.task("shout", [](pyoco::TaskCall&, const pyoco::core::Value& in) {
//     return in.find("text");                                         // a C++ callable
//   });
//   flow >> fetch >> process >> (shout & other) >> save;
//
// `a & b` runs both and waits for both; `a | b` goes on when either succeeds.
#pragma once

#include <pyoco/core/flow_graph.hpp>
#include <pyoco/engine/task_call.hpp>

#include <map>
#include <memory>
#include <string>
#include <unordered_set>

namespace pyoco {

class Flow;

// A piece of a pipeline: one node, a chain (a >> b) or a group (a & b).
class Step {
 public:
  core::dsl::Pipeline pipeline;
};

Step operator>>(Step a, const Step& b);
Step operator&(Step a, const Step& b);
Step operator|(Step a, const Step& b);
// A wide group built in a loop: `fan &= node` adds a branch in place
// (`fan = fan & node` copies the group each time: quadratic).
Step& operator&=(Step& a, const Step& b);
Step& operator|=(Step& a, const Step& b);

// A node of a Flow, returned by Flow::task; set its policies by chaining.
class TaskNode {
 public:
  TaskNode& input(const std::string& name, const std::string& reference_or_text);
  TaskNode& input(const std::string& name, const core::Value& literal);
  TaskNode& output_to(const std::string& context_path);  // e.g. "params.saved"
  TaskNode& retries(std::uint32_t count, core::RetryBackoff backoff = {});
  TaskNode& timeout(double seconds);
  TaskNode& fail_policy(core::FailPolicy policy);

  operator Step() const;  // NOLINT: a node is a step
  const std::string& name() const { return name_; }

 private:
  friend class Flow;
  TaskNode(Flow* flow, std::string name, std::size_t index)
      : flow_(flow), name_(std::move(name)), index_(index) {}
  core::TaskSpec& spec() const;
  Flow* flow_;
  std::string name_;
  std::size_t index_;  // in the flow's tasks, which only grow
};

// The chain a statement builds: flow >> a >> b.
class Chain {
 public:
  Chain& operator>>(const Step& s);

 private:
  friend class Flow;
  Chain(Flow* flow, std::size_t statement) : flow_(flow), statement_(statement) {}
  Flow* flow_;
  std::size_t statement_;
};

class Flow {
 public:
  explicit Flow(std::string name);
  // A copy is a flow of its own: changing it leaves the original as it was.
  // (A TaskNode keeps pointing at the flow that made it.)
  Flow(const Flow& other);
  Flow& operator=(const Flow& other);
  Flow(Flow&&) noexcept = default;
  Flow& operator=(Flow&&) noexcept = default;

  // A node running a plugin task, "<plugin>/<task>".
  TaskNode task(const std::string& node, const std::string& use);
  // A node running an in-process callable.
  TaskNode task(const std::string& node, TaskFn fn);

  // Starts a new statement of the graph.
  Chain operator>>(const Step& s);

  // Run params the flow defaults to.
  Flow& defaults(const core::Value& params);

  // The flow as the engine runs it (built anew after each change).
  std::shared_ptr<const core::CompiledFlow> compiled() const;
  const std::map<std::string, TaskFn>& local_tasks() const { return local_; }

 private:
  friend class TaskNode;
  friend class Chain;
  std::shared_ptr<core::FlowSpec> spec_;
  core::dsl::Graph graph_;
  std::map<std::string, TaskFn> local_;         // by `use`
  std::unordered_set<std::string> task_names_;  // of spec_->tasks: a repeat is refused at once
  mutable std::shared_ptr<const core::CompiledFlow> compiled_;
};

}  // namespace pyoco
