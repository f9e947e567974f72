#include <pyoco/cluster/connection.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include <pyoco/cluster/nats_handles.hpp>

namespace pyoco::cluster {

kvStore* open_bucket(Connection& nats, const char* name) {
  kvStore* kv = nullptr;
  const natsStatus s = js_KeyValue(&kv, nats.handles().js, name);
  if (s == NATS_NOT_FOUND) {
    throw NatsError(std::string("bucket ") + name + " is missing on " + nats.connected_url() +
                    ": run `pyoco cluster init`");
  }
  if (s != NATS_OK) throw_nats(std::string("cannot open bucket ") + name, s);
  return kv;
}

std::string nats_error_message(const std::string& what, natsStatus s, jsErrCode jerr) {
  std::string message = what + ": " + natsStatus_GetText(s);
  if (static_cast<int>(jerr) != 0)
    message += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0') {
    const std::string detail(last);
    if (detail != natsStatus_GetText(s)) message += ": " + detail;
  }
  return message;
}

void throw_nats(const std::string& what, natsStatus s, jsErrCode jerr) {
  const std::string message = nats_error_message(what, s, jerr);
  if (s == NATS_INVALID_ARG || s == NATS_INVALID_SUBJECT) throw NatsInvalidArgument(message);
  throw NatsError(message);
}

namespace {

namespace fs = std::filesystem;

// Each URL of a comma-separated list, redacted.
std::string redact_list(std::string_view list) {
  std::string out;
  for (std::size_t start = 0;;) {
    const std::size_t comma = list.find(',', start);
    out += redact_url(list.substr(start, comma - start));
    if (comma == std::string_view::npos) return out;
    out += ',';
    start = comma + 1;
  }
}

// A missing file is said as such, before cnats reports it as a failed
// handshake or an unreadable key.
void require_file(const fs::path& file, const std::string& what, const char* setting) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw NatsError("the " + what + " " + file.string() +
                    " does not exist or is not a file: check " + setting);
  }
}

// What to check when NATS refuses the credentials: the settings they came
// from; "" when none were given.
std::string credentials_advice(const ConnectOptions& o) {
  if (!o.user.empty()) return "check PYOCO_NATS_USER/PYOCO_NATS_PASSWORD";
  if (!o.token.empty()) return "check PYOCO_NATS_TOKEN";
  if (!o.creds_file.empty())
    return "check the .creds file " + o.creds_file.string() + " (--nats-creds or PYOCO_NATS_CREDS)";
  for (const std::string& url : o.servers) {
    if (redact_url(url) != url) return "check the credentials in the URL";
  }
  return "";
}

