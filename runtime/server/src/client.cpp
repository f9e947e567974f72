#include <pyoco/server/client.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace pyoco::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

ClientResponse http_call(const std::string& server, http::verb method, const std::string& target,
                         const std::string& body, const std::string& content_type,
                         const std::map<std::string, std::string>& headers,
                         std::chrono::milliseconds timeout) {
  std::string rest = server;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    throw ClientError("server \"" + server + "\": only http:// is spoken here");
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  const auto colon = rest.rfind(':');
  const std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  try {
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(host, port));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, host);
    req.set(http::field::user_agent, "pyoco-client");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty() || method == http::verb::post) {
      req.set(http::field::content_type, content_type);
      req.body() = body;
      req.prepare_payload();
    }
    // A server may answer (413) and stop reading before the body is sent:
    // its answer is still read.
    beast::error_code write_error;
    http::write(stream, req, write_error);
    if (write_error && write_error != asio::error::broken_pipe &&
        write_error != asio::error::connection_reset) {
      throw boost::system::system_error(write_error);
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buffer, parser);
    beast::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    const auto& res = parser.get();
    return ClientResponse{res.result_int(), res.body(),
                          std::string(res[http::field::content_type])};
  } catch (const boost::system::system_error& e) {
    throw ClientError("cannot reach the gateway at " + server + " (" + e.code().message() +
                      "): start it with `pyoco server`, or give its address with --server URL or "
                      "PYOCO_SERVER");
  }
}

}  // namespace pyoco::server
