// One HTTP/1.1 request to a gateway, for `pyoco client` and the tests: a
// blocking call with a deadline, over a new connection.
#pragma once

#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>

namespace pyoco::server {

// The gateway could not be reached, or did not answer in time.
class ClientError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ClientResponse {
  unsigned status = 0;
  std::string body;
  std::string content_type;
};

// `server` is http://host:port (a trailing / is fine); `target` the path
// and query. Throws ClientError.
ClientResponse http_call(const std::string& server, boost::beast::http::verb method,
                         const std::string& target, const std::string& body = {},
                         const std::string& content_type = "application/json",
                         const std::map<std::string, std::string>& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace pyoco::server
