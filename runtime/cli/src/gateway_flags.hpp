// How a command reaches a gateway (`pyoco client`, `pyoco plugins push`,
// `pyoco plugins remote`): --server, --api-key and --ca-file, else
// PYOCO_SERVER, PYOCO_API_KEY and PYOCO_CA_FILE.
#pragma once

#include <pyoco/server/client.hpp>

#include <CLI/CLI.hpp>

#include <boost/json/value.hpp>

#include <map>
#include <string>

namespace pyoco::cli {

struct GatewayFlags {
  std::string server;
  std::string api_key;
  std::string ca_file;

  void add_to(CLI::App* command);
  server::Endpoint endpoint() const;

  // The gateway's answer as JSON. Throws server::ClientError: it cannot be
  // reached, or it answered 4xx/5xx ("the gateway answered 409: <detail>").
  boost::json::value call(boost::beast::http::verb method, const std::string& target,
                          const std::string& body = {},
                          const std::string& type = "application/json",
                          const std::map<std::string, std::string>& headers = {}) const;
};

}  // namespace pyoco::cli
