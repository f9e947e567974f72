// Refused API keys counted per client address, so that guessing is slow
// and a flood of wrong keys cannot make the gateway run a KDF for each.
// An IPv6 client counts by its /64 (one host can hold a whole one).
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace pyoco::server {

class FailureLimiter {
 public:
  FailureLimiter(int max_failures, std::chrono::milliseconds window, std::size_t capacity = 10000);

  // One attempt that may fail, counted before it is made (a KDF in flight
  // counts too). Throws HttpError 429 when the address is over the limit,
  // with the seconds left of its window as retry_after.
  void attempt(const std::string& address);
  // The attempt succeeded: it no longer counts.
  void succeeded(const std::string& address);

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    int count = 0;
  };
  static std::string group_of(const std::string& address);
  void sweep(std::chrono::steady_clock::time_point now);

  const int max_;
  const std::chrono::milliseconds window_;
  const std::size_t capacity_;
  std::mutex mutex_;
  std::map<std::string, Window> windows_;  // by address group
  std::chrono::steady_clock::time_point last_sweep_{};
};

}  // namespace pyoco::server
