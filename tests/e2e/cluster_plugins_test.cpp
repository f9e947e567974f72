// Shipping plugins through a gateway, as an operator does it from the
// command line: pack, push (with keys on), the same version again (409),
// without the scope (403) or a key (401), a package that is not one (422)
// or too big (413), remote list, yank and history.
#include <pyoco/plugins/package.hpp>
#include <pyoco/server/http.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <tuple>
#include <vector>

#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace json = boost::json;

namespace {

std::string key(const NatsServer& nats, const std::string& scopes) {
  const ProcessResult r =
      run_pyoco({"keys", "create", "--tenant", "ops", "--scope", scopes, "--nats", nats.url()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return r.out.substr(0, r.out.find('\n'));
}

// The hello plugin's package with its plugin.toml saying `key = "value"`,
// made by hand (`plugins pack` refuses what lint refuses), SHA256SUMS right.
std::string hello_package_with(const std::string& key, const std::string& value) {
  const plugins::PluginPackage hello =
      plugins::pack_plugin(binary_dir() / "lib/pyoco/plugins/hello");
  std::vector<plugins::PackageFile> files;
  for (plugins::PackageFile f : hello.files) {
    if (f.name == "SHA256SUMS") continue;
    if (f.name == "plugin.toml") {
      const auto at = f.bytes.find(key + " = \"");
      BOOST_REQUIRE(at != std::string::npos);
      f.bytes.replace(at, f.bytes.find('"', at + key.size() + 4) + 1 - at,
                      key + " = \"" + value + "\"");
    }
    files.push_back(std::move(f));
  }
  std::string sums;
  for (const auto& f : files) sums += plugins::sha256_hex(f.bytes) + "  " + f.name + "\n";
  files.push_back({"SHA256SUMS", sums});
  return plugins::ustar_of(files);
}

}  // namespace

// A name or version no worker could install (too long for a directory, not
// a plugin name, a number past 64 bits) is refused at the push, 422 naming
// the field and the limit, never stored (a name NATS cannot take as a key
// was a 503 "retry when NATS is back").
BOOST_AUTO_TEST_CASE(a_push_of_a_name_or_version_workers_cannot_use_is_refused_422) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"name", std::string(65, 'x'), "is 65 characters long: at most 64"},
      {"name", "ACME", "is not [a-z][a-z0-9_]*"},
      {"name", "a.b", "is not [a-z][a-z0-9_]*"},
      {"name", "worker.lock", "is not [a-z][a-z0-9_]*"},
      {"name", "acme foo", "is not [a-z][a-z0-9_]*"},
      {"name", "a*b", "is not [a-z][a-z0-9_]*"},
      {"name", "a>b", "is not [a-z][a-z0-9_]*"},
      {"name", "../acme", "is not [a-z][a-z0-9_]*"},
      {"version", "0.7.0-" + std::string(250, 'a'), "is 256 characters long: at most 64"},
      {"version", "99999999999999999999.0.0", "does not fit in 64 bits"},
      {"version", "1.0.0-18446744073709551616", "does not fit in 64 bits"},
  };
  for (const auto& [key, value, says] : cases) {
    const auto r = server::http_call(s.url, boost::beast::http::verb::post, "/plugins",
                                     hello_package_with(key, value), "application/x-tar");
    BOOST_TEST(r.status == 422u, key << " " << value << ": " << r.status << " " << r.body);
    BOOST_TEST(r.body.find(says) != std::string::npos, r.body);
    BOOST_TEST(r.body.find(key == "name" ? "PL002" : "PL003") != std::string::npos, r.body);
  }
  // [plugin.platform] os and arch are a key of the index too: lint's rule
  // (PL005), a 422 naming the field; they were stored as they came, or
  // refused with NATS's own text.
  const std::vector<std::tuple<std::string, std::string, std::string>> platforms = {
      {"os", "a/b", "is not [a-z0-9_]+"},
      {"os", "LINUX", "is not [a-z0-9_]+"},
      {"os", std::string(3000, 'x'), "is 3000 characters long: at most 64"},
      {"os", "linux\\u0000", "is not [a-z0-9_]+"},  // a NUL, as TOML writes it
      {"os", "lin ux", "is not [a-z0-9_]+"},
      {"arch", "../../x", "is not [a-z0-9_]+"},
      {"arch", "x86_64>", "is not [a-z0-9_]+"},
  };
  for (const auto& [key, value, says] : platforms) {
    const auto r = server::http_call(s.url, boost::beast::http::verb::post, "/plugins",
                                     hello_package_with(key, value), "application/x-tar");
    BOOST_TEST(r.status == 422u, key << " " << value << ": " << r.status << " " << r.body);
    BOOST_TEST(r.body.find(says) != std::string::npos, r.body);
    BOOST_TEST(r.body.find("[plugin.platform] " + key) != std::string::npos, r.body);
    BOOST_TEST(r.body.find("PL005") != std::string::npos, r.body);
  }
  // The largest of each is taken.
  auto r = server::http_call(
      s.url, boost::beast::http::verb::post, "/plugins",
      hello_package_with("version", "18446744073709551615.0.0-" + std::string(39, 'b')),
      "application/x-tar");
  BOOST_TEST(r.status == 200u, r.body);
  r = server::http_call(s.url, boost::beast::http::verb::get, "/plugins");
  BOOST_TEST(json::parse(r.body).as_array().size() == 1u, r.body);
}

