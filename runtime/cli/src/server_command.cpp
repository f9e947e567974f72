// `pyoco server`: the HTTP gateway; with --with-nats it also runs Debian's
// nats-server as a child, with --with-worker a worker in this process.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/core/subprocess.hpp>
#include <pyoco/server/gateway.hpp>
#include <pyoco/server/http.hpp>
#include <pyoco/server/webhooks.hpp>
#include <pyoco/worker/worker.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "app.hpp"
#include "command.hpp"
#include "plugin_path.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;

namespace {

struct ServerArgs {
  std::string listen = "127.0.0.1:8000";
  std::string nats;
  std::string tls_cert, tls_key;
  std::optional<std::string> with_nats;  // the store directory ("" = the default)
  int nats_port = 4222;
  bool with_worker = false;
  std::vector<std::string> tags{"default"};
  std::size_t slots = 1;
  unsigned jobs = 0;
  std::string flows;
  std::string index;
  PluginPathOption path;
};

// Where --with-nats keeps its store when no DIR is given.
fs::path default_nats_dir() {
  if (const char* home = std::getenv("PYOCO_HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / "nats";
  }
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state != '\0') {
    return fs::path(state) / "pyoco" / "nats";
  }
  const char* home = std::getenv("HOME");
  return fs::path(home != nullptr ? home : ".") / ".local" / "state" / "pyoco" / "nats";
}

// Starts nats-server -js on loopback and waits (10 s) until it answers.
std::unique_ptr<core::BackgroundProcess> start_nats(const fs::path& dir, int port,
                                                    std::string& url) {
  fs::create_directories(dir);
  const fs::path ports = dir / "ports";
  fs::remove_all(ports);
  fs::create_directories(ports);
  auto child = std::make_unique<core::BackgroundProcess>(
      std::vector<std::string>{"nats-server", "-js", "-a", "127.0.0.1", "-p",
                               port == 0 ? std::string("-1") : std::to_string(port),
                               "--ports_file_dir", ports.string(), "-sd", (dir / "store").string()},
      dir / "nats-server.log");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    if (!child->running()) break;
    for (const auto& f : fs::directory_iterator(ports)) {
      std::ifstream in(f.path());
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      const auto at = text.find("nats://");
      if (at == std::string::npos) continue;
      url = text.substr(at, text.find('"', at) - at);
      try {
        cluster::Connection probe({.servers = {url}, .timeout = std::chrono::milliseconds(200)});
        return child;
      } catch (const cluster::NatsError&) {
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
  }
  throw cluster::NatsError("nats-server did not start within 10 s (port " + std::to_string(port) +
                           " taken? see " + (dir / "nats-server.log").string() + ")");
}

int run_server(ServerArgs& a) {
  try {
    cluster::configure_process_log_from_env();
  } catch (const std::invalid_argument& e) {
    std::cerr << "pyoco server: " << e.what() << '\n';
    return kExitUsage;
  }
  const auto colon = a.listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "pyoco server: --listen HOST:PORT, e.g. 127.0.0.1:8000\n";
    return kExitUsage;
  }
  try {
    std::unique_ptr<core::BackgroundProcess> nats_child;
    std::string nats_url = a.nats;
    if (a.with_nats) {
      const fs::path dir = a.with_nats->empty() ? default_nats_dir() : fs::path(*a.with_nats);
      nats_child = start_nats(dir, a.nats_port, nats_url);
      std::cerr << "pyoco server: started nats-server at " << nats_url << " (store in "
                << dir.string() << ")\n";
    }
    cluster::Connection nats({.servers = cluster::nats_servers(nats_url), .name = "pyoco server"});
    cluster::ResourceOptions ro = cluster::resource_options_from_env();
    ro.tags = a.tags;
    cluster::init_resources(nats, ro);

    server::ListenOptions lo;
    lo.host = a.listen.substr(0, colon);
    const std::string port = a.listen.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535) {
      std::cerr << "pyoco server: --listen " << a.listen << ": the port is 0 to 65535\n";
      return kExitUsage;
    }
    lo.port = static_cast<std::uint16_t>(std::stoul(port));
    lo.tls_cert = a.tls_cert;
    lo.tls_key = a.tls_key;
    const std::string scheme = a.tls_cert.empty() ? "http://" : "https://";
    server::GatewayOptions go;
    go.run_index_file = a.index;
    if (const char* t = std::getenv("PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC"); t != nullptr && *t) {
      char* end = nullptr;
      const double seconds = std::strtod(t, &end);
      if (end == t || *end != '\0' || !(seconds > 0) || seconds > 86400) {
        std::cerr << "pyoco server: PYOCO_WORKER_DISCONNECT_TIMEOUT_SEC=" << t
                  << ": give seconds, more than 0 and at most 86400\n";
        return kExitUsage;
      }
      go.worker_disconnect_after =
          std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    }
    std::optional<server::WebhookOptions> webhooks;
    try {
      go.auth = server::auth_options_from_env();
      webhooks = server::webhook_options_from_env();
    } catch (const std::invalid_argument& e) {
      std::cerr << "pyoco server: " << e.what() << '\n';
      return kExitUsage;
    }
    server::HttpServer http(server::gateway_routes(nats, go), lo);
    cluster::Reaper reaper(nats);  // jobs NATS gave up on end FAILED, not stuck
    reaper.start();
    std::optional<server::WebhookSender> webhook_sender;
    if (webhooks) {
      webhook_sender.emplace(nats, *webhooks);
      // Its path may hold a token: not shown.
      const auto path = webhooks->url.find('/', webhooks->url.find("://") + 3);
      std::cerr << "pyoco server: run ends are POSTed to " << webhooks->url.substr(0, path) << '\n';
    }
    std::cerr << "pyoco server: listening on " << scheme << lo.host << ":" << http.port() << '\n';
    std::cerr << "pyoco server: "
              << (go.auth ? "API keys required on every route but /health"
                          : "no authentication (set PYOCO_HTTP_AUTH_MODE=api_key to require keys)")
              << '\n';
    std::cout << scheme << lo.host << ":" << http.port() << std::endl;

    std::optional<cluster::Connection> worker_nats;
    std::optional<Engine> engine;
    std::optional<worker::Worker> worker;
    if (a.with_worker) {
      worker_nats.emplace(cluster::ConnectOptions{.servers = cluster::nats_servers(nats_url),
                                                  .name = "pyoco worker"});
      EngineOptions eo;
      eo.jobs = a.jobs;
      eo.plugin_search_path = a.path.search_path();
      engine.emplace(eo);
      worker::WorkerOptions wo;
      wo.tags = a.tags;
      wo.slots = a.slots;
      wo.flows_dir = a.flows;
      wo.env = process_environment();
      worker.emplace(*worker_nats, *engine, wo);
      worker->start();
      std::cerr << "pyoco server: a worker runs " << a.slots << " run(s) at a time here\n";
    }

    wait_for_stop_signal();
    std::cerr << "pyoco server: stopping\n";
    if (worker) worker->drain(std::chrono::seconds(10));
    http.stop();
    reaper.stop();
    webhook_sender.reset();
    return kExitOk;
  } catch (const cluster::NatsError& e) {
    std::cerr << "pyoco server: " << e.what() << '\n';
    return kExitUsage;
  } catch (const std::runtime_error& e) {
    std::cerr << "pyoco server: " << e.what() << '\n';
    return kExitUsage;
  }
}

}  // namespace

