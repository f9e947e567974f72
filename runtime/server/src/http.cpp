#include <pyoco/server/http.hpp>

#include <pyoco/cluster/process_log.hpp>
#include <pyoco/core/text.hpp>

#include "env_settings.hpp"

#include <chrono>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <boost/json.hpp>

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <cerrno>

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <list>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace pyoco::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

Response json_response(unsigned status, const json::value& body) {
  Response r{static_cast<http::status>(status), 11};
  r.set(http::field::content_type, "application/json");
  r.set(http::field::server, "pyoco");
  r.body() = json::serialize(body) + "\n";
  r.prepare_payload();
  return r;
}

Response error_response(unsigned status, const std::string& error, const std::string& detail) {
  // A detail quotes what the client sent: bytes that are not UTF-8 are
  // shown as \xNN, as JSON must be UTF-8 (they were sent raw).
  std::string shown_detail;
  std::string_view rest = detail;
  for (std::size_t bad; (bad = core::invalid_utf8_at(rest)) != std::string_view::npos;) {
    shown_detail.append(rest.substr(0, bad));
    core::append_printable(shown_detail, rest.substr(bad, 1));
    rest.remove_prefix(bad + 1);
  }
  shown_detail.append(rest);
  return json_response(status, json::object{{"error", error}, {"detail", shown_detail}});
}

Response error_response(const HttpError& e) {
  Response r = error_response(e.status, e.error, e.detail);
  if (!e.fields.empty()) {
    json::object body = json::parse(r.body()).as_object();
    for (const auto& [k, v] : e.fields) body[k] = v;
    r.body() = json::serialize(body) + "\n";
    r.prepare_payload();
  }
  if (e.retry_after != 0) r.set(http::field::retry_after, std::to_string(e.retry_after));
  return r;
}

// A path or method as the client sent it, fit to show back: at most 200
// bytes, and a byte that is not printable ASCII as %XX.
std::string shown(std::string_view text) {
  constexpr std::size_t kShown = 200;
  std::string out;
  for (const char c : text.substr(0, kShown)) {
    const auto b = static_cast<unsigned char>(c);
    if (b > 0x20 && b < 0x7f) {
      out += c;
    } else {
      constexpr char kHex[] = "0123456789ABCDEF";
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  if (text.size() > kShown) out += "...";
  return out;
}

std::string form_decoded(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '+') {
      out += ' ';
    } else if (v[i] == '%' && i + 2 < v.size() && hex(v[i + 1]) >= 0 && hex(v[i + 2]) >= 0) {
      out += static_cast<char>(hex(v[i + 1]) * 16 + hex(v[i + 2]));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

namespace {

// Calls f(name, value) for each of a target's query parameters, its name
// decoded and its value as it was sent.
template <class F>
void each_query_parameter(std::string_view target, F&& f) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (!pair.empty()) {
      const auto eq = pair.find('=');
      f(form_decoded(pair.substr(0, eq)),
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    }
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
  }
}

}  // namespace

std::vector<std::string> query_names(std::string_view target) {
  std::vector<std::string> names;
  each_query_parameter(
      target, [&](std::string name, std::string_view) { names.push_back(std::move(name)); });
  return names;
}

std::string query_value(std::string_view target, std::string_view key) {
  std::optional<std::string> value;
  each_query_parameter(target, [&](const std::string& name, std::string_view raw) {
    if (name != key) return;
    if (value) {
      throw HttpError{400, "bad_request",
                      "the query parameter " + shown(std::string(key)) +
                          " is given twice; give each parameter once"};
    }
    value = form_decoded(raw);
  });
  return value.value_or("");
}

namespace {

Route make_route(http::verb method, std::string pattern, unsigned scope) {
  Route r;
  r.method = method;
  r.pattern = std::move(pattern);
  r.scope = scope;
  return r;
}

}  // namespace

void Router::add(http::verb method, std::string pattern, unsigned scope, Handler handler) {
  Route r = make_route(method, std::move(pattern), scope);
  r.handler = std::move(handler);
  routes_.push_back(std::move(r));
}

void Router::add_from_memory(http::verb method, std::string pattern, unsigned scope,
                             Handler handler) {
  Route r = make_route(method, std::move(pattern), scope);
  r.handler = std::move(handler);
  r.from_memory = true;
  routes_.push_back(std::move(r));
}

void Router::add_large(http::verb method, std::string pattern, unsigned scope,
                       std::size_t body_limit, Handler handler) {
  Route r = make_route(method, std::move(pattern), scope);
  r.handler = std::move(handler);
  r.body_limit = body_limit;
  routes_.push_back(std::move(r));
}

void Router::add_at_once(http::verb method, std::string pattern, Handler handler) {
  Route r = make_route(method, std::move(pattern), kPublic);
  r.handler = std::move(handler);
  r.at_once = true;
  routes_.push_back(std::move(r));
}

void Router::add_stream(http::verb method, std::string pattern, unsigned scope,
                        StreamHandler handler) {
  Route r = make_route(method, std::move(pattern), scope);
  r.stream = std::move(handler);
  routes_.push_back(std::move(r));
}

void Router::reads_query(http::verb method, const std::string& pattern,
                         std::vector<std::string> names) {
  for (Route& r : routes_) {
    if (r.method == method && r.pattern == pattern) {
      r.query = std::move(names);
      return;
    }
  }
  throw std::logic_error("reads_query: no route " + pattern);
}

namespace {

// A query parameter the route does not read is refused (422), as a misspelt
// body field is: `GET /runs?state=FAILED` answered every run.
void refuse_unread_query(const Route& route, const Request& request) {
  if (!route.query) return;
  for (const std::string& name : query_names(request.target())) {
    if (std::find(route.query->begin(), route.query->end(), name) != route.query->end()) continue;
    std::string known;
    for (const std::string& k : *route.query) known += (known.empty() ? "" : ", ") + k;
    throw HttpError{422, "invalid_request",
                    (name.empty() ? std::string("\"\"") : shown(name)) +
                        ": not a query parameter of " + std::string(http::to_string(route.method)) +
                        " " + route.pattern +
                        (known.empty() ? std::string(" (it reads none)") : " (" + known + ")")};
  }
}

}  // namespace

Caller Router::admit(const Route& route, const Request& request, const std::string& address) const {
  Caller caller;
  if (!guard_) {
    caller.any_tenant = true;
  } else if (route.scope != kPublic) {
    caller = guard_(request, address, route.scope, route.from_memory);
  }
  refuse_unread_query(route, request);  // after the guard: a stranger learns no parameters
  return caller;
}

namespace {

// "/runs/{id}" against "/runs/abc": true, with id = "abc". No segment is empty.
bool match(const std::string& pattern, std::string_view path, PathParams& params) {
  std::size_t p = 0, q = 0;
  while (p < pattern.size() && q < path.size()) {
    if (pattern[p] == '{') {
      const std::size_t close = pattern.find('}', p);
      const std::size_t end = path.find('/', q);
      const std::string_view value = path.substr(q, end - q);
      if (value.empty()) return false;
      params[pattern.substr(p + 1, close - p - 1)] = std::string(value);
      p = close + 1;
      q = end == std::string_view::npos ? path.size() : end;
    } else {
      if (pattern[p] != path[q]) return false;
      ++p, ++q;
    }
  }
  return p == pattern.size() && q == path.size();
}

// Whether `route` answers `method`: its own, and HEAD wherever a handler
// answers GET (RFC 9110 9.3.2: the GET's headers, no body). Not an SSE
// route: its answer is a stream that never ends.
bool serves(const Route& route, http::verb method) {
  return route.method == method ||
         (method == http::verb::head && route.method == http::verb::get && route.handler);
}

}  // namespace

const Route* Router::find_stream(const Request& request, PathParams& params) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  for (const Route& r : routes_) {
    params.clear();
    if (r.stream && r.method == request.method() && match(r.pattern, path, params)) return &r;
  }
  return nullptr;
}

const Route* Router::find_large(const Request& request) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  for (const Route& r : routes_) {
    PathParams params;
    if (r.body_limit > 0 && r.method == request.method() && match(r.pattern, path, params)) {
      return &r;
    }
  }
  return nullptr;
}

