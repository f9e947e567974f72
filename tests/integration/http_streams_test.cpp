// The gateway's SSE responses against clients that stop reading: each
// holds a thread that writes with blocking writes, so a client that keeps
// its connection open but takes nothing must not hold that thread (and the
// events queued for it) forever, nor keep the server from stopping, and
// the number of such threads is bounded. The server here is the gateway's
// own HttpServer with a route of the test's: no NATS needed.
#include <pyoco/server/http.hpp>

#include <boost/test/unit_test.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ports.hpp"
#include "sync.hpp"

using namespace pyoco;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

// A client that sends one GET and then reads only what it is told to.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, const std::string& path = "/s") {
    fd_ = pyoco::testing::connect_loopback(port, 4096);  // a small window: writes block soon
    BOOST_TEST_REQUIRE(fd_ >= 0);
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n";
    BOOST_TEST_REQUIRE(::send(fd_, request.data(), request.size(), 0) ==
                       static_cast<ssize_t>(request.size()));
  }
  ~RawClient() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // The first bytes the server sends (its status line among them).
  std::string read_some() {
    char buf[512];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }

 private:
  int fd_ = -1;
};

// One SSE route whose handler sends 64 KB events until the client is gone
// or the server stops, then counts itself ended.
struct Server {
  explicit Server(server::ListenOptions o) {
    auto router = std::make_shared<server::Router>();
    router->add_stream(http::verb::get, "/s", server::kPublic,
                       [this](const server::Request&, const server::PathParams&,
                              const server::Caller&, server::EventStream& out) {
                         started.arrive();
                         const std::string data(64 * 1024, 'x');
                         while (!out.stopping() && out.send("e", "", data)) ++sent;
                         ended.arrive();
                       });
    // As the gateway's watches wait for events: a look at stopping() every
    // so often, and nothing to write for a while.
    router->add_stream(http::verb::get, "/idle", server::kPublic,
                       [this](const server::Request&, const server::PathParams&,
                              const server::Caller&, server::EventStream& out) {
                         out.comment("from 0");
                         started.arrive();
                         while (!out.stopping()) std::this_thread::sleep_for(100ms);
                         ended.arrive();
                       });
    router->observe([this](const server::Request&, const server::Response& res,
                           const std::string& route, const server::Caller&, double) {
      std::lock_guard lock(observed_mutex);
      observed.emplace_back(route, res.result_int());
    });
    o.port = 0;
    http = std::make_unique<server::HttpServer>(router, o);
  }
  // What the router's observer was told: route and status, in order.
  std::vector<std::pair<std::string, unsigned>> told() {
    std::lock_guard lock(observed_mutex);
    return observed;
  }
  std::mutex observed_mutex;
  std::vector<std::pair<std::string, unsigned>> observed;
  // Until the handler's sends stop moving: it is blocked in a write.
  bool blocked() {
    return pyoco::testing::eventually([&] {
      const int before = sent.load();
      std::this_thread::sleep_for(200ms);
      return sent.load() == before && before > 0;
    });
  }
  std::atomic<int> sent{0};
  pyoco::testing::Latch started, ended;
  std::unique_ptr<server::HttpServer> http;
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_client_that_stops_reading_is_cut_off_and_its_thread_freed) {
  server::ListenOptions o;
  o.stalled_write = 500ms;
  Server s(o);
  RawClient client(s.http->port());
  BOOST_TEST_REQUIRE(s.started.wait_for(1));
  BOOST_TEST(client.read_some().starts_with("HTTP/1.1 200 OK"));
  // The client reads nothing more: the handler blocks in a write, and is
  // cut off once it has been blocked for half a second.
  BOOST_TEST_REQUIRE(s.blocked());
  BOOST_TEST(s.ended.wait_for(1), "the stalled stream's handler never ended");
}

BOOST_AUTO_TEST_CASE(stop_returns_while_a_client_has_stopped_reading) {
  Server s({});  // the default 30 s: stop() must not wait for it
  RawClient client(s.http->port());
  BOOST_TEST_REQUIRE(s.started.wait_for(1));
  BOOST_TEST_REQUIRE(s.blocked());
  auto stopped = std::async(std::launch::async, [&] { s.http->stop(); });
  const bool in_time = stopped.wait_for(5s) == std::future_status::ready;
  if (!in_time) client.close();  // lets stop() return, so the test ends
  stopped.wait();
  BOOST_TEST(in_time, "stop() waited for a client that reads nothing");
}

BOOST_AUTO_TEST_CASE(streams_past_the_limit_are_answered_503) {
  server::ListenOptions o;
  o.max_streams = 2;
  Server s(o);
  RawClient first(s.http->port()), second(s.http->port());
  BOOST_TEST_REQUIRE(s.started.wait_for(2));
  RawClient third(s.http->port());
  const std::string answer = third.read_some();
  BOOST_TEST(answer.starts_with("HTTP/1.1 503"), answer.substr(0, 40));
  BOOST_TEST(answer.find("event streams already") != std::string::npos);
  BOOST_TEST(answer.find("\r\nRetry-After: 5\r\n") != std::string::npos, answer);
  // Counted (pyoco_http_requests_total) under the route it was for.
  const auto told = s.told();
  BOOST_TEST_REQUIRE(told.size() == 1u);
  BOOST_TEST(told[0].first == "/s");
  BOOST_TEST(told[0].second == 503u);
}

// A stream is counted once it ends, as its route's 200: streams were not
// counted at all.
BOOST_AUTO_TEST_CASE(a_stream_is_told_to_the_observer_when_it_ends) {
  Server s({});
  {
    RawClient client(s.http->port(), "/idle");
    BOOST_TEST(client.read_some().starts_with("HTTP/1.1 200 OK"));
    BOOST_TEST(s.told().empty());  // not while it lasts
  }
  BOOST_TEST_REQUIRE(s.ended.wait_for(1));
  BOOST_TEST_REQUIRE(pyoco::testing::eventually([&] { return s.told().size() == 1u; }));
  BOOST_TEST(s.told()[0].first == "/idle");
  BOOST_TEST(s.told()[0].second == 200u);
}

// A client that closes its stream frees its slot at once, not at the next
// write (a ping, 15 s later): one key that opened every slot and let go
// kept everyone else's streams at 503 meanwhile.
BOOST_AUTO_TEST_CASE(a_closed_streams_slot_is_free_at_once) {
  server::ListenOptions o;
  o.max_streams = 4;
  Server s(o);
  {
    std::vector<std::unique_ptr<RawClient>> clients;
    for (int i = 0; i < 4; ++i) {
      clients.push_back(std::make_unique<RawClient>(s.http->port(), "/idle"));
      BOOST_TEST(clients.back()->read_some().starts_with("HTTP/1.1 200 OK"));
    }
    BOOST_TEST_REQUIRE(s.started.wait_for(4));
    RawClient fifth(s.http->port(), "/idle");
    BOOST_TEST_REQUIRE(fifth.read_some().starts_with("HTTP/1.1 503"));
  }  // all four close
  std::string answer;
  BOOST_TEST(pyoco::testing::eventually(
                 [&] {
                   RawClient next(s.http->port(), "/idle");
                   answer = next.read_some();
                   return answer.starts_with("HTTP/1.1 200 OK");
                 },
                 2s),
             answer.substr(0, 60));
  BOOST_TEST(s.ended.wait_for(4), "a closed stream's handler did not end");
}
