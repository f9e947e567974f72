// `pyoco server` as a child process for a test: its URL read from its
// first line, `pyoco client` and plain HTTP calls against it.
#pragma once

#include <pyoco/server/client.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "child.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace pyoco::testing {

// The plugin store's bound for a server started --with-nats (and for a
// `cluster init` on its NATS): that nats-server offers JetStream 75% of the
// disk free, which a CI machine may not have for the default 4 GiB,
// reserved whole when the store is made.
inline constexpr const char* kWithNatsPluginBytes = "268435456";

struct Server {
  TempDir dir;
  std::unique_ptr<ChildProcess> child;
  std::string url;
  std::string api_key;  // sent by call() and client() when set

  explicit Server(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv{pyoco_exe().string(), "server", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    env["PYOCO_PLUGIN_PATH"] = "";
    if (std::find(args.begin(), args.end(), "--with-nats") != args.end()) {
      env.try_emplace("PYOCO_PLUGINS_MAX_BYTES", kWithNatsPluginBytes);
    }
    child = std::make_unique<ChildProcess>(argv, env, dir.path());
    // Its first line on stdout is its URL: wait for the whole line (a
    // sanitized gateway on a loaded host takes many seconds to start).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string out;
    while ((out = child->out()).find('\n') == std::string::npos &&
           std::chrono::steady_clock::now() < until) {
      child->wait_for_output("\n", std::chrono::milliseconds(100));
    }
    BOOST_REQUIRE_MESSAGE((out.find("http://") == 0 || out.find("https://") == 0) &&
                              out.find('\n') != std::string::npos,
                          "no URL from pyoco server: " << out << child->err());
    url = out.substr(0, out.find('\n'));
  }

  // `pyoco client <args> --server <url>`, killed after `timeout` (longer for
  // what waits on a long run: a slow host runs it for minutes).
  ProcessResult client(std::vector<std::string> args,
                       std::chrono::seconds timeout = std::chrono::seconds(60)) const {
    args.insert(args.begin(), "client");
    args.insert(args.begin() + 2, {"--server", url});
    ProcessOptions options{.cwd = dir.path(), .timeout = timeout};
    if (!api_key.empty()) options.env["PYOCO_API_KEY"] = api_key;
    return run_pyoco(args, options);
  }

  server::ClientResponse call(boost::beast::http::verb method, const std::string& target,
                              const std::string& body = {}) const {
    return server::http_call(server::Endpoint{url, api_key, {}}, method, target, body);
  }

  // POST /runs with `body` (a JSON object); the run's id (the test stops
  // unless the gateway answers 200).
  std::string submit(const std::string& body) const {
    const server::ClientResponse r = call(boost::beast::http::verb::post, "/runs", body);
    BOOST_REQUIRE_MESSAGE(r.status == 200u, r.status << " " << r.body);
    return std::string(boost::json::parse(r.body).at("run_id").as_string());
  }
};

}  // namespace pyoco::testing
