// Webhooks as receivers meet them: a run's end POSTed, signed, retried with
// backoff after a 500, given up (a dead letter) on a receiver that never
// answers in time without delaying any run, and filtered by event.
#include <pyoco/server/http.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <mutex>
#include <thread>

#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "self_signed.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct Received {
  std::string body, signature, timestamp, delivery, event;
  std::chrono::steady_clock::time_point at;
  unsigned answered = 0;
};

// A receiver on a free port: /flaky answers 500 to a delivery's first try
// and 200 after, /slow answers after 8 s, /ok answers 200.
struct Receiver {
  std::mutex mutex;
  std::vector<Received> got;
  std::unique_ptr<server::HttpServer> http;

  bool tls = false;

  // With `certificate`: an HTTPS receiver.
  explicit Receiver(const CertificateFiles* certificate = nullptr) : tls(certificate != nullptr) {
    auto router = std::make_shared<server::Router>();
    auto record = [this](const server::Request& r, unsigned status) {
      std::lock_guard lock(mutex);
      got.push_back({r.body(), std::string(r["X-Pyoco-Signature"]),
                     std::string(r["X-Pyoco-Timestamp"]), std::string(r["X-Pyoco-Delivery"]),
                     std::string(r["X-Pyoco-Event"]), std::chrono::steady_clock::now(), status});
    };
    router->add(http::verb::post, "/flaky", server::kPublic,
                [this, record](const server::Request& r, auto&, auto&) {
                  bool first = true;
                  {
                    std::lock_guard lock(mutex);
                    for (const auto& g : got) first = first && g.delivery != r["X-Pyoco-Delivery"];
                  }
                  record(r, first ? 500 : 200);
                  return server::json_response(first ? 500 : 200, json::object{});
                });
    router->add(http::verb::post, "/slow", server::kPublic,
                [record](const server::Request& r, auto&, auto&) {
                  record(r, 0);
                  std::this_thread::sleep_for(8s);  // well past the sender's timeout
                  return server::json_response(200, json::object{});
                });
    router->add(http::verb::post, "/ok", server::kPublic,
                [record](const server::Request& r, auto&, auto&) {
                  record(r, 200);
                  return server::json_response(200, json::object{});
                });
    server::ListenOptions lo;
    lo.port = 0;
    lo.handler_threads = 8;
    if (certificate != nullptr) {
      lo.tls_cert = certificate->cert;
      lo.tls_key = certificate->key;
    }
    http = std::make_unique<server::HttpServer>(router, lo);
  }
  std::string url(const std::string& path) const {
    return (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(http->port()) + path;
  }
  std::vector<Received> wait_for(std::size_t n, std::chrono::seconds deadline = 30s) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      {
        std::lock_guard lock(mutex);
        if (got.size() >= n || std::chrono::steady_clock::now() > until) return got;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
};

std::string hmac_hex(const std::string& key, const std::string& message) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), md, &len);
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) out += hex[md[i] >> 4], out += hex[md[i] & 15];
  return out;
}

struct Flows {
  TempDir dir;
  Flows() {
    write_text(dir.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
  }
};

std::unique_ptr<Server> gateway(const NatsServer& nats, const Flows& flows,
                                std::map<std::string, std::string> env) {
  return std::make_unique<Server>(std::vector<std::string>{"--nats", nats.url(), "--with-worker",
                                                           "--flows", flows.dir.path().string()},
                                  std::move(env));
}

double dlq_letters(const Server& s) {
  const std::string text = s.call(http::verb::get, "/metrics").body;
  const auto at = text.find("\npyoco_dlq_messages ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + 20));
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_run_end_is_posted_signed_and_retried_after_a_500) {
  NatsServer nats;
  Flows flows;
  Receiver receiver;
  auto s = gateway(nats, flows,
                   {{"PYOCO_WEBHOOK_URL", receiver.url("/flaky")},
                    {"PYOCO_WEBHOOK_TIMEOUT", "0.5"},
                    {"PYOCO_WEBHOOK_RETRIES", "2"},
                    {"PYOCO_WEBHOOK_SECRET", "s3cret"}});
  BOOST_TEST(s->client({"submit", "hello", "--wait"}).exit_code == 0);
  const auto got = receiver.wait_for(2);
  BOOST_TEST_REQUIRE(got.size() == 2u);
  BOOST_TEST(got[0].answered == 500u);
  BOOST_TEST(got[1].answered == 200u);
  BOOST_TEST(got[0].delivery == got[1].delivery);  // one delivery, tried twice
  BOOST_TEST((got[1].at - got[0].at >= 900ms));    // with a backoff between
  for (const Received& r : got) {
    BOOST_TEST(r.event == "run.completed");
    BOOST_TEST(r.signature == "sha256=" + hmac_hex("s3cret", r.timestamp + "." + r.body));
    const double ts = std::stod(r.timestamp);
    BOOST_TEST(std::abs(ts - static_cast<double>(std::time(nullptr))) < 60);
    const json::object p = json::parse(r.body).as_object();
    BOOST_TEST(p.at("event").as_string() == "run.completed");
    BOOST_TEST(p.at("status").as_string() == "COMPLETED");
    BOOST_TEST(p.at("flow_name").as_string() == "hello");
    BOOST_TEST(p.at("duration_ms").to_number<double>() >= 0);
    BOOST_TEST(p.at("started_at").is_number());
    BOOST_TEST(p.at("ended_at").is_number());
    const json::object& tasks = p.at("tasks").as_object();
    BOOST_TEST(tasks.size() == 3u);
    for (const auto& [node, t] : tasks) {
      BOOST_TEST_CONTEXT(node) {
        BOOST_TEST(t.at("state").as_string() == "SUCCEEDED");
        BOOST_TEST(t.at("duration_ms").to_number<double>() >= 0);
      }
    }
    BOOST_TEST(p.at("metadata").at("tag").as_string() == "default");
  }
  // A tampered body no longer matches its signature.
  BOOST_TEST(got[0].signature !=
             "sha256=" + hmac_hex("s3cret", got[0].timestamp + "." + got[0].body + " "));
}

BOOST_AUTO_TEST_CASE(a_receiver_that_never_answers_delays_no_run_and_ends_in_a_dead_letter) {
  NatsServer nats;
  Flows flows;
  Receiver receiver;
  auto s = gateway(nats, flows,
                   {{"PYOCO_WEBHOOK_URL", receiver.url("/slow")},
                    {"PYOCO_WEBHOOK_TIMEOUT", "5"},
                    {"PYOCO_WEBHOOK_RETRIES", "1"}});
  // A run its webhook held would take two 5 s timeouts (10 s) more: three
  // such runs 30 s, far past the bound, which leaves a slow host its slack.
  // Each run on its own: a receiver that held only one of them shows too.
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(s->client({"submit", "hello", "--wait"}).exit_code == 0);
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST((took < 8s), "the receiver held run " << i << ": "
                                                     << std::chrono::duration<double>(took).count()
                                                     << " s");
  }
  const auto until = std::chrono::steady_clock::now() + 90s;
  while (dlq_letters(*s) < 3 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  BOOST_TEST(dlq_letters(*s) == 3);                    // webhook_failed, one per run
  BOOST_TEST(receiver.wait_for(6, 90s).size() == 6u);  // each tried twice (RETRIES=1)
}

BOOST_AUTO_TEST_CASE(only_the_events_asked_for_are_posted) {
  NatsServer nats;
  Flows flows;
  Receiver receiver;
  auto s =
      gateway(nats, flows,
              {{"PYOCO_WEBHOOK_URL", receiver.url("/ok")}, {"PYOCO_WEBHOOK_EVENTS", "run.failed"}});
  BOOST_TEST(s->client({"submit", "hello", "--wait"}).exit_code == 0);
  BOOST_TEST(s->client({"submit", "no_such_flow", "--wait"}).exit_code != 0);
  const auto got = receiver.wait_for(1);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].event == "run.failed");
  std::this_thread::sleep_for(1s);  // time for a wrong second post to arrive, if one could
  BOOST_TEST(receiver.wait_for(2, 0s).size() == 1u);

