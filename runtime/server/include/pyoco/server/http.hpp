// A small HTTP/1.1 server on Boost.Beast: an async acceptor and sessions on
// one I/O thread, handlers on a pool of their own (they may wait on NATS),
// a route table that is the single list of what is served.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
using PathParams = std::map<std::string, std::string>;  // "{id}" -> its value

// A JSON response (pretty enough for curl: compact, with a newline).
Response json_response(unsigned status, const boost::json::value& body);
// pyoco-server's errors: {"error": "<word>", "detail": "<what and what to do>"}.
Response error_response(unsigned status, const std::string& error, const std::string& detail);

// What a client sent (a path, an id), fit to show back in an answer: its
// first 200 bytes, each byte that is not printable ASCII as %XX, then "...".
std::string shown(std::string_view text);

// A query value as clients encode it: %XX is the byte, '+' a space
// (Python's urlencode sends `task=say%5B3%5D` for say[3]).
std::string form_decoded(std::string_view v);
// The names of a target's query parameters, decoded.
std::vector<std::string> query_names(std::string_view target);
// The query parameter `key` (its name decoded, as its value is), or "". A
// parameter given twice is a 400, as a key sent twice in a JSON body:
// readers disagree on which counts, and it is not the gateway's to guess.
std::string query_value(std::string_view target, std::string_view key);

// Thrown by a handler to answer with an error.
struct HttpError {
  unsigned status;
  std::string error;
  std::string detail;
  unsigned retry_after = 0;      // seconds: sent as Retry-After when not 0 (a 429, a 503)
  boost::json::object fields{};  // more of the body, beside error and detail (a 503's run_id)
};

// The response for `e`, its Retry-After included.
Response error_response(const HttpError& e);

// A Server-Sent Events response a stream handler writes as it goes.
class EventStream {
 public:
  virtual ~EventStream() = default;
  // One event (`id:` left out when empty); false once the client is gone.
  virtual bool send(std::string_view event, std::string_view id, std::string_view data) = 0;
  // A comment line: a heartbeat that keeps proxies from closing the stream.
  virtual bool comment(std::string_view text) = 0;
  // End the stream: the server is stopping, or the caller's key was
  // revoked or expired since it was admitted (send and comment then
  // answer false too).
  virtual bool stopping() const = 0;
};

// Who a request comes from, as the router's guard found it.
struct Caller {
  std::string tenant;  // "": none (auth off)
  std::string key_id;  // "": no key (auth off)
  unsigned scopes = 0;
  std::vector<std::string> tags;  // the only tags it may submit to; empty: any
  bool any_tenant = false;        // auth off: every tenant's runs are seen
  // Whether this caller may see a run of `run_tenant`.
  bool sees(std::string_view run_tenant) const { return any_tenant || run_tenant == tenant; }
};

// The scope of a route anyone may call, key or not (GET /health only).
inline constexpr unsigned kPublic = 0;

using Handler = std::function<Response(const Request&, const PathParams&, const Caller&)>;
using StreamHandler =
    std::function<void(const Request&, const PathParams&, const Caller&, EventStream&)>;

struct Route {
  boost::beast::http::verb method = boost::beast::http::verb::unknown;
  std::string pattern;  // "/runs/{id}/cancel"
  unsigned scope = 0;   // what a caller must hold (a cluster::Scope bit), or kPublic
  Handler handler;
  StreamHandler stream;        // set instead of `handler` for an SSE route
  std::size_t body_limit = 0;  // more than the server's: its caller is admitted before the body
  bool at_once = false;        // answered on the I/O thread (add_at_once)
  // Answered from what the gateway holds while NATS is away (with
  // X-Pyoco-Stale): the guard may admit a key it verified before without
  // asking NATS (add_from_memory).
  bool from_memory = false;
  // The query parameters it reads (reads_query): any other is refused with
  // a 422 naming them. Unset: not checked (the dashboard's files, /health).
  std::optional<std::vector<std::string>> query;
};

class Router {
 public:
  // Every route names its scope: the table is the one place that says what
  // is protected, and a test walks all of it.
  void add(boost::beast::http::verb method, std::string pattern, unsigned scope, Handler handler);
  // A read-only route whose handler answers from the gateway's memory when
  // NATS is away (GET /runs, /stats, /workers): its guard is told so.
  void add_from_memory(boost::beast::http::verb method, std::string pattern, unsigned scope,
                       Handler handler);
  // A route whose bodies may be up to `body_limit` bytes (over the
  // server's limit): the guard admits its caller on the request's headers,
  // before the body is read.
  void add_large(boost::beast::http::verb method, std::string pattern, unsigned scope,
                 std::size_t body_limit, Handler handler);
  // An SSE route: its handler runs on a thread of its own for as long as
  // the stream lasts. An HttpError thrown before the first event is an
  // ordinary error response.
  void add_stream(boost::beast::http::verb method, std::string pattern, unsigned scope,
                  StreamHandler handler);

  // A public route answered on the I/O thread as soon as it is read, never
  // queued behind the handler pool (whose threads may all be waiting on
  // NATS or checking keys): GET /health, the dashboard's files. Its handler
  // must answer from memory, without waiting.
  void add_at_once(boost::beast::http::verb method, std::string pattern, Handler handler);
  // The query parameters a route added above reads (none: an empty list);
  // any other is refused (422) before its handler runs.
  void reads_query(boost::beast::http::verb method, const std::string& pattern,
                   std::vector<std::string> names);