// The host of a server URL: no scheme, credentials, port or brackets.
std::string host_of(std::string_view url) {
  if (const auto scheme = url.find("://"); scheme != std::string_view::npos) {
    url.remove_prefix(scheme + 3);
  }
  url = url.substr(0, url.find_first_of("/?#"));
  if (const auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  if (!url.empty() && url.front() == '[') return std::string(url.substr(1, url.find(']') - 1));
  return std::string(url.substr(0, url.rfind(':')));
}

// The name the servers' TLS certificates must carry.
std::string expected_server_name(const ConnectOptions& o) {
  if (!o.tls_server_name.empty()) return o.tls_server_name;
  std::string name;
  for (const std::string& url : o.servers) {
    const std::string host = host_of(url);
    if (!name.empty() && host != name) {
      throw NatsError("NATS TLS: the servers are on different hosts (" + name + ", " + host +
                      "): set PYOCO_NATS_TLS_SERVER_NAME to the name their certificates carry");
    }
    name = host;
  }
  return name;
}

// A tls:// URL, a CA or a client certificate: the connection is TLS only.
bool wants_tls(const ConnectOptions& o) {
  return !o.tls_ca.empty() || !o.tls_cert.empty() ||
         std::any_of(o.servers.begin(), o.servers.end(),
                     [](const std::string& u) { return u.starts_with("tls://"); });
}

// What cnats said of the last failure on this thread, without its source location.
std::string last_nats_error() {
  const char* last = nats_GetLastError(nullptr);
  std::string detail = last != nullptr ? last : "";
  if (detail.starts_with('(') && detail.find("): ") != std::string::npos) {
    detail.erase(0, detail.find("): ") + 3);  // cnats's "(conn.c:733): " source location
  }
  return detail;
}

bool refused_credentials(natsStatus s, const std::string& detail) {
  return s == NATS_CONNECTION_AUTH_FAILED ||
         detail.find("Authorization Violation") != std::string::npos ||
         detail.find("Authentication") != std::string::npos;
}

// One line for a failed connect: what NATS said and what to do. cnats's
// own detail is quoted only for TLS, whose text names no secret.
std::string connect_error(const ConnectOptions& o, const std::string& list, natsStatus s) {
  const std::string detail = last_nats_error();
  if (refused_credentials(s, detail)) {
    const std::string advice = credentials_advice(o);
    if (advice.empty()) {
      return "NATS at " + list +
             " requires credentials (Authorization Violation): set PYOCO_NATS_USER and "
             "PYOCO_NATS_PASSWORD, PYOCO_NATS_TOKEN, or PYOCO_NATS_CREDS (a `pyoco server "
             "--with-nats` listening beyond loopback writes them to DIR/nats-client.env)";
    }
    return "NATS at " + list + " refused the credentials (Authorization Violation): " + advice;
  }
  if (s == NATS_SECURE_CONNECTION_REQUIRED) {
    return "NATS at " + list +
           " requires TLS: use a tls:// URL, and give the CA that signed its "
           "certificate with --nats-tls-ca FILE or PYOCO_NATS_TLS_CA";
  }
  if (s == NATS_SECURE_CONNECTION_WANTED) {
    return "NATS at " + list +
           " does not offer TLS, which was asked for (a tls:// URL, a CA or a "
           "client certificate): turn TLS on in nats-server, or connect without it";
  }
  if (s == NATS_SSL_ERROR && detail.find("mismatch") != std::string::npos) {
    return "TLS with NATS at " + list + " failed (" + detail +
           "): the server's certificate is not made for " + expected_server_name(o) +
           ": connect by a name it carries, or set PYOCO_NATS_TLS_SERVER_NAME to it";
  }
  if (s == NATS_SSL_ERROR) {
    return "TLS with NATS at " + list + " failed (" + (detail.empty() ? "SSL error" : detail) +
           "): give the CA that signed the server's certificate with --nats-tls-ca FILE or "
           "PYOCO_NATS_TLS_CA";
  }
  // With TLS 1.3 a server checks the client's certificate after the
  // handshake, and then only closes the connection.
  if (s == NATS_PROTOCOL_ERROR && wants_tls(o) && o.tls_cert.empty()) {
    return "NATS at " + list +
           " closed the TLS connection at once: it may require a client certificate; give it "
           "with --nats-tls-cert FILE and --nats-tls-key FILE (or PYOCO_NATS_TLS_CERT and "
           "PYOCO_NATS_TLS_KEY)";
  }
  return "cannot reach NATS at " + list + " (" + natsStatus_GetText(s) +
         "): start it (`pyoco server --with-nats` starts one), or give its address with --nats "
         "URL or PYOCO_NATS_URL";
}

// Credentials and TLS onto cnats's options; NatsError for settings that
// cannot work, before any connection is tried.
natsStatus apply_security(natsOptions* opts, const ConnectOptions& o) {
  const int kinds = static_cast<int>(!o.user.empty() || !o.password.empty()) +
                    static_cast<int>(!o.token.empty()) + static_cast<int>(!o.creds_file.empty());
  if (kinds > 1) {
    throw NatsError(
        "NATS credentials: give one kind, a user and password (PYOCO_NATS_USER, "
        "PYOCO_NATS_PASSWORD), a token (PYOCO_NATS_TOKEN) or a .creds file (PYOCO_NATS_CREDS)");
  }
  if (o.user.empty() != o.password.empty()) {
    throw NatsError(o.user.empty() ? "NATS credentials: PYOCO_NATS_PASSWORD needs PYOCO_NATS_USER"
                                   : "NATS credentials: PYOCO_NATS_USER needs PYOCO_NATS_PASSWORD");
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    throw NatsError(
        "NATS TLS: a client certificate needs its key: give both --nats-tls-cert and "
        "--nats-tls-key (or PYOCO_NATS_TLS_CERT and PYOCO_NATS_TLS_KEY)");
  }
  natsStatus s = NATS_OK;
  if (!o.user.empty()) s = natsOptions_SetUserInfo(opts, o.user.c_str(), o.password.c_str());
  if (s == NATS_OK && !o.token.empty()) s = natsOptions_SetToken(opts, o.token.c_str());
  if (s == NATS_OK && !o.creds_file.empty()) {
    require_file(o.creds_file, ".creds file", "--nats-creds or PYOCO_NATS_CREDS");
    s = natsOptions_SetUserCredentialsFromFiles(opts, o.creds_file.c_str(), nullptr);
  }
  if (s == NATS_OK && wants_tls(o)) {
    s = natsOptions_SetSecure(opts, true);
    // cnats checks the certificate's name only when told which to expect:
    // without it any certificate of the CA would do, a worker's included.
    const std::string name = expected_server_name(o);
    if (s == NATS_OK) s = natsOptions_SetExpectedHostname(opts, name.c_str());
  }
  if (s == NATS_OK && !o.tls_ca.empty()) {
    require_file(o.tls_ca, "TLS CA file", "--nats-tls-ca or PYOCO_NATS_TLS_CA");
    s = natsOptions_LoadCATrustedCertificates(opts, o.tls_ca.c_str());
    if (s != NATS_OK) {
      throw NatsError("cannot load the TLS CA file " + o.tls_ca.string() +
                      " (not a PEM certificate?): check --nats-tls-ca or PYOCO_NATS_TLS_CA");
    }
  }
  if (s == NATS_OK && !o.tls_cert.empty()) {
    require_file(o.tls_cert, "TLS certificate", "--nats-tls-cert or PYOCO_NATS_TLS_CERT");
    require_file(o.tls_key, "TLS key", "--nats-tls-key or PYOCO_NATS_TLS_KEY");
    s = natsOptions_LoadCertificatesChain(opts, o.tls_cert.c_str(), o.tls_key.c_str());
    if (s != NATS_OK) {
      throw NatsError("cannot load the TLS certificate " + o.tls_cert.string() + " with key " +
                      o.tls_key.string() +
                      " (not PEM, or not a pair?): check --nats-tls-cert and --nats-tls-key");
    }
  }
  return s;
}

}  // namespace

