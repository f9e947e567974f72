// Internal: sealed Values the run builds in several places: an object from
// name/value pairs (params, loop variables, a frame's sinks), an int, a string.
#pragma once

#include <pyoco/core/value.hpp>

#include <string>
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
