// http_get: a plain HTTP/1.1 GET with Boost.Beast, bounded by a timeout.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <regex>
#include <sstream>

#include "reactor.hpp"
#include "tasks.hpp"

namespace pyoco_std {
namespace {

using pyoco::Context;
using pyoco::Inputs;
using pyoco::Io;
using pyoco::Value;
namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

struct Url {
  std::string host, port, target;
};

// The largest response body std/http_get takes (Beast's own default).
constexpr std::uint64_t kMaxBodyBytes = std::uint64_t{8} << 20;

Url parse_url(const std::string& url) {
  static const std::regex re(R"(^http://(\[[^\]]+\]|[^/:]+)(?::([^/]*))?(/.*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) {
    throw pyoco::Error("url '" + url + "' is not http://host[:port]/path (https is not supported)");
  }
  std::string host = m[1];
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  std::string port = "80";
  if (m[2].matched) {
    // The resolver takes a port as a service name and wraps a number past
    // 65535 (99999 connected to 34463): decimal digits, 1 to 65535, only.
    port = m[2];
    const bool digits = !port.empty() && port.size() <= 5 &&
                        port.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || std::stoul(port) < 1 || std::stoul(port) > 65535) {
      throw pyoco::Error("url '" + url + "': the port '" + port +
                         "' is not a number from 1 to 65535");
    }
  }
  return Url{host, port, m[3].matched ? std::string(m[3]) : "/"};
}

std::string format_seconds(double s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

// One request in flight on the reactor: resolve, connect, write, read,
// each step bounded by the whole request's deadline; a cancel stops it.
class Fetch : public std::enable_shared_from_this<Fetch> {
 public:
  Fetch(std::string url, Url u, double timeout, bool check, pyoco::Completion done)
      : url_(std::move(url)),
        u_(std::move(u)),
        timeout_(timeout),
        check_(check),
        done_(std::move(done)),
        deadline_(std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(timeout))) {
    req_.set(http::field::host, u_.host);
    req_.set(http::field::user_agent, "pyoco-std/" PYOCO_VERSION_STRING);
    parser_.body_limit(kMaxBodyBytes);
  }

  void begin() {
    asio::post(reactor(), [self = shared_from_this()] {
      // The resolver has no expiry of its own: a timer bounds the whole request.
      self->timer_.expires_at(self->deadline_);
      self->timer_.async_wait([self](beast::error_code ec) {
        if (!ec) self->stop();
      });
      self->resolve();
    });
  }

  void cancel() {
    asio::post(reactor(), [self = shared_from_this()] {
      self->cancelled_ = true;
      self->stop();
    });
  }

 private:
  void stop() {
    resolver_.cancel();
    stream_.cancel();
  }

  std::string why(const beast::error_code& ec) const {
    if (ec == http::error::body_limit) {
      return "the response body is larger than " + std::to_string(kMaxBodyBytes) +
             " bytes (8 MiB), the most std/http_get takes";
    }
    return ec == beast::error::timeout || ec == asio::error::operation_aborted
               ? "no answer within " + format_seconds(timeout_) + " s (timeout_sec)"
               : ec.message();
  }

  void resolve() {
    resolver_.async_resolve(
        u_.host, u_.port, [self = shared_from_this()](beast::error_code ec, auto endpoints) {
          if (ec) return self->finish("cannot resolve " + self->u_.host + ": " + self->why(ec));
          self->stream_.expires_at(self->deadline_);
          self->stream_.async_connect(endpoints, [self](beast::error_code ec, const auto&) {
            if (ec) {
              return self->finish("cannot connect to " + self->u_.host + ":" + self->u_.port +
                                  ": " + self->why(ec));
            }
            self->exchange();
          });
        });
  }

  void exchange() {
    http::async_write(
        stream_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
          if (ec) return self->finish("GET " + self->url_ + ": " + self->why(ec));
          http::async_read(self->stream_, self->buffer_, self->parser_,
                           [self](beast::error_code ec, std::size_t) {
                             if (ec)
                               return self->finish("GET " + self->url_ + ": " + self->why(ec));
                             self->res_ = self->parser_.release();
                             self->finish({});
                           });
        });
  }

  void finish(const std::string& failure) {
    timer_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    if (cancelled_) {
      done_.cancelled("cancelled while fetching " + url_);
      return;
    }
    if (!failure.empty()) {
      done_.fail(failure);
      return;
    }
    const int status = static_cast<int>(res_.result_int());
    if (status >= 400 && check_) {
      done_.fail("GET " + url_ + " returned " + std::to_string(status) +
                 (res_.reason().empty() ? "" : " " + std::string(res_.reason())));
      return;
    }
    done_.ok_with([&] {
      return Value{{"status", status},
                   {"body", res_.body()},
                   {"content_type", std::string(res_[http::field::content_type])}};
    });
  }

  std::string url_;
  Url u_;
  double timeout_;
  bool check_;
  pyoco::Completion done_;
  std::chrono::steady_clock::time_point deadline_;
  asio::ip::tcp::resolver resolver_{reactor()};
  beast::tcp_stream stream_{reactor()};
  asio::steady_timer timer_{reactor()};
  beast::flat_buffer buffer_;
  http::request<http::empty_body> req_{http::verb::get, u_.target, 11};
  http::response_parser<http::string_body> parser_;
  http::response<http::string_body> res_;
  bool cancelled_ = false;
};

struct HttpGet : pyoco::AsyncTask {
  static constexpr const char* name = "http_get";
  static constexpr const char* summary = "Fetches a URL over plain HTTP and returns the response";
  static constexpr const char* usage =
      "status: {use: \"std/http_get\", inputs: {url: \"http://127.0.0.1:8080/health\"}}";
  static inline const std::vector<std::string> tags = {"network"};
  static inline const std::vector<Io> inputs = {
      {"url", "string", true, "http://host[:port]/path"},
      {"timeout_sec", "number", false, "whole-request limit (default 30)"},
      {"check", "bool", false, "fail on a status >= 400 (default true)"}};
  static inline const std::vector<Io> outputs = {
      {"status", "int", false, "the HTTP status code"},
      {"body", "string", false, "the response body"},
      {"content_type", "string", false, "the Content-Type header"}};

  // The request runs on the std plugin's reactor thread: no host worker
  // waits for the network.
  void start(Context& ctx, const Inputs& in, pyoco::Completion done) override {
    std::string url = in.require<std::string>("url");
    Url u = parse_url(url);
    const double timeout = in.get<double>("timeout_sec", 30.0);
    if (!(timeout > 0)) throw pyoco::Error("input 'timeout_sec' must be positive");
    auto fetch = std::make_shared<Fetch>(std::move(url), std::move(u), std::min(timeout, 1e9),
                                         in.get<bool>("check", true), done);
    ctx.on_cancel([fetch] { fetch->cancel(); });
    fetch->begin();
  }
};

}  // namespace

void register_http_task(pyoco::Registry& registry) { registry.add<HttpGet>(); }

}  // namespace pyoco_std