bool Router::at_once(const Request& request) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  for (const Route& r : routes_) {
    PathParams params;
    if (r.at_once && serves(r, request.method()) && match(r.pattern, path, params)) return true;
  }
  return false;
}

Response Router::handle(const Request& request, const std::string& address) const {
  const auto start = std::chrono::steady_clock::now();
  std::string route;
  Caller caller;
  Response res = answer(request, address, route, caller);
  if (observer_) {
    observer_(request, res, route, caller,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (request.method() == http::verb::head) {
    // The headers a GET gets, its Content-Length included, and never a
    // body (an error's neither): the client reads none.
    const std::size_t length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

Response Router::answer(const Request& request, const std::string& address, std::string& route,
                        Caller& caller) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  std::vector<http::verb> allowed;  // the methods the path serves, for a 405's Allow
  auto allow = [&allowed](http::verb method) {
    if (std::find(allowed.begin(), allowed.end(), method) == allowed.end()) {
      allowed.push_back(method);
    }
  };
  for (const Route& r : routes_) {
    PathParams params;
    if (!match(r.pattern, path, params)) continue;
    if (allowed.empty()) route = r.pattern;  // a 405 is counted under the path's route
    allow(r.method);
    if (r.method == http::verb::get && r.handler) allow(http::verb::head);
    if (!serves(r, request.method()) || !r.handler) continue;
    route = r.pattern;
    try {
      caller = admit(r, request, address);
      Response res = r.handler(request, params, caller);
      res.keep_alive(request.keep_alive());
      return res;
    } catch (const HttpError& e) {
      Response res = error_response(e);
      res.keep_alive(request.keep_alive());
      return res;
    } catch (const std::exception& e) {
      Response res = error_response(500, "internal", e.what());
      res.keep_alive(request.keep_alive());
      return res;
    }
  }
  if (allowed.empty()) {
    Response res = error_response(404, "not_found", "no route " + shown(path));
    res.keep_alive(request.keep_alive());
    return res;
  }
  // RFC 9110 15.5.6: a 405 says which methods the path does serve.
  std::string methods;
  for (const http::verb m : allowed) {
    methods += (methods.empty() ? "" : ", ") + std::string(http::to_string(m));
  }
  Response res = error_response(
      405, "method_not_allowed",
      shown(request.method_string()) + " " + shown(path) + " is not served; it serves " + methods);
  res.set(http::field::allow, methods);
  res.keep_alive(request.keep_alive());
  return res;
}

namespace {

// TLS 1.2 and later, with the certificate chain and key of --tls-cert and
// --tls-key; std::runtime_error naming the file that does not load.
std::unique_ptr<ssl::context> make_server_tls(const std::filesystem::path& cert,
                                              const std::filesystem::path& key) {
  if (cert.empty() || key.empty()) {
    throw std::runtime_error("HTTPS needs both --tls-cert and --tls-key");
  }
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert.string(), ec);
  if (ec) {
    throw std::runtime_error("--tls-cert " + cert.string() +
                             ": not a PEM certificate chain that can be read (" + ec.message() +
                             ")");
  }
  ctx->use_private_key_file(key.string(), ssl::context::pem, ec);
  if (ec) {
    throw std::runtime_error(
        "--tls-key " + key.string() +
        ": not a PEM private key that can be read, or not the certificate's (" + ec.message() +
        ")");
  }
  return ctx;
}

}  // namespace

// Sessions and handlers point at the server plainly: stop() joins the pool
// and the I/O thread before it goes, and the io_context destroys what is
// still queued (sessions included) when it goes, before everything else.
struct HttpServer::Impl {
  std::shared_ptr<const Router> router;
  ListenOptions options;
  // ListenOptions::large_body_budget: the bytes of large bodies being read
  // or handled now. Each holds a reservation until its request is done;
  // before `io`, whose end ends the sessions that hold the last ones.
  std::mutex large_bodies_mutex;
  std::size_t large_body_bytes = 0;
  // Before `io` too: the sessions it ends leave these lists.
  // The connections open, and those waiting on their client (for a
  // request's headers, or for its body), oldest first: the first to go
  // when a new connection comes at the cap (ListenOptions::max_connections).
  struct SessionBase {
    virtual ~SessionBase() = default;
    // Closes the connection at once (on the I/O thread): its descriptor is
    // free when this returns.
    virtual void evict() = 0;
    enum class Wait { none, headers, body };
    Wait wait = Wait::none;  // which list it is in (connections_mutex)
    std::list<std::pair<SessionBase*, std::weak_ptr<SessionBase>>>::iterator listed;
    bool counted = false;  // in `connections` (not yet evicted)
  };
  using WaitList = std::list<std::pair<SessionBase*, std::weak_ptr<SessionBase>>>;
  const std::size_t max_connections;
  std::mutex connections_mutex;
  std::size_t connections = 0;
  WaitList awaiting_headers, awaiting_body;
  asio::io_context io;
  asio::thread_pool handlers;
  tcp::acceptor acceptor{io};
  std::thread io_thread;
  std::atomic<bool> stopping{false};
  std::mutex streams_mutex;
  // What the server knows of one SSE response's thread, which writes with
  // blocking writes: a client that stops reading blocks it in a write for
  // as long as it keeps its connection open.
  struct StreamState {
    std::atomic<bool> done{false};
    // CLOCK_MONOTONIC ns when the write under way began; 0: none.
    std::atomic<std::int64_t> writing_since{0};
    // Shuts the connection down: a write blocked on it returns at once.
    // Holds the session, so the socket (and its descriptor) is still the
    // stream's when it is called.
    std::function<void()> cut;
  };
  struct StreamThread {
    std::thread thread;
    std::shared_ptr<StreamState> state;
  };
  std::vector<StreamThread> streams;   // one per SSE response; ended ones joined at the next
  asio::steady_timer stall_check{io};  // ListenOptions::stalled_write

  static std::int64_t monotonic_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Every few seconds, on the I/O thread: cuts streams stalled in a write,
  // and joins those that ended (each holds its session, and so its socket,
  // until then).
  void check_stalls() {
    stall_check.expires_after(std::clamp<std::chrono::milliseconds>(
        options.stalled_write / 3, std::chrono::milliseconds(100), std::chrono::seconds(5)));
    stall_check.async_wait([this](beast::error_code ec) {
      if (ec) return;
      {
        std::lock_guard lock(streams_mutex);
        std::erase_if(streams, [](StreamThread& t) {
          if (!t.state->done.load()) return false;
          t.thread.join();  // done is its last step: returns at once
          return true;
        });
        const std::int64_t now = monotonic_ns();
        for (const StreamThread& t : streams) {
          const std::int64_t since = t.state->writing_since.load();
          if (!t.state->done.load() && since != 0 &&
              now - since > std::chrono::nanoseconds(options.stalled_write).count()) {
            t.state->cut();
          }
        }
      }
      check_stalls();
    });
  }

  std::unique_ptr<ssl::context> tls;  // set: HTTPS only

  struct LargeBodyRoom {
    Impl& server;
    std::size_t bytes;
    ~LargeBodyRoom() {
      std::lock_guard lock(server.large_bodies_mutex);
      server.large_body_bytes -= bytes;
    }
  };
  using LargeBodyReservation = std::shared_ptr<LargeBodyRoom>;
  // A reservation of `bytes`, or null when the budget has no room for them.
  LargeBodyReservation reserve_large_body(std::size_t bytes) {
    std::lock_guard lock(large_bodies_mutex);
    if (large_body_bytes != 0 && large_body_bytes + bytes > options.large_body_budget) {
      return nullptr;
    }
    large_body_bytes += bytes;
    return std::make_shared<LargeBodyRoom>(*this, bytes);
  }

  std::shared_ptr<Response> too_many_large_bodies() const {
    const auto retry = std::to_string(options.large_body_retry_after.count());
    auto res = std::make_shared<Response>(
        error_response(503, "busy",
                       "the gateway is receiving as many large uploads as it holds at once (" +
                           std::to_string(options.large_body_budget >> 20) +
                           " MiB of them); try again in " + retry + " s"));
    res->set(http::field::retry_after, retry);
    return res;
  }

  Impl(std::shared_ptr<const Router> r, ListenOptions o)
      : router(std::move(r)),
        options(std::move(o)),
        max_connections(options.max_connections != 0 ? options.max_connections
                                                     : default_max_connections()),
        handlers(options.handler_threads) {}

  // Refused connections being answered 503 (at most kRefusing at once).
  static constexpr std::size_t kRefusing = 64;
  asio::steady_timer accept_retry{io};
  bool accept_failing = false;  // since the last accept that worked (said once)
  std::chrono::steady_clock::time_point evictions_said{};
  std::size_t evictions_unsaid = 0;

  std::size_t open_connections() {
    std::lock_guard lock(connections_mutex);
    return connections;
  }
  void counted(SessionBase& s) {
    std::lock_guard lock(connections_mutex);
    ++connections;
    s.counted = true;
  }
  void unlist(SessionBase& s) {  // connections_mutex held
    if (s.wait == SessionBase::Wait::none) return;
    (s.wait == SessionBase::Wait::headers ? awaiting_headers : awaiting_body).erase(s.listed);
    s.wait = SessionBase::Wait::none;
  }
  // `s` waits on its client from now; one already waiting for the same
  // keeps its place (a TLS handshake, then its first request's headers).
  void awaits(SessionBase& s, std::weak_ptr<SessionBase> self, SessionBase::Wait what) {
    std::lock_guard lock(connections_mutex);
    if (s.wait == what) return;
    unlist(s);
    WaitList& list = what == SessionBase::Wait::headers ? awaiting_headers : awaiting_body;
    s.listed = list.insert(list.end(), {&s, std::move(self)});
    s.wait = what;
  }
  void stops_waiting(SessionBase& s) {
    std::lock_guard lock(connections_mutex);
    unlist(s);
  }
  void gone(SessionBase& s) {
    std::lock_guard lock(connections_mutex);
    unlist(s);
    if (s.counted) --connections;
  }
  // Closes the connection that has waited longest for a request's headers,
  // else the one that has waited longest for a body: false when every
  // connection is busy with a request (a handler, an answer, a stream).
  bool evict_one() {
    std::shared_ptr<SessionBase> victim;
    {
      std::lock_guard lock(connections_mutex);
      for (WaitList* list : {&awaiting_headers, &awaiting_body}) {
        while (!victim && !list->empty()) {
          SessionBase* s = list->front().first;
          victim = list->front().second.lock();  // null: it is being destroyed
          unlist(*s);
        }
      }
      if (!victim) return false;
      if (victim->counted) {
        victim->counted = false;
        --connections;
      }
    }
    victim->evict();
    ++evictions_unsaid;
    const auto now = std::chrono::steady_clock::now();
    if (now - evictions_said > std::chrono::seconds(60)) {
      cluster::log(cluster::LogLevel::warning,
                   "http: at the connection cap: the connections that waited longest for a "
                   "request were closed to make room (PYOCO_HTTP_MAX_CONNECTIONS)",
                   {{"max_connections", std::to_string(max_connections)},
                    {"closed", std::to_string(evictions_unsaid)}});
      evictions_said = now;
      evictions_unsaid = 0;
    }
    return true;
  }
  // How long a request's line and headers may take from now.
  std::chrono::milliseconds header_deadline() {
    if (open_connections() > max_connections / 2) {
      return std::min(options.header_timeout, options.header_timeout_busy);
    }
    return options.header_timeout;
  }

  // One connection, plain (beast::tcp_stream) or TLS (an ssl_stream over one).
  template <class Stream>
  struct Session : SessionBase, std::enable_shared_from_this<Session<Stream>> {
    using std::enable_shared_from_this<Session<Stream>>::shared_from_this;
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

    Impl* server;
    Stream stream;
    asio::steady_timer rate_check;  // ListenOptions::upload_min_rate
    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> parser;
    std::shared_ptr<Response> response;

    std::string address;  // the client's IP: failed keys are counted per address

    template <class... TlsContext>
    Session(Impl* s, tcp::socket socket, TlsContext&... tls)
        : server(s), stream(std::move(socket), tls...), rate_check(stream.get_executor()) {
      beast::error_code ec;
      const auto peer = tcp_socket().remote_endpoint(ec);
      if (!ec) address = peer.address().to_string();
      server->counted(*this);
    }
    ~Session() override { server->gone(*this); }

    void evict() override {
      rate_check.cancel();
      beast::get_lowest_layer(stream).close();
    }
    void awaits(Wait what) {
      server->awaits(*this, std::static_pointer_cast<SessionBase>(shared_from_this()), what);
    }

    tcp::socket& tcp_socket() { return beast::get_lowest_layer(stream).socket(); }

    // TLS first: a client that never finishes its handshake is dropped at
    // the same deadline as one that never sends its request.
    void start() {
      if constexpr (kTls) {
        awaits(Wait::headers);
        beast::get_lowest_layer(stream).expires_after(std::min<std::chrono::milliseconds>(
            std::chrono::seconds(30), server->header_deadline()));
        stream.async_handshake(ssl::stream_base::server,
                               [self = shared_from_this()](beast::error_code ec) {
                                 if (!ec) self->read();
                               });
      } else {
        read();
      }
    }

    void read() {
      parser.emplace();
      large_body.reset();  // the last request's body is gone with its parser
      body_limit = server->options.body_limit;
      // The limit is the route's: decided once the headers are in.
      parser->body_limit(boost::none);
      continued = false;
      // One deadline for the whole of the request's line and headers, set
      // here only: bytes that trickle in never extend it.
      awaits(Wait::headers);
      beast::get_lowest_layer(stream).expires_after(server->header_deadline());
      http::async_read_header(
          stream, buffer, *parser,
          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    // A route that takes large bodies (a plugin package) admits its caller
    // on the headers, before a byte of the body is read: nobody without
    // the scope can make the gateway hold 64 MiB.
    void on_header(beast::error_code ec) {
      server->stops_waiting(*this);
      if (ec) {
        unreadable(ec);
        return;
      }
      absolute_form_to_path(parser->get());
      if (const std::optional<Response> refused = unframed(parser->get())) {
        server->router->observed(parser->get(), *refused, Router::kUnrouted, Caller(), 0);
        write(std::make_shared<Response>(*refused), true);
        return;
      }
      const Route* large = server->router->find_large(parser->get());
      large_route = large != nullptr ? large->pattern : std::string();
      if (large != nullptr) body_limit = large->body_limit;
      parser->body_limit(body_limit);  // for a chunked body, as it comes
      if (const auto length = parser->content_length(); length && *length > body_limit) {
        too_large();
        return;
      }
      if (large == nullptr) {
        // A body (at most the route's limit, a few MiB) ends within 60 s,
        // as docs/cluster.md says, whatever the header deadline is.
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(60));
        read_body();
        return;
      }
      // A large body may take a while: 60 s, and a second more per 256 KiB.
      if (const auto length = parser->content_length()) {
        beast::get_lowest_layer(stream).expires_after(
            std::chrono::seconds(60 + static_cast<std::int64_t>(*length / (256 * 1024))));
      }
      asio::post(server->handlers, [self = shared_from_this(), large] {
        std::shared_ptr<Response> refused;
        try {
          self->server->router->admit(*large, self->parser->get(), self->address);
          // Admitted: room for its body is asked for only now, so that
          // callers without the scope cannot take it from those with it.
          const std::size_t bytes = self->parser->content_length().value_or(large->body_limit);
          self->large_body = self->server->reserve_large_body(bytes);
          if (!self->large_body) refused = self->server->too_many_large_bodies();
        } catch (const HttpError& e) {
          refused = std::make_shared<Response>(error_response(e));
        }
        asio::post(self->stream.get_executor(), [self, refused, large] {
          if (refused) {
            self->server->router->observed(self->parser->get(), *refused, large->pattern, Caller(),
                                           0);
            self->write(refused, true);
          } else {
            self->read_body();
          }
        });
      });
    }

    // The body, in pieces: it must keep coming at upload_min_rate (after
    // its first window), else 408. `Expect: 100-continue` is answered
    // first: the headers were accepted, the client may send its body.
    void read_body() {
      if (parser->is_done()) {
        on_read({});
        return;
      }
      if (!continued && parser->get().version() >= 11 &&
          beast::iequals(parser->get()[http::field::expect], "100-continue")) {
        continued = true;
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        asio::async_write(stream, asio::buffer(kContinue.data(), kContinue.size()),
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            if (!ec) self->read_body();
                          });
        return;
      }
      awaits(Wait::body);
      body_bytes = 0;
      window_mark = 0;
      rate_windows = 0;
      too_slow = false;
      ++body_number;
      if (server->options.upload_min_rate > 0) check_rate(body_number);
      read_body_some();
    }
    void read_body_some() {
      http::async_read_some(stream, buffer, *parser,
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->body_bytes += n;
                              // A read that completed as the rate check
                              // cancelled it: the body is cut all the same.
                              if (!ec && !self->parser->is_done() && !self->too_slow) {
                                self->read_body_some();
                                return;
                              }
                              ++self->body_number;  // a check still due is stale
                              if (!ec && self->too_slow && !self->parser->is_done()) {
                                self->rate_check.cancel();
                                self->server->stops_waiting(*self);
                                self->slow_body();
                                return;
                              }
                              self->rate_check.cancel();
                              self->server->stops_waiting(*self);
                              if (self->too_slow && ec) {
                                self->slow_body();
                                return;
                              }
                              self->on_read(ec);
                            });
    }
    // `body`: the body it watches (body_number): a check whose handler was
    // already queued when its body ended cannot be cancelled, and must not
    // cut what the connection reads next (the next request's headers).
    void check_rate(std::uint64_t body) {
      rate_check.expires_after(server->options.upload_rate_window);
      rate_check.async_wait([self = shared_from_this(), body](beast::error_code ec) {
        if (ec || body != self->body_number) return;
        const auto& o = self->server->options;
        const auto window = std::chrono::duration<double>(o.upload_rate_window).count();
        const std::size_t came = self->body_bytes - self->window_mark;
        // The first window is the client's to get going.
        if (self->rate_windows++ > 0 &&
            static_cast<double>(came) < static_cast<double>(o.upload_min_rate) * window) {
          self->too_slow = true;
          self->slow_window_bytes = came;
          beast::get_lowest_layer(self->stream).cancel();  // the read ends: slow_body()
          return;
        }
        self->window_mark = self->body_bytes;
        self->check_rate(body);
      });
    }
    // A body slower than upload_min_rate: 408, its room given back.
    void slow_body() {
      large_body.reset();
      const auto& o = server->options;
      const auto ms = o.upload_rate_window.count();
      const std::string window =
          ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
      cluster::log(cluster::LogLevel::info, "http: a request body that came too slowly was cut",
                   {{"target", shown(parser->get().target())},
                    {"address", address},
                    {"bytes_in_last_window", std::to_string(slow_window_bytes)}});
      parser.reset();  // what came of its body is let go now
      write(
          std::make_shared<Response>(error_response(
              408, "too_slow",
              "the request body came at less than " + std::to_string(o.upload_min_rate) +
                  " bytes a second (" + std::to_string(slow_window_bytes) + " bytes in the last " +
                  window + "); the connection is closed: send it again, faster")),
          true);
    }
    bool continued = false;  // 100 Continue sent for this request
    bool too_slow = false;
    std::uint64_t body_number = 0;  // which body the rate check watches
    std::size_t body_bytes = 0, window_mark = 0, slow_window_bytes = 0;
    unsigned rate_windows = 0;

    // RFC 9112 3.2.2: `GET http://host/path` is served as `GET /path`.
    static void absolute_form_to_path(Request& request) {
      const std::string_view target = request.target();
      const auto scheme = target.find("://");
      if (scheme == std::string_view::npos || scheme > 5 ||
          !(beast::iequals(target.substr(0, scheme), "http") ||
            beast::iequals(target.substr(0, scheme), "https"))) {
        return;
      }
      const std::size_t authority = scheme + 3;
      const std::size_t end = target.find_first_of("/?", authority);
      const std::string host(target.substr(authority, end - authority));
      std::string path = end == std::string_view::npos ? "/" : std::string(target.substr(end));
      if (path.front() == '?') path.insert(0, "/");
      request.target(path);
      if (!host.empty()) request.set(http::field::host, host);
    }
    std::size_t body_limit = 0;
    LargeBodyReservation large_body;  // held while a large body is read and handled

    // A request that could not be read: a client that went, timed out or
    // stopped mid-request gets nothing (there is no one to tell); one that
    // sent what is not HTTP/1.1 is told so, and the connection ends.
    void unreadable(beast::error_code ec) {
      if (ec.category() != http::make_error_code(http::error::bad_target).category() ||
          ec == http::error::end_of_stream || ec == http::error::partial_message) {
        return;
      }
      auto res =
          ec == http::error::header_limit
              ? error_response(431, "headers_too_large",
                               "the request line and header fields are over 8 KiB")
              : error_response(400, "bad_request", "not an HTTP/1.1 request: " + ec.message());
      server->router->observed(Request(), res, Router::kUnrouted, Caller(), 0);
      write(std::make_shared<Response>(std::move(res)), true);
    }

    // What RFC 9112 refuses before a body is read: an HTTP/1.1 request
    // with no Host (400), and a transfer coding other than chunked alone
    // (501): a gzip the gateway would skip is a body it would misread, and
    // a proxy in front may read the request otherwise.
    static std::optional<Response> unframed(const http::request_header<>& h) {
      if (h.version() >= 11 && h.count(http::field::host) != 1) {
        return error_response(400, "bad_request",
                              "an HTTP/1.1 request must have one Host header (RFC 9112)");
      }
      if (h.count(http::field::transfer_encoding) == 0) return std::nullopt;
      std::string codings;
      const auto [from, to] = h.equal_range(http::field::transfer_encoding);
      for (auto it = from; it != to; ++it) {
        codings += (codings.empty() ? "" : ", ") + std::string(it->value());
      }
      if (beast::iequals(codings, "chunked")) return std::nullopt;
      return error_response(501, "not_implemented",
                            "Transfer-Encoding '" +
                                (codings.size() > 100 ? codings.substr(0, 100) + "..." : codings) +
                                "' is not supported: send the body with Content-Length, or "
                                "chunked alone");
    }

    void too_large() {
      auto res = std::make_shared<Response>(error_response(
          413, "too_large", "the request body is over " + std::to_string(body_limit) + " bytes"));
      server->router->observed(parser->get(), *res,
                               large_route.empty() ? Router::kUnrouted : large_route, Caller(), 0);
      write(res, true);
    }
    std::string large_route;  // the pattern of the large-body route this request is for

    void on_read(beast::error_code ec) {
      if (ec == http::error::body_limit) {
        too_large();
        return;
      }
      if (ec) {
        unreadable(ec);
        return;
      }
      auto request = std::make_shared<Request>(parser->release());
      PathParams params;
      if (const Route* route = server->router->find_stream(*request, params)) {
        stream_response(route, request, std::move(params));
        return;
      }
      if (server->router->at_once(*request)) {
        write(std::make_shared<Response>(server->router->handle(*request, address)),
              !request->keep_alive());
        return;
      }
      // The handler may wait on NATS: never on the I/O thread. A large
      // body's room is given back once its request is let go.
      asio::post(server->handlers, [self = shared_from_this(), request,
                                    reservation = std::move(large_body)]() mutable {
        auto res =
            std::make_shared<Response>(self->server->router->handle(*request, self->address));
        const bool close = !request->keep_alive();
        request.reset();
        reservation.reset();
        asio::post(self->stream.get_executor(), [self, res, close] { self->write(res, close); });
      });
    }

    void write(std::shared_ptr<Response> res, bool close) {
      response = std::move(res);
      if (close) response->keep_alive(false);
      http::async_write(stream, *response,
                        [self = shared_from_this(), close](beast::error_code ec, std::size_t) {
                          if (ec || close) {
                            beast::error_code ignored;
                            self->tcp_socket().shutdown(tcp::socket::shutdown_send, ignored);
                            if (!ec) self->drain();
                            return;
                          }
                          self->read();
                        });
    }

    // After an answer that ends the connection (a body over the limit), read
    // what the client still sends, for a few seconds, before closing: closing
    // at once would reset the connection before it has read the answer.
    void drain(std::chrono::milliseconds for_ = std::chrono::seconds(5)) {
      beast::get_lowest_layer(stream).expires_after(for_);
      stream.async_read_some(asio::buffer(discard),
                             [self = shared_from_this(), for_](beast::error_code ec, std::size_t) {
                               if (!ec) self->drain(for_);
                             });
    }
    std::array<char, 16384> discard;

    // Written with blocking writes from a thread of its own: nothing else
    // touches this socket while the stream lasts.
    struct SocketStream : EventStream {
      Session& session;
      StreamState& state;
      bool started = false, broken = false;
      // Who it is for, once admitted: re-checked every kRecheck, so that a
      // key revoked or expired meanwhile stops getting events.
      static constexpr auto kRecheck = std::chrono::seconds(2);
      const Caller* caller = nullptr;
      mutable std::chrono::steady_clock::time_point checked = std::chrono::steady_clock::now();
      mutable bool refused = false;
      SocketStream(Session& s, StreamState& st) : session(s), state(st) {}
      bool key_refused() const {
        if (refused || caller == nullptr) return refused;
        const auto now = std::chrono::steady_clock::now();
        if (now - checked < kRecheck) return false;
        checked = now;
        refused = !session.server->router->still_admitted(*caller);
        if (refused) {
          cluster::log(cluster::LogLevel::info,
                       "http: an event stream ended: its API key was revoked or expired",
                       {{"key_id", caller->key_id}});
        }
        return refused;
      }
      bool write(const std::string& text) {
        if (broken || key_refused()) return false;
        beast::error_code ec;
        state.writing_since.store(monotonic_ns());
        asio::write(session.stream, asio::buffer(text), ec);
        state.writing_since.store(0);
        broken = static_cast<bool>(ec);
        return !broken;
      }
      bool start() {
        if (started) return !broken;
        started = true;
        return write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
            "no-cache\r\nConnection: close\r\nServer: pyoco\r\n\r\n");
      }
      bool send(std::string_view event, std::string_view id, std::string_view data) override {
        if (!start()) return false;
        std::string text;
        if (!id.empty()) text += "id: " + std::string(id) + "\n";
        text += "event: " + std::string(event) + "\ndata: " + std::string(data) + "\n\n";
        return write(text);
      }
      bool comment(std::string_view c) override {
        return start() && write(": " + std::string(c) + "\n\n");
      }
      bool stopping() const override {
        return session.server->stopping.load() || key_refused() || client_gone();
      }
      // The client closed its end or reset it: seen on the socket now, not
      // at the next write (a ping, every 15 s), so that its stream's slot is
      // free within a second. POLLRDHUP sees the close past unread bytes (a
      // TLS close_notify).
      mutable bool gone = false;
      bool client_gone() const {
        if (gone || broken) return true;
        pollfd p{session.tcp_socket().native_handle(), POLLIN, 0};
#ifdef POLLRDHUP
        p.events |= POLLRDHUP;
#endif
        if (::poll(&p, 1, 0) <= 0) return false;
#ifdef POLLRDHUP
        gone = (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
#else
        if ((p.revents & (POLLHUP | POLLERR)) != 0) {
          gone = true;
        } else if ((p.revents & POLLIN) != 0) {
          char c;
          const ssize_t n = ::recv(p.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
          gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        }
#endif
        return gone;
      }
    };

    // Once a stream's headers are out an error can only end it: said in the
    // process log, or the client's end of stream would be all there is.
    static void stream_ended_by(const Request& request, const std::string& what) {
      cluster::log(cluster::LogLevel::warning, "http: an event stream ended by an error",
                   {{"target", std::string(request.target())}, {"error", what}});
    }

    void stream_response(const Route* route, std::shared_ptr<Request> request, PathParams params) {
      std::lock_guard lock(server->streams_mutex);
      auto& streams = server->streams;
      for (auto it = streams.begin(); it != streams.end();) {
        if (it->state->done.load()) {
          it->thread.join();
          it = streams.erase(it);
        } else {
          ++it;
        }
      }
      auto refuse = [&](const std::string& why) {
        cluster::log(cluster::LogLevel::warning, "http: an event stream was refused",
                     {{"target", std::string(request->target())}, {"reason", why}});
        auto res = std::make_shared<Response>(error_response(503, "unavailable", why));
        res->set(http::field::retry_after, "5");
        server->router->observed(*request, *res, route->pattern, Caller(), 0);
        write(res, true);
      };
      // stop() has taken the list to join: a thread started now would be
      // joined by no one.
      if (server->stopping.load()) {
        refuse("this server is stopping; try again in 5 s");
        return;
      }
      if (streams.size() >= server->options.max_streams) {
        refuse("this server holds " + std::to_string(server->options.max_streams) +
               " event streams already; try again in 5 s");
        return;
      }
      auto state = std::make_shared<StreamState>();
      state->cut = [self = shared_from_this()] {
        ::shutdown(self->tcp_socket().native_handle(), SHUT_RDWR);
      };
      std::thread thread;
      try {
        thread = std::thread([self = shared_from_this(), route, request, params, state] {
          const auto began = std::chrono::steady_clock::now();
          SocketStream out(*self, *state);
          Caller caller;
          Response answer(http::status::ok, request->version());  // what it is counted as
          // An error before the stream's headers went out is its answer.
          auto refused = [&](Response res) {
            answer = std::move(res);
            answer.keep_alive(false);
            beast::error_code ec;
            http::write(self->stream, answer, ec);
          };
          try {
            caller = self->server->router->admit(*route, *request, self->address);
            out.caller = &caller;
            route->stream(*request, params, caller, out);
            // A stream with nothing to send is still an answer: 200 and
            // an empty stream, not a connection closed with no reply.
            out.start();
          } catch (const HttpError& e) {
            if (!out.started) {
              refused(error_response(e));
            } else {
              stream_ended_by(*request, e.detail);
            }
          } catch (const std::exception& e) {
            if (!out.started) {
              refused(error_response(500, "internal", e.what()));
            } else {
              stream_ended_by(*request, e.what());
            }
          }
          self->server->router->observed(
              *request, answer, route->pattern, caller,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
          beast::error_code ignored;
          self->tcp_socket().shutdown(tcp::socket::shutdown_both, ignored);
          state->done.store(true);
        });
      } catch (const std::system_error& e) {  // no thread to be had: the server goes on
        refuse(std::string("cannot start a thread for the stream: ") + e.what());
        return;
      }
      streams.push_back({std::move(thread), std::move(state)});
    }
  };

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        accept_failed(ec);
        return;
      }
      if (accept_failing) {
        accept_failing = false;
        cluster::log(cluster::LogLevel::info, "http: accepting connections again");
      }
      serve(std::move(socket));
      accept();
    });
  }

  // An accept that failed is tried again in 100 ms, not at once: out of
  // descriptors it would fail again at once, for as long as they last,
  // with the I/O thread spinning. Out of descriptors, a connection waiting
  // on its client makes room first.
  void accept_failed(beast::error_code ec) {
    if (stopping.load() || !acceptor.is_open()) return;  // stop() closed it
    // A client gone before it was accepted: the next one is taken at once.
    if (ec == asio::error::connection_aborted) {
      accept();
      return;
    }
    const bool no_descriptors = ec == asio::error::no_descriptors ||
                                ec == boost::system::errc::too_many_files_open_in_system;
    if (no_descriptors && evict_one()) {
      accept();
      return;
    }
    if (!accept_failing) {
      accept_failing = true;
      cluster::log(cluster::LogLevel::warning,
                   "http: cannot accept connections; trying again every 100 ms",
                   {{"error", ec.message()},
                    {"connections", std::to_string(open_connections())},
                    {"max_connections", std::to_string(max_connections)}});
    }
    accept_retry.expires_after(std::chrono::milliseconds(100));
    accept_retry.async_wait([this](beast::error_code e) {
      if (!e) accept();
    });
  }

  template <class S, class... Tls>
  void start_session(tcp::socket socket, Tls&... tls_context) {
    std::make_shared<Session<S>>(this, std::move(socket), tls_context...)->start();
  }
  // At the cap, the connection that has waited longest on its client makes
  // room; with none, the new one is answered 503 and closed.
  void serve(tcp::socket socket) {
    const std::size_t open = open_connections();
    if (open >= max_connections && !evict_one()) {
      refuse_connection(std::move(socket), open);
      return;
    }
    if (tls) {
      start_session<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), *tls);
    } else {
      start_session<beast::tcp_stream>(std::move(socket));
    }
  }
  void refuse_connection(tcp::socket socket, std::size_t open) {
    if (open >= max_connections + kRefusing || tls) return;  // closed: no answer to be had
    auto res = std::make_shared<Response>(error_response(
        503, "busy",
        "the gateway has " + std::to_string(open) +
            " connections open, each busy with a request (PYOCO_HTTP_MAX_CONNECTIONS); try "
            "again in 1 s"));
    res->set(http::field::retry_after, "1");
    res->keep_alive(false);
    auto session = std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket));
    session->response = std::move(res);
    http::async_write(session->stream, *session->response,
                      [session](beast::error_code ec, std::size_t) {
                        beast::error_code ignored;
                        session->tcp_socket().shutdown(tcp::socket::shutdown_send, ignored);
                        if (!ec) session->drain(std::chrono::seconds(1));
                      });
  }
};

