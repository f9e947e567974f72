#include <pyoco/engine/flow.hpp>

#include <boost/json.hpp>

namespace pyoco {

namespace dsl = core::dsl;

namespace {

Step single(dsl::Term t) {
  Step s;
  s.pipeline.terms.push_back(std::move(t));
  return s;
}

// a & b & c makes one group of three, not nested groups.
Step group(const Step& a, const Step& b, bool any) {
  dsl::GroupTerm g;
  g.any = any;
  if (a.pipeline.terms.size() == 1) {
    if (const auto* ga = std::get_if<dsl::GroupTerm>(&a.pipeline.terms.front());
        ga != nullptr && ga->any == any) {
      g = *ga;
    }
  }
  if (g.branches.empty()) g.branches.push_back(a.pipeline);
  g.branches.push_back(b.pipeline);
  return single(std::move(g));
}

}  // namespace

Step operator>>(const Step& a, const Step& b) {
  Step s = a;
  s.pipeline.terms.insert(s.pipeline.terms.end(), b.pipeline.terms.begin(), b.pipeline.terms.end());
  return s;
}
Step operator&(const Step& a, const Step& b) { return group(a, b, false); }
Step operator|(const Step& a, const Step& b) { return group(a, b, true); }

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
  spec().outputs.push_back(context_path);
  flow_->compiled_.reset();
  return *this;
}

TaskNode& TaskNode::retries(std::uint32_t count, core::RetryBackoff backoff) {
  spec().retries = count;
  spec().backoff = backoff;
  flow_->compiled_.reset();
  return *this;
}

TaskNode& TaskNode::timeout(double seconds) {
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

Flow& Flow::defaults(const core::Value& params) {
  spec_->defaults = params;
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
