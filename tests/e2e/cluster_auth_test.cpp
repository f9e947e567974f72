// API keys on a real gateway and a real nats-server: the route table walked
// route by route with no key, bad keys, a revoked, an expired, an
// out-of-scope and another tenant's key, and the right one; a revoke
// reaching two gateways within a second; failed keys rate-limited per
// address; pyoco-server's records imported with `pyoco keys import`; and
// `pyoco client` against a gateway that requires keys, which never logs one.
#include <pyoco/cluster/api_keys.hpp>
#include <pyoco/cluster/nats_handles.hpp>
#include <pyoco/cluster/resources.hpp>
#include <pyoco/cluster/run_protocol.hpp>
#include <pyoco/cluster/worker_registry.hpp>
#include <pyoco/plugins/package.hpp>
#include <pyoco/server/client.hpp>
#include <pyoco/server/gateway.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "ports.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct Key {
  std::string id;
  std::string text;  // pyoco_<id>.<secret>
};

// `pyoco keys create ... --json`, as an operator makes a key.
Key create_key(const NatsServer& nats, const std::string& tenant, const std::string& scopes,
               std::vector<std::string> more = {}) {
  std::vector<std::string> args{"keys", "create", "--tenant", tenant,    "--scope",
                                scopes, "--json", "--nats",   nats.url()};
  args.insert(args.end(), more.begin(), more.end());
  const ProcessResult r = run_pyoco(args);
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.out << r.err);
  const json::object o = json::parse(r.out).as_object();
  return Key{std::string(o.at("key_id").as_string()), std::string(o.at("api_key").as_string())};
}

void revoke_key(const NatsServer& nats, const Key& key) {
  const ProcessResult r = run_pyoco({"keys", "revoke", key.id, "--nats", nats.url()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.out << r.err);
}

// A gateway in this process, so that the test reads the very route table it
// serves.
struct Gateway {
  cluster::Connection nats;
  std::shared_ptr<server::Router> router;
  std::unique_ptr<server::HttpServer> http;
  std::string url;

  explicit Gateway(const NatsServer& n, server::AuthOptions auth = {})
      : nats(cluster::ConnectOptions{.servers = {n.url()}}) {
    cluster::init_resources(nats, {});
    server::GatewayOptions options;
    options.auth = auth;
    router = server::gateway_routes(nats, options);
    server::ListenOptions lo;
    lo.port = 0;
    http = std::make_unique<server::HttpServer>(router, lo);
    url = "http://127.0.0.1:" + std::to_string(http->port());
  }

  server::ClientResponse call(http::verb method, const std::string& target, const std::string& key,
                              const std::string& body = {},
                              const std::map<std::string, std::string>& headers = {}) const {
    return server::http_call(server::Endpoint{url, key, {}}, method, target, body,
                             "application/json", headers, 10s);
  }
};

// Polls until `done` or the deadline; true when it held.
template <class F>
bool eventually(F done, std::chrono::milliseconds within = 20s) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// `request` as written, on a connection of its own; what came back until
// the gateway closed it (the request says Connection: close).
std::string raw_exchange(int port, const std::string& request) {
  const int fd = connect_loopback(port);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::write(fd, request.data(), request.size()) ==
                static_cast<ssize_t>(request.size()));
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) answer.append(buffer, n);
  ::close(fd);
  return answer;
}

