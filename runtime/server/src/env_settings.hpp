// Settings from PYOCO_* environment variables (the gateway's, as
// pyoco-server names them): a bad value throws std::invalid_argument naming
// the variable, its value and what it should be.
#pragma once

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace pyoco::server {

// The variable's value, "" when unset.
inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// A number of seconds, more than 0 and at most `max`.
inline double seconds_from(const char* name, const std::string& text, double max = 300) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(v > 0) || v > max) {
    throw std::invalid_argument(std::string(name) + "=" + text +
                                ": seconds, more than 0 and at most " +
                                std::to_string(static_cast<long long>(max)));
  }
  return v;
}

// A whole number from `min` to `max`.
inline long whole_from(const char* name, const std::string& text, long min, long max) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v < min || v > max) {
    throw std::invalid_argument(std::string(name) + "=" + text + ": a whole number, " +
                                std::to_string(min) + " to " + std::to_string(max));
  }
  return v;
}

}  // namespace pyoco::server
