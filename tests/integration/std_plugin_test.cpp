// The std plugin's shell, file and http_get tasks, loaded as a real plugin
// through the engine and run from flow YAML. http_get talks to a Beast
// server the test runs on 127.0.0.1; shell runs real commands. Waits are on
// conditions with deadlines, never sleeps.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/engine/local_artifact_store.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "event_log.hpp"
#include "flows.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace pyoco;
using core::TaskState;
using core::Value;

namespace {

constexpr auto compile = pyoco::testing::compile_yaml;

// How long a test waits for something that should happen at once before it
// gives up and fails (instead of hanging).
constexpr std::chrono::seconds kDeadline{20};

// A JSON string literal, which is also a YAML flow scalar.
std::string quoted(const std::string& s) { return boost::json::serialize(boost::json::value(s)); }

struct StdPlugin {
  Engine engine{EngineOptions{4, {pyoco::testing::binary_dir() / "lib/pyoco/plugins"}}};
  pyoco::testing::TempDir dir;
  std::shared_ptr<pyoco::testing::EventLog> events = std::make_shared<pyoco::testing::EventLog>();

  Run start(const std::string& yaml) {
    RunOptions o;
    o.params = core::from_json(boost::json::parse("{}"));
    o.artifacts = std::make_shared<pyoco::LocalArtifactStore>(dir.path() / "artifacts");
    o.listener = events;
    return engine.start(compile(yaml), std::move(o));
  }

  Run run(const std::string& yaml) {
    Run r = start(yaml);
    BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "the run did not finish");
    return r;
  }

  // A flow of one task `t` using std/<task> with these inputs (a YAML mapping).
  Run run_task(const std::string& task, const std::string& inputs) {
    return run("flow: {graph: t}\ntasks:\n  t: {use: \"std/" + task + "\", inputs: " + inputs +
               "}\n");
  }

  // The messages of the log lines `node` wrote, in order.
  std::vector<std::string> logs(const std::string& node) const {
    std::vector<std::string> out;
    for (const auto& e : events->of(trace::EventKind::Log, node)) out.push_back(e.message);
    return out;
  }

  static TaskRecord record(const Run& r, const std::string& node) {
    for (const auto& t : r.tasks()) {
      if (t.node == node) return t;
    }
    BOOST_FAIL("no record for " << node);
    return {};
  }
};

// ---- a tiny HTTP server ----

// Serves GET /hello (200, text/plain), holds GET /silent open without an
// answer, and answers anything else 404. Listens before the constructor
// returns, so it is ready as soon as port() can be read.
class TestHttpServer {
 public:
  TestHttpServer() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestHttpServer() {
    io_.stop();
    thread_.join();
  }
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  std::string url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(port_) + target;
  }

  // Until a request for /silent has arrived (false at the deadline).
  bool wait_for_silent_request() {
    std::unique_lock<std::mutex> lock(mutex_);
    return silent_cv_.wait_for(lock, kDeadline, [&] { return silent_requests_ > 0; });
  }

 private:
  struct Session {
    explicit Session(asio::ip::tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
  };

  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, asio::ip::tcp::socket socket) {
      if (ec) return;
      auto s = std::make_shared<Session>(std::move(socket));
      http::async_read(s->stream, s->buffer, s->request,
                       [this, s](beast::error_code ec, std::size_t) {
                         if (!ec) answer(s);
                       });
      accept();
    });
  }

  void answer(const std::shared_ptr<Session>& s) {
    if (s->request.target() == "/silent") {
      std::lock_guard<std::mutex> lock(mutex_);
      held_.push_back(s);  // open, unanswered, until the server stops
      ++silent_requests_;
      silent_cv_.notify_all();
      return;
    }
    const bool hello = s->request.target() == "/hello";
    const bool big = s->request.target() == "/big";  // past http_get's 8 MiB
    s->response.version(11);
    s->response.result(hello || big ? http::status::ok : http::status::not_found);
    s->response.set(http::field::content_type, "text/plain");
    s->response.body() = big     ? std::string((std::size_t{8} << 20) + 1, 'x')
                         : hello ? "hello from beast"
                                 : "no such page";
    s->response.prepare_payload();
    http::async_write(s->stream, s->response, [s](beast::error_code, std::size_t) {
      beast::error_code ignored;
      s->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    });
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable silent_cv_;
  int silent_requests_ = 0;
  std::vector<std::shared_ptr<Session>> held_;
};

// A loopback port nothing listens on: bound by the system, then released.
unsigned short closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// ---- shell helpers ----

