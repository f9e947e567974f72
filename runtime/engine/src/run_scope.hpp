// Internal: what an expression (switch on, foreach over, until) sees of a
// run from one frame: params, results, scratch, loop variables, pyoco's
// loop frames and env.
#pragma once

#include <pyoco/core/expression.hpp>

#include <string>
#include <vector>

#include "run_state.hpp"

namespace pyoco {

struct FrameScope : core::Expression::Scope {
  FrameScope(RunState& r, const Frame& f) : run(r), frame(f) {}
  std::optional<core::Value> lookup(core::PathRoot root, std::string_view name,
                                    std::string& why) const override;
  RunState& run;
  const Frame& frame;
};

}  // namespace pyoco