BOOST_AUTO_TEST_CASE(a_plugin_is_packed_pushed_listed_and_yanked) {
  NatsServer nats;
  Server s({"--nats", nats.url()}, {{"PYOCO_HTTP_AUTH_MODE", "api_key"}});
  TempDir out;
  const std::string hello = (binary_dir() / "lib/pyoco/plugins/hello").string();

  ProcessResult r = run_pyoco({"plugins", "pack", hello, "--out", out.path().string(), "--json"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const json::object packed = json::parse(r.out).as_object();
  const std::string file(packed.at("file").as_string());
  const std::string version(packed.at("version").as_string());
  BOOST_TEST(file.find("hello-" + version + "-") != std::string::npos);

  auto plugins = [&](std::vector<std::string> args, const std::string& api_key) {
    args.insert(args.begin(), "plugins");
    args.insert(args.end(), {"--server", s.url});
    ProcessOptions o{.timeout = std::chrono::seconds(60)};
    if (!api_key.empty()) o.env["PYOCO_API_KEY"] = api_key;
    return run_pyoco(args, o);
  };
  const std::string writer = key(nats, "plugins:write,runs:read");
  const std::string reader = key(nats, "runs:read");

  r = plugins({"push", file}, "");
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("401") != std::string::npos, r.err);
  r = plugins({"push", file}, reader);
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("403") != std::string::npos, r.err);
  r = plugins({"push", file, "--tags", "blue", "--json"}, writer);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(json::parse(r.out).at("sha256").as_string() == packed.at("sha256").as_string());
  r = plugins({"push", hello}, writer);  // the same version, packed again from the directory
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("409") != std::string::npos, r.err);

  write_text(out.path() / "junk.pyoco", std::string(4096, 'x'));
  r = plugins({"push", (out.path() / "junk.pyoco").string()}, writer);
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("not a plugin package") != std::string::npos, r.err);
  // Too big for the gateway: sent as it is (the CLI checks only packages it can open).
  std::string huge(65 * 1024 * 1024, '\0');
  const auto answer =
      server::http_call(server::Endpoint{s.url, writer, {}}, boost::beast::http::verb::post,
                        "/plugins", huge, "application/x-tar");
  BOOST_TEST(answer.status == 413u, answer.body);

  r = plugins({"remote", "list", "--json"}, reader);
  BOOST_TEST(r.exit_code == 0, r.err);
  const json::array listed = json::parse(r.out).as_array();
  BOOST_REQUIRE(listed.size() == 1u);
  BOOST_TEST(listed[0].at("tags").as_array().size() == 1u);
  BOOST_TEST(listed[0].at("yanked").as_bool() == false);

  r = plugins({"remote", "yank", "hello", version}, reader);
  BOOST_TEST(r.exit_code == 2);  // not its scope
  r = plugins({"remote", "yank", "hello", version}, writer);
  BOOST_TEST(r.exit_code == 0, r.err);
  // A retried yank is the same answer, not a 404, and records nothing new.
  r = plugins({"remote", "yank", "hello", version}, writer);
  BOOST_TEST(r.exit_code == 0, r.err);
  r = plugins({"remote", "yank", "hello", "9.9.9"}, writer);
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(r.err.find("404") != std::string::npos, r.err);
  r = plugins({"remote", "list", "--json"}, reader);
  BOOST_TEST(json::parse(r.out).as_array()[0].at("yanked").as_bool());
  r = plugins({"remote", "history"}, reader);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find("yank") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("push") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("yank") == r.out.rfind("yank"), r.out);  // one yank recorded
}

