// What expressions and inputs read of a run, and what a task's `outputs:`
// writes into it: the run's scope, apart from the scheduler that moves nodes.
#include "run_scope.hpp"

#include <charconv>

#include "object_value.hpp"

namespace pyoco {

using core::Value;

namespace {

Value size_value(std::size_t i) { return int_value(static_cast<std::int64_t>(i)); }

// A field of pyoco's loop frame; nullopt for a name it does not have.
std::optional<Value> loop_field(const LoopFrameInfo& l, std::string_view field) {
  if (field.empty()) return l.as_object();
  if (field == "index") return size_value(l.index);
  if (field == "iteration") return size_value(l.index + 1);
  if (field == "count") return size_value(l.count);
  if (field == "item") return l.item;
  if (field == "condition") return l.condition;
  if (field == "name") return string_value(l.name());
  if (field == "type") return string_value(l.type());
  if (field == "path") return string_value(l.path());
  return std::nullopt;
}

constexpr const char* kLoopFields = "index, iteration, count, item, condition, name, type, path";

Value artifact_value(const core::ArtifactRecord& a) {
  return make_object({{"path", string_value(a.path)},
                      {"type", string_value(a.media_type)},
                      {"size", int_value(static_cast<std::int64_t>(a.size))},
                      {"sha256", string_value(a.sha256)}});
}

}  // namespace

const char* LoopFrameInfo::type() const { return core::dsl::to_string(loop->kind); }

std::string LoopFrameInfo::name() const {
  return loop->kind == core::dsl::LoopTerm::Kind::Foreach ? "foreach:" + loop->item : type();
}

std::string LoopFrameInfo::path() const {
  const std::string here = name() + "[" + std::to_string(index) + "]";
  return outer != nullptr ? outer->path() + "." + here : here;
}

Value LoopFrameInfo::as_object() const {
  return make_object({{"name", string_value(name())},
                      {"type", string_value(type())},
                      {"index", size_value(index)},
                      {"iteration", size_value(index + 1)},
                      {"count", size_value(count)},
                      {"item", item},
                      {"condition", condition},
                      {"path", string_value(path())}});
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
    case core::PathRoot::Results:
      return run.result_of(frame, name, why);
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
    case core::PathRoot::Loops: {
      // Outermost first, as pyoco lists them; `name` is an index into them.
      std::vector<const LoopFrameInfo*> chain;
      for (const LoopFrameInfo* l = frame.loop_frame.get(); l != nullptr; l = l->outer.get()) {
        chain.insert(chain.begin(), l);
      }
      if (!name.empty()) {
        std::size_t i = 0;
        const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), i);
        if (ec == std::errc() && end == name.data() + name.size() && i < chain.size()) {
          return chain[i]->as_object();
        }
        why = "there are " + std::to_string(chain.size()) + " enclosing loops here";
        return std::nullopt;
      }
      core::ValueBuilder b;
      core::ValueNode* list = b.arena().make_array(chain.size());
      for (const LoopFrameInfo* l : chain) core::Arena::push(list, l->as_object().node());
      b.arena().seal();
      return b.wrap(list);
    }
    case core::PathRoot::Artifacts: {
      const auto& saved = run.latest_artifacts();
      if (name.empty()) {
        std::vector<std::pair<std::string, Value>> all;
        for (const auto& [n, a] : saved) all.emplace_back(n, artifact_value(a));
        return make_object(all);
      }
      if (auto it = saved.find(name); it != saved.end()) return artifact_value(it->second);
      why = "no task of the run has saved an artifact '" + std::string(name) + "' yet";
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// ---- outputs: and lookups --------------------------------------------------

// `base` with the dotted `keys` set to `v`, making objects on the way (as
// pyoco's `outputs: ["scratch.a.b"]` does); `base` itself is not changed.
// The load bounds `keys` to a few levels (flow_file.cpp output_path).
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
    // "<root>.<key>[.<key>...]": checked when the flow file was read.
    const auto dot = path.find('.');
    const std::string_view root = std::string_view(path).substr(0, dot);
    const std::string_view keys = std::string_view(path).substr(dot + 1);
    const auto inner = keys.find('.');
    const std::string_view first = keys.substr(0, inner);
    const std::string_view rest =
        inner == std::string_view::npos ? std::string_view() : keys.substr(inner + 1);
    if (root == "params") {
      params_ = set_path(params_, keys, output);
    } else if (root == "scratch") {
      scratch_modify(
          first, [&](Value had) { return rest.empty() ? output : set_path(had, rest, output); });
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
    if (auto it = fr->inner_results.find(name); it != fr->inner_results.end()) return it->second;
  }
  return nullptr;
}

std::optional<Value> RunState::result_of(const Frame& f, std::string_view name,
                                         std::string& why) const {
  const NodeExec* n = find_node(f, name);
  if (n != nullptr && n->state == core::TaskState::Succeeded) return n->output;
  if (const Value* alias = results_alias(name)) return *alias;
  why = n != nullptr ? "node '" + std::string(name) + "' has not succeeded (it is " +
                           to_string(n->state) + ")"
                     : "no node '" + std::string(name) + "' has run";
  return std::nullopt;
}

Value RunState::loop_var(const Frame& f, std::string_view name) const { return f.loop.find(name); }

const Value* RunState::results_alias(std::string_view name) const {
  auto it = results_alias_.find(name);
  return it == results_alias_.end() ? nullptr : &it->second;
}

}  // namespace pyoco