std::string redact_url(std::string_view url) {
  const std::size_t scheme = url.find("://");
  const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const std::string_view authority = url.substr(start, url.find_first_of("/?#", start) - start);
  const std::size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  const std::size_t colon = authority.substr(0, at).find(':');
  std::string out(url.substr(0, start));
  out += colon == std::string_view::npos ? std::string("***")
                                         : std::string(authority.substr(0, colon)) + ":***";
  out += url.substr(start + at);
  return out;
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
    if (url.empty()) {
      throw NatsError("NATS server list \"" + redact_list(list) + "\" has an empty entry");
    }
    const std::size_t scheme = url.find("://");
    if (scheme == std::string::npos) {
      url = "nats://" + url;
    } else if (url.compare(0, scheme, "nats") != 0 && url.compare(0, scheme, "tls") != 0) {
      throw NatsError("NATS server \"" + redact_url(url) + "\": the scheme is nats:// (or tls://)");
    }
    out.push_back(url);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace {

// Closes and frees `h`'s connection. Its callbacks point at `h`: they go
// only once the closed callback, cnats's last, has run (it is queued
// behind any other).
void close_connection(Connection::Handles& h) {
  natsConnection_Close(h.nc);
  std::unique_lock lock(h.closing);
  h.closed_cv.wait_for(lock, std::chrono::seconds(5), [&] { return h.closed; });
  lock.unlock();
  natsConnection_Destroy(h.nc);
  h.nc = nullptr;
}

}  // namespace

Connection::Connection(const ConnectOptions& options) : handles_(std::make_unique<Handles>()) {
  handles_->options = options;
  std::string list;
  for (const std::string& s : options.servers) list += (list.empty() ? "" : ",") + redact_url(s);
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
  auto set_up = [](natsConnection*, void* handles) { static_cast<Handles*>(handles)->up = true; };
  auto set_down = [](natsConnection*, void* handles) {
    static_cast<Handles*>(handles)->up = false;
  };
  // The last callback cnats makes for a connection; ~Connection waits for it.
  auto set_closed = [](natsConnection*, void* handles) {
    auto* h = static_cast<Handles*>(handles);
    h->up = false;
    std::lock_guard lock(h->closing);
    h->closed = true;
    h->closed_cv.notify_all();
  };
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, set_up, handles_.get());
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, set_down, handles_.get());
  if (s == NATS_OK) s = natsOptions_SetClosedCB(opts, set_closed, handles_.get());
  handles_->up = true;  // once Connect returns; a drop after it is told by the callbacks
  try {
    if (s == NATS_OK) s = apply_security(opts, options);
  } catch (...) {
    natsOptions_Destroy(opts);
    throw;
  }
  if (s == NATS_OK) s = natsConnection_Connect(&handles_->nc, opts);
  // cnats 3.4.1 now and then sends its CONNECT without the nonce's
  // signature (memory it did not set: about 1 connect in 150 with
  // MALLOC_PERTURB_), and the server refuses a valid .creds user
  // ("Signature missing"). Such a refusal is tried once more; wrong
  // credentials are refused twice and reported as before.
  if (s != NATS_OK && !options.creds_file.empty() && refused_credentials(s, last_nats_error())) {
    s = natsConnection_Connect(&handles_->nc, opts);
  }
  natsOptions_Destroy(opts);
  if (s != NATS_OK) throw NatsError(connect_error(options, list, s));
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = options.timeout.count();
  s = natsConnection_JetStream(&handles_->js, handles_->nc, &jo);
  if (s != NATS_OK) {
    close_connection(*handles_);
    throw_nats("cannot use JetStream on " + list, s);
  }
}

Connection::~Connection() {
  if (handles_->js != nullptr) jsCtx_Destroy(handles_->js);
  if (handles_->nc != nullptr) close_connection(*handles_);
}

const ConnectOptions& Connection::options() const { return handles_->options; }

bool Connection::connected() const { return handles_->up.load(); }

std::string Connection::connected_url() const {
  char buffer[256] = {0};
  if (natsConnection_GetConnectedUrl(handles_->nc, buffer, sizeof buffer) != NATS_OK) return {};
  return redact_url(buffer);
}

}  // namespace pyoco::cluster
