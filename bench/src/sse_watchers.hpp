// Many Server-Sent Events connections held open at once from one I/O
// thread: each sends its GET and records, on this process's clock, when
// its first event came, when an event holding a marker came (a run's
// run_end), and how it ended.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pyoco::bench {

class SseWatchers {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Watcher {
    std::string target;
    int status = 0;          // the response's status code, 0 before its headers
    TimePoint first_event;   // {}: none yet
    TimePoint marked;        // the first event whose data holds the marker; {}: none
    std::size_t events = 0;  // events received (comments not counted)
    bool closed = false;     // the server closed it (or it failed)
    std::string error;       // why it failed, or "" (a clean close after the marker is no error)
  };

  // Connects to host:port and sends GET `target` for each target at once.
  SseWatchers(const std::string& host, const std::string& port,
              const std::vector<std::string>& targets, std::string marker);
  ~SseWatchers();  // closes what is still open
  SseWatchers(const SseWatchers&) = delete;
  SseWatchers& operator=(const SseWatchers&) = delete;

  // Waits until every watcher got its first event, closed or failed;
  // false at the deadline.
  bool wait_first_events(std::chrono::seconds deadline);
  // Waits until every watcher saw the marker or closed; false at the deadline.
  bool wait_marked(std::chrono::seconds deadline);
  // How many are open and have had an event.
  std::size_t held();
  // Whether every watcher has had at least `n` events (or closed).
  bool all_have(std::size_t n);
  std::vector<Watcher> snapshot();

 private:
  struct Connection;
  template <class Pred>
  bool wait(std::chrono::seconds deadline, Pred pred);

  boost::asio::io_context io_;
  std::mutex mutex_;  // the watchers, written on the I/O thread
  std::vector<Watcher> watchers_;
  std::vector<std::shared_ptr<Connection>> connections_;
  std::string marker_;
  std::thread thread_;
};

}  // namespace pyoco::bench
