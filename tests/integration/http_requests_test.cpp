// The gateway's HttpServer against requests as careless or hostile clients
// send them: what is not HTTP is answered 400, headers over the limit 431;
// a path is never shown back raw; /health is answered while every handler
// thread is taken. The server is the gateway's own with routes of the
// test's: no NATS needed.
#include <pyoco/server/http.hpp>

#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

#include "ports.hpp"
#include "sync.hpp"

using namespace pyoco;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

// Sends `bytes` as they are (then, with `hang_up`, ends the sending side,
// as a client that goes away), then reads until the server closes (or 10 s).
std::string exchange(std::uint16_t port, const std::string& bytes, bool hang_up = false) {
  const int fd = pyoco::testing::connect_loopback(port);
  BOOST_TEST_REQUIRE(fd >= 0);
  timeval limit{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  BOOST_TEST_REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                     static_cast<ssize_t>(bytes.size()));
  if (hang_up) ::shutdown(fd, SHUT_WR);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return got;
}

std::string get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
}

// /slow waits for the gate (a handler waiting on NATS, or on a KDF);
// /health answers at once.
struct Server {
  explicit Server(std::size_t handler_threads) {
    auto router = std::make_shared<server::Router>();
    router->add(http::verb::get, "/slow", server::kPublic,
                [this](const server::Request&, const server::PathParams&, const server::Caller&) {
                  entered.arrive();
                  gate.wait(30s);
                  return server::json_response(200, boost::json::object{{"slow", true}});
                });
    router->add_at_once(
        http::verb::get, "/health",
        [](const server::Request&, const server::PathParams&, const server::Caller&) {
          return server::json_response(200, boost::json::object{{"status", "ok"}});
        });
    server::ListenOptions o;
    o.port = 0;
    o.handler_threads = handler_threads;
    http = std::make_unique<server::HttpServer>(router, o);
  }
  ~Server() { gate.open(); }
  std::uint16_t port() const { return http->port(); }

  pyoco::testing::Gate gate;
  pyoco::testing::Latch entered;
  std::unique_ptr<server::HttpServer> http;
};

}  // namespace

