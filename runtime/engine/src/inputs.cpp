#include "inputs.hpp"

#include "object_value.hpp"

#include <cstdlib>

namespace pyoco {

using core::Value;

namespace {

// Walks ".key.0.key" from `v` (core::path_step); sets `missing` to the
// first step not found.
Value walk(Value v, std::string_view path, std::string& missing) {
  while (!path.empty()) {
    const auto dot = path.find('.');
    const std::string_view step = path.substr(0, dot);
    std::optional<Value> next = core::path_step(v, step);
    if (!next) {
      missing = std::string(step);
      return Value();
    }
    v = *next;
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  return v;
}

Value resolve(RunState& run, const Frame& f, std::string_view ref, std::string& error) {
  std::string missing;
  auto split = [](std::string_view s) {
    const auto dot = s.find('.');
    return std::pair{s.substr(0, dot),
                     dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1)};
  };
  if (ref.rfind("$node.", 0) == 0) {
    auto [name, rest] = split(ref.substr(6));
    std::string why;
    const std::optional<Value> output = run.result_of(f, name, why);
    if (!output) {
      error = why;
      return Value();
    }
    if (rest != "output" && rest.rfind("output.", 0) != 0) {
      error = "write $node." + std::string(name) + ".output[.key...]";
      return Value();
    }
    const Value v = walk(*output, rest.size() > 6 ? rest.substr(7) : std::string_view(), missing);
    if (!missing.empty())
      error = "the output of '" + std::string(name) + "' has no '" + missing + "'";
    return v;
  }
  if (ref.rfind("$ctx.params.", 0) == 0) {
    const Value params = run.current_params();
    const Value v = walk(params, ref.substr(12), missing);
    if (!missing.empty()) {
      // The param itself, or a part of one that is set: say which.
      const std::string param(split(ref.substr(12)).first);
      error = params.is_object() && params.contains(param)
                  ? "param '" + param + "' has no '" + missing + "'"
                  : "param '" + missing + "' is not set (pass --param " + missing + "=...)";
    }
    return v;
  }
  if (ref.rfind("$loop.", 0) == 0) {
    auto [name, rest] = split(ref.substr(6));
    const Value root = run.loop_var(f, name);
    if (root.is_null() && !f.loop.contains(name)) {
      error = "no loop variable '" + std::string(name) + "' here";
      return Value();
    }
    const Value v = walk(root, rest, missing);
    if (!missing.empty())
      error = "loop variable '" + std::string(name) + "' has no '" + missing + "'";
    return v;
  }
  if (ref.rfind("$env.", 0) == 0) {
    const std::string name(ref.substr(5));
    const std::string* e = run.env(name);
    if (e == nullptr) {
      error = "environment variable " + name + " is not set";
      return Value();
    }
    return string_value(*e);
  }
  error =
      "unsupported reference; write $node.<name>.output[.key...], $ctx.params.<name>, "
      "$env.<NAME>, or $loop.<var> inside a loop";
  return Value();
}

}  // namespace

Value build_inputs(RunState& run, const Frame& f, std::uint32_t i,
                   const plugins::TaskDefinition& task, std::string& error) {
  const core::TaskSpec& spec = *f.graph->nodes[i].task;
  if (spec.inputs.empty() && task.inputs.empty()) {
    // No inputs at all: one sealed empty object, shared (no arena per
    // call), handed out uncounted. Never freed: a worker detached inside a
    // body may still read it while the process exits.
    static const Value* const kNone = [] {
      core::ValueBuilder none;
      core::ValueNode* object = none.arena().make_object(0);
      none.arena().seal();
      return new Value(none.wrap(object));
    }();
    return Value(core::ArenaPtr(), kNone->node());
  }
  core::ValueBuilder b;
  core::Arena& arena = b.arena();
  core::ValueNode* inputs = arena.make_object(spec.inputs.size() + task.inputs.size());
  for (const core::InputBinding& in : spec.inputs) {
    Value v = in.value;
    if (v.is_string() && !v.as_string().empty() && v.as_string()[0] == '$') {
      std::string why;
      v = resolve(run, f, v.as_string(), why);
      if (!why.empty()) {
        error = "input '" + in.name + "' (" + std::string(in.value.as_string()) + "): " + why;
        return Value();
      }
    }
    core::Arena::set(inputs, in.name, v.node() != nullptr ? v.node() : arena.make_null());
  }
  // Declared inputs not bound: a loop variable, a param, or an upstream node of that name.
  for (const plugins::IoSpec& io : task.inputs) {
    if (core::Value(nullptr, inputs).contains(io.name)) continue;
    Value v = run.loop_var(f, io.name);
    if (v.is_null()) v = run.current_params().find(io.name);
    if (v.is_null()) {
      const NodeExec* n = run.find_node(f, io.name);
      if (n != nullptr && n->state == core::TaskState::Succeeded) v = n->output;
    }
    if (v.node() != nullptr) core::Arena::set(inputs, io.name, v.node());
  }
  arena.seal();
  return b.wrap(inputs);
}

}  // namespace pyoco
