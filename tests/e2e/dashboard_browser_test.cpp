// The dashboard at `/` in Debian's headless Chromium, against a real
// gateway, worker and nats-server: runs appear and finish without a reload,
// a run's graph, tasks and log, a cancel from the page, a worker hidden and
// shown, hostile text shown as text, and no data without a key when keys
// are asked for. Screenshots of each view go to
// <build>/screenshots/dashboard/ (docs/dashboard.md shows them).
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <thread>

#include "child.hpp"
#include "gateway_process.hpp"
#include "nats_server.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"
#include "webdriver.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

const std::string kHostile = "<img src=x onerror=alert(1)>";

std::filesystem::path shots() { return binary_dir() / "screenshots" / "dashboard"; }

struct Cluster {
  NatsServer nats;
  TempDir flows;
  std::unique_ptr<Server> gateway;
  std::unique_ptr<ChildProcess> worker;

  explicit Cluster(std::map<std::string, std::string> env = {}) {
    write_text(
        flows.path() / "diamond.yaml",
        "flow:\n  graph: |\n    fetch >> (resize & tag) >> publish\n"
        "tasks:\n"
        "  fetch: {use: std/echo, inputs: {message: \"fetched 3 pictures 🥕\"}}\n"
        "  resize: {use: std/sleep, inputs: {seconds: 0.4}}\n"
        "  tag: {use: std/echo, inputs: {message: \"" +
            kHostile +
            "\"}}\n"
            "  publish: {use: std/write_file, inputs: {name: report.txt, content: \"published\", "
            "media_type: text/plain}}\n");
    // Holds the worker's only pool thread (--jobs 1), ignoring cancel, until
    // the test opens hog_gate() (a fixed hold ran out before the checks on
    // a slow host).
    write_text(flows.path() / "hog.yaml",
               "flow: {graph: hold}\ntasks:\n  hold: {use: busy/block, inputs: {seconds: 120, "
               "until_file: \"" +
                   hog_gate().string() + "\"}}\n");
    std::string items;
    for (int i = 0; i < 1500; ++i) items += (i ? "," : "") + std::to_string(i);
    write_text(flows.path() / "wide.yaml",
               "flow:\n  defaults: {items: [" + items +
                   "]}\n  graph: \"foreach(over={{items}}, item=it, parallel=8) { each }\"\n"
                   "tasks:\n  each: {use: std/echo, inputs: {value: 1}}\n");
    write_text(flows.path() / "slow.yaml",
               "flow: {graph: nap}\ntasks:\n  nap: {use: std/sleep, inputs: {seconds: 60}}\n");
    gateway = std::make_unique<Server>(std::vector<std::string>{"--nats", nats.url()}, env);
    worker = std::make_unique<ChildProcess>(
        std::vector<std::string>{
            pyoco_exe().string(), "worker", "--nats", nats.url(), "--worker-id", "w1", "--slots",
            "2", "--flows", flows.path().string(), "--progress-interval", "0.3", "--no-plugin-sync",
            "--jobs", "1", "--plugin-path", (fixture_dir() / "busy").string()},
        std::map<std::string, std::string>{{"PYOCO_PLUGIN_PATH", ""}}, flows.path());
  }

  std::filesystem::path hog_gate() const { return flows.path() / "hog-gate"; }
  void open_hog_gate() const { write_text(hog_gate(), ""); }

