#include "sse_watchers.hpp"

#include <fcntl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <array>

namespace pyoco::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct SseWatchers::Connection : std::enable_shared_from_this<Connection> {
  SseWatchers& owner;
  std::size_t index;
  tcp::socket socket;
  std::string request;
  std::array<char, 16384> chunk;
  std::string pending;  // received, not yet parsed
  bool headers_done = false;

  Connection(SseWatchers& o, std::size_t i) : owner(o), index(i), socket(o.io_) {}

  void start(const tcp::endpoint& endpoint, const std::string& host) {
    request = "GET " + owner.watchers_[index].target + " HTTP/1.1\r\nHost: " + host +
              "\r\nAccept: text/event-stream\r\n\r\n";
    // Close-on-exec: wrk, started while these are open, sizes its event
    // loop from its -c and cannot register sockets past it (it counts
    // them as connect errors) when it inherits hundreds of descriptors.
    boost::system::error_code ec;
    socket.open(endpoint.protocol(), ec);
    if (ec) return fail("socket: " + ec.message());
    ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
    socket.async_connect(endpoint, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return self->fail("connect: " + ec.message());
      asio::async_write(self->socket, asio::buffer(self->request),
                        [self](boost::system::error_code ec, std::size_t) {
                          if (ec) return self->fail("write: " + ec.message());
                          self->read();
                        });
    });
  }

  void read() {
    socket.async_read_some(asio::buffer(chunk), [self = shared_from_this()](
                                                    boost::system::error_code ec, std::size_t n) {
      if (n > 0) self->parse(std::string_view(self->chunk.data(), n));
      if (ec) {
        std::lock_guard lock(self->owner.mutex_);
        Watcher& w = self->owner.watchers_[self->index];
        w.closed = true;
        // The server ends a run's stream after its end: no error then.
        // An error answer (its status) says more than the end that follows it.
        if ((ec != asio::error::eof || w.marked == TimePoint{}) && w.error.empty()) {
          w.error = "read: " + ec.message();
        }
        return;
      }
      self->read();
    });
  }

  void parse(std::string_view data) {
    const auto now = std::chrono::steady_clock::now();
    pending.append(data);
    std::lock_guard lock(owner.mutex_);
    Watcher& w = owner.watchers_[index];
    if (!headers_done) {
      const auto end = pending.find("\r\n\r\n");
      if (end == std::string::npos) return;
      // "HTTP/1.1 200 OK"
      w.status = std::atoi(pending.c_str() + pending.find(' ') + 1);
      if (w.status != 200) w.error = "status " + pending.substr(0, pending.find('\r'));
      pending.erase(0, end + 4);
      headers_done = true;
    }
    // Events end with a blank line; comments (": ping") are not events.
    for (auto end = pending.find("\n\n"); end != std::string::npos; end = pending.find("\n\n")) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      if (event.rfind(':', 0) == 0) continue;
      if (w.first_event == TimePoint{}) w.first_event = now;
      ++w.events;
      if (w.marked == TimePoint{} && event.find(owner.marker_) != std::string::npos) w.marked = now;
    }
  }

  void fail(const std::string& why) {
    std::lock_guard lock(owner.mutex_);
    owner.watchers_[index].closed = true;
    owner.watchers_[index].error = why;
  }
};

SseWatchers::SseWatchers(const std::string& host, const std::string& port,
                         const std::vector<std::string>& targets, std::string marker)
    : marker_(std::move(marker)) {
  for (const auto& t : targets) {
    watchers_.emplace_back();
    watchers_.back().target = t;
  }
  tcp::resolver resolver(io_);
  const tcp::endpoint endpoint = *resolver.resolve(host, port).begin();
  for (std::size_t i = 0; i < targets.size(); ++i) {
    connections_.push_back(std::make_shared<Connection>(*this, i));
    connections_.back()->start(endpoint, host);
  }
  thread_ = std::thread([this] { io_.run(); });
}

SseWatchers::~SseWatchers() {
  asio::post(io_, [this] {
    for (auto& c : connections_) {
      boost::system::error_code ignored;
      c->socket.close(ignored);
    }
  });
  thread_.join();  // run() returns once every closed read has been called back
}

template <class Pred>
bool SseWatchers::wait(std::chrono::seconds deadline, Pred pred) {
  for (const auto until = std::chrono::steady_clock::now() + deadline;;) {
    {
      std::lock_guard lock(mutex_);
      bool all = true;
      for (const Watcher& w : watchers_) all = all && pred(w);
      if (all) return true;
    }
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);  // polled, with a deadline
  }
}

bool SseWatchers::wait_first_events(std::chrono::seconds deadline) {
  return wait(deadline, [](const Watcher& w) { return w.closed || w.first_event != TimePoint{}; });
}

bool SseWatchers::all_have(std::size_t n) {
  std::lock_guard lock(mutex_);
  for (const Watcher& w : watchers_) {
    if (!w.closed && w.events < n) return false;
  }
  return true;
}

bool SseWatchers::wait_marked(std::chrono::seconds deadline) {
  return wait(deadline, [](const Watcher& w) { return w.closed || w.marked != TimePoint{}; });
}

std::size_t SseWatchers::held() {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const Watcher& w : watchers_) n += !w.closed && w.first_event != TimePoint{} ? 1 : 0;
  return n;
}

std::vector<SseWatchers::Watcher> SseWatchers::snapshot() {
  std::lock_guard lock(mutex_);
  return watchers_;
}

}  // namespace pyoco::bench
