// Internal: bytes as lowercase hex (run ids, sha256 digests).
#pragma once

#include <cstddef>
#include <string>

namespace pyoco {

inline std::string hex(const unsigned char* d, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[d[i] >> 4];
    s += digits[d[i] & 15];
  }
  return s;
}

}  // namespace pyoco