  // A bad setting is refused at start, naming the variable.
  const ProcessResult bad = run_pyoco(
      {"server", "--nats", nats.url(), "--listen", "127.0.0.1:0"},
      {.env = {{"PYOCO_WEBHOOK_URL", receiver.url("/ok")}, {"PYOCO_WEBHOOK_RETRIES", "-1"}},
       .timeout = 20s});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(bad.err.find("PYOCO_WEBHOOK_RETRIES=-1") != std::string::npos, bad.err);
}

// A receiver's URL no POST could reach is refused at start, naming what is
// wrong; one with a user and password too, without showing them (the URL
// was printed at start and kept in warnings and dead letters, and the
// user:password part was taken for the host).
BOOST_AUTO_TEST_CASE(a_webhook_url_that_cannot_work_is_refused_at_start) {
  NatsServer nats;
  auto start = [&](const std::string& url) {
    return run_pyoco({"server", "--nats", nats.url(), "--listen", "127.0.0.1:0"},
                     {.env = {{"PYOCO_WEBHOOK_URL", url}}, .timeout = 10s});
  };
  const ProcessResult credentials = start("http://user:secret@127.0.0.1:1/hook/tok");
  BOOST_TEST(credentials.exit_code == 2);
  BOOST_TEST(credentials.out.find("secret") == std::string::npos, credentials.out);
  BOOST_TEST(credentials.err.find("secret") == std::string::npos, credentials.err);
  BOOST_TEST(credentials.err.find("put a token in the path") != std::string::npos, credentials.err);
  BOOST_TEST(credentials.err.find("PYOCO_WEBHOOK_SECRET") != std::string::npos, credentials.err);
  for (const auto& [url, why] : std::vector<std::pair<std::string, std::string>>{
           {"http://", "no host"},
           {"http://127.0.0.1:99999/x", "the port \"99999\" is not 1 to 65535"},
           {"http://127.0.0.1:/x", "the port \"\" is not 1 to 65535"},
           {"http://[::1/x", "no closing ]"},
           {"http://a b/x", "the host \"a b\" is not a name or an address"}}) {
    const ProcessResult bad = start(url);
    BOOST_TEST(bad.exit_code == 2, url);
    BOOST_TEST(bad.err.find("PYOCO_WEBHOOK_URL=" + url + ": ") != std::string::npos, bad.err);
    BOOST_TEST(bad.err.find(why) != std::string::npos, bad.err);
  }
}

BOOST_AUTO_TEST_CASE(an_https_receiver_is_posted_to_when_its_ca_is_trusted) {
  NatsServer nats;
  Flows flows;
  TempDir dir;
  const CertificateFiles cert = make_self_signed(dir.path());
  Receiver receiver(&cert);
  auto s = gateway(nats, flows,
                   {{"PYOCO_WEBHOOK_URL", receiver.url("/ok")},
                    {"PYOCO_WEBHOOK_CA_FILE", cert.cert.string()},
                    {"PYOCO_WEBHOOK_SECRET", "s3cret"}});
  BOOST_TEST(s->client({"submit", "hello", "--wait"}).exit_code == 0);
  const auto got = receiver.wait_for(1);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].signature ==
             "sha256=" + hmac_hex("s3cret", got[0].timestamp + "." + got[0].body));
  BOOST_TEST(got[0].event == "run.completed");
}
