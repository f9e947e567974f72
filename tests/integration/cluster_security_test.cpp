// Connecting to a NATS that requires credentials (user and password,
// token, .creds) or TLS, against a real nats-server configured so: the
// right ones connect and make the resources; wrong or missing ones are
// refused with a line that says what to check and never holds the secret.
#include <pyoco/cluster/connection.hpp>
#include <pyoco/cluster/resources.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <functional>

#include "errors.hpp"
#include "nats_jwt.hpp"
#include "nats_server.hpp"
#include "self_signed.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;

namespace {

std::string error_of(const std::function<void()>& f) {
  return testing::error_of<cluster::NatsError>(f);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Connects, makes every resource, and says whether they all exist.
bool connects_and_inits(const cluster::ConnectOptions& options) {
  cluster::Connection nats(options);
  const auto made = cluster::init_resources(nats, cluster::ResourceOptions{});
  return !made.empty() && std::all_of(made.begin(), made.end(),
                                      [](const cluster::ResourceState& r) { return r.exists; });
}

// A connect that must fail (a refused connect is not retried). The timeout
// is generous: a TLS or auth handshake on a slow host can outlast 1 s, and
// then the error is a timeout, not the refusal the tests assert.
std::string refused(cluster::ConnectOptions options) {
  options.timeout = std::chrono::milliseconds(10000);
  return error_of([&] { cluster::Connection nats(options); });
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_user_and_password) {
  NatsServer server(
      {.config = "authorization { user: \"pyoco\", password: \"right-horse-battery\" }\n"});
  BOOST_TEST(connects_and_inits(
      {.servers = {server.url()}, .user = "pyoco", .password = "right-horse-battery"}));

  const std::string wrong =
      refused({.servers = {server.url()}, .user = "pyoco", .password = "wrong-staple"});
  BOOST_TEST(wrong == "NATS at " + server.url() +
                          " refused the credentials (Authorization Violation): check "
                          "PYOCO_NATS_USER/PYOCO_NATS_PASSWORD",
             wrong);
  const std::string missing = refused({.servers = {server.url()}});
  BOOST_TEST(contains(missing,
                      "requires credentials (Authorization Violation): set "
                      "PYOCO_NATS_USER and PYOCO_NATS_PASSWORD"),
             missing);

  // In the URL, as cnats takes them: shown masked, in errors and once connected.
  const std::string port = std::to_string(server.port());
  const std::string in_url = refused({.servers = {"nats://pyoco:wrong-staple@127.0.0.1:" + port}});
  BOOST_TEST(contains(in_url, "NATS at nats://pyoco:***@127.0.0.1:" + port + " refused"), in_url);
  BOOST_TEST(!contains(in_url, "wrong-staple"), in_url);
  cluster::Connection by_url({.servers = {"nats://pyoco:right-horse-battery@127.0.0.1:" + port}});
  BOOST_TEST(by_url.connected_url() == "nats://pyoco:***@127.0.0.1:" + port);
}

BOOST_AUTO_TEST_CASE(a_token) {
  NatsServer server({.config = "authorization { token: \"t0ken-of-32-chars-or-more-here\" }\n"});
  BOOST_TEST(
      connects_and_inits({.servers = {server.url()}, .token = "t0ken-of-32-chars-or-more-here"}));
  const std::string wrong = refused({.servers = {server.url()}, .token = "not-the-token"});
  BOOST_TEST(contains(wrong,
                      "refused the credentials (Authorization Violation): check "
                      "PYOCO_NATS_TOKEN"),
             wrong);
  BOOST_TEST(!contains(wrong, "not-the-token"), wrong);
  const std::string in_url =
      refused({.servers = {"nats://not-the-token@127.0.0.1:" + std::to_string(server.port())}});
  BOOST_TEST(contains(in_url, "nats://***@127.0.0.1:"), in_url);
  BOOST_TEST(!contains(in_url, "not-the-token"), in_url);
}

// Decentralized auth: a user JWT and its nkey seed, signed by an account
// the operator-mode server trusts.
BOOST_AUTO_TEST_CASE(a_creds_file) {
  TempDir dir;
  const NatsOperatorFiles files = make_nats_operator(dir.path());
  // -D: a refused user's reason ("Signature not verified", "Account JWT
  // lookup error"...) is in the server's log, shown if the connect fails.
  NatsServer server({.config = files.server_config, .args = {"-D"}});
  try {
    BOOST_TEST(connects_and_inits({.servers = {server.url()}, .creds_file = files.creds}));
  } catch (const cluster::NatsError& e) {
    BOOST_ERROR(e.what() << "\nnats-server's log:\n"
                         << server.log() << "\nuser.creds:\n"
                         << read_text(files.creds));
  }
  const std::string stranger =
      refused({.servers = {server.url()}, .creds_file = files.stranger_creds});
  BOOST_TEST(stranger == "NATS at " + server.url() +
                             " refused the credentials (Authorization Violation): check the "
                             ".creds file " +
                             files.stranger_creds.string() + " (--nats-creds or PYOCO_NATS_CREDS)",
             stranger);
  const std::string missing = refused({.servers = {server.url()}});
  BOOST_TEST(contains(missing, "requires credentials"), missing);
}

BOOST_AUTO_TEST_CASE(settings_that_cannot_work_are_said_before_connecting) {
  const std::vector<std::string> nowhere{"nats://127.0.0.1:1"};
  BOOST_TEST(contains(refused({.servers = nowhere, .user = "u"}),
                      "PYOCO_NATS_USER needs PYOCO_NATS_PASSWORD"));
  BOOST_TEST(contains(refused({.servers = nowhere, .user = "u", .password = "p", .token = "t"}),
                      "give one kind"));
  BOOST_TEST(contains(refused({.servers = nowhere, .tls_cert = "/etc/hostname"}),
                      "a client certificate needs its key"));
  BOOST_TEST(refused({.servers = nowhere, .tls_ca = "/nonexistent/ca.pem"}) ==
             "the TLS CA file /nonexistent/ca.pem does not exist or is not a file: check "
             "--nats-tls-ca or PYOCO_NATS_TLS_CA");
  BOOST_TEST(contains(refused({.servers = nowhere, .creds_file = "/nonexistent/u.creds"}),
                      "the .creds file /nonexistent/u.creds does not exist"));
  TempDir dir;
  write_text(dir.path() / "not.pem", "hello\n");
  BOOST_TEST(contains(refused({.servers = nowhere, .tls_ca = dir.path() / "not.pem"}),
                      "cannot load the TLS CA file " + (dir.path() / "not.pem").string()));

  BOOST_TEST(cluster::redact_url("nats://a:b@h:1") == "nats://a:***@h:1");
  BOOST_TEST(cluster::redact_url("tls://tok@h:1/x@y") == "tls://***@h:1/x@y");
  BOOST_TEST(cluster::redact_url("nats://h:1") == "nats://h:1");
  const std::string list = error_of([] { cluster::nats_servers("nats://u:pw@a:1,,b:2"); });
  BOOST_TEST(contains(list, "\"nats://u:***@a:1,,b:2\" has an empty entry"), list);
}

BOOST_AUTO_TEST_CASE(tls_with_the_servers_ca_and_a_client_certificate) {
  TempDir certs;
  const CertificateFiles server_cert = make_self_signed(certs.path(), "server");
  const CertificateFiles client_cert = make_self_signed(certs.path(), "client");
  NatsServer server({.config = "tls {\n  cert_file: \"" + server_cert.cert.string() +
                               "\"\n  key_file: \"" + server_cert.key.string() + "\"\n}\n"});
  BOOST_TEST(server.url().starts_with("tls://"));
  const std::string plain_url = "nats://127.0.0.1:" + std::to_string(server.port());

  // The CA turns TLS on, even for a nats:// URL.
  BOOST_TEST(connects_and_inits({.servers = {plain_url}, .tls_ca = server_cert.cert}));
  BOOST_TEST(connects_and_inits({.servers = {server.url()}, .tls_ca = server_cert.cert}));

  const std::string no_ca = refused({.servers = {server.url()}});
  BOOST_TEST(contains(no_ca, "TLS with NATS at " + server.url() + " failed ("), no_ca);
  BOOST_TEST(contains(no_ca,
                      "give the CA that signed the server's certificate with "
                      "--nats-tls-ca FILE or PYOCO_NATS_TLS_CA"),
             no_ca);
  const std::string wrong_ca = refused({.servers = {server.url()}, .tls_ca = client_cert.cert});
  BOOST_TEST(contains(wrong_ca, "TLS with NATS at " + server.url() + " failed ("), wrong_ca);
  // cnats turns TLS on for a server that requires it; then the CA is what is missing.
  const std::string no_tls = refused({.servers = {plain_url}});
  BOOST_TEST(contains(no_tls, "TLS with NATS at " + plain_url + " failed (SSL handshake error: "),
             no_tls);
  BOOST_TEST(contains(no_tls, "self-signed certificate"), no_tls);
  BOOST_TEST(contains(no_tls,
                      "): give the CA that signed the server's certificate with "
                      "--nats-tls-ca FILE or PYOCO_NATS_TLS_CA"),
             no_tls);

  // A server that verifies clients: the client's certificate and key.
  NatsServer verifying({.config = "tls {\n  cert_file: \"" + server_cert.cert.string() +
                                  "\"\n  key_file: \"" + server_cert.key.string() +
                                  "\"\n  ca_file: \"" + client_cert.cert.string() +
                                  "\"\n  verify: true\n}\n"});
  BOOST_TEST(connects_and_inits({.servers = {verifying.url()},
                                 .tls_ca = server_cert.cert,
                                 .tls_cert = client_cert.cert,
                                 .tls_key = client_cert.key}));
  const std::string anonymous = refused({.servers = {verifying.url()}, .tls_ca = server_cert.cert});
  BOOST_TEST(contains(anonymous,
                      "closed the TLS connection at once: it may require a client "
                      "certificate; give it with --nats-tls-cert FILE"),
             anonymous);
}

// The certificate must be made for the server's name, not just signed by
// the CA: one for another name is refused unless that name is the one
// expected (PYOCO_NATS_TLS_SERVER_NAME).
BOOST_AUTO_TEST_CASE(tls_checks_the_name_the_certificate_is_for) {
  TempDir certs;
  const CertificateFiles elsewhere =
      make_self_signed(certs.path(), "elsewhere", "DNS:elsewhere.example");
  NatsServer server({.config = "tls {\n  cert_file: \"" + elsewhere.cert.string() +
                               "\"\n  key_file: \"" + elsewhere.key.string() + "\"\n}\n"});
  const std::string wrong_name = refused({.servers = {server.url()}, .tls_ca = elsewhere.cert});
  BOOST_TEST(contains(wrong_name, "TLS with NATS at " + server.url() + " failed ("), wrong_name);
  BOOST_TEST(contains(wrong_name, "PYOCO_NATS_TLS_SERVER_NAME"), wrong_name);
  BOOST_TEST(connects_and_inits({.servers = {server.url()},
                                 .tls_ca = elsewhere.cert,
                                 .tls_server_name = "elsewhere.example"}));
  BOOST_TEST(contains(refused({.servers = {"tls://a.example:4222", "tls://b.example:4222"},
                               .tls_ca = elsewhere.cert}),
                      "the servers are on different hosts (a.example, b.example)"));
}

// A TLS server without TLS asked for, and the other way round.
BOOST_AUTO_TEST_CASE(tls_asked_of_a_server_without_it) {
  NatsServer server;
  TempDir certs;
  const CertificateFiles cert = make_self_signed(certs.path());
  const std::string error = refused({.servers = {server.url()}, .tls_ca = cert.cert});
  BOOST_TEST(contains(error, "does not offer TLS"), error);
}