void add_server_command(CLI::App& app, CommandTable& table) {
  CLI::App* cmd = app.add_subcommand(
      "server", "Run the HTTP gateway of cluster mode (and, for one machine, NATS and a worker)");
  auto a = std::make_shared<ServerArgs>();
  cmd->add_option("--listen", a->listen, "Where to listen (default 127.0.0.1:8000; port 0: any)")
      ->type_name("HOST:PORT");
  cmd->add_option("--nats", a->nats, "NATS URL(s), comma-separated (default: PYOCO_NATS_URL)")
      ->type_name("URL[,URL]");
  cmd->add_option("--with-nats", a->with_nats,
                  "Also run nats-server -js on 127.0.0.1, its store in DIR (default "
                  "$PYOCO_HOME/nats); stopped with the server")
      ->expected(0, 1)
      ->type_name("[DIR]");
  cmd->add_option("--nats-port", a->nats_port, "With --with-nats: its port (default 4222; 0: any)");
  cmd->add_option("--tls-cert", a->tls_cert,
                  "Serve HTTPS only, with this PEM certificate chain (needs --tls-key)")
      ->type_name("FILE");
  cmd->add_option("--tls-key", a->tls_key, "The PEM private key of --tls-cert")->type_name("FILE");
  cmd->add_flag("--with-worker", a->with_worker, "Also run a worker in this process");
  cmd->add_option("--index", a->index,
                  "Keep GET /runs's index in this SQLite file (default: in memory, rebuilt from "
                  "the event stream at start)")
      ->type_name("FILE");
  cmd->add_option("--tags", a->tags, "The tags to make consumers for (and the worker's)")
      ->delimiter(',');
  cmd->add_option("--slots", a->slots, "With --with-worker: runs at once (default 1)");
  cmd->add_option("-j,--jobs", a->jobs, "With --with-worker: task bodies at once");
  cmd->add_option("--flows", a->flows, "With --with-worker: where runs named by flow are found")
      ->type_name("DIR");
  a->path.attach(cmd);
  table.add(cmd, [a] { return run_server(*a); });
}

}  // namespace pyoco::cli
