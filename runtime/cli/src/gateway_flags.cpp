#include "gateway_flags.hpp"
#include <pyoco/core/value.hpp>

#include <boost/json.hpp>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace pyoco::cli {

namespace json = boost::json;

void GatewayFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--server", server,
                  "The gateway (default: PYOCO_SERVER, else http://127.0.0.1:8000)")
      ->type_name("URL");
  cmd->add_option("--api-key", api_key,
                  "The API key to send, when the gateway requires one (default: PYOCO_API_KEY; "
                  "prefer it: a flag shows in ps)")
      ->type_name("KEY");
  cmd->add_option("--ca-file", ca_file,
                  "For an https:// gateway: a PEM CA certificate to trust besides the system's "
                  "(default: PYOCO_CA_FILE)")
      ->type_name("FILE");
}

server::Endpoint GatewayFlags::endpoint() const {
  auto setting = [](const std::string& flag, const char* name, const char* fallback) {
    if (!flag.empty()) return flag;
    const char* env = std::getenv(name);
    return std::string(env != nullptr && *env != '\0' ? env : fallback);
  };
  return server::Endpoint{setting(server, "PYOCO_SERVER", "http://127.0.0.1:8000"),
                          setting(api_key, "PYOCO_API_KEY", ""),
                          setting(ca_file, "PYOCO_CA_FILE", "")};
}

json::value GatewayFlags::call(boost::beast::http::verb method, const std::string& target,
                               const std::string& body, const std::string& type,
                               const std::map<std::string, std::string>& headers) const {
  // The gateway's 503 busy with Retry-After did nothing (a push refused
  // before its body was read): sent again after that long, for up to two
  // minutes.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  server::ClientResponse r;
  for (;;) {
    r = server::http_call(endpoint(), method, target, body, type, headers,
                          std::chrono::seconds(120));
    int wait = 0;
    const auto [end, err] =
        std::from_chars(r.retry_after.data(), r.retry_after.data() + r.retry_after.size(), wait);
    // Only the gateway's own "busy", which it answers before doing
    // anything: a proxy's 503 on a submit may come after the run was made.
    boost::system::error_code parse_error;
    const json::value answer = core::parse_json(r.body, parse_error);
    const bool gateway_busy = !parse_error && answer.is_object() &&
                              answer.as_object().contains("error") &&
                              answer.as_object().at("error") == "busy";
    if (r.status != 503 || !gateway_busy || err != std::errc() ||
        end != r.retry_after.data() + r.retry_after.size() || wait < 0 || wait > 60 ||
        std::chrono::steady_clock::now() + std::chrono::seconds(wait) > give_up) {
      break;
    }
    std::cerr << "pyoco: the gateway is busy (503); trying again in " << wait << " s\n";
    std::this_thread::sleep_for(std::chrono::seconds(wait));
  }
  boost::system::error_code ec;
  json::value v = core::parse_json(r.body, ec);
  if (r.status >= 400) {
    throw server::ClientError("the gateway answered " + std::to_string(r.status) + ": " +
                              server::answer_detail(r.body));
  }
  if (ec) throw server::ClientError("the gateway answered something that is not JSON");
  if (!r.stale.empty()) {
    std::cerr << "pyoco: the gateway answered from memory (" << r.stale
              << "); this may be out of date\n";
  }
  return v;
}

}  // namespace pyoco::cli