std::string run_id_of(const server::ClientResponse& r) {
  BOOST_REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
  return std::string(json::parse(r.body).at("run_id").as_string());
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_route_of_the_table_answers_each_kind_of_caller) {
  NatsServer nats;
  Gateway g(nats, server::AuthOptions{.max_failures = 1000000});  // refusals are the point here
  // The table says who may call what: only /health and the dashboard's
  // page and files (no data in them: the page asks the API for it) are open.
  BOOST_TEST(g.router->routes().size() >= 12u);
  for (const server::Route& r : g.router->routes()) {
    BOOST_TEST((r.scope != server::kPublic || r.pattern == "/health" || r.pattern == "/" ||
                r.pattern.rfind("/dashboard/", 0) == 0),
               r.pattern);
  }

  // docs/security.md's table of routes and scopes is the table's.
  const std::string doc = read_text(source_dir() / "docs/security.md");
  for (const server::Route& r : g.router->routes()) {
    const std::string row =
        "| `" + std::string(http::to_string(r.method)) + " " + r.pattern + "` | " +
        (r.scope == server::kPublic ? std::string("none")
                                    : "`" + cluster::scope_names(r.scope).front() + "`");
    BOOST_TEST(doc.find(row) != std::string::npos, "docs/security.md lacks the row " << row);
  }

  std::map<unsigned, Key> right;  // tenant a: a key per scope, holding only it
  for (unsigned scope :
       {cluster::kScopeRunsRead, cluster::kScopeRunsWrite, cluster::kScopePluginsWrite,
        cluster::kScopeMetricsRead, cluster::kScopeAdmin}) {
    right[scope] = create_key(nats, "a", cluster::scope_names(scope).front());
  }
  const Key revoked = create_key(nats, "a", "admin");
  const Key expired = create_key(nats, "a", "admin", {"--expires", "1s"});
  const Key other = create_key(nats, "b", "admin");
  const Key bad_secret{right[cluster::kScopeAdmin].id,
                       "pyoco_" + right[cluster::kScopeAdmin].id + ".notTheSecretOfThisKey0"};
  const Key unknown{"", "pyoco_0000000000000000dead.notTheSecretOfThisKey0"};
  const Key garbage{"", "let me in"};

  // A run of tenant a's, and a worker running it.
  const std::string run = run_id_of(g.call(
      http::verb::post, "/runs", right[cluster::kScopeRunsWrite].text, R"({"flow_name":"hello"})"));
  cluster::put_worker_record(g.nats, json::object{{"worker_id", "w1"},
                                                  {"instance_id", "i1"},
                                                  {"tags", json::array{"default"}},
                                                  {"slots", 1},
                                                  {"running", json::array{json::value(run)}},
                                                  {"state", "RUNNING"},
                                                  {"last_seen_at", cluster::epoch_now()}});
  const std::string reader = right[cluster::kScopeRunsRead].text;
  BOOST_REQUIRE(eventually([&] {
    return g.call(http::verb::get, "/runs", reader).body.find(run) != std::string::npos &&
           g.call(http::verb::get, "/workers", reader).body.find("w1") != std::string::npos;
  }));
  revoke_key(nats, revoked);
  BOOST_REQUIRE(eventually([&] {  // the revoke and the expiry have come
    return g.call(http::verb::get, "/runs", revoked.text).status == 403 &&
           g.call(http::verb::get, "/runs", expired.text).status == 403;
  }));

  // A body each route accepts from the right caller.
  const plugins::PluginPackage package =
      plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/hello");
  const std::map<std::string, std::string> bodies{
      {"POST /runs", R"({"flow_name":"hello"})"},
      {"POST /plugins", package.bytes},
      {"POST /runs/yaml",
       "flow: {graph: a}\ntasks:\n  a: {use: std/sleep, inputs: {seconds: 0}}\n"},
      {"PATCH /workers/{id}", R"({"hidden":true})"},
  };
  for (const server::Route& r : g.router->routes()) {
    std::string path = r.pattern;
    const bool of_a_run = path.rfind("/runs/{id}", 0) == 0;
    for (const auto& [param, value] :
         std::map<std::string, std::string>{{"{id}", of_a_run ? run : "w1"},
                                            {"{name}", package.manifest.name},
                                            {"{version}", package.manifest.version}}) {
      if (const auto at = path.find(param); at != std::string::npos) {
        path.replace(at, param.size(), value);
      }
    }
    const std::string name = std::string(http::to_string(r.method)) + " " + r.pattern;
    const std::string body = bodies.count(name) != 0 ? bodies.at(name) : "";
    BOOST_TEST_CONTEXT(name) {
      auto status = [&](const std::string& key) {
        return g.call(r.method, path, key, body).status;
      };
      if (r.scope == server::kPublic) {
        BOOST_TEST(status("") == 200u);
        continue;
      }
      BOOST_TEST(status("") == 401u);
      BOOST_TEST(status(garbage.text) == 403u);
      BOOST_TEST(status(unknown.text) == 403u);
      BOOST_TEST(status(bad_secret.text) == 403u);
      BOOST_TEST(status(revoked.text) == 403u);
      BOOST_TEST(status(expired.text) == 403u);
      const Key& wrong = right[r.scope == cluster::kScopeRunsRead ? cluster::kScopeRunsWrite
                                                                  : cluster::kScopeRunsRead];
      BOOST_TEST(status(wrong.text) == 403u);
      // Another tenant: a's run does not exist for it; lists leave it out.
      if (of_a_run) {
        BOOST_TEST(status(other.text) == 404u);
      } else if (r.method == http::verb::get && !r.stream) {
        const auto answer = g.call(r.method, path, other.text);
        BOOST_TEST(answer.status == 200u);
        BOOST_TEST(answer.body.find(run) == std::string::npos, answer.body);
      }
      const std::string& key = right[r.scope].text;
      if (r.stream) {  // an SSE route: a run's first event is its record
        std::string first;
        const bool feed = r.pattern == "/events";  // every run's, from the first
        server::http_stream(server::Endpoint{g.url, key, {}},
                            feed ? path + "?last_event_id=0" : path, "",
                            [&](const server::StreamEvent& e) {
                              first = e.event;
                              return false;
                            });
        BOOST_TEST(first == (feed ? "run" : "snapshot"));
      } else {
        const auto answer = g.call(r.method, path, key, body);
        BOOST_TEST((answer.status >= 200 && answer.status < 300), answer.status << answer.body);
      }
    }
  }
  // The feed of run events leaves other tenants' runs out: b, asking from
  // the stream's first event, hears of its own run first, never of a's.
  const std::string theirs =
      run_id_of(g.call(http::verb::post, "/runs", other.text, R"({"flow_name":"hello"})"));
  std::string first_heard;
  server::http_stream(server::Endpoint{g.url, other.text, {}}, "/events?last_event_id=0", "",
                      [&](const server::StreamEvent& e) {
                        first_heard = std::string(json::parse(e.data).at("run_id").as_string());
                        return false;
                      });
  BOOST_TEST(first_heard == theirs);
  // Tenant a sees its worker's run; tenant b sees the worker, not the run.
  BOOST_TEST(g.call(http::verb::get, "/workers?include_hidden=true", reader).body.find(run) !=
             std::string::npos);
  BOOST_TEST(g.call(http::verb::get, "/workers?include_hidden=true", other.text).body.find(run) ==
             std::string::npos);
  // Plugins are the cluster's: both tenants see the one a pushed, only a
  // the id of the key that pushed it.
  for (const char* route : {"/plugins", "/plugins/history"}) {
    const char* field = std::string(route) == "/plugins" ? "uploaded_by" : "by";
    const json::array own = json::parse(g.call(http::verb::get, route, reader).body).as_array();
    const json::array seen =
        json::parse(g.call(http::verb::get, route, other.text).body).as_array();
    BOOST_TEST_REQUIRE(!own.empty(), route);
    BOOST_TEST_REQUIRE(own.size() == seen.size(), route);
    BOOST_TEST(own.at(0).at(field).as_string() == right[cluster::kScopePluginsWrite].id, route);
    BOOST_TEST(seen.at(0).at(field).is_null(), route);
  }
}

