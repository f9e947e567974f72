// pyoco_beast_ceiling: the least a Beast HTTP server can do for the
// gateway's routes, the ceiling pyoco_load_bench (tools/load.sh) measures
// `pyoco server` against in the same run.
//
// Its shape is pyoco::server::HttpServer's (runtime/server/src/http.cpp),
// so the difference is what the gateway does per request and not how it
// is served: one I/O thread runs the acceptor and every keep-alive
// session; each request is handed to a pool of 16 handler threads (the
// gateway's default) and its answer goes back to the I/O thread to be
// written; an SSE response is written by a thread of its own with
// blocking writes. What it leaves out is the gateway's work: its handlers
// copy a fixed body (no route table, no NATS, no metrics, no log line).
//
// The bodies are files (the gateway's own answers, captured by the load
// bench), so both servers send the same bytes:
//   POST /runs              200, --submit FILE
//   GET  /runs/{id}         200, --run FILE
//   GET  /runs?...          200, --list FILE
//   GET  /runs/{id}/watch   SSE: a snapshot (--run FILE) and three events,
//                           then open until the client closes
//
//   pyoco_beast_ceiling --run FILE --list FILE --submit FILE [--listen HOST:PORT]
//
// Its first stdout line is "listening on http://HOST:PORT" (port 0: any).
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

struct Bodies {
  std::string run, list, submit;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

using Response = http::response<http::string_body>;

Response answer(const Bodies& bodies, const http::request<http::string_body>& req) {
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  Response res{http::status::ok, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::server, "pyoco");
  if (req.method() == http::verb::post && path == "/runs") {
    res.body() = bodies.submit;
  } else if (req.method() == http::verb::get && path == "/runs") {
    res.body() = bodies.list;
  } else if (req.method() == http::verb::get && path.rfind("/runs/", 0) == 0) {
    res.body() = bodies.run;
  } else {
    res.result(http::status::not_found);
    res.body() = "{\"error\":\"not_found\"}\n";
  }
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

bool is_watch(const http::request<http::string_body>& req) {
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  constexpr std::string_view suffix = "/watch";
  return req.method() == http::verb::get && path.rfind("/runs/", 0) == 0 &&
         path.size() > suffix.size() && path.substr(path.size() - suffix.size()) == suffix;
}

// The gateway's SSE shape: headers, the snapshot, events, and a thread
// that holds the connection until the client goes.
void serve_watch(tcp::socket socket, const Bodies& bodies) {
  std::string text =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
      "no-cache\r\nConnection: close\r\nServer: pyoco\r\n\r\n";
  text += "event: snapshot\ndata: " + bodies.run.substr(0, bodies.run.find('\n')) + "\n\n";
  for (int i = 1; i <= 3; ++i) {
    text += "event: run\nid: " + std::to_string(i) +
            "\ndata: {\"kind\":\"run_start\",\"seq\":" + std::to_string(i) + "}\n\n";
  }
  beast::error_code ec;
  asio::write(socket, asio::buffer(text), ec);
  char byte;
  while (!ec) socket.read_some(asio::buffer(&byte, 1), ec);  // until the client closes
}

struct Server {
  Bodies bodies;
  asio::io_context io;
  asio::thread_pool handlers{16};
  tcp::acceptor acceptor{io};

  struct Session : std::enable_shared_from_this<Session> {
    Server* server;
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    std::shared_ptr<Response> response;

    Session(Server* s, tcp::socket socket) : server(s), stream(std::move(socket)) {}

    void read() {
      request = {};
      stream.expires_after(std::chrono::seconds(60));
      http::async_read(stream, buffer, request,
                       [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         if (!ec) self->on_read();
                       });
    }

    void on_read() {
      if (is_watch(request)) {
        stream.expires_never();
        std::thread(serve_watch, stream.release_socket(), std::cref(server->bodies)).detach();
        return;
      }
      // As the gateway does: the handler on the pool, the write on the I/O thread.
      asio::post(server->handlers, [self = shared_from_this()] {
        auto res = std::make_shared<Response>(answer(self->server->bodies, self->request));
        asio::post(self->stream.get_executor(), [self, res] { self->write(res); });
      });
    }

    void write(std::shared_ptr<Response> res) {
      response = std::move(res);
      http::async_write(stream, *response,
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          if (ec || !self->response->keep_alive()) {
                            beast::error_code ignored;
                            self->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
                            return;
                          }
                          self->read();
                        });
    }
  };

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (!ec) std::make_shared<Session>(this, std::move(socket))->read();
      accept();
    });
  }
};

}  // namespace

int main(int argc, char** argv) try {
  auto server = std::make_unique<Server>();
  std::string listen = "127.0.0.1:0";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--run") {
      server->bodies.run = read_file(value());
    } else if (arg == "--list") {
      server->bodies.list = read_file(value());
    } else if (arg == "--submit") {
      server->bodies.submit = read_file(value());
    } else if (arg == "--listen") {
      listen = value();
    } else {
      throw std::invalid_argument(
          "usage: pyoco_beast_ceiling --run FILE --list FILE --submit "
          "FILE [--listen HOST:PORT]");
    }
  }
  if (server->bodies.run.empty() || server->bodies.list.empty() || server->bodies.submit.empty())
    throw std::invalid_argument("--run, --list and --submit are required");
  const auto colon = listen.rfind(':');
  const tcp::endpoint endpoint{asio::ip::make_address(listen.substr(0, colon)),
                               static_cast<unsigned short>(std::stoul(listen.substr(colon + 1)))};
  server->acceptor.open(endpoint.protocol());
  server->acceptor.set_option(asio::socket_base::reuse_address(true));
  server->acceptor.bind(endpoint);
  server->acceptor.listen(asio::socket_base::max_listen_connections);
  const auto bound = server->acceptor.local_endpoint();
  std::cout << "listening on http://" << bound.address().to_string() << ":" << bound.port()
            << std::endl;
  server->accept();
  // The I/O thread; the process ends at SIGTERM, as a benchmark's helper may.
  std::thread io([&] { server->io.run(); });
  io.join();
  return 0;
} catch (const std::exception& e) {
  std::cerr << "pyoco_beast_ceiling: " << e.what() << '\n';
  return 1;
}
