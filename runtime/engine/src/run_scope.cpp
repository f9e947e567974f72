// What expressions and inputs read of a run, and what a task's `outputs:`
// writes into it: the run's scope, apart from the scheduler that moves nodes.
#include "run_scope.hpp"

#include <cstdlib>

#include "object_value.hpp"

namespace pyoco {

using core::Value;

Value FrameScope::lookup(core::PathRoot root, const std::vector<std::string>& path) const {
  if (path.empty()) return Value();
  Value v;
  switch (root) {
    case core::PathRoot::Params:
      v = run.params_.find(path[0]);
      break;
    case core::PathRoot::Loop:
      v = run.loop_var(frame, path[0]);
      break;
    case core::PathRoot::Scratch:
      v = run.scratch_get(path[0]);
      break;
    case core::PathRoot::Env: {
      const std::string* e = run.env(path[0]);
      if (e == nullptr) return Value();
      core::ValueBuilder b;
      v = b.wrap(b.arena().make_string(*e));
      break;
    }
    case core::PathRoot::Results: {
      const NodeExec* n = run.find_node(frame, path[0]);
      v = n != nullptr ? n->output : run.results_alias(path[0]);
      break;
    }
  }
  for (std::size_t i = 1; i < path.size() && !v.is_null(); ++i) {
    v = v.is_array() ? v.at(std::strtoull(path[i].c_str(), nullptr, 10)) : v.find(path[i]);
  }
  return v;
}

// ---- outputs: and lookups --------------------------------------------------

void RunState::apply_outputs(const core::TaskSpec& spec, const Value& output) {
  for (const std::string& path : spec.outputs) {
    const auto dot = path.find('.');
    const std::string root = path.substr(0, dot);
    const std::string key = dot == std::string::npos ? "" : path.substr(dot + 1);
    if (key.empty()) continue;  // validated at load; nothing to copy to
    if (root == "params") {
      std::vector<std::pair<std::string, Value>> members;
      for (std::size_t i = 0; i < params_.size(); ++i) {
        auto [k, v] = params_.member(i);
        if (k != key) members.emplace_back(std::string(k), v);
      }
      members.emplace_back(key, output);
      params_ = make_object(members);
    } else if (root == "scratch") {
      scratch_set(key, output);
    } else {
      results_alias_[key] = output;
    }
  }
}

const NodeExec* RunState::find_node(const Frame& f, std::string_view name) const {
  for (const Frame* fr = &f; fr != nullptr; fr = fr->parent) {
    const std::int64_t idx = fr->graph->find(name);
    if (idx >= 0 && static_cast<std::size_t>(idx) < fr->nodes.size()) {
      return &fr->nodes[static_cast<std::size_t>(idx)];
    }
  }
  return nullptr;
}

Value RunState::loop_var(const Frame& f, std::string_view name) const { return f.loop.find(name); }

Value RunState::results_alias(std::string_view name) const {
  auto it = results_alias_.find(name);
  return it == results_alias_.end() ? Value() : it->second;
}

}  // namespace pyoco