BOOST_AUTO_TEST_CASE(tenants_never_meet_even_with_the_same_idempotency_key) {
  NatsServer nats;
  Gateway g(nats);
  const Key a = create_key(nats, "a", "runs:read,runs:write");
  const Key b = create_key(nats, "b", "runs:read,runs:write");
  const std::map<std::string, std::string> idem{{"Idempotency-Key", "nightly-2026-11-30"}};
  const std::string ra =
      run_id_of(g.call(http::verb::post, "/runs", a.text, R"({"flow_name":"hello"})", idem));
  const std::string rb =
      run_id_of(g.call(http::verb::post, "/runs", b.text, R"({"flow_name":"hello"})", idem));
  BOOST_TEST(ra != rb);
  BOOST_TEST(
      run_id_of(g.call(http::verb::post, "/runs", a.text, R"({"flow_name":"hello"})", idem)) == ra);
  BOOST_TEST(g.call(http::verb::get, "/runs/" + rb, a.text).status == 404u);
  BOOST_TEST(g.call(http::verb::post, "/runs/" + rb + "/cancel", a.text).status == 404u);
  BOOST_TEST(g.call(http::verb::get, "/runs/" + rb + "/logs", a.text).status == 404u);
  BOOST_TEST(g.call(http::verb::get, "/runs/" + rb + "/watch", a.text).status == 404u);
  BOOST_TEST(g.call(http::verb::get, "/runs/" + rb, b.text).status == 200u);
  BOOST_REQUIRE(eventually([&] {
    const std::string list = g.call(http::verb::get, "/runs", b.text).body;
    return list.find(rb) != std::string::npos;
  }));
  BOOST_TEST(g.call(http::verb::get, "/runs", b.text).body.find(ra) == std::string::npos);
  BOOST_TEST(g.call(http::verb::get, "/runs?limit=200&cursor=", a.text).body.find(rb) ==
             std::string::npos);
}

// An Idempotency-Key promises the same request: repeated with it (params
// in another order) it is the same run; with another body it is 422 and
// no run, never the old run handed back as if it were the new one.
BOOST_AUTO_TEST_CASE(an_idempotency_key_reused_with_another_request_is_refused) {
  NatsServer nats;
  Gateway g(nats);
  const Key a = create_key(nats, "a", "runs:read,runs:write");
  cluster::ResourceOptions t_queue;  // a second tag to submit to
  t_queue.tags = {"t"};
  cluster::init_resources(g.nats, t_queue);
  const std::map<std::string, std::string> idem{{"Idempotency-Key", "report-2026-12-01"}};
  const std::string first =
      run_id_of(g.call(http::verb::post, "/runs", a.text,
                       R"({"flow_name":"report","params":{"day":1,"x":[1]}})", idem));
  BOOST_TEST(run_id_of(g.call(http::verb::post, "/runs", a.text,
                              R"({"params":{"x":[1],"day":1},"flow_name":"report"})", idem)) ==
             first);
  for (const char* other : {R"({"flow_name":"report","params":{"day":2,"x":[1]}})",
                            R"({"flow_name":"other","params":{"day":1,"x":[1]}})",
                            R"({"flow_name":"report","params":{"day":1,"x":[1]},"tag":"t"})"}) {
    const auto r = g.call(http::verb::post, "/runs", a.text, other, idem);
    BOOST_TEST(r.status == 422u, other << ": " << r.status << " " << r.body);
    BOOST_TEST(r.body.find("\"idempotency_key_reused\"") != std::string::npos, r.body);
    BOOST_TEST(r.body.find("Idempotency-Key report-2026-12-01 was used for run " + first +
                           " with another request") != std::string::npos,
               r.body);
  }
  // The run is the first request's, untouched.
  const json::value record = json::parse(g.call(http::verb::get, "/runs/" + first, a.text).body);
  BOOST_TEST(record.at("params") == (json::object{{"day", 1}, {"x", json::array{1}}}), record);
}

// Within 3 s each (a second, with slack for a slow host; a gateway that
// missed the revoke would go on answering from its cached verification).
BOOST_AUTO_TEST_CASE(a_revoke_reaches_every_gateway_within_a_second) {
  NatsServer nats;
  Gateway one(nats), two(nats);
  const Key k = create_key(nats, "a", "runs:read");
  // Both have verified it (and cached the verification).
  BOOST_REQUIRE_EQUAL(one.call(http::verb::get, "/runs", k.text).status, 200u);
  BOOST_REQUIRE_EQUAL(two.call(http::verb::get, "/runs", k.text).status, 200u);
  revoke_key(nats, k);
  const auto revoked_at = std::chrono::steady_clock::now();
  for (const Gateway* g : {&one, &two}) {
    BOOST_TEST(
        eventually([&] { return g->call(http::verb::get, "/runs", k.text).status == 403; }, 3s));
  }
  BOOST_TEST_MESSAGE("both refused it " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::steady_clock::now() - revoked_at)
                                               .count()
                                        << " ms after the revoke");
  const auto r = one.call(http::verb::get, "/runs", k.text);
  BOOST_TEST(r.body.find("revoked") != std::string::npos, r.body);
  // Only the holder of its secret learns that: a guess is "not known", as
  // for a key that never was.
  const auto guess = two.call(http::verb::get, "/runs", "pyoco_" + k.id + ".guessing0000000000");
  BOOST_TEST(guess.status == 403u);
  BOOST_TEST(guess.body.find("revoked") == std::string::npos, guess.body);
  BOOST_TEST(guess.body.find("not known") != std::string::npos, guess.body);
}

