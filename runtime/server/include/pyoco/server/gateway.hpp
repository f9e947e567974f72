// The gateway's routes (pyoco-server's paths, JSON shapes and status codes,
// so its client and scripts keep working) over the run protocol of the
// cluster library. The route table is the one list of what is served.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/server/http.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace pyoco::server {

struct GatewayOptions {
  std::size_t workflow_limit = 256 * 1024;  // POST /runs/yaml: a larger flow is 413
  std::string default_tag = "default";
};

// GET /health, POST /runs, POST /runs/yaml, GET /runs/{id},
// GET /runs/{id}/tasks, POST /runs/{id}/cancel. NATS away: 503.
std::shared_ptr<Router> gateway_routes(cluster::Connection& nats, GatewayOptions options = {});

}  // namespace pyoco::server
