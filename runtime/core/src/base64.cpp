#include <pyoco/core/base64.hpp>

namespace pyoco::core {

namespace {

constexpr const char* kStandard =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr const char* kUrl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode(std::string_view in, const char* t, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16 |
                       static_cast<unsigned char>(in[i + 1]) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    out += {t[v >> 18 & 63], t[v >> 12 & 63], t[v >> 6 & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {t[v >> 18 & 63], t[v >> 12 & 63]};
    if (pad) out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v =
        static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
    out += {t[v >> 18 & 63], t[v >> 12 & 63], t[v >> 6 & 63]};
    if (pad) out += '=';
  }
  return out;
}

// The value of a digit of the alphabet whose last two are `c62` and `c63`.
int digit(char c, char c62, char c63) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == c62) return 62;
  if (c == c63) return 63;
  return -1;
}

std::optional<std::string> decode(std::string_view text, char c62, char c63) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    const int d = digit(c, c62, c63);
    if (d < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace

std::string base64(std::string_view bytes) { return encode(bytes, kStandard, true); }

std::string base64url(std::string_view bytes) { return encode(bytes, kUrl, false); }

std::optional<std::string> from_base64(std::string_view text) { return decode(text, '+', '/'); }

std::optional<std::string> from_base64url(std::string_view text) { return decode(text, '-', '_'); }

}  // namespace pyoco::core
