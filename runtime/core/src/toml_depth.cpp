#include <pyoco/core/toml_depth.hpp>

namespace pyoco::core {

TextPosition find_overlong_toml_key(std::string_view text, std::size_t max_parts) {
  std::size_t line = 1, line_start = 0;
  std::size_t dots = 0;  // since the last character that ends a key or value
  const std::size_t n = text.size();
  auto starts = [&](std::size_t i, std::string_view s) { return text.substr(i, s.size()) == s; };
  for (std::size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      dots = 0;
    } else if (c == '#') {  // a comment, to the end of its line
      while (i + 1 < n && text[i + 1] != '\n') ++i;
    } else if (c == '"' || c == '\'') {
      // A string: skipped whole; multi-line ones count their lines.
      const bool multi = starts(i, c == '"' ? "\"\"\"" : "'''");
      const std::string_view close = multi ? (c == '"' ? "\"\"\"" : "'''") : text.substr(i, 1);
      std::size_t j = i + (multi ? 3 : 1);
      for (; j < n && !starts(j, close); ++j) {
        if (c == '"' && text[j] == '\\') {
          ++j;  // the escaped character, whatever it is
          if (j < n && text[j] == '\n') {
            ++line;
            line_start = j + 1;
          }
        } else if (text[j] == '\n') {
          if (!multi) break;  // unterminated: the parser says so
          ++line;
          line_start = j + 1;
        }
      }
      i = j < n && starts(j, close) ? j + close.size() - 1 : j - 1;
    } else if (c == '.') {
      if (++dots >= max_parts) return {line, i - line_start + 1};
    } else if (c == '=' || c == ',' || c == '{' || c == '}' || c == '[' || c == ']') {
      dots = 0;
    }
  }
  return {};
}

std::string toml_error_text(std::string_view description) {
  const std::size_t open = description.rfind(" (TOML_");
  if (open != std::string_view::npos && description.ends_with(")") &&
      description.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", open + 2) ==
          description.size() - 1) {
    description = description.substr(0, open);
  }
  return std::string(description);
}

}  // namespace pyoco::core