// Someone holding a leaked key has the whole key, not its id: revoke takes
// it (and its visible `pyoco_<id>` part) and never prints the secret.
BOOST_AUTO_TEST_CASE(revoke_takes_the_whole_key_and_never_says_its_secret) {
  NatsServer nats;
  BOOST_TEST_REQUIRE(run_pyoco({"cluster", "init", "--nats", nats.url()}).exit_code == 0);
  const Key whole = create_key(nats, "a", "runs:read");
  const Key prefixed = create_key(nats, "a", "runs:read");
  const std::string secret = whole.text.substr(whole.text.find('.') + 1);

  const ProcessResult by_key = run_pyoco({"keys", "revoke", whole.text, "--nats", nats.url()});
  BOOST_TEST(by_key.exit_code == 0, by_key.err);
  BOOST_TEST(by_key.out.find("revoked " + whole.id) != std::string::npos, by_key.out);
  BOOST_TEST((by_key.out + by_key.err).find(secret) == std::string::npos);

  const ProcessResult by_prefix =
      run_pyoco({"keys", "revoke", "pyoco_" + prefixed.id, "--nats", nats.url()});
  BOOST_TEST(by_prefix.exit_code == 0, by_prefix.err);
  BOOST_TEST(by_prefix.out.find("revoked " + prefixed.id) != std::string::npos, by_prefix.out);

  const ProcessResult list = run_pyoco({"keys", "list", "--json", "--nats", nats.url()});
  BOOST_TEST_REQUIRE(list.exit_code == 0, list.err);
  const json::value keys = json::parse(list.out);
  for (const auto& k : keys.as_array()) {
    BOOST_TEST(!k.as_object().at("revoked_at").is_null(), k);
  }

  // A key nobody made: the id is named, the secret is not.
  const std::string unknown = "pyoco_0123456789abcdef01234567.aSecretNobodyMade0123456789";
  const ProcessResult none = run_pyoco({"keys", "revoke", unknown, "--nats", nats.url()});
  BOOST_TEST(none.exit_code == 1);
  BOOST_TEST(none.err.find("no key 0123456789abcdef01234567") != std::string::npos, none.err);
  BOOST_TEST(none.err.find("aSecretNobodyMade") == std::string::npos, none.err);
  const ProcessResult garbled =
      run_pyoco({"keys", "revoke", "not.a-key-at-all-but-a-secret", "--nats", nats.url()});
  BOOST_TEST(garbled.exit_code == 2);
  BOOST_TEST(garbled.err.find("neither a key id nor a whole key") != std::string::npos,
             garbled.err);
  BOOST_TEST(garbled.err.find("a-key-at-all-but-a-secret") == std::string::npos, garbled.err);
}

// A revoke ends the event streams its key has open, on every route that
// streams (they went on sending events to a revoked key for as long as the
// client stayed).
BOOST_AUTO_TEST_CASE(a_revoke_ends_the_streams_its_key_has_open) {
  NatsServer nats;
  Gateway g(nats);
  const Key k = create_key(nats, "a", "runs:read,runs:write");
  const std::string id =
      run_id_of(g.call(http::verb::post, "/runs", k.text, R"({"flow_name": "nobody_runs_it"})"));
  std::atomic<int> open{0}, ended{0};
  auto follow = [&](const std::string& target, const std::string& last_event_id) {
    return std::thread([&, target, last_event_id] {
      bool counted = false;
      try {
        server::http_stream({g.url, k.text, {}}, target, last_event_id, [&](const auto&) {
          if (!counted) ++open;
          counted = true;
          return true;
        });
      } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE(target << ": " << e.what());
      }
      ++ended;
    });
  };
  std::thread watch = follow("/runs/" + id + "/watch", "");
  std::thread events = follow("/events", "0");  // from the first: its run_submitted
  BOOST_TEST_REQUIRE(eventually([&] { return open == 2; }));
  revoke_key(nats, k);
  const bool both_ended = eventually([&] { return ended == 2; }, 10s);
  BOOST_TEST(both_ended, ended << " of 2 streams ended after the revoke");
  if (!both_ended) g.http->stop();  // ends them, so that the test ends
  watch.join();
  events.join();
  // Taken up again with the key, they are refused.
  BOOST_TEST(g.call(http::verb::get, "/runs/" + id + "/watch", k.text).status == 403u);

  // A key that expires while its stream is open: ended too.
  const Key brief = create_key(nats, "a", "runs:read", {"--expires", "4s"});
  std::atomic<bool> brief_ended{false};
  std::thread expiring([&] {
    try {
      server::http_stream({g.url, brief.text, {}}, "/runs/" + id + "/watch", "",
                          [](const auto&) { return true; });
    } catch (const std::exception& e) {
      BOOST_TEST_MESSAGE("expiring: " << e.what());
    }
    brief_ended = true;
  });
  const bool expired_ended = eventually([&] { return brief_ended.load(); }, 15s);
  BOOST_TEST(expired_ended);
  if (!expired_ended) g.http->stop();
  expiring.join();
}

// Wrong secrets for a real key id from many clients at once: KDFs past a
// core's share are answered 503 at once instead of queuing, so a key
// verified before and /health are answered meanwhile without waiting
// behind them.
// About a second of KDF a wrong secret; the sanitizers' build runs it an
// order of magnitude slower (past the client's 10 s), so fewer there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kVictimIterations = 200000;
#else
constexpr int kVictimIterations = 2000000;
#endif

