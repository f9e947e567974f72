// `pyoco server`: the HTTP gateway; with --with-nats it also runs Debian's
// nats-server as a child, with --with-worker a worker in this process.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/process_log.hpp>
#include <pyoco/cluster/reaper.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/server/gateway.hpp>
#include <pyoco/server/http.hpp>
#include <pyoco/server/webhooks.hpp>
#include <pyoco/worker/worker.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>

#include "app.hpp"
#include "command.hpp"
#include "handoff.hpp"
#include "nats_child.hpp"
#include "nats_flags.hpp"
#include "plugin_path.hpp"
#include "worker_flags.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;

namespace {

struct ServerArgs {
  std::string listen = "127.0.0.1:8000";
  NatsFlags nats;
  std::string tls_cert, tls_key;
  std::optional<std::string> with_nats;  // the store directory ("" = the default)
  std::string nats_listen = "127.0.0.1";
  int nats_port = 4222;
  bool with_worker = false;
  std::vector<std::string> tags{"default"};
  std::size_t slots = 1;
  unsigned jobs = 0;
  std::string flows;
  std::string worker_id;
  std::string index;
  PluginPathOption path;
};

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
    // Every setting is read first, into options; then the PYOCO_* variables
    // leave the environment, before nats-server, NATS or HTTP starts a
    // thread, so that no process started here (nats-server, the worker's
    // tasks) inherits the NATS credentials, the pepper or the webhook
    // secret. Nothing reads them again: a reconnect uses the options.
    const cluster::ConnectOptions configured = a.nats.connect_options("pyoco server");
    fs::path nats_dir;
    if (a.with_nats) nats_dir = a.with_nats->empty() ? default_nats_dir() : fs::path(*a.with_nats);
    cluster::ResourceOptions ro = cluster::resource_options_from_env();
    ro.tags = a.tags;
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
    server::ListenOptions lo;
    try {
      server::listen_limits_from_env(lo);
      go.auth = server::auth_options_from_env();
      webhooks = server::webhook_options_from_env();
    } catch (const std::invalid_argument& e) {
      std::cerr << "pyoco server: " << e.what() << '\n';
      return kExitUsage;
    }
    if (a.with_worker && a.worker_id.empty()) {
      if (const std::string why = default_worker_id_problem(); !why.empty()) {
        std::cerr << "pyoco server: " << why << '\n';
        return kExitUsage;
      }
    }
    EngineOptions eo;
    worker::WorkerOptions wo;
    if (a.with_worker) {
      eo.jobs = a.jobs;
      eo.plugin_search_path = a.path.search_path();
      wo.tags = a.tags;
      wo.slots = a.slots;
      wo.flows_dir = a.flows;
      wo.worker_id = a.worker_id;
      wo.env = worker::run_environment();
    }
    worker::remove_settings_from_environment();
    // From here a SIGTERM stops the server cleanly, even one that comes
    // before it listens.
    StopSignal stop;
    // Its worker's id taken over: the server stops with it, as a worker would.
    wo.on_id_lost = [&stop](const std::string&) { stop.request(); };
    wo.stop_requested = [&stop] { return stop.requested(); };

