// What a parse of JSON text into a value cannot tell afterwards: a key
// written twice in one object (the value keeps the last, where another
// reader may take the first), and an integer no 64-bit integer holds (read
// as a double, silently rounded). Found while the text is read, with the
// place in the value ("params.x.2").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pyoco::core {

struct JsonTextProblem {
  enum class Kind { None, DuplicateKey, OversizedInteger };
  Kind kind = Kind::None;
  std::string path;     // keys and indexes, '.'-joined; empty: the top level
  std::string integer;  // OversizedInteger: the digits as written
  explicit operator bool() const { return kind != Kind::None; }
};

// What a file or an option says of a DuplicateKey, after its path.
inline constexpr std::string_view kDuplicateKeyText =
    "the key is written twice in one object; keep one of them";

// The first problem of `text`, read as JSON up to `max_depth` levels; none
// (also when the text is not JSON: a parse says why). `root` prefixes the
// path ("params" makes "params.a").
JsonTextProblem json_text_problem(std::string_view text, std::size_t max_depth,
                                  std::string_view root = {});

// Where a JSON parse of `text` stopped, as "line:column" (both from 1): the
// byte the parser could not take.
std::string json_error_position(std::string_view text, std::size_t max_depth);

// Byte `offset` of `text` as "line:column" (both from 1).
std::string line_column(std::string_view text, std::size_t offset);

// What a JSON problem says after its path: "the key is written twice ...",
// or "<digits>: too large for a 64-bit integer; quote it to keep it as text".
std::string problem_text(const JsonTextProblem& problem);

}  // namespace pyoco::core