BOOST_AUTO_TEST_CASE(a_flood_of_wrong_secrets_does_not_starve_good_keys_or_health) {
  NatsServer nats;
  // Many addresses, as it were; one KDF at a time, on any machine.
  Gateway g(nats, server::AuthOptions{.max_failures = 1000000, .max_kdfs = 1});
  const Key good = create_key(nats, "a", "runs:read");
  // The victim's record asks for 10x the default iterations: each wrong
  // secret costs a KDF of about a second, so a good key that queued behind
  // the flood's would wait several seconds, far past the bound below.
  Key victim;
  {
    const cluster::NewApiKey heavy = cluster::generate_api_key("a", cluster::kScopeRunsRead,
                                                               std::nullopt, "", kVictimIterations);
    cluster::ApiKeyStore keys(g.nats);
    BOOST_REQUIRE(keys.create(heavy.record));
    victim = Key{heavy.record.key_id, heavy.api_key};
  }
  BOOST_REQUIRE_EQUAL(g.call(http::verb::get, "/runs", good.text).status, 200u);
  std::atomic<bool> stop{false};
  std::atomic<int> busy{0}, refused{0};
  std::vector<std::thread> flood;
  for (int i = 0; i < 6; ++i) {
    flood.emplace_back([&, i] {
      const std::string wrong = "pyoco_" + victim.id + ".flooding000000000" + std::to_string(i);
      while (!stop) {
        // A wrong secret's KDF may outlast the client's 10 s under the
        // sanitizers: that flooder waits, the test goes on (it ended the
        // whole test binary, thrown on this thread).
        try {
          const auto r = g.call(http::verb::get, "/runs", wrong);
          if (r.status == 503 && r.body.find("\"busy\"") != std::string::npos) ++busy;
          if (r.status == 403) ++refused;
        } catch (const server::ClientError&) {
        }
      }
    });
  }
  BOOST_TEST(eventually([&] { return refused >= 2 && busy >= 2; }));
  std::chrono::steady_clock::duration worst{};
  for (int i = 0; i < 20; ++i) {
    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(g.call(http::verb::get, "/runs", good.text).status == 200u);
    BOOST_TEST(g.call(http::verb::get, "/health", "").status == 200u);
    worst = std::max(worst, std::chrono::steady_clock::now() - start);
  }
  stop = true;
  for (std::thread& t : flood) t.join();
  BOOST_TEST_MESSAGE("during the flood: " << refused << " refused, " << busy << " busy");
  // 3 s: slack for a slow host, well short of a wait behind the flood's KDFs.
  BOOST_TEST(worst < 3s, "a good key and /health took "
                             << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count()
                             << " ms during the flood");
}

// A client's first requests with a key made a moment ago, sent at once
// (a dashboard's parallel fetches): the KDF runs once for all of them, so
// none is answered 503 busy, even with one KDF at a time.
BOOST_AUTO_TEST_CASE(first_requests_with_a_new_key_sent_at_once_all_succeed) {
  NatsServer nats;
  Gateway g(nats, server::AuthOptions{.max_kdfs = 1});
  const Key k = create_key(nats, "a", "runs:read");
  std::promise<void> go;
  const std::shared_future<void> started = go.get_future().share();
  std::vector<std::future<server::ClientResponse>> answers;
  for (int i = 0; i < 8; ++i) {
    answers.push_back(std::async(std::launch::async, [&g, &k, started] {
      started.wait();
      return g.call(http::verb::get, "/runs", k.text);
    }));
  }
  go.set_value();
  for (auto& a : answers) {
    const server::ClientResponse r = a.get();
    BOOST_TEST(r.status == 200u, r.status << " " << r.body);
  }
}

BOOST_AUTO_TEST_CASE(failed_keys_from_an_address_are_rate_limited) {
  NatsServer nats;
  server::AuthOptions auth;
  auth.max_failures = 5;
  // Long enough for the six checks below under ASan on a loaded machine (a
  // 2 s window passed before the sixth in one CI run), short enough to wait out.
  auth.failure_window = 8s;
  Gateway g(nats, auth);
  const Key known = create_key(nats, "a", "runs:read");
  const Key fresh = create_key(nats, "a", "runs:read");
  BOOST_REQUIRE(g.call(http::verb::get, "/runs", known.text).status == 200u);  // verified
  for (int i = 0; i < 5; ++i) {
    BOOST_TEST(g.call(http::verb::get, "/runs",
                      "pyoco_" + known.id + ".guessing0000000000" + std::to_string(i))
                   .status == 403u);
  }
  // Locked out: nothing more is checked for this address, a new key included...
  const auto locked = g.call(http::verb::get, "/runs", fresh.text);
  BOOST_TEST(locked.status == 429u);
  BOOST_TEST(locked.body.find("try again in") != std::string::npos, locked.body);
  // The wait in a header too (RFC 9110 10.2.3), the seconds the text says.
  BOOST_TEST(!locked.retry_after.empty());
  BOOST_TEST(locked.body.find("try again in " + locked.retry_after + " s") != std::string::npos,
             locked.retry_after << " " << locked.body);
  BOOST_TEST(g.call(http::verb::get, "/runs", "pyoco_" + known.id + ".guessing0000000009").status ==
             429u);
  // ...but a key verified before goes on working: a flood of wrong keys from
  // one address does not lock out the good ones there.
  BOOST_TEST(g.call(http::verb::get, "/runs", known.text).status == 200u);
  // A request without a key is not a guess: it is answered 401, as ever.
  BOOST_TEST(g.call(http::verb::get, "/runs", "").status == 401u);
  BOOST_TEST(
      eventually([&] { return g.call(http::verb::get, "/runs", fresh.text).status == 200; }, 15s));
}

// The cache is trusted only while the watch on the keys is current: with
// NATS away a route that must reach NATS is 503, never a yes from memory;
// a deleted record is a key that is gone.
BOOST_AUTO_TEST_CASE(no_stale_yes_when_nats_is_away_or_a_key_is_deleted) {
  NatsServer nats;
  Gateway g(nats);
  const Key k = create_key(nats, "a", "runs:read,runs:write");
  const std::string id =
      run_id_of(g.call(http::verb::post, "/runs", k.text, R"({"flow_name":"hello"})"));
  BOOST_REQUIRE(g.call(http::verb::get, "/runs/" + id, k.text).status == 200u);
  nats.kill9();
  BOOST_TEST(
      eventually([&] { return g.call(http::verb::get, "/runs/" + id, k.text).status == 503; }, 5s));
  const auto down = g.call(http::verb::post, "/runs", k.text, R"({"flow_name":"hello"})");
  BOOST_TEST(down.status == 503u, down.body);
  BOOST_TEST(down.body.find("\"nats_unavailable\"") != std::string::npos, down.body);
  nats.start();
  BOOST_TEST(eventually(
      [&] { return g.call(http::verb::get, "/runs/" + id, k.text).status == 200; }, 20s));

  // An operator deletes the record outright (not a revoke).
  kvStore* kv = nullptr;
  BOOST_REQUIRE(js_KeyValue(&kv, g.nats.handles().js, "pyoco_auth") == NATS_OK);
  BOOST_REQUIRE(kvStore_Delete(kv, ("api_keys." + k.id).c_str()) == NATS_OK);
  kvStore_Destroy(kv);
  BOOST_TEST(
      eventually([&] { return g.call(http::verb::get, "/runs", k.text).status == 403; }, 3s));
}

