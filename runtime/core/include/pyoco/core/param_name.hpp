// What may name a run's param: one rule for `pyoco run -p`, a params file,
// `pyoco client submit` and the gateway's POST /runs.
#pragma once

#include <pyoco/core/text.hpp>

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

// A param name as a message shows it: "" for none, bytes that are not
// printable escaped.
inline std::string shown_param_name(std::string_view key) {
  constexpr std::size_t kShown = 200;  // a key of a megabyte is not echoed whole
  if (key.empty()) return "\"\"";
  return printable(key.substr(0, kShown)) + (key.size() > kShown ? "..." : "");
}

// What an option that sets one param (`-p`, `--param`) says of `key`, or ""
// when it names one: the problem, and the whole param to give instead.
inline std::string param_option_problem(std::string_view key, std::string_view option) {
  const std::string why = param_name_problem(key);
  if (why.empty()) return {};
  const std::string_view head = key.substr(0, key.find('.'));
  if (head.empty()) return shown_param_name(key) + ": " + why;  // ".a": no param to give
  return shown_param_name(key) + ": " + why + "; give the whole param: " + std::string(option) +
         " '" + shown_param_name(head) + "={...}' or --params-file";
}

}  // namespace pyoco::core