std::size_t default_max_connections() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 10000;
  const rlim_t fds = limit.rlim_cur;
  const rlim_t reserve = std::clamp<rlim_t>(fds / 8, 128, 1024);
  return static_cast<std::size_t>(std::clamp<rlim_t>(fds > reserve ? fds - reserve : 0, 32, 10000));
}

void listen_limits_from_env(ListenOptions& o) {
  if (const std::string v = env("PYOCO_HTTP_MAX_CONNECTIONS"); !v.empty()) {
    o.max_connections =
        static_cast<std::size_t>(whole_from("PYOCO_HTTP_MAX_CONNECTIONS", v, 1, 1000000));
  }
  if (const std::string v = env("PYOCO_HTTP_HEADER_TIMEOUT_SEC"); !v.empty()) {
    const double seconds = seconds_from("PYOCO_HTTP_HEADER_TIMEOUT_SEC", v, 3600);
    // Below a second every request would be cut while its headers travel.
    if (seconds < 1) {
      throw std::invalid_argument("PYOCO_HTTP_HEADER_TIMEOUT_SEC=" + v +
                                  ": must be at least 1 (seconds; default 60)");
    }
    o.header_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
  }
  if (const std::string v = env("PYOCO_HTTP_UPLOAD_MIN_BYTES_PER_SEC"); !v.empty()) {
    o.upload_min_rate =
        static_cast<std::size_t>(whole_from("PYOCO_HTTP_UPLOAD_MIN_BYTES_PER_SEC", v, 0, 1L << 30));
  }
}

