// Webhooks: each run's end POSTed as JSON to PYOCO_WEBHOOK_URL, signed,
// from a durable consumer of PYOCO_EVENTS (`pyoco_webhooks`) that the
// gateways share, so that each end is sent by one gateway, retried with
// backoff when the receiver fails or does not answer, and dead-lettered
// (`webhook_failed`) when the retries run out. Senders are threads of
// their own: a slow or dead receiver never delays a run.
#pragma once

#include <pyoco/cluster/connection.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace pyoco::server {

struct WebhookOptions {
  std::string url;      // http://host:port/path or https://...
  std::string ca_file;  // PYOCO_WEBHOOK_CA_FILE: https: a PEM CA to trust besides the system's
  std::chrono::milliseconds timeout{std::chrono::seconds(3)};  // PYOCO_WEBHOOK_TIMEOUT
  int retries = 1;                                             // PYOCO_WEBHOOK_RETRIES
  std::string secret;                                          // PYOCO_WEBHOOK_SECRET
  std::set<std::string> events;  // PYOCO_WEBHOOK_EVENTS, e.g. run.failed; empty: every run end
  std::size_t senders = 4;       // POSTs at once
};

// Nullopt when PYOCO_WEBHOOK_URL is unset or empty. Throws
// std::invalid_argument naming the variable for a bad value.
std::optional<WebhookOptions> webhook_options_from_env();

// The hex HMAC-SHA256 of "<timestamp>.<body>" with `secret`: what
// X-Pyoco-Signature carries after "sha256=".
std::string webhook_signature(const std::string& secret, const std::string& timestamp,
                              const std::string& body);

class WebhookSender {
 public:
  // Creates the `pyoco_webhooks` consumer if it is missing (it then
  // delivers the runs that end from now on). Throws cluster::NatsError.
  WebhookSender(cluster::Connection& nats, WebhookOptions options);
  ~WebhookSender();  // stops: what is being sent is sent again later
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace pyoco::server
