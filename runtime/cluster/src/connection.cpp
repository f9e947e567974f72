#include <pyoco/cluster/connection.hpp>

#include <cstdlib>

#include <pyoco/cluster/nats_handles.hpp>

namespace pyoco::cluster {

void throw_nats(const std::string& what, natsStatus s, jsErrCode jerr) {
  std::string message = what + ": " + natsStatus_GetText(s);
  if (static_cast<int>(jerr) != 0)
    message += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0') {
    const std::string detail(last);
    if (detail != natsStatus_GetText(s)) message += ": " + detail;
  }
  throw NatsError(message);
}

std::vector<std::string> nats_servers(std::string_view flag) {
  std::string list(flag);
  if (list.empty()) {
    const char* env = std::getenv("PYOCO_NATS_URL");
    list = env != nullptr && *env != '\0' ? env : "nats://127.0.0.1:4222";
  }
  std::vector<std::string> out;
  for (std::size_t start = 0;;) {
    const std::size_t comma = list.find(',', start);
    std::string url = list.substr(start, comma - start);
    while (!url.empty() && url.front() == ' ') url.erase(url.begin());
    while (!url.empty() && url.back() == ' ') url.pop_back();
    if (url.empty()) throw NatsError("NATS server list \"" + list + "\" has an empty entry");
    const std::size_t scheme = url.find("://");
    if (scheme == std::string::npos) {
      url = "nats://" + url;
    } else if (url.compare(0, scheme, "nats") != 0 && url.compare(0, scheme, "tls") != 0) {
      throw NatsError("NATS server \"" + url + "\": the scheme is nats:// (or tls://)");
    }
    out.push_back(url);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Connection::Connection(const ConnectOptions& options) : handles_(std::make_unique<Handles>()) {
  handles_->options = options;
  std::string list;
  for (const std::string& s : options.servers) list += (list.empty() ? "" : ",") + s;
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  std::vector<const char*> servers;
  for (const std::string& url : options.servers) servers.push_back(url.c_str());
  if (s == NATS_OK)
    s = natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size()));
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, options.timeout.count());
  if (s == NATS_OK) s = natsOptions_SetName(opts, options.name.c_str());
  // Reconnect for ever once connected: a NATS restart is an outage to ride
  // out, not the end of a gateway or a worker.
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsConnection_Connect(&handles_->nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    throw NatsError("cannot reach NATS at " + list + " (" + natsStatus_GetText(s) +
                    "): start it (`pyoco server --with-nats` starts one), or give its address "
                    "with --nats URL or PYOCO_NATS_URL");
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = options.timeout.count();
  s = natsConnection_JetStream(&handles_->js, handles_->nc, &jo);
  if (s != NATS_OK) {
    natsConnection_Destroy(handles_->nc);
    throw_nats("cannot use JetStream on " + list, s);
  }
}

Connection::~Connection() {
  if (handles_->js != nullptr) jsCtx_Destroy(handles_->js);
  if (handles_->nc != nullptr) {
    natsConnection_Close(handles_->nc);
    natsConnection_Destroy(handles_->nc);
  }
}

const ConnectOptions& Connection::options() const { return handles_->options; }

std::string Connection::connected_url() const {
  char buffer[256] = {0};
  if (natsConnection_GetConnectedUrl(handles_->nc, buffer, sizeof buffer) != NATS_OK) return {};
  return buffer;
}

}  // namespace pyoco::cluster
