// docs/grafana_pyoco_cute.json, proven: Debian's Prometheus scrapes a real
// gateway while real runs complete, fail and are cancelled; then every
// query of every panel of the dashboard goes through Prometheus's HTTP API
// and must return the series and values those runs make. A panel added
// without an expectation here fails the test.
#include <pyoco/server/client.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <functional>
#include <map>
#include <thread>

#include "child.hpp"
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

// A program's full path from PATH (the child is started with execv).
std::string on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (std::size_t start = 0; start <= dirs.size();) {
    const std::size_t colon = std::min(dirs.find(':', start), dirs.size());
    const std::filesystem::path candidate =
        std::filesystem::path(dirs.substr(start, colon - start)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    start = colon + 1;
  }
  BOOST_FAIL(name << " is not on PATH: tools/setup.sh installs it");
  return name;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Prometheus on a free port, scraping `target` (host:port) every second.
struct Prometheus {
  TempDir dir;
  std::unique_ptr<ChildProcess> child;
  std::string url;

  explicit Prometheus(const std::string& target) {
    write_text(dir.path() / "prometheus.yml",
               "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
               "scrape_configs:\n"
               "  - job_name: pyoco\n"
               "    static_configs: [{targets: [\"" +
                   target + "\"]}]\n");
    const int port = free_loopback_port();
    url = "http://127.0.0.1:" + std::to_string(port);
    child = std::make_unique<ChildProcess>(
        std::vector<std::string>{on_path("prometheus"),
                                 "--config.file=" + (dir.path() / "prometheus.yml").string(),
                                 "--storage.tsdb.path=" + (dir.path() / "data").string(),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port)},
        std::map<std::string, std::string>{}, dir.path());
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
      try {
        if (server::http_call(url, http::verb::get, "/-/ready", {}, "text/plain", {}, 1s).status ==
            200)
          return;
      } catch (const server::ClientError&) {
      }
      std::this_thread::sleep_for(50ms);  // readiness, with a deadline
    }
    BOOST_FAIL("prometheus did not get ready: " << child->err());
  }

  // An instant query's result vector: labels (without __name__) -> value.
  std::map<std::string, double> query(const std::string& expr) const {
    const auto r =
        server::http_call(url, http::verb::get, "/api/v1/query?query=" + url_encode(expr));
    BOOST_REQUIRE_MESSAGE(r.status == 200, expr << ": " << r.status << " " << r.body);
    const json::object o = json::parse(r.body).as_object();
    BOOST_REQUIRE(o.at("status").as_string() == "success");
    std::map<std::string, double> out;
    for (const auto& s : o.at("data").at("result").as_array()) {
      std::string labels;
      for (const auto& [k, v] : s.at("metric").as_object()) {
        if (k != "__name__" && k != "instance" && k != "job")
          labels += std::string(k) + "=" + std::string(v.as_string()) + ",";
      }
      if (!labels.empty()) labels.pop_back();
      out[labels] = std::stod(std::string(s.at("value").as_array().at(1).as_string()));
    }
    return out;
  }

  // Waits until `expr` gives `labels` a value for which `ok` holds.
  void wait(const std::string& expr, const std::string& labels,
            const std::function<bool(double)>& ok) const {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
      const auto r = query(expr);
      if (auto it = r.find(labels); it != r.end() && ok(it->second)) return;
      std::this_thread::sleep_for(100ms);
    }
    BOOST_FAIL(expr << " never gave " << labels << " the value wanted");
  }
};

