// The gateway's routes (pyoco-server's paths, JSON shapes and status codes,
// so its client and scripts keep working) over the run protocol of the
// cluster library. The route table is the one list of what is served.
#pragma once

#include <pyoco/cluster/connection.hpp>
#include <pyoco/server/auth.hpp>
#include <pyoco/server/http.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace pyoco::server {

struct GatewayOptions {
  std::size_t workflow_limit = 256 * 1024;  // POST /runs/yaml: a larger flow is 413
  std::string default_tag = "default";
  // A worker silent this long shows DISCONNECTED.
  std::chrono::milliseconds worker_disconnect_after{std::chrono::seconds(30)};
  // GET /runs's read model; empty: in memory (rebuilt from the event
  // stream at each start).
  std::filesystem::path run_index_file;
  // Set: every route but /health needs an API key (PYOCO_HTTP_AUTH_MODE=api_key).
  std::optional<AuthOptions> auth;
};

// GET /health, POST /runs, POST /runs/yaml, GET /runs/{id},
// GET /runs, GET /runs/{id}/tasks, POST /runs/{id}/cancel, GET /workers,
// PATCH /workers/{id}. NATS away: 503.
std::shared_ptr<Router> gateway_routes(cluster::Connection& nats, GatewayOptions options = {});

}  // namespace pyoco::server