  std::string submit(const std::string& flow) {
    return gateway->submit(R"({"flow_name": ")" + flow + "\"}");
  }

  json::object worker_record(const std::string& id) {
    const auto r = gateway->call(http::verb::get, "/workers?include_hidden=true");
    const json::value list = json::parse(r.body);
    for (const json::value& w : list.as_array()) {
      if (w.at("worker_id").as_string() == id) return w.as_object();
    }
    return {};
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(the_dashboard_follows_runs_and_workers_live) {
  Cluster c;
  BOOST_REQUIRE(eventually([&] { return !c.worker_record("w1").empty(); }));
  Browser b;
  b.go(c.gateway->url + "/");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#runs-body") == 1; }));
  BOOST_TEST_REQUIRE(
      b.until([&] { return b.text("#live").size() > 0 && b.count("#live.off") == 0; }),
      "the live stream never came up");

  // A run submitted now appears, and ends COMPLETED, with no reload.
  const std::string id = c.submit("diamond");
  const std::string row = "tr[data-run='" + id + "']";
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(row) == 1; }), "the run never appeared");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(row + "[data-status='COMPLETED']") == 1; }),
                     "the run never showed COMPLETED: " << b.text(row));
  BOOST_TEST(b.run("return performance.getEntriesByType('navigation').length;").as_int64() == 1);
  BOOST_TEST(b.until([&] { return b.text("#counts").find("🥕 1") != std::string::npos; }),
             b.text("#counts"));
  b.screenshot(shots() / "runs.png");

  // Its page: the graph, every task with its state, the log lines.
  b.click(row + " a");
  BOOST_TEST_REQUIRE(
      b.until([&] { return b.count("#tasks-body tr[data-state='SUCCEEDED']") == 4; }),
      b.text("#tasks-body"));
  BOOST_TEST(b.until([&] { return b.count("#graph svg g.node") == 4; }));
  BOOST_TEST(b.count("#graph svg path.edge") == 4u);  // fetch→resize, fetch→tag, both→publish
  BOOST_TEST(b.count("#graph svg g.node.s-succeeded") == 4u);
  BOOST_TEST_REQUIRE(
      b.until([&] { return b.text("#log").find("fetched 3 pictures") != std::string::npos; }));
  BOOST_TEST(b.text("dl.summary").find("COMPLETED") != std::string::npos);
  BOOST_TEST(b.text("#artifacts").find("report.txt") != std::string::npos, b.text("#artifacts"));
  BOOST_TEST(b.text("#artifacts").find("text/plain") != std::string::npos, b.text("#artifacts"));
  // Hostile text from a task is text: no element made, no script run.
  BOOST_TEST(b.text("#log").find(kHostile) != std::string::npos, b.text("#log"));
  BOOST_TEST(b.count("#view img") == 0u);
  BOOST_TEST(b.count("#cancel") == 0u);  // a finished run cannot be cancelled
  b.screenshot(shots() / "run.png");

  // A running run cancelled from its page, while another run's body holds
  // the worker's only pool thread (the cancel must not wait for it).
  const std::string hog = c.submit("hog");
  BOOST_TEST_REQUIRE(eventually([&] {
    return c.gateway->call(http::verb::get, "/runs/" + hog).body.find("\"RUNNING\"") !=
           std::string::npos;
  }));
  const std::string slow = c.submit("slow");
  b.go(c.gateway->url + "/#/runs/" + slow);
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("dl.summary[data-status='RUNNING']") == 1; }));
  b.screenshot(shots() / "run-running.png");
  // Its worker: both slots in use, by the hog and this run.
  b.go(c.gateway->url + "/#/workers");
  const std::string w1 = "tr[data-worker='w1']";
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(w1 + "[data-state='RUNNING']") == 1; }));
  const std::string slow_link = w1 + " a.run-link[href='#/runs/" + slow + "']";
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(slow_link) == 1; }), b.text(w1));
  BOOST_TEST(b.text(slow_link) == slow.substr(0, 8));
  BOOST_TEST(b.until([&] { return b.text(w1).find("2 / 2") != std::string::npos; }), b.text(w1));
  BOOST_TEST(b.text(w1).find("default") != std::string::npos, b.text(w1));
  b.screenshot(shots() / "workers.png");
  b.click(slow_link);
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#cancel") == 1; }));
  b.click("#cancel");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("dl.summary[data-status='CANCELLED']") == 1; }),
                     b.text("dl.summary"));
  BOOST_TEST(c.gateway->call(http::verb::get, "/runs/" + slow).body.find("\"CANCELLED\"") !=
             std::string::npos);
  // The hog still held the thread through the cancel; now it may end.
  BOOST_TEST(c.gateway->call(http::verb::get, "/runs/" + hog).body.find("\"RUNNING\"") !=
             std::string::npos);
  c.open_hog_gate();

  // Workers: hidden from the page, then shown again.
  b.go(c.gateway->url + "/#/workers");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(w1 + "[data-state='IDLE']") == 1; }),
                     "the worker never showed IDLE again: " << b.text(w1));
  b.click(w1 + " button.hide-toggle");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(w1) == 0; }),
                     "the hidden worker is still listed");
  BOOST_TEST(c.worker_record("w1").at("hidden").as_bool());
  b.click("#show-hidden");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(w1 + ".hidden-worker") == 1; }));
  b.click(w1 + " button.hide-toggle");
  BOOST_TEST_REQUIRE(b.until([&] { return !c.worker_record("w1").at("hidden").as_bool(); }));

  // Filters: by the form, and kept in the address.
  b.go(c.gateway->url + "/#/runs");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#runs-body tr[data-run]") == 3; }));
  b.type("#f-flow", "slow");
  b.click(".filters button");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#runs-body tr[data-run]") == 1; }));
  BOOST_TEST(b.count("tr[data-run='" + slow + "']") == 1u);
  BOOST_TEST(std::string(b.run("return location.hash;").as_string()) == "#/runs?flow=slow");
  b.go(c.gateway->url + "/#/runs?status=COMPLETED");  // the diamond and the hog
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#runs-body tr[data-run]") == 2; }));
  BOOST_TEST(b.count(row) == 1u);
  BOOST_TEST(b.count("tr[data-run='" + slow + "']") == 0u);

  // Pages of 50: 50 more runs (of a flow no worker has: they fail at once),
  // then the first page, and the older one with the two from before.
  for (int i = 0; i < 50; ++i) c.submit("no_such_flow");
  b.go(c.gateway->url + "/#/runs");
  BOOST_TEST_REQUIRE(
      b.until([&] { return b.count("#runs-body tr[data-run]") == 50 && b.count("#older") == 1; }),
      b.count("#runs-body tr[data-run]") << " rows");
  b.click("#older");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(row) == 1; }),
                     "the older page lacks the first run");
  BOOST_TEST(b.count("tr[data-run='" + slow + "']") == 1u);

  // A flow cannot even be named so: the gateway refuses the name.
  const auto refused = c.gateway->call(http::verb::post, "/runs",
                                       json::serialize(json::object{{"flow_name", kHostile}}));
  BOOST_TEST(refused.status == 422u);

  // Dark, and at phone width: nothing wider than the screen.
  b.color_scheme("dark");
  b.go(c.gateway->url + "/#/runs/" + id);
  BOOST_TEST_REQUIRE(
      b.until([&] { return b.count("#tasks-body tr[data-state='SUCCEEDED']") == 4; }));
  b.screenshot(shots() / "run-dark.png");
  b.color_scheme("light");
  b.resize(390, 844);
  b.go(c.gateway->url + "/#/runs?flow=diamond");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count(row) == 1; }));
  BOOST_TEST(b.run("return document.body.scrollWidth <= window.innerWidth;").as_bool(),
             "the page scrolls sideways at phone width");
  b.screenshot(shots() / "runs-phone.png");

  // A run of 1,501 tasks: the page shows 500 of them and counts the rest,
  // and does not try to draw them all (it froze the browser).
  b.resize(1280, 900);
  const std::string wide = c.submit("wide");
  // It ends first (1,501 tasks on one thread take a while on a slow host);
  // what is checked is how the page shows it, not how fast it ran.
  BOOST_TEST_REQUIRE(
      eventually(
          [&] {
            return c.gateway->call(http::verb::get, "/runs/" + wide).body.find("\"COMPLETED\"") !=
                   std::string::npos;
          },
          120s),
      c.gateway->call(http::verb::get, "/runs/" + wide).body.substr(0, 400));
  b.go(c.gateway->url + "/#/runs/" + wide);
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("dl.summary[data-status='COMPLETED']") == 1; }),
                     b.text("dl.summary"));
  BOOST_TEST_REQUIRE(b.until([&] {
    return b.text("#tasks-more").find("1001 more tasks not shown (of 1501") != std::string::npos;
  }),
                     b.text("#tasks-more"));
  BOOST_TEST(b.count("#tasks-body tr[data-node]") == 500u);
  BOOST_TEST(
      b.text("#graph-too-big").find("1501 nodes: too many to draw here") != std::string::npos,
      b.text("#graph"));
  BOOST_TEST(b.count("#graph svg") == 0u);
  b.screenshot(shots() / "run-large.png");
}