// docs/cluster.md: while NATS is away GET /runs, /stats and /workers answer
// from what the gateway holds (X-Pyoco-Stale). With keys on they do so for
// a key this gateway verified before, for AuthOptions::stale_reads_for
// after its watch on the keys was last current; a key it never verified
// is 503 nats_unavailable (it cannot be checked), as is every other route.
BOOST_AUTO_TEST_CASE(with_nats_away_keys_verified_here_still_read_what_the_gateway_holds) {
  NatsServer nats;
  Gateway g(nats, server::AuthOptions{.max_failures = 1000000, .stale_reads_for = 8s});
  const Key k = create_key(nats, "a", "runs:read,runs:write");
  const Key unseen = create_key(nats, "a", "runs:read");
  const std::string id =
      run_id_of(g.call(http::verb::post, "/runs", k.text, R"({"flow_name":"hello"})"));
  BOOST_REQUIRE(eventually(
      [&] { return g.call(http::verb::get, "/runs", k.text).body.find(id) != std::string::npos; }));
  nats.kill9();
  // Once the gateway no longer trusts its watch on the keys (within a
  // quarter second), a wrong secret cannot be checked: 503, not 403.
  const std::string wrong = "pyoco_" + k.id + ".notTheSecretOfThisKey0";
  BOOST_REQUIRE(
      eventually([&] { return g.call(http::verb::get, "/runs", wrong).status == 503; }, 5s));
  for (const char* held : {"/runs", "/stats", "/workers"}) {
    const auto r = g.call(http::verb::get, held, k.text);
    BOOST_TEST(r.status == 200u, held << ": " << r.body);
    BOOST_TEST(r.stale.find("NATS is away") != std::string::npos, held);
    if (std::string(held) == "/runs") BOOST_TEST(r.body.find(id) != std::string::npos, r.body);
  }
  // A key never verified here cannot be checked: 503, not a refused key.
  for (const char* held : {"/runs", "/stats", "/workers"}) {
    const auto never = g.call(http::verb::get, held, unseen.text);
    BOOST_TEST(never.status == 503u, held << ": " << never.body);
    BOOST_TEST(never.body.find("\"nats_unavailable\"") != std::string::npos, never.body);
  }
  // Nor a route that needs NATS.
  BOOST_TEST(g.call(http::verb::get, "/runs/" + id, k.text).status == 503u);
  // Past stale_reads_for the verified key is 503 too: a revoke it could
  // not learn of is bounded.
  BOOST_TEST(
      eventually([&] { return g.call(http::verb::get, "/runs", k.text).status == 503; }, 10s));
  nats.start();
  BOOST_TEST(
      eventually([&] { return g.call(http::verb::get, "/runs", unseen.text).status == 200; }, 20s));
}

// A key check that failed because NATS could not be asked is not a
// refused key: a short outage, with a client retrying, used to lock its
// address out for the whole window (429 for ~60 s to keys never tried).
BOOST_AUTO_TEST_CASE(a_nats_outage_does_not_count_as_refused_keys) {
  NatsServer nats;
  // The default limit (20, over the 16 checks a gateway's handler threads
  // can have in flight at once), and a window longer than the test.
  Gateway g(nats, server::AuthOptions{.failure_window = 120s});
  const Key used = create_key(nats, "a", "runs:read");
  const Key later = create_key(nats, "a", "runs:read");
  const std::string run =
      run_id_of(g.call(http::verb::post, "/runs", create_key(nats, "a", "runs:write").text,
                       R"({"flow_name":"hello"})"));
  BOOST_REQUIRE(g.call(http::verb::get, "/runs/" + run, used.text).status == 200u);
  nats.kill9();
  BOOST_REQUIRE(eventually(
      [&] { return g.call(http::verb::get, "/runs/" + run, used.text).status == 503; }, 5s));
  std::vector<std::future<server::ClientResponse>> answers;
  for (int i = 0; i < 25; ++i) {
    answers.push_back(std::async(std::launch::async, [&, i] {
      return g.call(http::verb::get, "/runs/" + run, i % 2 == 0 ? used.text : later.text);
    }));
  }
  for (auto& a : answers) {
    const server::ClientResponse r = a.get();
    BOOST_TEST(r.status == 503u, r.status << " " << r.body);
    BOOST_TEST(r.body.find("\"nats_unavailable\"") != std::string::npos, r.body);
  }
  nats.start();
  BOOST_TEST(eventually(
      [&] { return g.call(http::verb::get, "/runs/" + run, used.text).status == 200; }, 20s));
  // A key this gateway never verified is checked, not refused for the outage.
  const Key fresh = create_key(nats, "a", "runs:read");
  const auto r = g.call(http::verb::get, "/runs", fresh.text);
  BOOST_TEST(r.status == 200u, r.status << " " << r.body);
}

