// One HTTP/1.1 request to a gateway, for `pyoco client` and the tests: a
// blocking call with a deadline, over a new connection.
#pragma once

#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

namespace pyoco::server {

// The gateway could not be reached, or did not answer in time.
class ClientError : public std::runtime_error {
 public:
  explicit ClientError(const std::string& what, std::string reason = {})
      : std::runtime_error(what), reason_(std::move(reason)) {}
  // Why, without advice for `pyoco client` users ("no answer within 500
  // ms", "Connection refused").
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

struct ClientResponse {
  unsigned status = 0;
  std::string body;
  std::string content_type;
  // X-Pyoco-Stale: the gateway answered from memory while NATS is away.
  std::string stale;
  // Retry-After: a 503 that did nothing and may be sent again after this
  // many seconds (the gateway holds as many uploads as it may at once).
  std::string retry_after;
};

// How to reach a gateway.
struct Endpoint {
  std::string url;      // http://host:port or https://host:port (a trailing / is fine)
  std::string api_key;  // sent as X-API-Key when not empty
  std::string ca_file;  // https: a PEM CA to trust besides the system's
};

// What an error answer's body says for a person: its JSON "detail", else
// the body as it came (a proxy's page), without trailing line ends.
std::string answer_detail(std::string_view body);

// `target` is the path and query. Throws ClientError.
ClientResponse http_call(const Endpoint& gateway, boost::beast::http::verb method,
                         const std::string& target, const std::string& body = {},
                         const std::string& content_type = "application/json",
                         const std::map<std::string, std::string>& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));
// The same, to a URL with no key.
ClientResponse http_call(const std::string& server, boost::beast::http::verb method,
                         const std::string& target, const std::string& body = {},
                         const std::string& content_type = "application/json",
                         const std::map<std::string, std::string>& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct StreamEvent {
  std::string event;  // "snapshot", "run", "node", "log"
  std::string id;     // the stream sequence ("" for the snapshot)
  std::string data;
};

// Follows an SSE response (GET `target`), calling `on_event` for each event
// until it returns false or the server ends the stream. `last_event_id`
// resumes after that event. Throws ClientError when the gateway cannot be
// reached or answers with an error.
void http_stream(const Endpoint& gateway, const std::string& target,
                 const std::string& last_event_id,
                 const std::function<bool(const StreamEvent&)>& on_event);

}  // namespace pyoco::server