// A worker started from the command line takes a pushed plugin it has never
// had: it checks the package, lints it with the `pyoco plugins lint` beside
// it (pyoco-cluster has no lint of its own) and runs a task of it.
// A gateway that holds as many uploads as it may answers 503 busy with
// Retry-After before reading the body: `plugins push` says so and sends it
// again after that long, instead of failing.
BOOST_AUTO_TEST_CASE(a_push_answered_busy_is_sent_again_after_retry_after) {
  std::atomic<int> pushes{0};
  auto router = std::make_shared<server::Router>();
  router->add_large(boost::beast::http::verb::post, "/plugins", server::kPublic, 64 << 20,
                    [&](const server::Request&, const server::PathParams&, const server::Caller&) {
                      if (pushes++ == 0) {
                        server::Response busy =
                            server::error_response(503, "busy", "try again in 1 s");
                        busy.set(boost::beast::http::field::retry_after, "1");
                        return busy;
                      }
                      return server::json_response(200, json::object{});
                    });
  server::ListenOptions o;
  o.port = 0;
  server::HttpServer gateway(router, o);
  const ProcessResult r =
      run_pyoco({"plugins", "push", (binary_dir() / "lib/pyoco/plugins/hello").string(), "--server",
                 "http://127.0.0.1:" + std::to_string(gateway.port())},
                ProcessOptions{.timeout = std::chrono::seconds(60)});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(pushes.load() == 2);
  BOOST_TEST(r.err.find("the gateway is busy (503); trying again in 1 s") != std::string::npos,
             r.err);
  BOOST_TEST(r.out.find("pushed hello ") == 0u, r.out);
}

BOOST_AUTO_TEST_CASE(a_worker_lints_and_runs_a_pushed_plugin) {
  NatsServer nats;
  Server s({"--nats", nats.url()});
  TempDir work;
  // The clean lint fixture, made for this platform as the hello plugin is.
  const std::filesystem::path clean = work.path() / "clean";
  std::filesystem::copy(fixture_dir() / "clean", clean);
  const std::string hello = read_text(binary_dir() / "lib/pyoco/plugins/hello/plugin.toml");
  const std::size_t platform = hello.find("[plugin.platform]");
  BOOST_TEST_REQUIRE(platform != std::string::npos, hello);
  write_text(clean / "plugin.toml",
             read_text(clean / "plugin.toml") + "\n" +
                 hello.substr(platform, hello.find("\n\n", platform) - platform) + "\n");
  ProcessResult r = run_pyoco({"plugins", "push", clean.string(), "--server", s.url},
                              {.timeout = std::chrono::seconds(60)});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  ChildProcess worker({pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w1",
                       "--plugins-dir", (work.path() / "plugins").string()},
                      {{"PYOCO_PLUGIN_PATH", ""}}, work.path());
  write_text(work.path() / "pushed.yaml",
             "flow: {graph: a}\ntasks:\n  a: {use: clean/alpha, inputs: {value: 7}}\n");
  r = s.client({"submit-yaml", (work.path() / "pushed.yaml").string(), "--wait"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err << worker.err());
  BOOST_TEST(r.out.find("status=COMPLETED") != std::string::npos, r.out);
}
