// `pyoco server --with-nats` beyond loopback: nats-server requires a user
// and password, made once into the store directory for the workers; runs
// go through it, a connection without them is refused, a worker with them
// pulls runs, and a restart keeps them. On loopback nothing changes unless
// the operator configured credentials.
#include <signal.h>
#include <sys/stat.h>

#include <boost/test/unit_test.hpp>

#include <map>
#include <sstream>

#include "child.hpp"
#include "gateway_process.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

unsigned mode_of(const fs::path& file) {
  struct stat st {};
  BOOST_REQUIRE(::stat(file.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

// The URL the server says it started nats-server at, on stderr.
std::string nats_url_of(const Server& s) {
  const std::string err = s.child->err();
  const std::string marker = "started nats-server at ";
  const auto at = err.find(marker);
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, err);
  const auto start = at + marker.size();
  return err.substr(start, err.find_first_of(", ", start) - start);
}

// PYOCO_NATS_USER and PYOCO_NATS_PASSWORD from the env file.
std::map<std::string, std::string> credentials_in(const fs::path& env_file) {
  std::map<std::string, std::string> out;
  std::istringstream lines(read_text(env_file));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("PYOCO_NATS_")) {
      out[line.substr(0, line.find('='))] = line.substr(line.find('=') + 1);
    }
  }
  return out;
}

// Ctrl+C: the server exits 0 and its nats-server with it (a SIGKILL at
// scope exit would leave nats-server running).
void stop(Server& s) {
  const std::vector<int> children = descendants_of(s.child->pid());
  BOOST_TEST(!children.empty());
  s.child->send_signal(SIGINT);
  BOOST_TEST(s.child->wait(20s) == 0, s.child->err());
  for (const int pid : children)
    BOOST_TEST(process_gone(pid), "nats-server " << pid << " still runs");
}

}  // namespace

BOOST_AUTO_TEST_CASE(with_nats_beyond_loopback_requires_a_user_and_password) {
  TempDir flows;
  write_text(flows.path() / "hello.yaml", read_text(source_dir() / "examples/hello/flow.yaml"));
  const fs::path dir = flows.path() / "nats";
  const fs::path env_file = dir / "nats-client.env";
  const fs::path hello = source_dir() / "examples/hello/flow.yaml";
  std::map<std::string, std::string> credentials;
  {
    Server s({"--with-nats", dir.string(), "--nats-listen", "0.0.0.0", "--nats-port", "0",
              "--with-worker", "--flows", flows.path().string()});
    const std::string url = nats_url_of(s);

    // Where the credentials are, never what they are; only their owner reads them.
    credentials = credentials_in(env_file);
    BOOST_TEST_REQUIRE(credentials.size() == 2u);
    BOOST_TEST(credentials["PYOCO_NATS_USER"] == "pyoco");
    BOOST_TEST(credentials["PYOCO_NATS_PASSWORD"].size() >= 64u);  // 32 random bytes, in hex
    const std::string said = s.child->err() + s.child->out();
    BOOST_TEST(contains(said, "requires a user and password (made now, in " +
                                  (dir / "nats-server.conf").string() +
                                  "); workers need them: copy " + env_file.string()),
               said);
    BOOST_TEST(!contains(said, credentials["PYOCO_NATS_PASSWORD"]));
    BOOST_TEST(mode_of(env_file) == 0600u);
    BOOST_TEST(mode_of(dir / "nats-server.conf") == 0600u);
    const std::string config = read_text(dir / "nats-server.conf");
    BOOST_TEST(contains(config, "authorization {"), config);
    BOOST_TEST(contains(config, "password: \"" + credentials["PYOCO_NATS_PASSWORD"] + "\""));
    BOOST_TEST(!contains(read_text(dir / "nats-server.log"), credentials["PYOCO_NATS_PASSWORD"]));

    // The gateway and its worker use them: a run goes through.
    const ProcessResult run = s.client({"submit-yaml", hello.string(), "--wait"});
    BOOST_TEST(run.exit_code == 0, run.out << run.err);

    // Without them, NATS refuses; with them, another command gets in.
    const ProcessResult anonymous = run_pyoco({"cluster", "status", "--nats", url});
    BOOST_TEST(anonymous.exit_code == 2);
    BOOST_TEST(contains(anonymous.err, "NATS at " + url + " requires credentials"), anonymous.err);
    std::map<std::string, std::string> init_env = credentials;
    init_env["PYOCO_PLUGINS_MAX_BYTES"] = kWithNatsPluginBytes;  // as the server made it
    const ProcessResult init =
        run_pyoco({"cluster", "init", "--nats", url, "--tags", "remote"}, {.env = init_env});
    BOOST_TEST(init.exit_code == 0, init.err);

    // A worker given the env file's variables pulls runs of its own tag.
    std::map<std::string, std::string> worker_env = credentials;
    worker_env["PYOCO_PLUGIN_PATH"] = "";
    ChildProcess worker({pyoco_exe().string(), "worker", "--nats", url, "--tags", "remote",
                         "--worker-id", "remote-worker", "--flows", flows.path().string()},
                        worker_env, flows.path());
    const ProcessResult remote = s.client({"submit", "hello", "--tag", "remote", "--wait"});
    BOOST_TEST(remote.exit_code == 0, remote.out << remote.err << worker.err());
    const std::string run_id = [&] {
      const auto at = remote.out.find("run_id=") + 7;
      return remote.out.substr(at, remote.out.find_first_of(" \n", at) - at);
    }();
    const ProcessResult record = s.client({"get", run_id});
    BOOST_TEST(contains(record.out, "remote-worker"), record.out);
    worker.send_signal(SIGTERM);
    BOOST_TEST(worker.wait(20s) == 0, worker.err());
    BOOST_TEST(contains(worker.err(), "pulling 1 run at a time from " + url), worker.err());

    stop(s);
  }

  // A restart with the same DIR keeps them: workers need no new file.
  Server again({"--with-nats", dir.string(), "--nats-listen", "0.0.0.0", "--nats-port", "0"});
  BOOST_TEST(contains(again.child->err(), "(made at an earlier start, in "), again.child->err());
  BOOST_TEST(credentials_in(env_file) == credentials);
  const ProcessResult status =
      run_pyoco({"cluster", "status", "--nats", nats_url_of(again)}, {.env = credentials});
  BOOST_TEST(status.exit_code == 0, status.err);
  stop(again);
}