BOOST_AUTO_TEST_CASE(what_is_not_http_is_answered_400_and_headers_too_large_431) {
  Server s(2);
  for (const std::string& bad :
       {std::string("HELLO\r\n\r\n"), std::string("GET / FTP/1.1\r\n\r\n"),
        std::string("GET /health HTTP/1.1\r\nHost test\r\n\r\n"),
        std::string("POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    const std::string got = exchange(s.port(), bad);
    BOOST_TEST(got.rfind("HTTP/1.1 400 ", 0) == 0u, bad << " got " << got);
    BOOST_TEST(got.find("\"bad_request\"") != std::string::npos, got);
  }
  const std::string long_target = exchange(s.port(), get("/" + std::string(20000, 'a')));
  BOOST_TEST(long_target.rfind("HTTP/1.1 431 ", 0) == 0u, long_target.substr(0, 200));
  const std::string long_field =
      exchange(s.port(), "GET /health HTTP/1.1\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  BOOST_TEST(long_field.rfind("HTTP/1.1 431 ", 0) == 0u, long_field.substr(0, 200));
  // A client that goes away mid-request is not answered, and the server
  // goes on serving.
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(exchange(s.port(), "GET /hea", true).empty());
  BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));  // closed, not timed out
  BOOST_TEST(exchange(s.port(), get("/health")).rfind("HTTP/1.1 200 ", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(a_path_is_shown_back_escaped_and_short) {
  Server s(2);
  // Control bytes are not HTTP at all; bytes past ASCII are, and are
  // shown as %XX.
  BOOST_TEST(exchange(s.port(), get("/x\x1b[31mred")).rfind("HTTP/1.1 400 ", 0) == 0u);
  const std::string got =
      exchange(s.port(), get("/x\xc3\xa9\xff[red]" + std::string(5000, 'z') + "%41"));
  BOOST_TEST(got.rfind("HTTP/1.1 404 ", 0) == 0u, got.substr(0, 200));
  const std::string body = got.substr(got.find("\r\n\r\n") + 4);
  BOOST_TEST(body.find('\xff') == std::string::npos);
  BOOST_TEST(body.find("/x%C3%A9%FF[red]zzz") != std::string::npos, body);
  BOOST_TEST(body.find("zzz...") != std::string::npos, body);
  BOOST_TEST(body.size() < 400u, body);
}

// Both handler threads wait (as on NATS, or on KDFs): /health is still
// answered at once, and the slow requests are answered when they may.
BOOST_AUTO_TEST_CASE(health_is_answered_while_every_handler_thread_is_taken) {
  Server s(2);
  auto one = std::async(std::launch::async, [&] { return exchange(s.port(), get("/slow")); });
  auto two = std::async(std::launch::async, [&] { return exchange(s.port(), get("/slow")); });
  BOOST_TEST_REQUIRE(s.entered.wait_for(2));
  auto three = std::async(std::launch::async, [&] { return exchange(s.port(), get("/slow")); });
  const auto start = std::chrono::steady_clock::now();
  const std::string health = exchange(s.port(), get("/health"));
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(health.rfind("HTTP/1.1 200 ", 0) == 0u, health);
  BOOST_TEST(took < 2s, std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                            << " ms for /health");
  BOOST_TEST((three.wait_for(100ms) == std::future_status::timeout));  // queued behind the two
  s.gate.open();
  for (auto* f : {&one, &two, &three}) BOOST_TEST(f->get().rfind("HTTP/1.1 200 ", 0) == 0u);
}

// Large bodies (plugin packages) are held whole until handled: past the
// server's budget of them the next upload is refused at once, 503 with
// Retry-After, before its body is read; room given back, it is taken.
BOOST_AUTO_TEST_CASE(uploads_past_the_budget_are_refused_503_with_retry_after) {
  pyoco::testing::Gate gate;
  pyoco::testing::Latch entered;
  auto router = std::make_shared<server::Router>();
  router->add_large(
      http::verb::post, "/upload", server::kPublic, 1 << 20,
      [&](const server::Request& r, const server::PathParams&, const server::Caller&) {
        entered.arrive();
        if (r.target() == "/upload?wait") gate.wait(30s);
        return server::json_response(200, boost::json::object{{"bytes", r.body().size()}});
      });
  server::ListenOptions o;
  o.port = 0;
  o.handler_threads = 4;
  o.large_body_budget = 150000;  // one upload of 100,000 bytes at a time
  server::HttpServer s(router, o);
  auto upload = [&](const std::string& target) {
    return "POST " + target +
           " HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n" +
           std::string(100000, 'p');
  };
  auto first =
      std::async(std::launch::async, [&] { return exchange(s.port(), upload("/upload?wait")); });
  BOOST_TEST_REQUIRE(entered.wait_for(1));  // its body read, its handler holding it
  auto second =
      std::async(std::launch::async, [&] { return exchange(s.port(), upload("/upload")); });
  BOOST_TEST_REQUIRE((second.wait_for(10s) == std::future_status::ready));
  const std::string refused = second.get();
  BOOST_TEST(refused.rfind("HTTP/1.1 503 ", 0) == 0u, refused.substr(0, 300));
  BOOST_TEST(refused.find("Retry-After: 5\r\n") != std::string::npos, refused.substr(0, 300));
  BOOST_TEST(refused.find("\"error\":\"busy\"") != std::string::npos, refused.substr(0, 300));
  BOOST_TEST(refused.find("try again in 5 s") != std::string::npos, refused.substr(0, 300));
  gate.open();
  BOOST_TEST(first.get().rfind("HTTP/1.1 200 ", 0) == 0u);
  // The first one's room is back once it was answered.
  BOOST_TEST(exchange(s.port(), upload("/upload")).rfind("HTTP/1.1 200 ", 0) == 0u);
}

// RFC 9110: a 405 names the methods its path serves in Allow; HEAD is
// answered wherever GET is, with the GET's headers and no body.
BOOST_AUTO_TEST_CASE(a_405_says_what_is_allowed_and_head_is_served_where_get_is) {
  Server s(2);
  const std::string put = exchange(
      s.port(),
      "PUT /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  BOOST_TEST(put.rfind("HTTP/1.1 405 ", 0) == 0u, put);
  BOOST_TEST(put.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos, put);
  BOOST_TEST(put.find("it serves GET, HEAD") != std::string::npos, put);

  const std::string get_health = exchange(s.port(), get("/health"));
  const std::string head =
      exchange(s.port(), "HEAD /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
  BOOST_TEST(head.rfind("HTTP/1.1 200 ", 0) == 0u, head);
  const std::string body = get_health.substr(get_health.find("\r\n\r\n") + 4);
  BOOST_TEST(
      head.find("Content-Length: " + std::to_string(body.size()) + "\r\n") != std::string::npos,
      head);
  BOOST_TEST(head.substr(head.find("\r\n\r\n") + 4).empty(), head);  // no body

  // Two HEADs on one connection: the first sent no body, so the second
  // answer starts where the first one's headers end.
  const std::string two =
      exchange(s.port(),
               "HEAD /health HTTP/1.1\r\nHost: test\r\n\r\nHEAD /nowhere HTTP/1.1\r\nHost: "
               "test\r\nConnection: close\r\n\r\n");
  const std::size_t second = two.find("\r\n\r\n") + 4;
  BOOST_TEST(two.substr(second).rfind("HTTP/1.1 404 ", 0) == 0u, two);
  BOOST_TEST(two.substr(two.find("\r\n\r\n", second) + 4).empty(), two);
}
