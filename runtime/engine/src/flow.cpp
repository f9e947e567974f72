#include <pyoco/engine/flow.hpp>

#include <boost/json.hpp>

#include <stdexcept>

#include "object_value.hpp"

namespace pyoco {

namespace dsl = core::dsl;

namespace {

Step single(dsl::Term t) {
  Step s;
  s.pipeline.terms.push_back(std::move(t));
  return s;
}

// a & b & c makes one group of three, not nested groups. `a` is taken
// over: `fan &= node` in a loop adds a branch without copying the group.
void join(Step& a, const Step& b_in, bool any) {
  const Step self_copy = &a == &b_in ? b_in : Step{};  // fan &= fan
  const Step& b = &a == &b_in ? self_copy : b_in;
  if (a.pipeline.terms.size() == 1) {
    if (auto* ga = std::get_if<dsl::GroupTerm>(&a.pipeline.terms.front());
        ga != nullptr && ga->any == any) {
      ga->branches.push_back(b.pipeline);
      return;
    }
  }
  dsl::GroupTerm g;
  g.any = any;
  g.branches.push_back(std::move(a.pipeline));
  g.branches.push_back(b.pipeline);
  a = single(std::move(g));
}

// NaN and negatives are mistakes; huge values saturate where they are
// used (a timeout at 30 days, a delay at a day), as in a flow file.
void check_at_least(double v, double min, const std::string& what) {
  if (!(v >= min)) {
    throw std::invalid_argument(what + ": must be a number of at least " +
                                std::to_string(static_cast<long long>(min)) + ", not " +
                                std::to_string(v));
  }
}

}  // namespace

Step operator>>(Step a, const Step& b) {
  a.pipeline.terms.insert(a.pipeline.terms.end(), b.pipeline.terms.begin(), b.pipeline.terms.end());
  return a;
}
Step operator&(Step a, const Step& b) {
  join(a, b, false);
  return a;
}
Step operator|(Step a, const Step& b) {
  join(a, b, true);
  return a;
}
Step& operator&=(Step& a, const Step& b) {
  join(a, b, false);
  return a;
}
Step& operator|=(Step& a, const Step& b) {
  join(a, b, true);
  return a;
}

core::TaskSpec& TaskNode::spec() const {
  auto& tasks = flow_->spec_->tasks;
  if (index_ >= tasks.size() || tasks[index_].name != name_) {
    throw std::logic_error("pyoco::TaskNode: no task " + name_);
  }
  return tasks[index_];
}

TaskNode& TaskNode::input(const std::string& name, const std::string& reference_or_text) {
  core::ValueBuilder b;
  const core::ValueNode* n = b.arena().make_string(reference_or_text);
  b.arena().seal();
  return input(name, b.wrap(n));
}

TaskNode& TaskNode::input(const std::string& name, const core::Value& literal) {
  auto& inputs = spec().inputs;
  std::erase_if(inputs, [&](const core::InputBinding& b) { return b.name == name; });
  inputs.push_back(core::InputBinding{name, literal, {}});
  flow_->compiled_.reset();
  return *this;
}

TaskNode& TaskNode::output_to(const std::string& context_path) {
  if (const std::string problem = core::output_path_problem(context_path); !problem.empty()) {
    throw std::invalid_argument("pyoco::TaskNode " + name_ + ": output_to: " + problem);
  }
  spec().outputs.push_back(context_path);
  flow_->compiled_.reset();
  return *this;
}

TaskNode& TaskNode::retries(std::uint32_t count, core::RetryBackoff backoff) {
  const std::string what = "pyoco::TaskNode " + name_ + ": retries";
  if (count > core::kMaxRetries) {
    throw std::invalid_argument(what + ": at most " + std::to_string(core::kMaxRetries) +
                                " (for more, write a loop)");
  }
  check_at_least(backoff.initial_ms, 0, what + ": initial_ms");
  check_at_least(backoff.factor, 1, what + ": factor");
  check_at_least(backoff.max_ms, 0, what + ": max_ms");
  spec().retries = count;
  spec().backoff = backoff;
  flow_->compiled_.reset();
  return *this;
}

TaskNode& TaskNode::timeout(double seconds) {
  // 0: no timeout (the default).
  check_at_least(seconds, 0, "pyoco::TaskNode " + name_ + ": timeout");
  spec().timeout_sec = seconds;
  flow_->compiled_.reset();
  return *this;
}

TaskNode& TaskNode::fail_policy(core::FailPolicy policy) {
  spec().fail_policy = policy;
  flow_->compiled_.reset();
  return *this;
}

TaskNode::operator Step() const {
  dsl::NodeTerm n{name_, name_, {}};
  return single(std::move(n));
}

Chain& Chain::operator>>(const Step& s) {
  auto& terms = flow_->graph_.statements[statement_].terms;
  terms.insert(terms.end(), s.pipeline.terms.begin(), s.pipeline.terms.end());
  flow_->compiled_.reset();
  return *this;
}

Flow::Flow(std::string name) : spec_(std::make_shared<core::FlowSpec>()) {
  spec_->name = std::move(name);
  spec_->file = "<c++ flow " + spec_->name + ">";
  spec_->defaults = core::from_json(boost::json::object());
}

TaskNode Flow::task(const std::string& node, const std::string& use) {
  if (!task_names_.insert(node).second) {
    throw std::invalid_argument("pyoco::Flow: task '" + node + "' is defined twice");
  }
  core::TaskSpec t;
  t.name = node;
  t.use = use;
  spec_->tasks.push_back(std::move(t));
  compiled_.reset();
  return TaskNode(this, node, spec_->tasks.size() - 1);
}

TaskNode Flow::task(const std::string& node, TaskFn fn) {
  TaskNode n = task(node, "local/" + node);
  local_["local/" + node] = std::move(fn);
  return n;
}

Chain Flow::operator>>(const Step& s) {
  graph_.statements.push_back(s.pipeline);
  compiled_.reset();
  return Chain(this, graph_.statements.size() - 1);
}

Flow::Flow(const Flow& other)
    : spec_(std::make_shared<core::FlowSpec>(*other.spec_)),
      graph_(other.graph_),
      local_(other.local_),
      task_names_(other.task_names_),
      compiled_(other.compiled_) {}

Flow& Flow::operator=(const Flow& other) {
  if (this != &other) *this = Flow(other);
  return *this;
}

Flow& Flow::defaults(const core::Value& params) {
  check_params_object(params, "pyoco::Flow " + spec_->name + ": defaults");
  spec_->defaults = params.is_null() ? core::from_json(boost::json::object()) : params;
  compiled_.reset();
  return *this;
}

std::shared_ptr<const core::CompiledFlow> Flow::compiled() const {
  if (!compiled_) {
    auto spec = std::make_shared<const core::FlowSpec>(*spec_);
    auto graph = std::make_shared<const core::dsl::Graph>(graph_);
    compiled_ = std::make_shared<const core::CompiledFlow>(
        core::compile_flow(std::move(spec), std::move(graph)));
  }
  return compiled_;
}

}  // namespace pyoco