HttpServer::HttpServer(std::shared_ptr<const Router> router, ListenOptions options)
    : impl_(std::make_unique<Impl>(std::move(router), std::move(options))) {
  Impl& s = *impl_;
  if (!s.options.tls_cert.empty() || !s.options.tls_key.empty()) {
    s.tls = make_server_tls(s.options.tls_cert, s.options.tls_key);
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(s.options.host, ec);
  if (ec)
    throw std::runtime_error("cannot listen on \"" + s.options.host + "\": not an IP address");
  const tcp::endpoint endpoint{address, s.options.port};
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("cannot listen on " + s.options.host + ":" +
                             std::to_string(s.options.port) + ": " + ec.message());
  }
  s.accept();
  s.check_stalls();
  s.io_thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

HttpServer::~HttpServer() { stop(); }

std::uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::stop() {
  if (!impl_->io_thread.joinable()) return;
  impl_->stopping = true;  // streams end within their handlers' next wait
  {
    std::vector<Impl::StreamThread> streams;
    {
      std::lock_guard lock(impl_->streams_mutex);
      streams.swap(impl_->streams);
    }
    // A stream blocked writing to a client that stopped reading would
    // never see `stopping`: its connection is cut.
    for (auto& t : streams) {
      if (!t.state->done.load() && t.state->writing_since.load() != 0) t.state->cut();
    }
    for (auto& t : streams) t.thread.join();
  }
  asio::post(impl_->io, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->stall_check.cancel();
    impl->accept_retry.cancel();
  });
  impl_->handlers.join();
  impl_->io.stop();
  impl_->io_thread.join();
}

}  // namespace pyoco::server
