// Internal: a sealed object Value from name/value pairs, the one shape the
// run builds in several places (params, loop variables, a frame's sinks).
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

}  // namespace pyoco
