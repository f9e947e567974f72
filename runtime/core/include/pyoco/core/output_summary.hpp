// What a task record shows of an output, one rule for the engine and for
// a run with secrets (which makes it again from the masked output: a cut
// can split a secret, so nothing is masked after one).
#pragma once

#include <pyoco/core/value.hpp>

#include <string>

namespace pyoco::core {

// The output's JSON, cut to 197 bytes and "..." when longer than 200;
// empty for null.
std::string output_summary(const Value& value);

}  // namespace pyoco::core
