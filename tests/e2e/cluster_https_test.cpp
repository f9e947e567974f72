// The gateway over HTTPS (--tls-cert, --tls-key) with a certificate made in
// the test: the client trusts it through --ca-file and refuses it without;
// a whole run is submitted and followed (its SSE stream included) over TLS
// with API keys on; plain HTTP to the TLS port gets nothing.
#include <pyoco/server/client.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

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

BOOST_AUTO_TEST_CASE(a_run_goes_through_an_https_gateway_with_keys) {
  NatsServer nats;
  TempDir dir;
  const CertificateFiles cert = make_self_signed(dir.path());
  write_text(dir.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
  Server s({"--nats", nats.url(), "--tls-cert", cert.cert.string(), "--tls-key", cert.key.string(),
            "--with-worker", "--flows", dir.path().string()},
           {{"PYOCO_HTTP_AUTH_MODE", "api_key"}});
  BOOST_REQUIRE(s.url.rfind("https://127.0.0.1:", 0) == 0);

  // Trusted through the CA file: the TLS works, and the key is still asked for.
  const server::Endpoint trusted{s.url, "", cert.cert.string()};
  BOOST_TEST(server::http_call(trusted, http::verb::get, "/health").status == 200u);
  BOOST_TEST(server::http_call(trusted, http::verb::get, "/runs").status == 401u);

  // Not trusted: refused, and the error says what to do.
  try {
    server::http_call(server::Endpoint{s.url, "", ""}, http::verb::get, "/health");
    BOOST_ERROR("an untrusted certificate was accepted");
  } catch (const server::ClientError& e) {
    BOOST_TEST(std::string(e.what()).find("--ca-file") != std::string::npos, e.what());
  }
  // Plain HTTP to the HTTPS port is not answered as HTTP.
  const std::string plain = "http://" + s.url.substr(8);
  bool answered = false;
  try {
    answered = server::http_call(plain, http::verb::get, "/health", {}, "application/json", {}, 3s)
                   .status == 200;
  } catch (const server::ClientError&) {
  }
  BOOST_TEST(!answered);

  const ProcessResult made = run_pyoco(
      {"keys", "create", "--tenant", "t", "--scope", "runs:read,runs:write", "--nats", nats.url()});
  BOOST_REQUIRE(made.exit_code == 0);
  s.api_key = made.out.substr(0, made.out.find('\n'));
  // The whole run: submit, then its events followed over the TLS stream.
  const ProcessResult run =
      s.client({"submit", "hello", "--wait", "--ca-file", cert.cert.string()});
  BOOST_TEST(run.exit_code == 0, run.out << run.err);
  BOOST_TEST(run.out.find("hello") != std::string::npos, run.out);
  const ProcessResult listed =
      run_pyoco({"client", "list", "--json", "--server", s.url},
                {.env = {{"PYOCO_API_KEY", s.api_key}, {"PYOCO_CA_FILE", cert.cert.string()}}});
  BOOST_TEST(listed.exit_code == 0, listed.out << listed.err);
  BOOST_TEST(listed.out.find("COMPLETED") != std::string::npos, listed.out);
}

BOOST_AUTO_TEST_CASE(a_certificate_that_does_not_load_is_named) {
  NatsServer nats;
  TempDir dir;
  write_text(dir.path() / "not.pem", "not a certificate\n");
  const CertificateFiles cert = make_self_signed(dir.path());
  const ProcessResult r =
      run_pyoco({"server", "--listen", "127.0.0.1:0", "--nats", nats.url(), "--tls-cert",
                 (dir.path() / "not.pem").string(), "--tls-key", cert.key.string()},
                {.timeout = 30s});
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("--tls-cert " + (dir.path() / "not.pem").string()) != std::string::npos,
             r.err);
  const ProcessResult half = run_pyoco(
      {"server", "--listen", "127.0.0.1:0", "--nats", nats.url(), "--tls-cert", cert.cert.string()},
      {.timeout = 30s});
  BOOST_TEST(half.exit_code == 2);
  BOOST_TEST(half.err.find("--tls-key") != std::string::npos, half.err);
}