// A FIFO a command writes its pid into (`echo $$ > FIFO`): read() returns
// once it has, so the test knows the command is running.
class PidFifo {
 public:
  explicit PidFifo(const fs::path& dir) : path_(dir / "pid.fifo") {
    BOOST_TEST_REQUIRE(mkfifo(path_.c_str(), 0600) == 0);
    // Non-blocking, so opening does not wait for the writer.
    fd_ = open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    BOOST_TEST_REQUIRE(fd_ >= 0);
  }
  ~PidFifo() { close(fd_); }
  PidFifo(const PidFifo&) = delete;
  PidFifo& operator=(const PidFifo&) = delete;

  const fs::path& path() const { return path_; }

  std::optional<pid_t> read() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(kDeadline.count() * 1000)) != 1) return std::nullopt;
    char buf[32] = {};
    const ssize_t n = ::read(fd_, buf, sizeof buf - 1);
    if (n <= 0) return std::nullopt;
    return static_cast<pid_t>(std::stol(buf));
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

bool process_gone(pid_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(std_plugin, StdPlugin)

// ---- http_get ----

BOOST_AUTO_TEST_CASE(http_get_returns_status_body_and_content_type) {
  TestHttpServer server;
  Run r = run_task("http_get", "{url: " + quoted(server.url("/hello")) + "}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  const Value out = r.output("t");
  BOOST_TEST(out.find("status").as_int() == 200);
  BOOST_TEST(out.find("body").as_string() == "hello from beast");
  BOOST_TEST(out.find("content_type").as_string() == "text/plain");
}

BOOST_AUTO_TEST_CASE(http_get_fails_on_404_naming_the_status) {
  TestHttpServer server;
  const std::string url = server.url("/nowhere");
  Run r = run_task("http_get", "{url: " + quoted(url) + "}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const TaskRecord t = record(r, "t");
  BOOST_TEST((t.state == TaskState::Failed));
  BOOST_TEST(t.error == "GET " + url + " returned 404 Not Found");
}

BOOST_AUTO_TEST_CASE(http_get_with_check_false_returns_the_404) {
  TestHttpServer server;
  Run r = run_task("http_get", "{url: " + quoted(server.url("/nowhere")) + ", check: false}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(r.output("t").find("status").as_int() == 404);
  BOOST_TEST(r.output("t").find("body").as_string() == "no such page");
}

BOOST_AUTO_TEST_CASE(http_get_connection_refused_is_a_clear_error) {
  const unsigned short port = closed_port();
  Run r = run_task("http_get",
                   "{url: " + quoted("http://127.0.0.1:" + std::to_string(port) + "/") + "}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const std::string error = record(r, "t").error;
  BOOST_TEST(error.find("cannot connect to 127.0.0.1:" + std::to_string(port) + ": ") == 0u, error);
  BOOST_TEST(error.find("refused") != std::string::npos, error);
}

// The resolver took "99999" as a service and connected to port 34463.
BOOST_AUTO_TEST_CASE(http_get_refuses_a_port_out_of_range_or_not_a_number) {
  for (const std::string port : {"99999", "0", "65536", "http", "80a", "-1"}) {
    const std::string url = "http://127.0.0.1:" + port + "/";
    Run r = run_task("http_get", "{url: " + quoted(url) + "}");
    BOOST_TEST((r.status() == core::RunStatus::Failed));
    BOOST_TEST(record(r, "t").error ==
                   "url '" + url + "': the port '" + port + "' is not a number from 1 to 65535",
               port);
  }
}

BOOST_AUTO_TEST_CASE(http_get_names_the_body_limit_it_stopped_at) {
  TestHttpServer server;
  Run r = run_task("http_get", "{url: " + quoted(server.url("/big")) + "}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const std::string error = record(r, "t").error;
  BOOST_TEST(error.find("larger than 8388608 bytes (8 MiB)") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(http_get_gives_up_at_its_timeout) {
  // The server takes the request and never answers: only timeout_sec ends it.
  TestHttpServer server;
  Run r = run_task("http_get", "{url: " + quoted(server.url("/silent")) + ", timeout_sec: 0.5}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  const std::string error = record(r, "t").error;
  const std::string expected = ": no answer within 0.5 s (timeout_sec)";
  BOOST_TEST(error.size() > expected.size(), error);
  BOOST_TEST(error.substr(error.size() - std::min(error.size(), expected.size())) == expected,
             error);
}

BOOST_AUTO_TEST_CASE(http_get_is_cancellable_while_waiting_for_an_answer) {
  TestHttpServer server;
  Run r = start("flow: {graph: t}\ntasks:\n  t: {use: \"std/http_get\", inputs: {url: " +
                quoted(server.url("/silent")) + "}}\n");
  BOOST_TEST_REQUIRE(server.wait_for_silent_request());
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "cancel did not stop http_get");
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
  BOOST_TEST((record(r, "t").state == TaskState::Cancelled));
}

// ---- json_get ----

BOOST_AUTO_TEST_CASE(json_get_walks_object_keys_and_array_indices) {
  struct Case {
    const char* inputs;  // a YAML mapping
    const char* output;  // JSON
  };
  const Case table[] = {
      {"{value: {a: {b: 3}}, path: 'a.b'}", "3"},
      {"{value: {a: {b: 3}}, path: 'a'}", R"({"b":3})"},
      {"{value: {items: [{id: 7}, {id: 8}]}, path: 'items.1.id'}", "8"},
      {"{value: [10, [20, 30]], path: '1.0'}", "20"},
      {"{value: {'1': one}, path: '1'}", R"("one")"},
      {"{value: {a: {b: 3}}, path: 'a.c', default: 'none'}", R"("none")"},
      {"{value: [1, 2], path: '2', default: [0]}", "[0]"},
      {"{value: {a: 1}, path: 'a', default: 'unused'}", "1"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.inputs) {
      Run r = run_task("json_get", c.inputs);
      BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
      BOOST_TEST(core::to_json_text(r.output("t")) == c.output);
    }
  }
}

BOOST_AUTO_TEST_CASE(json_get_without_a_default_fails_naming_what_is_absent) {
  struct Case {
    const char* inputs;
    const char* error;
  };
  const Case table[] = {
      {"{value: {a: {b: 3}}, path: 'a.c'}", "path 'a.c': no 'c' in the object"},
      {"{value: [1, 2], path: '2'}", "path '2': no '2' in the array"},
      {"{value: {a: 3}, path: 'a.b'}", "path 'a.b': no 'b' in a non-container value"},
  };
  for (const Case& c : table) {
    BOOST_TEST_CONTEXT(c.inputs) {
      Run r = run_task("json_get", c.inputs);
      BOOST_TEST((r.status() == core::RunStatus::Failed));
      BOOST_TEST(record(r, "t").error == c.error);
    }
  }
}

// ---- shell ----

BOOST_AUTO_TEST_CASE(shell_captures_exit_code_stdout_and_stderr) {
  Run r = run_task("shell", "{command: 'echo out; echo err >&2'}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  const Value out = r.output("t");
  BOOST_TEST(out.find("exit_code").as_int() == 0);
  BOOST_TEST(out.find("stdout").as_string() == "out\n");
  BOOST_TEST(out.find("stderr").as_string() == "err\n");
}

BOOST_AUTO_TEST_CASE(shell_non_zero_exit_with_check_false_succeeds_and_reports_it) {
  Run r = run_task("shell", "{command: 'echo partial; exit 3', check: false}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(r.output("t").find("exit_code").as_int() == 3);
  BOOST_TEST(r.output("t").find("stdout").as_string() == "partial\n");
}

BOOST_AUTO_TEST_CASE(shell_non_zero_exit_with_check_fails_naming_the_code) {
  Run r = run_task("shell", "{command: 'echo disk full >&2; exit 4', check: true}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r, "t").error == "command exited 4: disk full");
  // check defaults to true
  Run d = run_task("shell", "{command: 'exit 5'}");
  BOOST_TEST(record(d, "t").error == "command exited 5");
}

// Given both, one of command and argv was dropped without a word.
BOOST_AUTO_TEST_CASE(shell_refuses_command_and_argv_together) {
  Run r =
      run("flow: {graph: t}\ntasks:\n  t: {use: std/shell, retries: 2, inputs: {command: "
          "'echo one', argv: [echo, two]}}\n");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r, "t").error ==
             "give input 'command' (run with /bin/sh -c) or 'argv' (run without a shell), not "
             "both");
  BOOST_TEST(record(r, "t").attempts == 1u);  // permanent: a retry cannot fix it
}

// A command killed by a signal was "command exited 139"; exit_code stays 128+N.
BOOST_AUTO_TEST_CASE(shell_names_the_signal_that_killed_the_command) {
  Run r = run_task("shell", "{command: 'ulimit -c 0; echo dying >&2; kill -SEGV $$'}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r, "t").error == "command was killed by signal 11 (SIGSEGV): dying");
  Run k = run_task("shell", "{argv: [sh, -c, 'kill -KILL $$']}");
  BOOST_TEST(record(k, "t").error == "command was killed by signal 9 (SIGKILL)");
  Run unchecked = run_task("shell", "{command: 'kill -TERM $$', check: false}");
  BOOST_TEST_REQUIRE((unchecked.status() == core::RunStatus::Completed),
                     record(unchecked, "t").error);
  BOOST_TEST(unchecked.output("t").find("exit_code").as_int() == 143);
  // exited 139 by itself is an exit, not a signal
  Run exited = run_task("shell", "{command: 'exit 139'}");
  BOOST_TEST(record(exited, "t").error == "command exited 139");
}

// The command runs behind a guard process (it kills the command's process
// group when the host dies) that ends as the command did: these are the
// command's own ends, not the guard's.
BOOST_AUTO_TEST_CASE(shell_reports_the_command_s_own_end_through_its_guard) {
  // A background job still writing: the task waits for it, and the exit
  // code is the shell's.
  Run late = run_task("shell",
                      "{command: '(sleep 0.3; echo late) & echo early; exit 7', "
                      "check: false}");
  BOOST_TEST_REQUIRE((late.status() == core::RunStatus::Completed), record(late, "t").error);
  BOOST_TEST(late.output("t").find("exit_code").as_int() == 7);
  BOOST_TEST(late.output("t").find("stdout").as_string() == "early\nlate\n");
  // Signals the command sends its own group reach the guard too: it lets
  // them be (the one it waits for as the host's death included).
  Run own = run_task("shell",
                     "{command: 'trap \"\" USR1 HUP INT TERM; for s in USR1 HUP INT TERM; do kill "
                     "-$s 0; done; echo alive'}");
  BOOST_TEST_REQUIRE((own.status() == core::RunStatus::Completed), record(own, "t").error);
  BOOST_TEST(own.output("t").find("stdout").as_string() == "alive\n");
  Run usr1 = run_task("shell", "{command: 'kill -USR1 0'}");
  BOOST_TEST(record(usr1, "t").error == "command was killed by signal 10 (SIGUSR1)");
  // What cannot be started is named as before.
  Run missing = run_task("shell", "{argv: [pyoco-no-such-command, x]}");
  BOOST_TEST(record(missing, "t").error ==
             "cannot start 'pyoco-no-such-command': No such file or directory");
  Run not_exec = run_task("shell", "{argv: [/dev/null]}");
  BOOST_TEST(record(not_exec, "t").error == "cannot start '/dev/null': Permission denied");
  Run not_found = run_task("shell", "{command: 'pyoco-no-such-command'}");
  BOOST_TEST(record(not_found, "t").error.find("command exited 127: ") == 0u,
             record(not_found, "t").error);
}

// A mistyped input of std/shell is named by its path (it said "expected
// string, got int" alone).
BOOST_AUTO_TEST_CASE(shell_names_a_mistyped_input) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{command: \"true\", env: {A: x, N: 5}}", "input 'env.N': expected string, got int"},
      {"{command: true}", "input 'command': expected string, got bool"},
      {"{argv: [echo, 2.5]}", "input 'argv.1': expected string, got double"},
      {"{command: \"true\", cwd: 3}", "input 'cwd': expected string, got int"},
  };
  for (const auto& [inputs, why] : cases) {
    Run r = run_task("shell", inputs);
    BOOST_TEST((r.status() == core::RunStatus::Failed), inputs);
    BOOST_TEST(record(r, "t").error == why, inputs);
  }
}

// std/echo dropped a message that was not a string without a word.
BOOST_AUTO_TEST_CASE(echo_refuses_a_message_that_is_not_a_string) {
  Run r = run_task("echo", "{value: 1, message: 5}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  // It says what was given: a fixed example (`message: "5"`, `-p 'msg="5"'`)
  // whatever the value, and a param when it came from a node, misled.
  BOOST_TEST(record(r, "t").error ==
             "input 'message': expected string, got int 5; echo logs a message as it is and "
             "converts nothing: give 'message' a string (\"5\")");
  BOOST_TEST(record(r, "t").attempts == 1u);
  BOOST_TEST(record(run_task("echo", "{value: 1, message: 2.5}"), "t").error ==
             "input 'message': expected string, got double 2.5; echo logs a message as it is and "
             "converts nothing: give 'message' a string (\"2.5\")");
  BOOST_TEST(record(run_task("echo", "{message: [a]}"), "t").error ==
             "input 'message': expected string, got array; echo logs a message as it is and "
             "converts nothing: give 'message' a string");
  Run ok = run_task("echo", "{value: 1, message: \"5\"}");
  BOOST_TEST((ok.status() == core::RunStatus::Completed));
  Run none = run_task("echo", "{value: 1, message: null}");
  BOOST_TEST((none.status() == core::RunStatus::Completed));
}

BOOST_AUTO_TEST_CASE(shell_feeds_stdin) {
  Run r = run_task("shell", "{command: 'tr a-z A-Z', stdin: \"hello\\nworld\\n\"}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(r.output("t").find("stdout").as_string() == "HELLO\nWORLD\n");
}

BOOST_AUTO_TEST_CASE(shell_stdin_the_command_never_reads_is_no_crash) {
  // More than a pipe holds, to a command that exits without reading: the
  // write fails (EPIPE), which must not raise SIGPIPE in the host.
  const std::string big(4 << 20, 'x');
  Run r = run_task("shell", "{command: 'exit 0', stdin: " + quoted(big) + "}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(r.output("t").find("exit_code").as_int() == 0);
}

BOOST_AUTO_TEST_CASE(shell_env_adds_and_overrides_variables) {
  // argv runs the program without a shell: it sees the environment exactly.
  Run r = run_task("shell",
                   "{argv: [printenv, PYOCO_STD_TEST, HOME], "
                   "env: {PYOCO_STD_TEST: added, HOME: /overridden}}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(r.output("t").find("stdout").as_string() == "added\n/overridden\n");
}

BOOST_AUTO_TEST_CASE(shell_runs_in_cwd) {
  const fs::path work = dir.path() / "work dir";
  fs::create_directories(work);
  Run r = run_task("shell", "{command: pwd, cwd: " + quoted(work.string()) + "}");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed), record(r, "t").error);
  BOOST_TEST(r.output("t").find("stdout").as_string() == fs::canonical(work).string() + "\n");
}

// Output is kept in memory for the node's output: `yes` would take all of
// it. Past 16 MiB the task fails, once, saying why (and the command is
// stopped); just under the cap it succeeds.
BOOST_AUTO_TEST_CASE(shell_output_past_16_mib_fails_the_task_instead_of_filling_memory) {
  Run over =
      run_task("shell", "{command: " + quoted("head -c 40000000 /dev/zero | tr '\\0' x") + "}");
  BOOST_TEST((over.status() == core::RunStatus::Failed));
  const TaskRecord t = record(over, "t");
  BOOST_TEST(t.error.find("stdout passed 16 MiB") != std::string::npos, t.error);
  BOOST_TEST(t.attempts == 1u);
  Run under =
      run_task("shell", "{command: " + quoted("head -c 16000000 /dev/zero | tr '\\0' x") + "}");
  BOOST_TEST_REQUIRE((under.status() == core::RunStatus::Completed), record(under, "t").error);
  BOOST_TEST(under.output("t").find("stdout").as_string().size() == 16000000u);
}

// What a process cannot be given is refused, not changed: `A=B` as a name
// set another variable, a NUL cut a command short; a missing cwd was
// reported as /bin/sh missing.
BOOST_AUTO_TEST_CASE(shell_refuses_env_names_and_nuls_it_cannot_pass_and_names_a_bad_cwd) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{command: \"true\", env: {\"A=B\": x}}", "env: 'A=B' is not a variable name"},
      {"{command: \"echo a\\0b\"}", "command: holds a NUL byte"},
      {"{argv: [echo, \"a\\0b\"]}", "argv: holds a NUL byte"},
      {"{command: \"true\", env: {A: \"x\\0y\"}}", "env.A: holds a NUL byte"},
      {"{command: \"true\", cwd: /nonexistent-pyoco-dir}",
       "cwd: '/nonexistent-pyoco-dir' is not a directory"},
  };
  for (const auto& [inputs, why] : cases) {
    Run r = run_task("shell", inputs);
    BOOST_TEST((r.status() == core::RunStatus::Failed), inputs);
    BOOST_TEST(record(r, "t").error.find(why) != std::string::npos,
               inputs << ": " << record(r, "t").error);
  }
}

// Many commands forked at once from several workers, each printing more
// than a pipe holds: a pidfd's wake-up meant for another command once made
// the plugin's reactor wait for a command that was still printing, into a
// pipe only the reactor reads, and the run hung (about one run in three).
BOOST_AUTO_TEST_CASE(parallel_shell_commands_with_large_output_all_finish) {
  std::string items;
  for (int i = 0; i < 300; ++i) items += (i ? ", " : "") + std::to_string(i);
  Run r = run("flow:\n  defaults: {items: [" + items +
              "]}\n  graph: |\n    each: foreach(over={{items}}, item=it, parallel=8) { t }\n"
              "tasks:\n  t: {use: \"std/shell\", inputs: {command: \"head -c 200000 /dev/zero; "
              "seq 1 1000\"}}\n");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  std::size_t done = 0;
  for (const auto& t : r.tasks()) {
    if (t.node.rfind("t[", 0) == 0 && t.state == TaskState::Succeeded) ++done;
  }
  BOOST_TEST(done == 300u);
}

BOOST_AUTO_TEST_CASE(shell_cancel_terminates_the_command) {
  PidFifo fifo(dir.path());
  Run r = start("flow: {graph: t}\ntasks:\n  t: {use: \"std/shell\", inputs: {command: " +
                quoted("echo $$ > '" + fifo.path().string() + "'; exec sleep 600") + "}}\n");
  const std::optional<pid_t> pid = fifo.read();
  BOOST_TEST_REQUIRE(pid.has_value(), "the command never started");
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "cancel did not stop the command");
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
  BOOST_TEST((record(r, "t").state == TaskState::Cancelled));
  // The run ends at the cancel; the command goes right after (terminated and reaped).
  BOOST_TEST(pyoco::testing::eventually([&] { return process_gone(*pid); }));
}

BOOST_AUTO_TEST_CASE(shell_cancel_kills_a_command_that_ignores_sigterm) {
  PidFifo fifo(dir.path());
  Run r = start("flow: {graph: t}\ntasks:\n  t: {use: \"std/shell\", inputs: {command: " +
                quoted("trap '' TERM; echo $$ > '" + fifo.path().string() + "'; exec sleep 600") +
                "}}\n");
  const std::optional<pid_t> pid = fifo.read();
  BOOST_TEST_REQUIRE(pid.has_value(), "the command never started");
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "cancel did not stop the command");
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
  BOOST_TEST(pyoco::testing::eventually([&] { return process_gone(*pid); }));
}

// A cancel's SIGTERM reaches the command's whole group, the guard between
// the host and the command too: the guard stays (it would take the command
// with it), and the command has its grace to finish its trap (a trap of
// 0.1 s: one of 0.5 s left too little of the 2 s grace on a slow host).
BOOST_AUTO_TEST_CASE(shell_cancel_gives_a_command_its_grace) {
  PidFifo fifo(dir.path());
  const fs::path marker = dir.path() / "trapped";
  Run r =
      start("flow: {graph: t}\ntasks:\n  t: {use: \"std/shell\", inputs: {command: " +
            quoted("trap 'sleep 0.1; echo cleaned > \"" + marker.string() +
                   "\"; exit 3' TERM; echo $$ > '" + fifo.path().string() + "'; sleep 600 & wait") +
            "}}\n");
  const std::optional<pid_t> pid = fifo.read();
  BOOST_TEST_REQUIRE(pid.has_value(), "the command never started");
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "cancel did not stop the command");
  BOOST_TEST((r.status() == core::RunStatus::Cancelled));
  BOOST_TEST(pyoco::testing::eventually([&] { return process_gone(*pid); }));
  std::ifstream in(marker);
  std::string line;
  BOOST_TEST((std::getline(in, line) && line == "cleaned"), "the trap did not finish");
}

// An endless output (`yes`) ran for ever: the cap was checked only when
// the command ended. Now the task fails as soon as a stream passes 16 MiB,
// and the command is stopped as a cancel stops it (SIGTERM to its group).
BOOST_AUTO_TEST_CASE(shell_endless_output_fails_at_the_cap_and_stops_the_command) {
  for (const std::string stream : {"stdout", "stderr"}) {
    BOOST_TEST_CONTEXT(stream) {
      const fs::path sub = dir.path() / stream;
      fs::create_directories(sub);
      PidFifo fifo(sub);
      Run r = start("flow: {graph: t}\ntasks:\n  t: {use: \"std/shell\", inputs: {command: " +
                    quoted("echo $$ > '" + fifo.path().string() + "'; exec yes" +
                           (stream == "stderr" ? " >&2" : "")) +
                    "}}\n");
      const std::optional<pid_t> pid = fifo.read();
      BOOST_TEST_REQUIRE(pid.has_value(), "the command never started");
      BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "the endless command never hit the cap");
      BOOST_TEST((r.status() == core::RunStatus::Failed));
      const TaskRecord t = record(r, "t");
      BOOST_TEST(t.error == "the command's " + stream +
                                " passed 16 MiB (an output is kept in memory), and the command "
                                "was stopped; write large output to a file",
                 t.error);
      BOOST_TEST(t.attempts == 1u);
      BOOST_TEST(pyoco::testing::eventually([&] { return process_gone(*pid); }));
    }
  }
}

// A command stopped at its deadline left nothing of what it printed: the
// node's error was "timed out after 0.5 s", and its output is lost with the
// call. Its last lines are logged now, stdout's then stderr's.
BOOST_AUTO_TEST_CASE(shell_timeout_logs_what_the_command_printed) {
  Run r =
      run("flow: {graph: slow}\ntasks:\n  slow: {use: std/shell, timeout_sec: 4, inputs: {command: "
          "'echo important-progress; echo warn-on-stderr >&2; exec sleep 600'}}\n");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r, "slow").error == "timed out after 4 s");
  const std::vector<std::string> expected = {
      "stopping the command (timed out); the last it printed:", "stdout: important-progress",
      "stderr: warn-on-stderr"};
  BOOST_TEST(logs("slow") == expected, boost::test_tools::per_element());
  const auto lines = events->of(trace::EventKind::Log, "slow");
  BOOST_TEST_REQUIRE(lines.size() == 3u);
  BOOST_TEST((lines[0].level == trace::LogLevel::Warn));
}

// The same on a cancel: all the command wrote before it, the last 20
// lines of each stream (a line cut by the 4 KiB kept is marked "...").
// Nothing is logged of a command that printed nothing.
//
// The cancel may land while the task's start() has not returned yet (a
// slow host, the sanitizers): its on-cancel callback then waits for
// start() (abi.h, Threads), and the run's end waits for both.
BOOST_AUTO_TEST_CASE(shell_cancel_logs_the_last_lines_the_command_printed) {
  PidFifo fifo(dir.path());
  const std::string long_line(5000, 'x');
  Run r = start("flow: {graph: t}\ntasks:\n  t: {use: \"std/shell\", inputs: {command: " +
                quoted("seq 1 100; printf '" + long_line + "tail\\n' >&2; printf partial; " +
                       "echo $$ > '" + fifo.path().string() + "'; exec sleep 600") +
                "}}\n");
  const std::optional<pid_t> pid = fifo.read();
  BOOST_TEST_REQUIRE(pid.has_value(), "the command never started");
  r.cancel();
  BOOST_TEST_REQUIRE(r.wait_for(kDeadline), "cancel did not stop the command");
  BOOST_TEST((record(r, "t").state == TaskState::Cancelled));
  std::vector<std::string> expected = {"stopping the command (cancelled); the last it printed:"};
  for (int i = 82; i <= 100; ++i) expected.push_back("stdout: " + std::to_string(i));
  expected.push_back("stdout: partial");
  expected.push_back("stderr: ..." + std::string(4096 - 5, 'x') + "tail");
  BOOST_TEST(logs("t") == expected, boost::test_tools::per_element());
  BOOST_TEST(pyoco::testing::eventually([&] { return process_gone(*pid); }));

  fs::create_directories(dir.path() / "quiet");
  PidFifo quiet_fifo(dir.path() / "quiet");
  Run quiet =
      start("flow: {graph: q}\ntasks:\n  q: {use: \"std/shell\", inputs: {command: " +
            quoted("echo $$ > '" + quiet_fifo.path().string() + "'; exec sleep 600") + "}}\n");
  BOOST_TEST_REQUIRE(quiet_fifo.read().has_value(), "the command never started");
  quiet.cancel();
  BOOST_TEST_REQUIRE(quiet.wait_for(kDeadline), "cancel did not stop the command");
  BOOST_TEST(logs("q").empty());
}

// ---- write_file / read_file ----

BOOST_AUTO_TEST_CASE(write_file_then_read_file_round_trips_through_artifacts) {
  Run r = run(R"(
flow: {graph: "save >> load >> save_json >> load_json >> load_bytes"}
tasks:
  save: {use: "std/write_file", inputs: {name: "notes/hello.txt", content: "héllo\nworld\n"}}
  load: {use: "std/read_file", inputs: {artifact: "$node.save.output"}}
  save_json: {use: "std/write_file", inputs: {name: "data.json", content: {n: 1, list: [true, null]}}}
  load_json: {use: "std/read_file", inputs: {artifact: "$node.save_json.output"}}
  load_bytes: {use: "std/read_file", inputs: {artifact: "$node.save.output", as: bytes}}
)");
  BOOST_TEST_REQUIRE((r.status() == core::RunStatus::Completed));
  // The task learns the artifact's name, never where the host keeps it.
  BOOST_TEST(r.output("save").as_string() == "notes/hello.txt");
  BOOST_TEST(r.output("load").as_string() == "héllo\nworld\n");
  BOOST_TEST(r.output("load_json").as_string() == R"({"n":1,"list":[true,null]})");
  const Value bytes = r.output("load_bytes");
  BOOST_TEST((bytes.kind() == core::ValueKind::Bytes));
  BOOST_TEST(bytes.as_string() == "héllo\nworld\n");

  const fs::path written = dir.path() / "artifacts" / r.id() / "notes/hello.txt";
  const auto artifacts = record(r, "save").artifacts;
  BOOST_TEST_REQUIRE(artifacts.size() == 1u);
  BOOST_TEST(artifacts.front().name == "notes/hello.txt");
  BOOST_TEST(artifacts.front().path == written.string());
  BOOST_TEST(artifacts.front().media_type == "text/plain");
  BOOST_TEST(artifacts.front().size == std::string("héllo\nworld\n").size());
}

BOOST_AUTO_TEST_CASE(read_file_of_an_artifact_the_run_does_not_have_says_so) {
  Run r = run_task("read_file", "{artifact: \"never-saved.txt\"}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  BOOST_TEST(record(r, "t").error == "this run has no artifact 'never-saved.txt'");
}

BOOST_AUTO_TEST_CASE(read_file_wants_exactly_one_of_artifact_and_path) {
  for (const std::string inputs : {"{}", "{artifact: a.txt, path: /etc/hostname}"}) {
    Run r = run_task("read_file", inputs);
    BOOST_TEST((r.status() == core::RunStatus::Failed));
    BOOST_TEST(record(r, "t").error.find("give exactly one of the inputs 'artifact'") == 0u,
               record(r, "t").error);
  }
}

BOOST_AUTO_TEST_CASE(read_file_refuses_what_is_not_a_regular_file) {
  // A FIFO nobody writes would hold the worker forever; a directory is no file.
  const fs::path fifo = dir.path() / "pipe";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const fs::path& p : {fifo, dir.path()}) {
    Run r = run_task("read_file", "{path: " + quoted(p.string()) + "}");
    BOOST_TEST((r.status() == core::RunStatus::Failed));
    BOOST_TEST(record(r, "t").error == "cannot read " + p.string() + ": not a regular file");
  }
}

// The content is held in memory and passed on as a value: a file over
// max_bytes (16 MiB unless given) fails the task once, naming the input to
// raise; at the limit it is read whole.
BOOST_AUTO_TEST_CASE(read_file_over_max_bytes_fails_once_naming_the_input) {
  const fs::path big = dir.path() / "big.txt";
  pyoco::testing::write_text(big, std::string((16u << 20) + 1, 'x'));
  Run over =
      run("flow: {graph: t}\ntasks:\n  t: {use: \"std/read_file\", retries: 2, inputs: "
          "{path: " +
          quoted(big.string()) + "}}\n");
  BOOST_TEST((over.status() == core::RunStatus::Failed));
  const TaskRecord t = record(over, "t");
  BOOST_TEST(t.error == "cannot read " + big.string() +
                            ": it is over max_bytes (16777216 bytes); raise input 'max_bytes' "
                            "to read it",
             t.error);
  BOOST_TEST(t.attempts == 1u);
  const fs::path small = dir.path() / "small.txt";
  pyoco::testing::write_text(small, "0123456789");
  Run exact = run_task("read_file", "{path: " + quoted(small.string()) + ", max_bytes: 10}");
  BOOST_TEST_REQUIRE((exact.status() == core::RunStatus::Completed), record(exact, "t").error);
  BOOST_TEST(exact.output("t").as_string() == "0123456789");
  Run under = run_task("read_file", "{path: " + quoted(small.string()) + ", max_bytes: 9}");
  BOOST_TEST((under.status() == core::RunStatus::Failed));
  Run bad = run_task("read_file", "{path: " + quoted(small.string()) + ", max_bytes: -1}");
  BOOST_TEST(record(bad, "t").error.find("input 'max_bytes' must be from 0") == 0u,
             record(bad, "t").error);
}

BOOST_AUTO_TEST_CASE(read_file_of_a_missing_file_names_it) {
  const std::string missing = (dir.path() / "nope.txt").string();
  Run r = run_task("read_file", "{path: " + quoted(missing) + "}");
  BOOST_TEST((r.status() == core::RunStatus::Failed));
  // Why, too: it only said "cannot read <path>".
  BOOST_TEST(record(r, "t").error == "cannot read " + missing + ": No such file or directory");
  // A bare name is most likely an artifact given as a path: say so.
  Run bare = run_task("read_file", "{path: report.json}");
  BOOST_TEST(record(bare, "t").error ==
             "cannot read report.json: No such file or directory (an artifact std/write_file "
             "saved is read with input 'artifact', not 'path')");
}

BOOST_AUTO_TEST_SUITE_END()
