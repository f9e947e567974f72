#include "nats_child.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

namespace pyoco::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfigFile = "nats-server.conf";
constexpr const char* kClientEnvFile = "nats-client.env";

// Writes a file only its owner may read, whatever mode an older one had.
void write_secret_file(const fs::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0 ||
      ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    if (fd >= 0) ::close(fd);
    throw cluster::NatsError("cannot write " + path.string());
  }
  ::close(fd);
}

// 32 random bytes from the kernel, as 64 hex digits.
std::string random_secret() {
  unsigned char bytes[32];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) throw cluster::NatsError("cannot read random bytes for the NATS password");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// KEY=VALUE lines of an env file ('#' starts a comment).
std::map<std::string, std::string> read_env_file(const fs::path& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (line.empty() || line.front() == '#' || eq == std::string::npos) continue;
    out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// A value as a quoted string of nats-server's configuration language.
std::string config_string(const std::string& value) {
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// The user and password workers need: generated at the first start and
// kept in DIR/nats-client.env, so a restart with the same DIR keeps them.
cluster::ConnectOptions generated_credentials(const fs::path& env_file, bool& made) {
  cluster::ConnectOptions o;
  made = !fs::exists(env_file);
  if (made) {
    o.user = "pyoco";
    o.password = random_secret();
    write_secret_file(env_file,
                      "# NATS credentials of the nats-server `pyoco server --with-nats` runs.\n"
                      "# Workers and gateways elsewhere need them in their environment\n"
                      "# (systemd EnvironmentFile=, or: set -a; . ./nats-client.env; set +a).\n"
                      "PYOCO_NATS_USER=" +
                          o.user + "\nPYOCO_NATS_PASSWORD=" + o.password + "\n");
    return o;
  }
  const auto values = read_env_file(env_file);
  const auto user = values.find("PYOCO_NATS_USER");
  const auto password = values.find("PYOCO_NATS_PASSWORD");
  if (user == values.end() || password == values.end() || user->second.empty() ||
      password->second.empty()) {
    throw cluster::NatsError(env_file.string() +
                             " has no PYOCO_NATS_USER and PYOCO_NATS_PASSWORD: delete it, and "
                             "the next start makes new ones");
  }
  o.user = user->second;
  o.password = password->second;
  return o;
}

// The host this process connects through: the listen address itself, or
// loopback when nats-server listens on every address.
std::string local_host(const std::string& listen) {
  if (listen == "0.0.0.0" || listen.empty()) return "127.0.0.1";
  if (listen == "::" || listen == "[::]") return "[::1]";
  if (listen.find(':') != std::string::npos && listen.front() != '[') return "[" + listen + "]";
  return listen;
}

// The port of the first URL in nats-server's ports file:
// {"nats":["nats://10.0.0.5:4222","nats://127.0.0.1:4222"],...}; -1 if none.
int port_in_ports_file(const std::string& text) {
  const auto at = text.find("nats://");
  if (at == std::string::npos) return -1;
  const auto end = text.find('"', at);
  const auto colon = text.rfind(':', end);
  if (end == std::string::npos || colon == std::string::npos || colon < at + 7) return -1;
  return std::atoi(text.c_str() + colon + 1);
}

}  // namespace

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

bool is_loopback(const std::string& address) {
  if (address == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  std::string v6_text = address;
  if (v6_text.size() > 2 && v6_text.front() == '[' && v6_text.back() == ']') {
    v6_text = v6_text.substr(1, v6_text.size() - 2);
  }
  in6_addr v6{};
  return ::inet_pton(AF_INET6, v6_text.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

NatsChild::NatsChild(const NatsChildOptions& options) {
  const fs::path& dir = options.dir;
  const cluster::ConnectOptions& configured = options.configured;
  if (!configured.creds_file.empty()) {
    throw cluster::NatsError(
        "--with-nats runs a nats-server with a user and password or a token; a .creds file "
        "needs one set up with an operator: unset PYOCO_NATS_CREDS, or run that server yourself "
        "and give it with --nats");
  }
  fs::create_directories(dir);
  const bool own =
      !configured.user.empty() || !configured.password.empty() || !configured.token.empty();
  const bool open_beyond_loopback = !is_loopback(options.listen);
  bool made = false;
  if (own) {
    client_.user = configured.user;
    client_.password = configured.password;
    client_.token = configured.token;
  } else if (open_beyond_loopback) {
    client_ = generated_credentials(dir / kClientEnvFile, made);
  }
  const bool auth = own || open_beyond_loopback;

  const fs::path ports = dir / "ports";
  fs::remove_all(ports);
  fs::create_directories(ports);
  std::vector<std::string> argv{
      "nats-server",
      "-js",
      "-a",
      options.listen,
      "-p",
      options.port == 0 ? std::string("-1") : std::to_string(options.port),
      "--ports_file_dir",
      ports.string(),
      "-sd",
      (dir / "store").string()};
  if (auth) {
    // In a file, not on the command line: arguments are seen by `ps`.
    const std::string authorization =
        client_.token.empty() ? "  user: " + config_string(client_.user) +
                                    "\n  password: " + config_string(client_.password) + "\n"
                              : "  token: " + config_string(client_.token) + "\n";
    write_secret_file(dir / kConfigFile,
                      "# Written by `pyoco server --with-nats` at each start; the listen "
                      "address,\n# port and store are on its command line.\nauthorization {\n" +
                          authorization + "}\n");
    argv.insert(argv.end(), {"-c", (dir / kConfigFile).string()});
  }
  process_ = std::make_unique<core::BackgroundProcess>(argv, dir / "nats-server.log");

  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string last_error;
  while (std::chrono::steady_clock::now() < until && process_->running()) {
    for (const auto& f : fs::directory_iterator(ports)) {
      std::ifstream in(f.path());
      const int port = port_in_ports_file(std::string(std::istreambuf_iterator<char>(in), {}));
      if (port <= 0) continue;
      client_.servers = {"nats://" + local_host(options.listen) + ":" + std::to_string(port)};
      cluster::ConnectOptions probe = client_;
      probe.timeout = std::chrono::milliseconds(200);
      try {
        cluster::Connection connected(probe);
        std::cerr << "pyoco server: started nats-server at " << client_.servers.front();
        if (open_beyond_loopback) {
          std::cerr << ", listening on " << options.listen << ":" << port;
        }
        std::cerr << " (store in " << dir.string() << ")\n";
        if (own) {
          std::cerr << "pyoco server: nats-server requires the credentials of "
                    << (client_.token.empty() ? "PYOCO_NATS_USER/PYOCO_NATS_PASSWORD"
                                              : "PYOCO_NATS_TOKEN")
                    << "; workers need the same\n";
        } else if (auth) {
          std::cerr << "pyoco server: nats-server listens beyond loopback, so it requires a user "
                       "and password ("
                    << (made ? "made now" : "made at an earlier start") << ", in "
                    << (dir / kConfigFile).string() << "); workers need them: copy "
                    << (dir / kClientEnvFile).string()
                    << " to them and load it into their environment\n";
        }
        return;
      } catch (const cluster::NatsError& e) {
        last_error = e.what();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
  }
  throw cluster::NatsError("nats-server did not start within 10 s (port " +
                           std::to_string(options.port) + " taken? see " +
                           (dir / "nats-server.log").string() + ")" +
                           (last_error.empty() ? std::string() : ": " + last_error));
}

cluster::ConnectOptions NatsChild::connect_options(const std::string& name) const {
  cluster::ConnectOptions o = client_;
  o.name = name;
  return o;
}

}  // namespace pyoco::cli
