#include <pyoco/core/text.hpp>

#include <algorithm>

#include <cstdint>
#include <cstring>

namespace pyoco::core {

namespace {

// Length of the well-formed UTF-8 sequence at text[i], or 0.
std::size_t sequence_at(std::string_view text, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const std::size_t left = text.size() - i;
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  auto cont = [&](std::size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

void append_hex(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

}  // namespace

std::string_view utf8_prefix(std::string_view text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t at = max;
  for (int back = 0; back < 3 && at > 0 && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80;
       ++back) {
    --at;
  }
  if ((static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) at = max;  // not UTF-8 here
  return text.substr(0, at);
}

std::size_t invalid_utf8_at(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    // ASCII, the common case, eight bytes at a time: a task's 10 MB output
    // is checked in milliseconds, not a byte-by-byte decode.
    if (text.size() - i >= 8) {
      std::uint64_t w;
      std::memcpy(&w, text.data() + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const std::size_t n = sequence_at(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string valid_utf8(std::string_view text) {
  std::size_t bad = invalid_utf8_at(text);
  if (bad == std::string_view::npos) return std::string(text);
  std::string out(text.substr(0, bad));
  for (std::size_t i = bad; i < text.size();) {
    const std::size_t n = sequence_at(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

void append_printable(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c >= 0x20 && c < 0x7F) || c == '\t') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    switch (c) {
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      default:
        break;
    }
    const std::size_t n = c >= 0x80 ? sequence_at(text, i) : 0;
    // C1 controls (U+0080..U+009F) steer terminals too, and the bidi
    // controls (U+202A..U+202E, U+2066..U+2069) reorder what follows them
    // on the line: a name holding one could show as another.
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
    const bool c1 = n == 2 && c == 0xC2 && at(1) < 0xA0;
    const bool bidi = n == 3 && c == 0xE2 &&
                      ((at(1) == 0x80 && at(2) >= 0xAA && at(2) <= 0xAE) ||
                       (at(1) == 0x81 && at(2) >= 0xA6 && at(2) <= 0xA9));
    if (n == 0 || c1 || bidi) {
      const std::size_t k_end = n == 0 ? 1 : n;
      for (std::size_t k = 0; k < k_end; ++k) append_hex(out, at(k));
      i += k_end;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_printable(out, text);
  return out;
}

void append_json_string(std::string& out, std::string_view text) {
  static const char* hex = "0123456789abcdef";
  // JSON is UTF-8: a plugin's string that is not would make the whole
  // document invalid. Its bad bytes become U+FFFD.
  std::string repaired;
  std::string_view s = text;
  if (invalid_utf8_at(text) != std::string_view::npos) {
    repaired = valid_utf8(text);
    s = repaired;
  }
  out += '"';
  // Runs of bytes that need no escape go in at once, found eight at a
  // time: a word holds none of them when no byte is below 0x20 and none is
  // '"', '\\' or DEL (the classic "has a zero byte" test on w ^ that byte).
  auto plain = [](unsigned char c) { return c >= 0x20 && c != '"' && c != '\\' && c != 0x7f; };
  constexpr std::uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  auto has_zero = [](std::uint64_t v) { return ((v - kOnes) & ~v & kHigh) != 0; };
  auto all_plain = [&](std::uint64_t w) {
    return ((w - 0x20 * kOnes) & ~w & kHigh) == 0 && !has_zero(w ^ ('"' * kOnes)) &&
           !has_zero(w ^ ('\\' * kOnes)) && !has_zero(w ^ (0x7f * kOnes));
  };
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i;
    for (std::uint64_t w; s.size() - j >= 8; j += 8) {
      std::memcpy(&w, s.data() + j, 8);
      if (!all_plain(w)) break;
    }
    while (j < s.size() && plain(static_cast<unsigned char>(s[j]))) ++j;
    out.append(s.data() + i, j - i);
    if (j == s.size()) break;
    i = j + 1;
    const auto c = static_cast<unsigned char>(s[j]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:  // the other controls, and DEL: TOML's strings need it escaped
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
  }
  out += '"';
}

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string nearest_name(std::string_view name, const std::vector<std::string>& known) {
  std::string nearest;
  std::size_t best = 3;  // at most two edits away
  for (const std::string& k : known) {
    const std::size_t d = edit_distance(name, k);
    if (d < best) best = d, nearest = k;
  }
  return nearest;
}

}  // namespace pyoco::core
