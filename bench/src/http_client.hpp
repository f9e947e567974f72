// One keep-alive HTTP/1.1 connection to a gateway, blocking: what the
// cluster benchmarks submit and read with.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/verb.hpp>

#include <string>

namespace pyoco::bench {

class HttpClient {
 public:
  HttpClient(const std::string& host, const std::string& port, std::string api_key = {});
  // The answer's body; throws unless it is 200.
  std::string call(boost::beast::http::verb method, const std::string& target,
                   const std::string& body = {});
  // POST /runs of the flow `flow_name` (kTrivialFlow's "trivial" by
  // default) on `tag` ("": the default); the run's id.
  std::string submit(const std::string& flow_name = "trivial", const std::string& tag = {});

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string api_key_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace pyoco::bench
