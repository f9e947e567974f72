// http_get: a plain HTTP/1.1 GET with Boost.Beast, bounded by a timeout.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <regex>
#include <sstream>

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

Url parse_url(const std::string& url) {
  static const std::regex re(R"(^http://(\[[^\]]+\]|[^/:]+)(?::(\d+))?(/.*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) {
    throw pyoco::Error("url '" + url + "' is not http://host[:port]/path (https is not supported)");
  }
  std::string host = m[1];
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  return Url{host, m[2].matched ? std::string(m[2]) : "80", m[3].matched ? std::string(m[3]) : "/"};
}

std::string format_seconds(double s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

struct HttpGet : pyoco::Task {
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

  Value run(Context& ctx, const Inputs& in) override {
    const std::string url = in.require<std::string>("url");
    const Url u = parse_url(url);
    const double timeout = in.get<double>("timeout_sec", 30.0);
    if (!(timeout > 0)) throw pyoco::Error("input 'timeout_sec' must be positive");
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(
                                             std::chrono::duration<double>(timeout));

    // Asynchronous steps on a private io_context, run in short slices: the
    // stream's expiry only bounds asynchronous operations, and between
    // slices the task sees cancellation.
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    beast::flat_buffer buffer;
    http::request<http::empty_body> req{http::verb::get, u.target, 11};
    req.set(http::field::host, u.host);
    req.set(http::field::user_agent, "pyoco-std/" PYOCO_VERSION_STRING);
    http::response<http::string_body> res;
    std::string failure;  // from the step that failed
    auto why = [&](const beast::error_code& ec) {
      return ec == beast::error::timeout || ec == asio::error::operation_aborted
                 ? "no answer within " + format_seconds(timeout) + " s (timeout_sec)"
                 : ec.message();
    };
    resolver.async_resolve(u.host, u.port, [&](beast::error_code ec, auto endpoints) {
      if (ec) {
        failure = "cannot resolve " + u.host + ": " + why(ec);
        return;
      }
      stream.expires_at(deadline);
      stream.async_connect(endpoints, [&](beast::error_code ec, const auto&) {
        if (ec) {
          failure = "cannot connect to " + u.host + ":" + u.port + ": " + why(ec);
          return;
        }
        http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
          if (ec) {
            failure = "GET " + url + ": " + why(ec);
            return;
          }
          http::async_read(stream, buffer, res, [&](beast::error_code ec, std::size_t) {
            if (ec) failure = "GET " + url + ": " + why(ec);
          });
        });
      });
    });
    bool cancelled = false, expired = false;
    while (!io.stopped()) {
      io.run_for(std::chrono::milliseconds(20));
      if (!cancelled && ctx.is_cancelled()) cancelled = true;
      if (!expired && clock::now() >= deadline) expired = true;  // the resolver has no expiry
      if (cancelled || expired) {
        resolver.cancel();
        stream.cancel();
      }
    }
    if (cancelled) throw pyoco::Error("cancelled while fetching " + url);
    if (!failure.empty()) throw pyoco::Error(failure);
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);

    const int status = static_cast<int>(res.result_int());
    if (status >= 400 && in.get<bool>("check", true)) {
      throw pyoco::Error("GET " + url + " returned " + std::to_string(status) +
                         (res.reason().empty() ? "" : " " + std::string(res.reason())));
    }
    return {{"status", status},
            {"body", res.body()},
            {"content_type", std::string(res[http::field::content_type])}};
  }
};

}  // namespace

void register_http_task(pyoco::Registry& registry) { registry.add<HttpGet>(); }

}  // namespace pyoco_std
