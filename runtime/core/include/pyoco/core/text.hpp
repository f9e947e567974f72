// Text that came from outside (a flow file, a plugin, a user) on its way to
// a terminal or to JSON: a newline in a name must not forge a trace line,
// and bytes that are not UTF-8 must not make the JSON invalid.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::core {

// The offset of the first byte that does not start a well-formed UTF-8
// sequence (overlong forms, surrogates and code points past U+10FFFF are
// not), or npos when all of `text` is UTF-8.
std::size_t invalid_utf8_at(std::string_view text);

// `text` with each byte of an ill-formed sequence replaced by U+FFFD, as
// JSON needs: unchanged (and cheap) when it is UTF-8 already.
std::string valid_utf8(std::string_view text);

// At most `max` bytes of `text`, cut at a character's start so that a
// UTF-8 text stays UTF-8 (it steps back at most 3 bytes: past that the text
// was not UTF-8 there, and it is cut at `max`).
std::string_view utf8_prefix(std::string_view text, std::size_t max);

// For one line of a terminal: control characters (C0 but tab, DEL, C1)
// written as \n, \r or \xNN, and bytes that are not UTF-8 as \xNN.
// Printable text, tabs and non-ASCII UTF-8 are left alone.
std::string printable(std::string_view text);
void append_printable(std::string& out, std::string_view text);

// `text` as a JSON string literal, quotes included: `"`, `\` and control
// characters (DEL too) escaped, bytes that are not UTF-8 replaced by
// U+FFFD. It is a TOML basic string as well.
void append_json_string(std::string& out, std::string_view text);

// A "did you mean": the name of `known` nearest to `name`, if at most two
// edits away (insert, delete or replace a character), else empty.
std::string nearest_name(std::string_view name, const std::vector<std::string>& known);

}  // namespace pyoco::core