std::string run_id_of(const ProcessResult& r) {
  const auto at = r.out.find("\"run_id\":\"");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, r.out << r.err);
  const auto start = at + 10;
  return r.out.substr(start, r.out.find('"', start) - start);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_query_of_the_dashboard_answers_what_the_runs_made) {
  NatsServer nats;
  TempDir flows;
  write_text(flows.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
  write_text(flows.path() / "sleepy.yaml",
             "flow: {graph: nap}\ntasks:\n  nap: {use: std/sleep, inputs: {seconds: 60}}\n");
  Server gateway(
      {"--nats", nats.url(), "--with-worker", "--slots", "2", "--flows", flows.path().string()});
  Prometheus prom(gateway.url.substr(std::string("http://").size()));
  // A first scrape before any run, so that increase() sees the counters rise.
  prom.wait("pyoco_runs_total", "status=COMPLETED", [](double v) { return v == 0; });

  BOOST_TEST(gateway.client({"submit", "hello", "--wait"}).exit_code == 0);
  // A task's series appears with its first run: once scraped, the second
  // run makes its rate (a series' first sample has none to rise from).
  prom.wait("pyoco_task_duration_seconds_count", "task=hello/fetch_data",
            [](double v) { return v == 1; });
  BOOST_TEST(gateway.client({"submit", "hello", "--wait"}).exit_code == 0);
  BOOST_TEST(gateway.client({"submit", "no_such_flow", "--wait"}).exit_code != 0);
  const std::string sleepy = run_id_of(gateway.client({"submit", "sleepy", "--json"}));
  prom.wait("pyoco_runs_in_progress", "", [](double v) { return v == 1; });
  BOOST_TEST(gateway.client({"cancel", sleepy, "--wait"}).exit_code == 0);  // CANCELLED
  prom.wait("pyoco_runs_total", "status=CANCELLED", [](double v) { return v == 1; });
  prom.wait("pyoco_runs_in_progress", "", [](double v) { return v == 0; });
  // The worker back to IDLE as Prometheus has it (a scrape after the
  // cancel): the Workers panel is read once, below.
  prom.wait("max by (state) (pyoco_workers)", "state=IDLE", [](double v) { return v == 1; });

  // What each panel's query must give: (title, refId) -> a check of the result.
  using Result = std::map<std::string, double>;
  const std::map<std::pair<std::string, std::string>, std::function<void(const Result&)>> expect{
      {{"🏃 Runs in progress", "A"}, [](const Result& r) { BOOST_TEST(r.at("") == 0); }},
      {{"✅ Run completions (last 5m)", "A"},
       [](const Result& r) {
         BOOST_TEST(r.at("status=COMPLETED") > 0);
         BOOST_TEST(r.at("status=FAILED") > 0);
         BOOST_TEST(r.at("status=CANCELLED") > 0);
       }},
      {{"🥕 Average run duration by flow", "A"},
       [](const Result& r) {
         BOOST_TEST(r.at("flow=hello") > 0);
         BOOST_TEST(r.at("flow=hello") < 10);
         BOOST_TEST(r.at("flow=sleepy") > 0);  // cancelled after it started
       }},
      {{"🐇 Runs by status", "A"},
       [](const Result& r) {
         BOOST_TEST(r.at("status=COMPLETED") == 2);
         BOOST_TEST(r.at("status=FAILED") == 1);
         BOOST_TEST(r.at("status=CANCELLED") == 1);
       }},
      {{"Task durations (p95)", "A"},
       [](const Result& r) {
         BOOST_TEST(r.at("task=hello/fetch_data") > 0);
         BOOST_TEST(r.at("task=hello/fetch_data") < 1);  // a hello task: milliseconds
       }},
      {{"Queue depth", "A"}, [](const Result& r) { BOOST_TEST(r.at("tag=default") == 0); }},
      {{"Workers", "A"},
       [](const Result& r) {
         BOOST_TEST(r.at("state=IDLE") == 1);
         BOOST_TEST(r.at("state=DISCONNECTED") == 0);
       }},
      {{"Failures", "A"}, [](const Result& r) { BOOST_TEST(r.at("") > 0); }},
      {{"Failures", "B"}, [](const Result& r) { BOOST_TEST(r.at("") == 1); }},
  };

  const json::object dashboard =
      json::parse(read_text(source_dir() / "docs/grafana_pyoco_cute.json")).as_object();
  std::size_t checked = 0;
  for (const auto& panel : dashboard.at("panels").as_array()) {
    const std::string title(panel.at("title").as_string());
    for (const auto& t : panel.at("targets").as_array()) {
      const std::string ref(t.at("refId").as_string());
      const std::string expr(t.at("expr").as_string());
      BOOST_TEST_CONTEXT(title << " / " << ref << ": " << expr) {
        BOOST_TEST(t.at("datasource").at("uid").as_string() == "${datasource}");
        const auto it = expect.find({title, ref});
        BOOST_TEST_REQUIRE((it != expect.end()), "no expectation for this query");
        it->second(prom.query(expr));
        ++checked;
      }
    }
  }
  BOOST_TEST(checked == expect.size());
}
