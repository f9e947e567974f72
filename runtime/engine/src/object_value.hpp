// Internal: sealed Values the run builds in several places: an object from
// name/value pairs (params, loop variables, a frame's sinks), an int, a
// string; and the one check that params are an object.
#pragma once

#include <pyoco/core/value.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pyoco {

inline core::Value make_object(const std::vector<std::pair<std::string, core::Value>>& members) {
  core::ValueBuilder b;
  core::ValueNode* o = b.arena().make_object(members.size());
  for (const auto& [k, v] : members) {
    core::Arena::set(o, k, v.node() != nullptr ? v.node() : b.arena().make_null());
  }
  b.arena().seal();
  return b.wrap(o);
}

// The members of `base` that `over` does not have, then those of `over`
// (both objects; null counts as empty).
inline core::Value merged_over(const core::Value& base, const core::Value& over) {
  std::vector<std::pair<std::string, core::Value>> merged;
  for (std::size_t i = 0; i < base.size(); ++i) {
    auto [k, v] = base.member(i);
    if (!over.contains(k)) merged.emplace_back(std::string(k), v);
  }
  for (std::size_t i = 0; i < over.size(); ++i) {
    auto [k, v] = over.member(i);
    merged.emplace_back(std::string(k), v);
  }
  return make_object(merged);
}

// Params (a flow's defaults, a run's) are an object or null (none): an
// array was read as an object's members, an int taken as {}. Throws
// std::invalid_argument "<who> must be an object (JSON {...}), not <kind>".
inline void check_params_object(const core::Value& params, std::string_view who) {
  if (params.is_null() || params.is_object()) return;
  throw std::invalid_argument(std::string(who) + " must be an object (JSON {...}), not " +
                              core::to_string(params.kind()));
}

inline core::Value int_value(std::int64_t i) {
  core::ValueBuilder b;
  const core::ValueNode* n = b.arena().make_int(i);
  b.arena().seal();
  return b.wrap(n);
}

inline core::Value string_value(std::string_view text) {
  core::ValueBuilder b;
  const core::ValueNode* n = b.arena().make_string(text);
  b.arena().seal();
  return b.wrap(n);
}

}  // namespace pyoco
