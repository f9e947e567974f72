// Internal: the inputs object of one call, built from a node's `inputs:`
// bindings and filled by name from loop variables, params and upstream
// nodes. Values are shared by handle: nothing is copied or serialised.
#pragma once

#include <string>

#include "run_state.hpp"

namespace pyoco {

// On a problem (a reference that does not resolve), returns null and sets
// `error` to one line naming the input and the reference.
core::Value build_inputs(RunState& run, const Frame& f, std::uint32_t node,
                         const plugins::TaskDefinition& task, std::string& error);

}  // namespace pyoco
