#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <stdexcept>

namespace pyoco::bench {

namespace http = boost::beast::http;
namespace json = boost::json;

HttpClient::HttpClient(const std::string& host, const std::string& port, std::string api_key)
    : socket_(io_), api_key_(std::move(api_key)) {
  boost::asio::ip::tcp::resolver resolver(io_);
  boost::asio::connect(socket_, resolver.resolve(host, port));
  socket_.set_option(boost::asio::ip::tcp::no_delay(true));
}

std::string HttpClient::call(http::verb method, const std::string& target,
                             const std::string& body) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!api_key_.empty()) req.set("X-API-Key", api_key_);
  req.keep_alive(true);
  if (method == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
  }
  http::write(socket_, req);
  http::response<http::string_body> res;
  http::read(socket_, buffer_, res);
  if (res.result_int() != 200) {
    throw std::runtime_error(std::string(http::to_string(method)) + " " + target + ": " +
                             std::to_string(res.result_int()) + " " + res.body());
  }
  return res.body();
}

std::string HttpClient::submit(const std::string& flow_name, const std::string& tag) {
  json::object body{{"flow_name", flow_name}, {"params", json::object{}}};
  if (!tag.empty()) body["tag"] = tag;
  return std::string(
      json::parse(call(http::verb::post, "/runs", json::serialize(body))).at("run_id").as_string());
}

}  // namespace pyoco::bench