BOOST_AUTO_TEST_CASE(with_keys_on_nothing_shows_without_a_key) {
  Cluster c(std::map<std::string, std::string>{{"PYOCO_HTTP_AUTH_MODE", "api_key"}});
  const ProcessResult made = run_pyoco({"keys", "create", "--tenant", "t1", "--scope",
                                        "runs:read,runs:write", "--json", "--nats", c.nats.url()});
  BOOST_REQUIRE_MESSAGE(made.exit_code == 0, made.out << made.err);
  const std::string key(json::parse(made.out).at("api_key").as_string());
  c.gateway->api_key = key;
  const std::string id = c.submit("diamond");

  Browser b;
  b.go(c.gateway->url + "/");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#key-dialog[open]") == 1; }),
                     "no key was asked for");
  BOOST_TEST(b.count("tr[data-run]") == 0u);
  BOOST_TEST(b.count("#counts a") == 0u);
  b.screenshot(shots() / "key.png");

  b.type("#key-input", key);
  b.click("#key-form button[type='submit']");
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("tr[data-run='" + id + "']") == 1; }),
                     "the runs never showed with the key");
  // Kept in this tab's sessionStorage, never in the URL.
  BOOST_TEST(b.run("return sessionStorage.getItem('pyoco.api_key');").as_string() == key);
  BOOST_TEST(std::string(b.run("return location.href;").as_string()).find(key) ==
             std::string::npos);

  // A run's page opened without a key (a link from elsewhere) asks for one
  // and says so: it said "Not found." of a run that exists.
  b.run("sessionStorage.clear(); return true;");
  b.go(c.gateway->url + "/#/runs/" + id);
  BOOST_TEST_REQUIRE(b.until([&] { return b.count("#view p.error") == 1; }),
                     "the run's page said nothing");
  BOOST_TEST(b.text("#view p.error").find("This needs an API key") != std::string::npos,
             b.text("#view p.error"));
  BOOST_TEST(b.text("#view").find("Not found.") == std::string::npos, b.text("#view"));
  BOOST_TEST(b.count("#key-dialog[open]") == 1u);
}
