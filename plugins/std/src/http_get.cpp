// http_get: a plain HTTP/1.1 GET with Boost.Beast, bounded by a timeout.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <regex>

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

  Value run(Context&, const Inputs& in) override {
    const std::string url = in.require<std::string>("url");
    const Url u = parse_url(url);
    const double timeout = in.get<double>("timeout_sec", 30.0);

    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::milliseconds(static_cast<long>(timeout * 1000)));
    beast::error_code ec;
    const auto endpoints = resolver.resolve(u.host, u.port, ec);
    if (ec) throw pyoco::Error("cannot resolve " + u.host + ": " + ec.message());
    stream.connect(endpoints, ec);
    if (ec) throw pyoco::Error("cannot connect to " + u.host + ":" + u.port + ": " + ec.message());

    http::request<http::empty_body> req{http::verb::get, u.target, 11};
    req.set(http::field::host, u.host);
    req.set(http::field::user_agent, "pyoco-std/" PYOCO_VERSION_STRING);
    http::write(stream, req, ec);
    if (ec) throw pyoco::Error("GET " + url + ": " + ec.message());
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res, ec);
    if (ec) throw pyoco::Error("GET " + url + ": " + ec.message());
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);

    const int status = static_cast<int>(res.result_int());
    if (status >= 400 && in.get<bool>("check", true)) {
      throw pyoco::Error("GET " + url + " returned " + std::to_string(status));
    }
    return {{"status", status},
            {"body", res.body()},
            {"content_type", std::string(res[http::field::content_type])}};
  }
};

}  // namespace

void register_http_task(pyoco::Registry& registry) { registry.add<HttpGet>(); }

}  // namespace pyoco_std
