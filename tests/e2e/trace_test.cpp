// The trace as a terminal and a log file see it: cute on a TTY without
// being asked, plain otherwise; whole lines even when many tasks log at once.
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "child.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// Runs pyoco with a pseudo-terminal as its stdout and stderr, and
// PYOCO_CUTE set to `cute` (unset when null); returns what the terminal showed.
std::string run_on_a_terminal(const std::vector<std::string>& args, const char* cute = nullptr) {
  std::vector<std::string> argv{pyoco_exe().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    unsetenv("PYOCO_CUTE");
    if (cute != nullptr) setenv("PYOCO_CUTE", cute, 1);
    unsetenv("PYOCO_PLUGIN_PATH");
    std::vector<char*> c;
    for (auto& a : argv) c.push_back(a.data());
    c.push_back(nullptr);
    execv(c[0], c.data());
    _exit(127);
  }
  std::string shown;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(master, buf, sizeof buf);
    if (n > 0) {
      shown.append(buf, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EIO once the child has closed the terminal
    }
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0, shown);
  return shown;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_terminal_gets_the_cute_trace_and_a_pipe_the_plain_one) {
  const std::string hello = (source_dir() / "examples/hello/flow.yaml").string();
  TempDir dir;
  const std::string artifacts = "--artifact-dir=" + (dir.path() / "a").string();
  const std::string tty = run_on_a_terminal({"run", hello, artifacts});
  BOOST_TEST(has(tty, "🐇 pyoco > start flow=hello_pyoco run_id="), tty);
  BOOST_TEST(has(tty, "🥕 done flow=hello_pyoco"), tty);
  BOOST_TEST(!has(tty, "INFO pyoco"), tty);

  const std::string forced = run_on_a_terminal({"run", hello, artifacts, "--non-cute"});
  BOOST_TEST(has(forced, "INFO pyoco start flow=hello_pyoco"), forced);

  // docs/cli.md: PYOCO_CUTE=0 means plain lines, as --non-cute, even on a terminal.
  const std::string plain = run_on_a_terminal({"run", hello, artifacts}, "0");
  BOOST_TEST(has(plain, "INFO pyoco start flow=hello_pyoco"), plain);
  BOOST_TEST(!has(plain, "🐇"), plain);
  const std::string other = run_on_a_terminal({"run", hello, artifacts}, "1");
  BOOST_TEST(has(other, "🐇 pyoco > start flow=hello_pyoco"), other);  // only 0 turns it off
  const std::string asked = run_on_a_terminal({"run", hello, artifacts, "--cute"}, "0");
  BOOST_TEST(has(asked, "🐇 pyoco > start flow=hello_pyoco"), asked);  // --cute wins

  ProcessOptions o;
  o.unset_env = {"PYOCO_CUTE"};
  o.cwd = dir.path();
  const ProcessResult piped = run_pyoco({"run", hello}, o);
  BOOST_TEST(has(piped.out, "INFO pyoco start flow=hello_pyoco"), piped.out);
  BOOST_TEST(!has(piped.out, "🐇"), piped.out);
}

BOOST_AUTO_TEST_CASE(many_tasks_logging_at_once_never_split_a_line) {
  TempDir dir;
  // 400 tasks, 8 at a time, each logging a 3000-character line.
  std::ostringstream items;
  for (int i = 0; i < 400; ++i) items << (i ? "," : "") << i;
  const fs::path flow = dir.path() / "chatty.yaml";
  std::ofstream(flow) << "flow:\n  name: chatty\n  defaults: {items: [" << items.str()
                      << "]}\n  graph: \"foreach(over={{items}}, item=it, parallel=8) { talk }\"\n"
                      << "tasks:\n  talk: {use: \"std/echo\", inputs: {value: 1, message: \""
                      << std::string(3000, 'x') << "\"}}\n";
  const fs::path json_file = dir.path() / "trace.jsonl";
  ProcessOptions o;
  o.cwd = dir.path();
  const ProcessResult r = run_pyoco({"run", flow.string(), "--non-cute", "--jobs", "4",
                                     "--trace-format", "json", "--trace-file", json_file.string()},
                                    o);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);

  std::istringstream console(r.out);
  std::size_t lines = 0, logs = 0;
  for (std::string line; std::getline(console, line); ++lines) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(line, ec);
    BOOST_TEST_REQUIRE(!ec, "not one JSON object: " << line.substr(0, 200));
    if (v.at("event") == "log") {
      ++logs;
      BOOST_TEST(v.at("message").as_string().size() == 3000u);
    }
  }
  BOOST_TEST(logs == 400u);

  std::ifstream file(json_file);
  std::size_t file_lines = 0;
  for (std::string line; std::getline(file, line); ++file_lines) {
    boost::system::error_code ec;
    boost::json::parse(line, ec);
    BOOST_TEST_REQUIRE(!ec, "not one JSON object in the trace file: " << line.substr(0, 200));
  }
  BOOST_TEST(file_lines == lines);
}

// Several runs appending to one --trace-file at once: each line whole (a
// long batch used to go out as a writev and its newline as a write of its
// own, so another run's lines landed between them).
BOOST_AUTO_TEST_CASE(runs_sharing_a_trace_file_never_split_each_other_s_lines) {
  TempDir dir;
  const fs::path flow = dir.path() / "many.yaml";
  std::ofstream(flow) << "flow:\n  name: many\n  graph: \"repeat(count=3000) { e }\"\n"
                      << "tasks:\n  e: {use: \"std/echo\", inputs: {value: 1, message: \""
                      << std::string(200, 'm') << "\"}}\n";
  const fs::path shared = dir.path() / "same.jsonl";
  std::vector<std::unique_ptr<ChildProcess>> runs;
  // A split needed another run's write to land between two writes of one:
  // more runs than cores make that likely (not certain) without the fix.
  constexpr int kRuns = 8;
  for (int i = 0; i < kRuns; ++i) {
    const std::string id = "shared-" + std::to_string(i);
    runs.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{pyoco_exe().string(), "run", flow.string(), "--run-id", id,
                                 "--jobs", "1", "--trace-format", "json", "--trace-file",
                                 shared.string()},
        std::map<std::string, std::string>{{"PYOCO_HOME", (dir.path() / ("home-" + id)).string()},
                                           {"PYOCO_PLUGIN_PATH", ""}},
        dir.path()));
  }
  std::map<std::string, std::size_t> console_lines;
  for (int i = 0; i < kRuns; ++i) {
    BOOST_TEST_REQUIRE(runs[i]->wait(std::chrono::seconds(120)) == 0, runs[i]->err());
    const std::string out = runs[i]->out();
    console_lines["shared-" + std::to_string(i)] = std::count(out.begin(), out.end(), '\n');
  }
  std::ifstream file(shared);
  std::map<std::string, std::size_t> file_lines;
  for (std::string line; std::getline(file, line);) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(line, ec);
    BOOST_TEST_REQUIRE(!ec, "not one JSON object in the trace file: " << line.substr(0, 300));
    ++file_lines[std::string(v.at("run_id").as_string())];
  }
  for (const auto& [id, n] : console_lines) {
    BOOST_TEST(n > 9000u, id);  // a start, a log line and an end for each of the 3000
    BOOST_TEST(file_lines[id] == n, id);
  }
  BOOST_TEST(file_lines.size() == std::size_t{kRuns});
}