    std::optional<NatsChild> nats_child;
    if (a.with_nats) {
      if (!configured.tls_ca.empty() || !configured.tls_cert.empty()) {
        std::cerr << "pyoco server: --with-nats runs nats-server without TLS: the NATS TLS "
                     "settings are not used\n";
      }
      nats_child.emplace(NatsChildOptions{
          .dir = nats_dir, .listen = a.nats_listen, .port = a.nats_port, .configured = configured});
    }
    // The gateway and its worker connect alike: to the child, with the
    // credentials it requires, or as the NATS flags and environment say.
    auto connect_options = [&](const std::string& name) {
      if (nats_child) return nats_child->connect_options(name);
      cluster::ConnectOptions o = configured;
      o.name = name;
      return o;
    };
    cluster::Connection nats(connect_options("pyoco server"));
    cluster::init_resources(nats, ro);

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
    server::HttpServer http(server::gateway_routes(nats, go), lo);
    cluster::Reaper reaper(nats);  // jobs NATS gave up on end FAILED, not stuck
    reaper.start();
    std::optional<server::WebhookSender> webhook_sender;
    if (webhooks) {
      webhook_sender.emplace(nats, *webhooks);
      // Its path may hold a token: not shown.
      const auto path = webhooks->url.find('/', webhooks->url.find("://") + 3);
      say("pyoco server: run ends are POSTed to ", webhooks->url.substr(0, path));
    }
    // Scripts read the URL off this line: it ends with it.
    say("pyoco server: listening on ", scheme, lo.host, ":", http.port());
    std::cerr << "pyoco server: the dashboard is at that URL: open it in a browser\n";
    say("pyoco server: ",
        go.auth ? "API keys required on every route but /health and the dashboard's page (which "
                  "asks for one)"
                : "no authentication (set PYOCO_HTTP_AUTH_MODE=api_key to require keys)");
    if (go.auth && go.auth->pepper.empty()) {
      std::cerr << "pyoco server: PYOCO_AUTH_PEPPER is empty: keys' hashes in NATS can be "
                   "guessed at offline by whoever reads them; set one long random pepper on "
                   "every gateway and where `pyoco keys create` runs (docs/security.md)\n";
    }
    std::cout << scheme << lo.host << ":" << http.port() << std::endl;

    std::optional<cluster::Connection> worker_nats;
    std::optional<Engine> engine;
    std::optional<worker::Worker> worker;
    if (a.with_worker) {
      worker_nats.emplace(connect_options("pyoco worker"));
      engine.emplace(eo);
      worker.emplace(*worker_nats, *engine, wo);
      worker->start();
      say("pyoco server: a worker runs ", a.slots, " run(s) at a time here");
    }

    stop.wait();
    std::optional<std::string> id_lost = worker ? worker->id_lost() : std::nullopt;
    if (id_lost) say("pyoco server: its worker: ", *id_lost);
    std::cerr << "pyoco server: stopping\n";
    if (worker) worker->drain(id_lost ? std::chrono::seconds(0) : std::chrono::seconds(10));
    if (!id_lost && worker) id_lost = worker->id_lost();  // found by its last record
    http.stop();
    reaper.stop();
    webhook_sender.reset();
    return id_lost ? kExitWorkerIdLost : kExitOk;
  } catch (const cluster::WorkerIdWaitStopped& e) {
    say("pyoco server: its worker: ", e.what());
    return kExitCancelled;
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
  CLI::App* cmd = app.add_subcommand("server", description_of("", "server"));
  auto a = std::make_shared<ServerArgs>();
  cmd->add_option("--listen", a->listen, "Where to listen (default 127.0.0.1:8000; port 0: any)")
      ->type_name("HOST:PORT");
  a->nats.add_to(cmd);
  cmd->add_option("--with-nats", a->with_nats,
                  "Also run nats-server -js, its store in DIR (default $PYOCO_HOME/nats); "
                  "stopped with the server")
      ->expected(0, 1)
      ->type_name("[DIR]");
  cmd->add_option("--nats-listen", a->nats_listen,
                  "With --with-nats: its address (default 127.0.0.1); any other than loopback "
                  "makes it require a user and password, kept in DIR/nats-client.env for workers")
      ->type_name("ADDR");
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
  cmd->add_option("-j,--jobs", a->jobs, "With --with-worker: task bodies at once")
      ->check(jobs_option());
  cmd->add_option("--flows", a->flows, "With --with-worker: where runs named by flow are found")
      ->check(flows_option())
      ->type_name("DIR");
  cmd->add_option("--worker-id", a->worker_id,
                  "With --with-worker: the worker's name (default: the host name), as `pyoco "
                  "worker --worker-id`")
      ->check(worker_id_option())
      ->type_name("ID");
  a->path.attach(cmd);
  table.add(cmd, [a] { return run_server(*a); });
}

}  // namespace pyoco::cli
