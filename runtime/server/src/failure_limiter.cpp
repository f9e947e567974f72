#include "failure_limiter.hpp"

#include <pyoco/server/http.hpp>

#include <boost/asio/ip/address.hpp>

#include <algorithm>

namespace pyoco::server {

FailureLimiter::FailureLimiter(int max_failures, std::chrono::milliseconds window,
                               std::size_t capacity)
    : max_(max_failures), window_(window), capacity_(capacity) {}

std::string FailureLimiter::group_of(const std::string& address) {
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(address, ec);
  if (ec || !ip.is_v6() || ip.to_v6().is_v4_mapped()) return address;
  auto bytes = ip.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

// Windows that have passed go, at most once a second; if the map is still
// full, the oldest window goes (memory stays bounded whatever the flood).
void FailureLimiter::sweep(std::chrono::steady_clock::time_point now) {
  if (now - last_sweep_ >= std::chrono::seconds(1)) {
    last_sweep_ = now;
    std::erase_if(windows_, [&](const auto& w) { return now - w.second.start > window_; });
  }
  while (windows_.size() >= capacity_) {
    windows_.erase(std::min_element(
        windows_.begin(), windows_.end(),
        [](const auto& a, const auto& b) { return a.second.start < b.second.start; }));
  }
}

void FailureLimiter::attempt(const std::string& address) {
  const std::string group = group_of(address);
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  auto it = windows_.find(group);
  if (it == windows_.end()) {
    sweep(now);
    it = windows_.emplace(group, Window{now, 0}).first;
  } else if (now - it->second.start > window_) {
    it->second = Window{now, 0};
  }
  if (it->second.count >= max_) {
    const auto left =
        std::chrono::duration_cast<std::chrono::seconds>(window_ - (now - it->second.start));
    const auto wait = static_cast<unsigned>(left.count() + 1);
    throw HttpError{429, "too_many_failures",
                    "too many refused API keys from " + address + "; try again in " +
                        std::to_string(wait) + " s",
                    wait};
  }
  ++it->second.count;
}

void FailureLimiter::succeeded(const std::string& address) {
  std::lock_guard lock(mutex_);
  auto it = windows_.find(group_of(address));
  if (it != windows_.end() && it->second.count > 0) --it->second.count;
}

}  // namespace pyoco::server
