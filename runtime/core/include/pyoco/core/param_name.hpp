// What may name a run's param: one rule for `pyoco run -p`, a params file,
// `pyoco client submit` and the gateway's POST /runs.
#pragma once

#include <string>
#include <string_view>

namespace pyoco::core {

// Why `key` cannot name a param, or "" when it can. $ctx.params.a.b reads
// key b of param a: a param named "a.b" is one no reference can reach, and
// so is "".
inline std::string param_name_problem(std::string_view key) {
  if (key.empty()) return "a param name is never empty (no $ctx.params reference reads \"\")";
  if (const auto dot = key.find('.'); dot != std::string_view::npos) {
    return "a param name holds no '.' ($ctx.params." + std::string(key) + " reads key '" +
           std::string(key.substr(dot + 1)) + "' of param '" + std::string(key.substr(0, dot)) +
           "')";
  }
  return {};
}

}  // namespace pyoco::core
