// Waiting in tests without sleeping as synchronisation: every wait has a
// deadline, so a broken engine fails the test instead of hanging it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>

namespace pyoco::testing {

// A gate tasks can wait on until the test opens it.
class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait(std::chrono::seconds limit = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, limit, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Counts arrivals; wait_for(n) blocks until n have arrived (or the deadline).
class Latch {
 public:
  void arrive() {
    std::lock_guard<std::mutex> lock(m_);
    ++count_;
    cv_.notify_all();
  }
  bool wait_for(int n) {
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return count_ >= n; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int count_ = 0;
};

// Polls `done` (something another process or thread changes, with no way
// to be notified) until it holds or the deadline passes.
template <class F>
bool eventually(F&& done, std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// Waits until process `pid` has mapped the library `name` (its load has
// begun): polled from /proc, with eventually()'s deadline.
inline bool maps_library(int pid, const std::string& name) {
  return eventually([&] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find(name) != std::string::npos;
  });
}

}  // namespace pyoco::testing
