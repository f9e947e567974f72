// Run ids: a new one (a random UUID), and the rule a caller's must follow.
#include <pyoco/engine/engine.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <random>
#include <stdexcept>

#include "hex.hpp"
#include "run_state.hpp"

namespace pyoco {

void check_run_id(const std::string& id) {
  const bool ok =
      !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-';
      });
  if (!ok) {
    throw std::invalid_argument("run id '" + id +
                                "' is not allowed: use 1-128 characters of A-Z a-z 0-9 . _ -");
  }
  // `pyoco runs show -x` would read it as an option.
  if (id.front() == '-') {
    throw std::invalid_argument("run id '" + id +
                                "' is not allowed: it starts with '-', which a command line reads "
                                "as an option; start it with a letter or a digit");
  }
  // A directory of the artifact store is named by it.
  if (id == "." || id == "..") {
    throw std::invalid_argument(
        "run id '" + id + "' is not allowed: it names a directory; use letters or digits too");
  }
}

std::string new_run_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  unsigned char b[16];
  for (int i = 0; i < 16; i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(b + i, &r, 8);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  const std::string h = hex(b, 16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

}  // namespace pyoco