BOOST_AUTO_TEST_CASE(on_loopback_no_credentials_unless_configured) {
  TempDir dir;
  {
    Server s({"--with-nats", (dir.path() / "open").string(), "--nats-port", "0"});
    BOOST_TEST(!fs::exists(dir.path() / "open/nats-client.env"));
    BOOST_TEST(!fs::exists(dir.path() / "open/nats-server.conf"));
    const ProcessResult status = run_pyoco({"cluster", "status", "--nats", nats_url_of(s)});
    BOOST_TEST(status.exit_code == 0, status.err);
    stop(s);
  }
  // The operator's token: nats-server requires it, and says whose it is.
  const std::map<std::string, std::string> token{
      {"PYOCO_NATS_TOKEN", "an-operator-token-0123456789abcdef"}};
  Server s({"--with-nats", (dir.path() / "token").string(), "--nats-port", "0"}, token);
  BOOST_TEST(contains(s.child->err(), "requires the credentials of PYOCO_NATS_TOKEN"),
             s.child->err());
  BOOST_TEST(!contains(s.child->err(), token.at("PYOCO_NATS_TOKEN")));
  BOOST_TEST(!fs::exists(dir.path() / "token/nats-client.env"));
  const std::string url = nats_url_of(s);
  const ProcessResult anonymous = run_pyoco({"cluster", "status", "--nats", url});
  BOOST_TEST(anonymous.exit_code == 2);
  BOOST_TEST(contains(anonymous.err, "requires credentials"), anonymous.err);
  const ProcessResult status = run_pyoco({"cluster", "status", "--nats", url}, {.env = token});
  BOOST_TEST(status.exit_code == 0, status.err);
  stop(s);
}

// `--with-worker`: the worker's tasks run in the gateway's process, which
// holds the NATS token and the keys' pepper; neither a std/shell task's
// `env` nor its parent's /proc/PID/environ shows them, nor any PYOCO_*
// setting, but the server's other variables are there.
BOOST_AUTO_TEST_CASE(with_worker_a_task_s_processes_do_not_inherit_the_server_s_secrets) {
  TempDir dir;
  const std::string token = "an-operator-token-0123456789abcdef";
  const std::string pepper = "a-pepper-of-the-keys-0123456789abcdef";
  const fs::path seen = dir.path() / "task-env.txt";
  write_text(dir.path() / "env.yaml",
             "flow: {graph: a}\ntasks:\n  a:\n    use: std/shell\n"
             "    inputs: {command: \"env > '" +
                 seen.string() + "'; cat /proc/$PPID/environ >> '" + seen.string() + "'\"}\n");
  Server s({"--with-nats", (dir.path() / "nats").string(), "--nats-port", "0", "--with-worker",
            "--flows", dir.path().string()},
           {{"PYOCO_NATS_TOKEN", token}, {"PYOCO_AUTH_PEPPER", pepper}, {"MY_VAR", "1"}});
  const ProcessResult run = s.client({"submit-yaml", (dir.path() / "env.yaml").string(), "--wait"});
  BOOST_TEST_REQUIRE(run.exit_code == 0, run.out << run.err << s.child->err());
  const std::string env = "\n" + read_text(seen);
  BOOST_TEST(contains(env, "\nMY_VAR=1\n"), env);
  BOOST_TEST(!contains(env, "PYOCO_"), env);
  BOOST_TEST(!contains(env, token), env);
  BOOST_TEST(!contains(env, pepper), env);
  stop(s);
}
