// The gateway's HttpServer against requests as careless or hostile clients
// send them: what is not HTTP is answered 400, headers over the limit 431;
// a path is never shown back raw; /health is answered while every handler
// thread is taken. The server is the gateway's own with routes of the
// test's: no NATS needed.
#include <pyoco/server/http.hpp>

#include <boost/test/unit_test.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <chrono>
#include <cstring>
#include <ctime>
#include <future>
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
    router->observe([this](const server::Request&, const server::Response& res,
                           const std::string& route, const server::Caller&, double) {
      std::lock_guard lock(observed_mutex);
      observed.emplace_back(route, res.result_int());
    });
    server::ListenOptions o;
    o.port = 0;
    o.handler_threads = handler_threads;
    http = std::make_unique<server::HttpServer>(router, o);
  }
  ~Server() { gate.open(); }
  std::uint16_t port() const { return http->port(); }
  // What the router's observer was told (the gateway's metrics and access
  // log): route and status, in order.
  std::vector<std::pair<std::string, unsigned>> told() {
    std::lock_guard lock(observed_mutex);
    return observed;
  }

  std::mutex observed_mutex;
  std::vector<std::pair<std::string, unsigned>> observed;

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
        std::string(
            "POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
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

// pyoco_http_requests_total and the access log come from the observer:
// requests refused before routing were missing from both, and a 405 was
// counted as "(no route)".
BOOST_AUTO_TEST_CASE(every_answer_is_told_to_the_observer_under_its_route) {
  Server s(2);
  const std::string unrouted = server::Router::kUnrouted;
  const std::pair<std::string, std::pair<std::string, unsigned>> cases[] = {
      {"HELLO\r\n\r\n", {unrouted, 400}},
      {get("/" + std::string(20000, 'a')), {unrouted, 431}},
      {"POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", {unrouted, 501}},
      {"GET /health HTTP/1.1\r\n\r\n", {unrouted, 400}},  // no Host
      {"PUT /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
       {"/health", 405}},
      {get("/nowhere"), {"", 404}},
      {get("/health"), {"/health", 200}},
  };
  for (const auto& [request, expected] : cases) {
    const std::size_t before = s.told().size();
    const std::string got = exchange(s.port(), request);
    const auto told = s.told();  // told before the answer was written
    BOOST_TEST_REQUIRE(told.size() == before + 1, request.substr(0, 60) << " got " << got);
    BOOST_TEST(told.back().first == expected.first, request.substr(0, 60));
    BOOST_TEST(told.back().second == expected.second, request.substr(0, 60));
  }
}

BOOST_AUTO_TEST_CASE(requests_rfc_9112_refuses_are_refused_before_their_body) {
  // Both were answered 200: a gzip coding the gateway skipped (a body it
  // would misread), and an HTTP/1.1 request with no Host.
  Server s(2);
  const std::string gzip = exchange(
      s.port(),
      "POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
  BOOST_TEST(gzip.rfind("HTTP/1.1 501 ", 0) == 0u, gzip);
  BOOST_TEST(gzip.find("Transfer-Encoding 'gzip, chunked' is not supported") != std::string::npos,
             gzip);
  const std::string no_host = exchange(s.port(), "GET /health HTTP/1.1\r\n\r\n");
  BOOST_TEST(no_host.rfind("HTTP/1.1 400 ", 0) == 0u, no_host);
  BOOST_TEST(no_host.find("must have one Host header") != std::string::npos, no_host);
  const std::string two_hosts =
      exchange(s.port(), "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  BOOST_TEST(two_hosts.rfind("HTTP/1.1 400 ", 0) == 0u, two_hosts);
  // HTTP/1.0 needs none; chunked alone is read as always.
  BOOST_TEST(exchange(s.port(), "GET /health HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 200 ", 0) == 0u);
  const std::string chunked =
      exchange(s.port(),
               "GET /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: "
               "close\r\n\r\n0\r\n\r\n");
  BOOST_TEST(chunked.rfind("HTTP/1.1 200 ", 0) == 0u, chunked);
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

namespace {

// The CPU time this process used so far (user and system), in seconds.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// This process's descriptor limit lowered to what it has open now plus
// `more`, for as long as it lasts: the server runs out of descriptors,
// not the machine.
struct FewDescriptors {
  rlimit was{};
  explicit FewDescriptors(std::size_t more) {
    ::getrlimit(RLIMIT_NOFILE, &was);
    rlimit fewer = was;
    fewer.rlim_cur = open_descriptors() + more;
    BOOST_TEST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &fewer) == 0);
  }
  ~FewDescriptors() { ::setrlimit(RLIMIT_NOFILE, &was); }
};

// A client in a process of its own (its descriptors are not the server's)
// holding `n` connections, each sent `first` at once and then "X-a: b\r\n"
// every 200 ms, as a slowloris client does, until it is let go.
struct SlowClients {
  pid_t pid = -1;
  int control = -1;  // closed: the child goes
  int opened = 0;
  SlowClients(std::uint16_t port, int n, const std::string& first) {
    int to_child[2], from_child[2];
    BOOST_TEST_REQUIRE(::pipe(to_child) == 0);
    BOOST_TEST_REQUIRE(::pipe(from_child) == 0);
    pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {  // plain system calls only from here
      ::close(to_child[1]);
      ::close(from_child[0]);
      rlimit l{};
      ::getrlimit(RLIMIT_NOFILE, &l);
      l.rlim_cur = l.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &l);
      static int fds[20000];
      int count = 0;
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      for (; count < n && count < 20000; ++count) {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) break;
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          ::close(fd);
          break;
        }
        ::send(fd, first.data(), first.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        fds[count] = fd;
      }
      (void)!::write(from_child[1], &count, sizeof count);
      pollfd p{to_child[0], POLLIN, 0};
      while (::poll(&p, 1, 200) == 0) {
        for (int i = 0; i < count; ++i) {
          ::send(fds[i], "X-a: b\r\n", 8, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
      ::_exit(0);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    control = to_child[1];
    BOOST_TEST_REQUIRE(::read(from_child[0], &opened, sizeof opened) ==
                       static_cast<ssize_t>(sizeof opened));
    ::close(from_child[0]);
  }
  ~SlowClients() {
    ::close(control);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
};

std::shared_ptr<server::Router> plain_routes() {
  auto router = std::make_shared<server::Router>();
  router->add_at_once(http::verb::get, "/health",
                      [](const server::Request&, const server::PathParams&, const server::Caller&) {
                        return server::json_response(200, boost::json::object{{"status", "ok"}});
                      });
  router->add(http::verb::get, "/runs", server::kPublic,
              [](const server::Request&, const server::PathParams&, const server::Caller&) {
                return server::json_response(200, boost::json::array{});
              });
  router->add(http::verb::post, "/echo", server::kPublic,
              [](const server::Request& r, const server::PathParams&, const server::Caller&) {
                return server::json_response(200, boost::json::object{{"body", r.body()}});
              });
  return router;
}

// With a few hundred descriptors and a thousand connections that never
// finish their headers, /health and a request still answer at once, and
// the server is not spinning.
// 20 rounds of GET /health and GET /runs, each round answered 200 within
// 2 s, asked from a child process: this one's descriptors are the server's
// to run out of (a socket() here would race its accept for the last one).
// 0 when all were; else which answer failed (odd: /health, even: /runs,
// 100 + n: round n too slow).
int answered_from_a_child(std::uint16_t port) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {  // plain system calls only from here
    ::close_range(3, ~0U, 0);
    static char buf[65536];
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto now_ms = [] {
      timespec t{};
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      return t.tv_sec * 1000 + t.tv_nsec / 1000000;
    };
    for (int round = 0; round < 20; ++round) {
      const long asked = now_ms();
      for (int k = 0; k < 2; ++k) {
        const char* req = k == 0 ? "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                 : "GET /runs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        timeval limit{10, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          ::_exit(2 * round + k + 1);
        }
        ::send(fd, req, std::strlen(req), MSG_NOSIGNAL);
        std::size_t got = 0;
        for (ssize_t n; got < sizeof buf && (n = ::recv(fd, buf + got, sizeof buf - got, 0)) > 0;) {
          got += static_cast<std::size_t>(n);
        }
        ::close(fd);
        if (got < 13 || std::memcmp(buf, "HTTP/1.1 200 ", 13) != 0) ::_exit(2 * round + k + 1);
      }
      if (now_ms() - asked >= 2000) ::_exit(100 + round);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

void slow_headers_leave_room(std::size_t max_connections) {
  FewDescriptors few(300);
  server::ListenOptions o;
  o.port = 0;
  o.max_connections = max_connections;  // 0: from the descriptor limit
  server::HttpServer s(plain_routes(), o);
  SlowClients slow(s.port(), 1000, "GET /runs HTTP/1.1\r\nHost: x\r\n");
  BOOST_TEST_REQUIRE(slow.opened == 1000);
  // Each answered within 2 s, 20 times over.
  BOOST_TEST_REQUIRE(answered_from_a_child(s.port()) == 0);
  // Then a second in which this thread asks nothing (a window to measure
  // in, not a wait for something): the server, its slow clients still
  // trickling, uses little of it.
  const double cpu_before = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1s);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_before;
  BOOST_TEST(cpu < 0.3 * wall, cpu << " s of CPU in " << wall << " s");
  BOOST_TEST(answered_from_a_child(s.port()) == 0);
}

}  // namespace

// The cap from the descriptor limit: the connections that waited longest
// for their headers are closed to make room for new ones.
BOOST_AUTO_TEST_CASE(slow_header_connections_past_the_cap_make_room_for_new_ones) {
  slow_headers_leave_room(0);
  BOOST_TEST(server::default_max_connections() > 0u);
}

// A cap set above what the descriptors allow: out of descriptors, the
// accept makes room the same way, and never spins.
BOOST_AUTO_TEST_CASE(out_of_descriptors_the_accept_makes_room_and_does_not_spin) {
  slow_headers_leave_room(100000);
}

// Every connection busy with a request at the cap: a new one is answered
// 503 with Retry-After at once and closed.
BOOST_AUTO_TEST_CASE(at_the_cap_with_every_connection_busy_a_new_one_is_told_503) {
  pyoco::testing::Gate gate;
  pyoco::testing::Latch entered;
  auto router = std::make_shared<server::Router>();
  router->add(http::verb::get, "/slow", server::kPublic,
              [&](const server::Request&, const server::PathParams&, const server::Caller&) {
                entered.arrive();
                gate.wait(30s);
                return server::json_response(200, boost::json::object{});
              });
  server::ListenOptions o;
  o.port = 0;
  o.max_connections = 2;
  o.handler_threads = 2;
  server::HttpServer s(router, o);
  auto one = std::async(std::launch::async, [&] { return exchange(s.port(), get("/slow")); });
  auto two = std::async(std::launch::async, [&] { return exchange(s.port(), get("/slow")); });
  BOOST_TEST_REQUIRE(entered.wait_for(2));
  const std::string refused = exchange(s.port(), get("/slow"));
  BOOST_TEST(refused.rfind("HTTP/1.1 503 ", 0) == 0u, refused);
  BOOST_TEST(refused.find("Retry-After: 1\r\n") != std::string::npos, refused);
  BOOST_TEST(refused.find("\"error\":\"busy\"") != std::string::npos, refused);
  gate.open();
  BOOST_TEST(one.get().rfind("HTTP/1.1 200 ", 0) == 0u);
  BOOST_TEST(two.get().rfind("HTTP/1.1 200 ", 0) == 0u);
}

// The request's line and headers have one deadline: bytes that trickle in
// do not extend it.
BOOST_AUTO_TEST_CASE(headers_that_trickle_in_are_cut_at_the_header_deadline) {
  server::ListenOptions o;
  o.port = 0;
  o.header_timeout = 500ms;
  server::HttpServer s(plain_routes(), o);
  const int fd = pyoco::testing::connect_loopback(s.port());
  BOOST_TEST_REQUIRE(fd >= 0);
  const std::string first = "GET /runs HTTP/1.1\r\nHost: x\r\n";
  ::send(fd, first.data(), first.size(), MSG_NOSIGNAL);
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - start < 5s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) {
      char c;
      closed = ::recv(fd, &c, 1, 0) <= 0;
    } else if (::send(fd, "X-a: b\r\n", 8, MSG_NOSIGNAL) < 0) {
      closed = true;
    }
  }
  const auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  BOOST_TEST(closed);
  BOOST_TEST((took < 3s), std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                              << " ms");
}

// A body that stops coming (1 byte now and then of a declared 100,000) is
// answered 408 once a window after the first brings less than the minimum
// rate, and its room in the large-body budget is given back.
BOOST_AUTO_TEST_CASE(an_upload_slower_than_the_minimum_rate_is_cut_408_and_frees_its_room) {
  auto router = std::make_shared<server::Router>();
  router->add_large(
      http::verb::post, "/upload", server::kPublic, 1 << 20,
      [](const server::Request& r, const server::PathParams&, const server::Caller&) {
        return server::json_response(200, boost::json::object{{"bytes", r.body().size()}});
      });
  server::ListenOptions o;
  o.port = 0;
  o.large_body_budget = 150000;  // one upload of 100,000 bytes at a time
  o.upload_min_rate = 64 << 10;
  o.upload_rate_window = 300ms;
  server::HttpServer s(router, o);
  const std::string head = "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n";
  const int fd = pyoco::testing::connect_loopback(s.port());
  BOOST_TEST_REQUIRE(fd >= 0);
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  ::send(fd, "0123456789", 10, MSG_NOSIGNAL);
  const auto start = std::chrono::steady_clock::now();
  std::string got;
  while (got.find("\r\n\r\n") == std::string::npos &&
         std::chrono::steady_clock::now() - start < 10s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) {
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    } else {
      ::send(fd, "x", 1, MSG_NOSIGNAL);
    }
  }
  const auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  BOOST_TEST(got.rfind("HTTP/1.1 408 ", 0) == 0u, got);
  BOOST_TEST(got.find("\"too_slow\"") != std::string::npos, got);
  BOOST_TEST((took < 3s), std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                              << " ms");
  // Its room is back: a whole upload is taken.
  const std::string whole =
      exchange(s.port(),
               "POST /upload HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: "
               "100000\r\n\r\n" +
                   std::string(100000, 'p'));
  BOOST_TEST(whole.rfind("HTTP/1.1 200 ", 0) == 0u, whole.substr(0, 300));
}

// RFC 9110 10.1.1: `Expect: 100-continue` is answered 100 Continue once
// the headers are accepted, before the body comes.
BOOST_AUTO_TEST_CASE(expect_100_continue_is_answered_before_the_body) {
  server::ListenOptions o;
  o.port = 0;
  server::HttpServer s(plain_routes(), o);
  const int fd = pyoco::testing::connect_loopback(s.port());
  BOOST_TEST_REQUIRE(fd >= 0);
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  const std::string head =
      "POST /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\nExpect: "
      "100-continue\r\nContent-Length: 5\r\n\r\n";
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  BOOST_TEST_REQUIRE(n > 0);
  BOOST_TEST(std::string(buf, static_cast<std::size_t>(n)) == "HTTP/1.1 100 Continue\r\n\r\n");
  ::send(fd, "hello", 5, MSG_NOSIGNAL);
  std::string got;
  for (ssize_t m; (m = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    got.append(buf, static_cast<std::size_t>(m));
  }
  ::close(fd);
  BOOST_TEST(got.rfind("HTTP/1.1 200 ", 0) == 0u, got);
  BOOST_TEST(got.find("\"body\":\"hello\"") != std::string::npos, got);
}

// RFC 9112 3.2.2: a request target in absolute form is served by its path.
BOOST_AUTO_TEST_CASE(an_absolute_form_target_is_served_by_its_path) {
  Server s(2);
  const std::string got = exchange(s.port(), get("http://example.net/health"));
  BOOST_TEST(got.rfind("HTTP/1.1 200 ", 0) == 0u, got);
  const std::string query = exchange(s.port(), get("HTTP://example.net:80/nowhere?x=1"));
  BOOST_TEST(query.find("no route /nowhere") != std::string::npos, query);
}

// The limits' settings: read when set, a bad one refused naming it.
BOOST_AUTO_TEST_CASE(the_connection_limits_come_from_the_environment) {
  ::setenv("PYOCO_HTTP_MAX_CONNECTIONS", "500", 1);
  ::setenv("PYOCO_HTTP_HEADER_TIMEOUT_SEC", "2.5", 1);
  ::setenv("PYOCO_HTTP_UPLOAD_MIN_BYTES_PER_SEC", "0", 1);
  server::ListenOptions o;
  server::listen_limits_from_env(o);
  BOOST_TEST(o.max_connections == 500u);
  BOOST_TEST(o.header_timeout.count() == 2500);
  BOOST_TEST(o.upload_min_rate == 0u);
  ::setenv("PYOCO_HTTP_MAX_CONNECTIONS", "lots", 1);
  try {
    server::listen_limits_from_env(o);
    BOOST_TEST(false, "a bad PYOCO_HTTP_MAX_CONNECTIONS was taken");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string(e.what()).find("PYOCO_HTTP_MAX_CONNECTIONS=lots") == 0u, e.what());
  }
  ::unsetenv("PYOCO_HTTP_MAX_CONNECTIONS");
  ::setenv("PYOCO_HTTP_HEADER_TIMEOUT_SEC", "0.0001", 1);  // every request would be cut
  try {
    server::listen_limits_from_env(o);
    BOOST_TEST(false, "a header deadline under a second was taken");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string(e.what()).find("PYOCO_HTTP_HEADER_TIMEOUT_SEC=0.0001: must be at "
                                          "least 1") == 0u,
               e.what());
  }
  for (const char* name : {"PYOCO_HTTP_MAX_CONNECTIONS", "PYOCO_HTTP_HEADER_TIMEOUT_SEC",
                           "PYOCO_HTTP_UPLOAD_MIN_BYTES_PER_SEC"}) {
    ::unsetenv(name);
  }
}

// Past half the connection cap, a new wait for headers has the shorter
// deadline: slow clients cannot hold what is left for long.
BOOST_AUTO_TEST_CASE(past_half_the_cap_the_header_deadline_is_shorter) {
  server::ListenOptions o;
  o.port = 0;
  o.max_connections = 6;
  o.header_timeout = 60s;
  o.header_timeout_busy = 300ms;
  server::HttpServer s(plain_routes(), o);
  const std::string first = "GET /runs HTTP/1.1\r\nHost: x\r\n";
  // Each seen by the server (answered) before the next: then four wait.
  std::vector<int> fds;
  auto open_slow = [&] {
    const int fd = pyoco::testing::connect_loopback(s.port());
    BOOST_TEST_REQUIRE(fd >= 0);
    const std::string ping = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    ::send(fd, ping.data(), ping.size(), MSG_NOSIGNAL);
    timeval limit{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    char buf[4096];
    BOOST_TEST_REQUIRE(::recv(fd, buf, sizeof buf, 0) > 0);
    ::send(fd, first.data(), first.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  };
  for (int i = 0; i < 4; ++i) open_slow();
  // The first three waited with 60 s, the fourth (4 open > 3) with 300 ms.
  const auto start = std::chrono::steady_clock::now();
  char c;
  const ssize_t got = ::recv(fds.back(), &c, 1, 0);  // 5 s at most
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(got == 0);  // closed by the server
  BOOST_TEST((took < 3s), std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                              << " ms");
  pollfd p{fds.front(), POLLIN, 0};
  BOOST_TEST(::poll(&p, 1, 0) == 0);  // the first still open
  for (const int fd : fds) ::close(fd);
}