// Two keys in one request: which one was meant is not the gateway's guess.
BOOST_AUTO_TEST_CASE(a_key_header_sent_twice_is_refused) {
  NatsServer nats;
  Gateway g(nats);
  const Key k = create_key(nats, "a", "runs:read");
  for (const char* header : {"X-API-Key", "Authorization"}) {
    const std::string value = std::string(header) == "X-API-Key" ? k.text : "Bearer " + k.text;
    const std::string request = "GET /runs HTTP/1.1\r\nHost: x\r\n" + std::string(header) + ": " +
                                value + "\r\n" + header + ": " + value +
                                "\r\nConnection: close\r\n\r\n";
    const std::string answer = raw_exchange(g.http->port(), request);
    BOOST_TEST(answer.rfind("HTTP/1.1 400", 0) == 0u, answer);
    BOOST_TEST(answer.find(std::string("the header ") + header + " is sent more than once") !=
                   std::string::npos,
               answer);
  }
  BOOST_TEST(g.call(http::verb::get, "/runs", k.text).status == 200u);
  // Two different keys, one in each header: refused, not one of them taken.
  const Key other = create_key(nats, "b", "runs:read");
  auto both = [&](const std::string& api_key, const std::string& authorization) {
    return raw_exchange(g.http->port(), "GET /runs HTTP/1.1\r\nHost: x\r\nX-API-Key: " + api_key +
                                            "\r\nAuthorization: " + authorization +
                                            "\r\nConnection: close\r\n\r\n");
  };
  const std::string two = both(k.text, "Bearer " + other.text);
  BOOST_TEST(two.rfind("HTTP/1.1 400", 0) == 0u, two);
  BOOST_TEST(two.find("carry two different keys") != std::string::npos, two);
  // The same key in both, or a proxy's Basic credentials beside the key: fine.
  BOOST_TEST(both(k.text, "Bearer " + k.text).rfind("HTTP/1.1 200", 0) == 0u);
  BOOST_TEST(both(k.text, "Basic dXNlcjpwYXNz").rfind("HTTP/1.1 200", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(a_key_bound_to_tags_submits_there_and_sees_those_workers_only) {
  NatsServer nats;
  Gateway g(nats);
  const Key blue = create_key(nats, "a", "runs:read,runs:write", {"--tags", "blue"});
  cluster::ResourceOptions blue_queue;  // a tag's runs are taken once its queue exists
  blue_queue.tags = {"blue"};
  cluster::init_resources(g.nats, blue_queue);
  for (const char* tag : {"blue", "red"}) {
    cluster::put_worker_record(g.nats, json::object{{"worker_id", std::string("w-") + tag},
                                                    {"instance_id", "i"},
                                                    {"tags", json::array{json::value(tag)}},
                                                    {"slots", 1},
                                                    {"running", json::array{}},
                                                    {"state", "IDLE"},
                                                    {"last_seen_at", cluster::epoch_now()}});
  }
  BOOST_TEST(
      g.call(http::verb::post, "/runs", blue.text, R"({"flow_name":"x","tag":"blue"})").status ==
      200u);
  const auto red = g.call(http::verb::post, "/runs", blue.text, R"({"flow_name":"x","tag":"red"})");
  BOOST_TEST(red.status == 403u);
  BOOST_TEST(red.body.find("blue only") != std::string::npos, red.body);
  BOOST_TEST(g.call(http::verb::post, "/runs", blue.text, R"({"flow_name":"x"})").status ==
             403u);  // the default tag is not one of its own
  BOOST_REQUIRE(eventually([&] {
    return g.call(http::verb::get, "/workers", blue.text).body.find("w-blue") != std::string::npos;
  }));
  BOOST_TEST(g.call(http::verb::get, "/workers", blue.text).body.find("w-red") ==
             std::string::npos);
}

// Workers are shared: one tenant's admin key hides a worker from its own
// tenant's list, never from another tenant's; and shows it again.
BOOST_AUTO_TEST_CASE(an_admin_hides_a_worker_from_its_own_tenant_only) {
  NatsServer nats;
  Gateway g(nats);
  const Key admin_a = create_key(nats, "a", "admin");
  const Key reader_a = create_key(nats, "a", "runs:read");
  const Key reader_b = create_key(nats, "b", "runs:read");
  cluster::put_worker_record(g.nats, json::object{{"worker_id", "shared"},
                                                  {"instance_id", "i"},
                                                  {"tags", json::array{"default"}},
                                                  {"slots", 1},
                                                  {"running", json::array{}},
                                                  {"state", "IDLE"},
                                                  {"last_seen_at", cluster::epoch_now()}});
  auto listed = [&](const Key& k, const std::string& query = "") {
    return g.call(http::verb::get, "/workers" + query, k.text).body.find("\"shared\"") !=
           std::string::npos;
  };
  BOOST_REQUIRE(eventually([&] { return listed(reader_a) && listed(reader_b); }));
  BOOST_TEST(
      g.call(http::verb::patch, "/workers/shared", admin_a.text, R"({"hidden": true})").status ==
      200u);
  BOOST_TEST(!listed(reader_a));
  BOOST_TEST(listed(reader_a, "?include_hidden=true"));
  BOOST_TEST(listed(reader_b));  // another tenant's list is not a's to change
  // Nor on another gateway, which hears flags from the bucket.
  Gateway other(nats);
  BOOST_TEST(eventually([&] {
    return other.call(http::verb::get, "/workers", reader_a.text).body.find("\"shared\"") ==
           std::string::npos;
  }));
  BOOST_TEST(other.call(http::verb::get, "/workers", reader_b.text).body.find("\"shared\"") !=
             std::string::npos);
  BOOST_TEST(
      g.call(http::verb::patch, "/workers/shared", admin_a.text, R"({"hidden": false})").status ==
      200u);
  BOOST_TEST(listed(reader_a));
  BOOST_TEST(
      g.call(http::verb::patch, "/workers/nobody", admin_a.text, R"({"hidden": true})").status ==
      404u);
}

BOOST_AUTO_TEST_CASE(pyoco_server_keys_are_imported_and_keep_working) {
  NatsServer nats;
  TempDir dir;
  // Two records as pyoco-server stores them (one per line, as its bucket
  // dumps them): the same secret hashed with the pepper "pepper-1".
  const std::string secret = "Xy7_kq2-Lm9Np4Rs8Tu1Vw3Yz5Ab6Cd0";
  write_text(
      dir.path() / "keys.jsonl",
      R"({"key_id":"0123456789abcdef01234567","tenant_id":"demo","kdf":"pbkdf2_hmac_sha256","iterations":1000,"salt_b64":"AAECAwQFBgcICQoLDA0ODw","hash_b64":"oD1pWMNRcM0Gzs96ifk-IdN7EE2Rpjgqs-Btn_h4vTM","created_at":1700000000.0,"revoked_at":null})"
      "\n"
      R"({"key_id":"89abcdef0123456789abcdef","tenant_id":"demo","kdf":"pbkdf2_hmac_sha256","iterations":1000,"salt_b64":"AAECAwQFBgcICQoLDA0ODw","hash_b64":"oD1pWMNRcM0Gzs96ifk-IdN7EE2Rpjgqs-Btn_h4vTM","created_at":1700000001.0,"revoked_at":1700000002.0})"
      "\n");
  const std::vector<std::string> import{"keys", "import", (dir.path() / "keys.jsonl").string(),
                                        "--nats", nats.url()};
  Gateway g(nats, server::AuthOptions{.pepper = "pepper-1"});
  ProcessResult r = run_pyoco(import);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("2 of 2 key(s) imported") != std::string::npos, r.out);
  const std::string imported = "pyoco_0123456789abcdef01234567." + secret;
  BOOST_TEST(g.call(http::verb::get, "/runs", imported).status == 200u);
  BOOST_TEST(g.call(http::verb::post, "/runs", imported, R"({"flow_name":"hello"})").status ==
             200u);
  BOOST_TEST(g.call(http::verb::get, "/metrics", imported).status == 403u);  // not its scope
  BOOST_TEST(g.call(http::verb::get, "/runs", "pyoco_89abcdef0123456789abcdef." + secret).status ==
             403u);  // it was revoked in pyoco-server
  // Again: nothing is overwritten.
  r = run_pyoco(import);
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err.find("exists already") != std::string::npos, r.err);

  // `keys list` shows neither secrets nor hashes.
  r = run_pyoco({"keys", "list", "--json", "--nats", nats.url()});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out.find("0123456789abcdef01234567") != std::string::npos);
  BOOST_TEST(r.out.find("\"revoked\"") != std::string::npos);
  BOOST_TEST(r.out.find("hash") == std::string::npos);
  BOOST_TEST(r.out.find("salt") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_client_sends_its_key_and_the_gateway_never_logs_it) {
  NatsServer nats;
  Server s({"--nats", nats.url()}, {{"PYOCO_HTTP_AUTH_MODE", "api_key"}});
  ProcessResult created = run_pyoco({"keys", "create", "--tenant", "ops", "--scope",
                                     "runs:read,runs:write", "--nats", nats.url()});
  BOOST_REQUIRE(created.exit_code == 0);
  const std::string key = created.out.substr(0, created.out.find('\n'));
  BOOST_TEST(key.rfind("pyoco_", 0) == 0u);
  BOOST_TEST(created.err.find("shown this once") != std::string::npos, created.err);

  ProcessResult r = s.client({"list"});
  BOOST_TEST(r.exit_code != 0);
  BOOST_TEST(r.err.find("401") != std::string::npos, r.err);
  s.api_key = key;
  r = s.client({"submit", "hello", "--json"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  r = s.client({"list", "--json"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("hello") != std::string::npos);
  s.api_key = key.substr(0, key.size() - 2) + "xx";
  BOOST_TEST(s.call(http::verb::get, "/runs").status == 403u);

  const std::string secret = key.substr(key.find('.') + 1);
  BOOST_TEST(s.child->err().find(secret) == std::string::npos);
  BOOST_TEST(s.child->out().find(secret) == std::string::npos);
  BOOST_TEST(s.child->err().find("API key refused") != std::string::npos, s.child->err());
}

// A key whose line never reached anyone (standard output on a full disk)
// is revoked at once: it stayed active with a secret nobody had, and the
// command said "the line above is the key" (an outside tester).
BOOST_AUTO_TEST_CASE(a_key_that_could_not_be_written_is_revoked) {
  NatsServer nats;
  const ProcessResult init = run_pyoco({"cluster", "init", "--nats", nats.url()});
  BOOST_TEST_REQUIRE(init.exit_code == 0, init.err);
  for (const bool as_json : {false, true}) {
    std::vector<std::string> argv{
        "/bin/bash", "-c",     "\"$@\" >/dev/full", "sh",   pyoco_exe().string(),
        "keys",      "create", "--tenant",          "lost", "--scope",
        "runs:read", "--nats", nats.url()};
    if (as_json) argv.push_back("--json");
    const ProcessResult r = run_process(argv, ProcessOptions{});
    BOOST_TEST(r.exit_code == 1, r.err);
    BOOST_TEST(r.err.find("pyoco keys create: cannot write the key to standard output: No space "
                          "left on device; key ") != std::string::npos,
               r.err);
    BOOST_TEST(
        r.err.find("is revoked, so no active key has a secret nobody holds") != std::string::npos,
        r.err);
    BOOST_TEST(r.err.find("The line above is the key") == std::string::npos, r.err);
  }
  const ProcessResult list = run_pyoco({"keys", "list", "--json", "--nats", nats.url()});
  BOOST_TEST_REQUIRE(list.exit_code == 0, list.err);
  const json::array keys = json::parse(list.out).as_array();
  BOOST_TEST(keys.size() == 2u);
  for (const json::value& k : keys) {
    BOOST_TEST(k.at("tenant_id").as_string() == "lost");
    BOOST_TEST(!k.at("revoked_at").is_null(), json::serialize(k));
  }
}
