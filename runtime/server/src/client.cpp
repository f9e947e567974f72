#include <pyoco/server/client.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>

#include <array>
#include <optional>

namespace pyoco::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

namespace {

struct Address {
  std::string host, port;
  bool tls = false;
};

Address address_of(const std::string& server) {
  std::string rest = server;
  bool tls = false;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.rfind("https://", 0) == 0) {
    rest = rest.substr(8);
    tls = true;
  } else if (rest.find("://") != std::string::npos) {
    throw ClientError("server \"" + server + "\": http:// or https:// only");
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  const std::string default_port = tls ? "443" : "80";
  if (!rest.empty() && rest.front() == '[') {  // [::1]:8443
    const auto close = rest.find(']');
    if (close == std::string::npos) throw ClientError("server \"" + server + "\": no closing ]");
    const std::string port = rest.size() > close + 2 ? rest.substr(close + 2) : default_port;
    return {rest.substr(1, close - 1), port, tls};
  }
  const auto colon = rest.rfind(':');
  return {colon == std::string::npos ? rest : rest.substr(0, colon),
          colon == std::string::npos ? default_port : rest.substr(colon + 1), tls};
}

// The client's TLS: the system's CAs and `ca_file`, the peer verified
// against the host it was asked for.
ssl::context client_tls(const Endpoint& gateway) {
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx.set_default_verify_paths(ec);  // none on a minimal system: ca_file may still do
  if (!gateway.ca_file.empty()) {
    ctx.load_verify_file(gateway.ca_file, ec);
    if (ec) {
      throw ClientError("--ca-file " + gateway.ca_file +
                        ": not a PEM certificate that can be read (" + ec.message() + ")");
    }
  }
  ctx.set_verify_mode(ssl::verify_peer);
  return ctx;
}

// SNI and host-name checking for `host` on a new TLS stream.
template <class TlsStream>
void expect_host(TlsStream& stream, const std::string& host) {
  boost::system::error_code not_ip;
  asio::ip::make_address(host, not_ip);
  // SNI names hosts, never addresses.
  if (not_ip && !SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) {
    throw ClientError("TLS: cannot ask for host " + host);
  }
  stream.set_verify_callback(ssl::host_name_verification(host));
}

[[noreturn]] void tls_failed(const std::string& server, const boost::system::error_code& ec) {
  throw ClientError("cannot talk TLS with the gateway at " + server + " (" + ec.message() +
                        "): is it serving HTTPS, and is its certificate trusted (--ca-file or "
                        "PYOCO_CA_FILE) and made for this host name?",
                    ec.message());
}

[[noreturn]] void unreachable(const std::string& server, const boost::system::error_code& ec) {
  throw ClientError("cannot reach the gateway at " + server + " (" + ec.message() +
                        "): start it with `pyoco server`, or give its address with --server URL "
                        "or PYOCO_SERVER",
                    ec.message());
}

}  // namespace

namespace {

template <class Stream>
void follow(Stream& socket, const Endpoint& gateway, const Address& a, const std::string& target,
            const std::string& last_event_id,
            const std::function<bool(const StreamEvent&)>& on_event) {
  const std::string& server = gateway.url;
  boost::system::error_code ec;
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: " +
                        (a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host) +
                        "\r\nAccept: text/event-stream\r\nUser-Agent: pyoco-client\r\n";
  if (!last_event_id.empty()) request += "Last-Event-ID: " + last_event_id + "\r\n";
  if (!gateway.api_key.empty()) request += "X-API-Key: " + gateway.api_key + "\r\n";
  request += "\r\n";
  asio::write(socket, asio::buffer(request), ec);
  if (ec) unreachable(server, ec);
  std::string buffer;
  std::array<char, 8192> chunk;
  bool headers_done = false;
  for (;;) {
    const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
    if (n > 0) buffer.append(chunk.data(), n);
    if (!headers_done) {
      const auto end = buffer.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (ec) unreachable(server, ec);
        continue;
      }
      const std::string status_line = buffer.substr(0, buffer.find("\r\n"));
      if (status_line.find(" 200 ") == std::string::npos) {
        // An error answer: its body, read to the end of the connection.
        while (!ec) {
          const std::size_t more = socket.read_some(asio::buffer(chunk), ec);
          buffer.append(chunk.data(), more);
        }
        throw ClientError("the gateway answered " + status_line.substr(9, 3) + ": " +
                          answer_detail(std::string_view(buffer).substr(end + 4)));
      }
      buffer.erase(0, end + 4);
      headers_done = true;
    }
    for (auto sep = buffer.find("\n\n"); sep != std::string::npos; sep = buffer.find("\n\n")) {
      StreamEvent e;
      std::size_t at = 0;
      const std::string block = buffer.substr(0, sep);
      buffer.erase(0, sep + 2);
      while (at < block.size()) {
        const auto nl = block.find('\n', at);
        const std::string line = block.substr(at, nl - at);
        at = nl == std::string::npos ? block.size() : nl + 1;
        if (line.rfind("event: ", 0) == 0) e.event = line.substr(7);
        if (line.rfind("id: ", 0) == 0) e.id = line.substr(4);
        if (line.rfind("data: ", 0) == 0) e.data += line.substr(6);
      }
      if (e.event.empty()) continue;  // a comment (heartbeat)
      if (!on_event(e)) return;
    }
    if (ec) return;  // the server ended the stream (or the connection dropped)
  }
}

}  // namespace

