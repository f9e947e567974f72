// A guard in front of the TOML parser (toml++), which recurses once per
// part of a dotted key: `[a.a.a...]` of some 30,000 parts, a 100 KB file,
// overflows the stack of any process that parses it. Flow files and plugin
// manifests are both read from places users (and other teams) write to,
// so a key that long is refused before the parser sees it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pyoco::core {

// No file pyoco reads needs keys nested deeper than this.
inline constexpr std::size_t kMaxTomlKeyParts = 128;

struct TextPosition {
  std::size_t line = 0;    // 1-based; 0: nothing found
  std::size_t column = 0;  // 1-based
};

// Where the first dotted key (a table header's, or one before `=`, inline
// tables' included) of more than `max_parts` parts reaches its limit, or
// line 0 when there is none. Strings and comments are skipped; it reads
// the text once and allocates nothing.
TextPosition find_overlong_toml_key(std::string_view text,
                                    std::size_t max_parts = kMaxTomlKeyParts);

// The parser's description of an error, as a user is shown it: without the
// name of the build setting some messages end with ("... depth of 256
// (TOML_MAX_NESTED_VALUES)"), which means nothing to whoever wrote the file.
std::string toml_error_text(std::string_view description);

}  // namespace pyoco::core
