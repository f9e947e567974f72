// What a call throws, as text, for tests that check error messages.
#pragma once

#include <functional>
#include <string>

namespace pyoco::testing {

// The what() of the `Error` that `f` throws; "" when it throws none.
template <class Error>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace pyoco::testing