  // Decides who calls a route of `scope` (not kPublic) from `address`:
  // returns the caller or throws the HttpError to answer. Without a guard
  // everyone may call every route and sees every tenant's runs.
  // `from_memory`: the route answers from memory while NATS is away.
  using Guard = std::function<Caller(const Request&, const std::string& address, unsigned scope,
                                     bool from_memory)>;
  void guard(Guard guard) { guard_ = std::move(guard); }
  // Whether a caller the guard admitted may still be served (its key not
  // revoked or expired since): an open event stream asks every few
  // seconds and ends when not. Without one, always.
  using Recheck = std::function<bool(const Caller&)>;
  void recheck(Recheck recheck) { recheck_ = std::move(recheck); }
  bool still_admitted(const Caller& caller) const { return !recheck_ || recheck_(caller); }

  // 404 for no path, 405 for a path without this method; the guard's
  // answer before the handler's; HttpError becomes its response, any other
  // exception a 500 naming it.
  Response handle(const Request& request, const std::string& address = {}) const;
  // The stream route for this request, or null.
  const Route* find_stream(const Request& request, PathParams& params) const;
  // The large-body route for this request (its headers), or null.
  const Route* find_large(const Request& request) const;
  // Whether this request is for a route added with add_at_once.
  bool at_once(const Request& request) const;
  // The guard's verdict on a request for `route` (throws HttpError).
  Caller admit(const Route& route, const Request& request, const std::string& address) const;
  const std::vector<Route>& routes() const { return routes_; }

  // Told of every request handle() answers: the request, the answer, the
  // route's pattern ("" for no route), who called (empty when the guard
  // refused or no route matched) and the time taken. Set before serving.
  // The server tells it of what it answers itself too (observed()): an
  // event stream once it ends (200 once its headers went out; the time is
  // the stream's), a stream or large body refused (503, 413, the guard's
  // answer) under its route, and a request refused before any route was
  // looked at (not HTTP, headers too large, framing RFC 9112 refuses)
  // under kUnrouted, with an empty request when none could be read.
  using Observer = std::function<void(const Request&, const Response&, const std::string& route,
                                      const Caller& caller, double seconds)>;
  void observe(Observer observer) { observer_ = std::move(observer); }
  void observed(const Request& request, const Response& response, const std::string& route,
                const Caller& caller, double seconds) const {
    if (observer_) observer_(request, response, route, caller, seconds);
  }
  static constexpr const char* kUnrouted = "(refused before routing)";

 private:
  Response answer(const Request& request, const std::string& address, std::string& route,
                  Caller& caller) const;
  std::vector<Route> routes_;
  Observer observer_;
  Guard guard_;
  Recheck recheck_;
};

struct ListenOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;  // 0: any free port (see HttpServer::port)
  // Handlers mostly wait on NATS round trips (a submit makes three in
  // turn): the pool bounds the requests in flight, not the CPU they use.
  std::size_t handler_threads = 16;
  std::size_t body_limit = 1 << 20;  // larger bodies are answered 413
  // Bodies of add_large routes (plugin packages, up to 64 MiB) are held
  // whole in memory until their handler is done: at most this many bytes
  // of them at once (by Content-Length; a chunked one counts as its
  // route's limit). Past it the next is answered 503 `busy` with
  // Retry-After before its body is read. One alone is always let in.
  std::size_t large_body_budget = 128 << 20;
  std::chrono::seconds large_body_retry_after{5};
  // Both set: HTTPS only (PEM files: the certificate chain, its private key).
  std::filesystem::path tls_cert, tls_key;
  // Each SSE response holds a thread: past this many at once, 503.
  std::size_t max_streams = 512;
  // An SSE client that takes no byte of its stream for this long is cut
  // off (it reconnects with Last-Event-ID); its thread is not held forever.
  std::chrono::milliseconds stalled_write{30'000};
  // Connections open at once (event streams included); 0: the process's
  // descriptor limit (RLIMIT_NOFILE) less a reserve for NATS, files,
  // webhooks (an eighth of it, 128 to 1024), at least 32 and at most
  // 10,000. At the cap a new connection closes the one that has waited
  // longest for a request's headers (an idle keep-alive one, a slow
  // client's), else the one that has waited longest for a body; when every
  // connection is busy with a request it is answered 503 with Retry-After.
  std::size_t max_connections = 0;
  // A request's line and headers must be in within this long of the
  // connection's first byte being awaited (a keep-alive connection's wait
  // for its next request included): a total, never re-armed per byte. With
  // more than half the connection cap open, at most `header_timeout_busy`.
  std::chrono::milliseconds header_timeout{60'000};
  std::chrono::milliseconds header_timeout_busy{10'000};
  // A request body must keep arriving: after its first `upload_rate_window`
  // at least `upload_min_rate` bytes a second over each window, else 408
  // and the connection ends (a large upload's budget given back). 0: no
  // minimum.
  std::size_t upload_min_rate = 64 << 10;
  std::chrono::milliseconds upload_rate_window{10'000};
};

// ListenOptions' limits from PYOCO_HTTP_MAX_CONNECTIONS,
// PYOCO_HTTP_HEADER_TIMEOUT_SEC and PYOCO_HTTP_UPLOAD_MIN_BYTES_PER_SEC
// (unset: left as they are); std::invalid_argument naming a bad one.
void listen_limits_from_env(ListenOptions& options);

// ListenOptions::max_connections when 0: from RLIMIT_NOFILE as it is now.
std::size_t default_max_connections();

class HttpServer {
 public:
  // Binds at once: throws std::runtime_error naming the address when it cannot.
  HttpServer(std::shared_ptr<const Router> router, ListenOptions options);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  std::uint16_t port() const;
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pyoco::server
