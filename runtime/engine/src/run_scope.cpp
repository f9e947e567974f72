// What expressions and inputs read of a run, and what a task's `outputs:`
// writes into it: the run's scope, apart from the scheduler that moves nodes.
#include "run_scope.hpp"

#include <cstdlib>

#include "object_value.hpp"

namespace pyoco {

using core::Value;

namespace {

Value int_value(std::size_t i) {
  core::ValueBuilder b;
  const core::ValueNode* n = b.arena().make_int(static_cast<std::int64_t>(i));
  b.arena().seal();
  return b.wrap(n);
}

Value string_value(std::string_view text) {
  core::ValueBuilder b;
  const core::ValueNode* n = b.arena().make_string(text);
  b.arena().seal();
  return b.wrap(n);
}

// A field of pyoco's loop frame; nullopt for a name it does not have.
std::optional<Value> loop_field(const LoopFrameInfo& l, std::string_view field) {
  if (field.empty()) return l.as_object();
  if (field == "index") return int_value(l.index);
  if (field == "iteration") return int_value(l.index + 1);
  if (field == "count") return int_value(l.count);
  if (field == "item") return l.item;
  if (field == "condition") return l.condition;
  if (field == "name") return string_value(l.name);
  if (field == "type") return string_value(l.type);
  if (field == "path") return string_value(l.path);
  return std::nullopt;
}

constexpr const char* kLoopFields = "index, iteration, count, item, condition, name, type, path";

}  // namespace

Value LoopFrameInfo::as_object() const {
  return make_object({{"name", string_value(name)},
                      {"type", string_value(type)},
                      {"index", int_value(index)},
                      {"iteration", int_value(index + 1)},
                      {"count", int_value(count)},
                      {"item", item},
                      {"condition", condition},
                      {"path", string_value(path)}});
}

std::optional<Value> FrameScope::lookup(core::PathRoot root, std::string_view name,
                                        std::string& why) const {
  switch (root) {
    case core::PathRoot::Params:
      if (name.empty()) return run.params_;
      if (run.params_.contains(name)) return run.params_.find(name);
      why = "no param '" + std::string(name) + "' (pass --param " + std::string(name) + "=...)";
      return std::nullopt;
    case core::PathRoot::Scratch:
      if (name.empty()) return run.scratch_object();
      if (auto v = run.scratch_find(name)) return v;
      why = "nothing has set scratch '" + std::string(name) + "' yet";
      return std::nullopt;
    case core::PathRoot::Env: {
      const std::string* e = run.env(name);
      if (e != nullptr) return string_value(*e);
      why = "environment variable " + std::string(name) + " is not set";
      return std::nullopt;
    }
    case core::PathRoot::Results: {
      const NodeExec* n = run.find_node(frame, name);
      if (n != nullptr && n->state == core::TaskState::Succeeded) return n->output;
      if (const Value* alias = run.results_alias(name)) return *alias;
      why = n != nullptr ? "node '" + std::string(name) + "' has not succeeded (it is " +
                               to_string(n->state) + ")"
                         : "no node '" + std::string(name) + "' has run";
      return std::nullopt;
    }
    case core::PathRoot::Loop:
    case core::PathRoot::Vars:
      if (frame.loop.contains(name)) return frame.loop.find(name);
      if (root == core::PathRoot::Loop && frame.loop_frame != nullptr) {
        if (auto v = loop_field(*frame.loop_frame, name)) return v;
      }
      why = frame.loop_frame == nullptr ? "it is read outside a loop"
                                        : "no loop variable '" + std::string(name) + "' here";
      return std::nullopt;
    case core::PathRoot::LoopFrame:
      if (frame.loop_frame == nullptr) {
        why = "it is read outside a loop";
        return std::nullopt;
      }
      if (auto v = loop_field(*frame.loop_frame, name)) return v;
      why = std::string("a loop has ") + kLoopFields;
      return std::nullopt;
    case core::PathRoot::Artifacts: {
      // What the run's tasks saved so far, by name; the latest of a name.
      std::vector<std::pair<std::string, Value>> all;
      for (const TaskRecord& r : run.records_) {
        for (const core::ArtifactRecord& a : r.artifacts) {
          if (!name.empty() && a.name != name) continue;
          Value v = make_object({{"path", string_value(a.path)},
                                 {"type", string_value(a.media_type)},
                                 {"size", int_value(a.size)},
                                 {"sha256", string_value(a.sha256)}});
          std::erase_if(all, [&](const auto& m) { return m.first == a.name; });
          all.emplace_back(a.name, std::move(v));
        }
      }
      if (name.empty()) return make_object(all);
      if (!all.empty()) return all.back().second;
      why = "no task of the run has saved an artifact '" + std::string(name) + "' yet";
      return std::nullopt;
    }
    case core::PathRoot::Loops: {
      std::vector<const LoopFrameInfo*> chain;
      for (const LoopFrameInfo* l = frame.loop_frame.get(); l != nullptr; l = l->outer.get()) {
        chain.push_back(l);
      }
      core::ValueBuilder b;
      core::ValueNode* list = b.arena().make_array(chain.size());
      std::vector<Value> keep;
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        keep.push_back((*it)->as_object());
        core::Arena::push(list, keep.back().node());
      }
      b.arena().seal();
      Value all = b.wrap(list);
      if (name.empty()) return all;
      return std::nullopt;  // the parser gives Loops no name
    }
  }
  return std::nullopt;
}

// ---- outputs: and lookups --------------------------------------------------

// `base` with the dotted `keys` set to `v`, making objects on the way (as
// pyoco's `outputs: ["scratch.a.b"]` does); `base` itself is not changed.
static Value set_path(const Value& base, std::string_view keys, const Value& v) {
  const auto dot = keys.find('.');
  const std::string_view key = keys.substr(0, dot);
  const Value inner =
      dot == std::string_view::npos ? v : set_path(base.find(key), keys.substr(dot + 1), v);
  std::vector<std::pair<std::string, Value>> members;
  for (std::size_t i = 0; i < base.size() && base.is_object(); ++i) {
    auto [k, m] = base.member(i);
    if (k != key) members.emplace_back(std::string(k), m);
  }
  members.emplace_back(std::string(key), inner);
  return make_object(members);
}

void RunState::apply_outputs(const core::TaskSpec& spec, const Value& output) {
  for (const std::string& path : spec.outputs) {
    const auto dot = path.find('.');
    const std::string_view root = std::string_view(path).substr(0, dot);
    if (dot == std::string::npos || dot + 1 == path.size()) continue;  // validated at load
    const std::string_view keys = std::string_view(path).substr(dot + 1);
    const auto inner = keys.find('.');
    const std::string_view first = keys.substr(0, inner);
    const std::string_view rest =
        inner == std::string_view::npos ? std::string_view() : keys.substr(inner + 1);
    if (root == "params") {
      params_ = set_path(params_, keys, output);
    } else if (root == "scratch") {
      scratch_set(first, rest.empty()
                             ? output
                             : set_path(scratch_find(first).value_or(Value()), rest, output));
    } else {
      const Value* had = results_alias(first);
      results_alias_[std::string(first)] =
          rest.empty() ? output : set_path(had != nullptr ? *had : Value(), rest, output);
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
  auto it = body_results_.find(name);
  return it == body_results_.end() ? nullptr : it->second;
}

Value RunState::loop_var(const Frame& f, std::string_view name) const { return f.loop.find(name); }

const Value* RunState::results_alias(std::string_view name) const {
  auto it = results_alias_.find(name);
  return it == results_alias_.end() ? nullptr : &it->second;
}

}  // namespace pyoco