void http_stream(const Endpoint& gateway, const std::string& target,
                 const std::string& last_event_id,
                 const std::function<bool(const StreamEvent&)>& on_event) {
  const Address a = address_of(gateway.url);
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  boost::system::error_code ec;
  asio::ip::tcp::resolver resolver(io);
  asio::connect(socket, resolver.resolve(a.host, a.port, ec), ec);
  if (ec) unreachable(gateway.url, ec);
  if (!a.tls) {
    follow(socket, gateway, a, target, last_event_id, on_event);
    return;
  }
  ssl::context ctx = client_tls(gateway);
  ssl::stream<asio::ip::tcp::socket&> tls(socket, ctx);
  expect_host(tls, a.host);
  tls.handshake(ssl::stream_base::client, ec);
  if (ec) tls_failed(gateway.url, ec);
  follow(tls, gateway, a, target, last_event_id, on_event);
}

ClientResponse http_call(const std::string& server, http::verb method, const std::string& target,
                         const std::string& body, const std::string& content_type,
                         const std::map<std::string, std::string>& headers,
                         std::chrono::milliseconds timeout) {
  return http_call(Endpoint{server, {}, {}}, method, target, body, content_type, headers, timeout);
}

ClientResponse http_call(const Endpoint& gateway, http::verb method, const std::string& target,
                         const std::string& body, const std::string& content_type,
                         const std::map<std::string, std::string>& headers,
                         std::chrono::milliseconds timeout) {
  const std::string& server = gateway.url;
  const auto [host, port, tls] = address_of(server);
  http::request<http::string_body> req{method, target, 11};
  const std::string named = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  req.set(http::field::host, port == (tls ? "443" : "80") ? named : named + ":" + port);
  req.set(http::field::user_agent, "pyoco-client");
  if (!gateway.api_key.empty()) req.set("X-API-Key", gateway.api_key);
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == http::verb::post) {
    req.set(http::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
  }
  // Asynchronous steps on a stream with an expiry: a deadline holds only
  // for those (a blocking read would wait for a receiver that never answers).
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  std::optional<ssl::context> ctx;
  std::optional<ssl::stream<beast::tcp_stream&>> secure;
  if (tls) {
    ctx.emplace(client_tls(gateway));
    secure.emplace(stream, *ctx);
    expect_host(*secure, host);
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code failed;
  bool answered = false, handshaken = !tls;
  auto exchange = [&](auto& s) {
    http::async_write(s, req, [&](beast::error_code ec, std::size_t) {
      // A server may answer (413) and stop reading before the body is
      // sent: its answer is still read.
      if (ec && ec != asio::error::broken_pipe && ec != asio::error::connection_reset) {
        failed = ec;
        return;
      }
      http::async_read(s, buffer, parser, [&](beast::error_code ec, std::size_t) {
        if (ec) failed = ec;
        answered = !ec;
      });
    });
  };
  stream.expires_after(timeout);
  resolver.async_resolve(host, port, [&](beast::error_code ec, const auto& endpoints) {
    if (ec) {
      failed = ec;
      return;
    }
    stream.async_connect(endpoints, [&](beast::error_code ec, const auto&) {
      if (ec) {
        failed = ec;
        return;
      }
      if (!secure) {
        exchange(stream);
        return;
      }
      secure->async_handshake(ssl::stream_base::client, [&](beast::error_code ec) {
        if (ec) {
          failed = ec;
          return;
        }
        handshaken = true;
        exchange(*secure);
      });
    });
  });
  io.run();
  if (!answered && !handshaken && failed != beast::error::timeout &&
      failed.category() == asio::error::get_ssl_category()) {
    tls_failed(server, failed);
  }
  if (!answered) {
    const std::string reason = failed == beast::error::timeout
                                   ? "no answer within " + std::to_string(timeout.count()) + " ms"
                                   : failed.message();
    throw ClientError("cannot reach the gateway at " + server + " (" + reason +
                          "): start it with `pyoco server`, or give its address with --server "
                          "URL or PYOCO_SERVER",
                      reason);
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  const auto& res = parser.get();
  return ClientResponse{res.result_int(), res.body(), std::string(res[http::field::content_type]),
                        std::string(res["X-Pyoco-Stale"]),
                        std::string(res[http::field::retry_after])};
}

std::string answer_detail(std::string_view body) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const boost::json::value* d = v.as_object().if_contains("detail")) {
      return d->is_string() ? std::string(d->as_string()) : boost::json::serialize(*d);
    }
  }
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
  return std::string(body);
}

}  // namespace pyoco::server
