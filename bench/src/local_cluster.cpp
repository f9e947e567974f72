#include "local_cluster.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace pyoco::bench {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double cpu_ms(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stoul(f);
    if (i == 15) stime = std::stoul(f);
  }
  return static_cast<double>(utime + stime) * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string wait_for_line(const fs::path& file, const std::string& marker,
                          std::chrono::seconds deadline) {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    const std::string text = read_text(file);
    if (const auto at = text.find(marker); at != std::string::npos) {
      const auto end = text.find('\n', at);
      if (end != std::string::npos)
        return text.substr(at + marker.size(), end - at - marker.size());
    }
    std::this_thread::sleep_for(20ms);  // polling a log file, with a deadline
  }
  throw std::runtime_error("no \"" + marker + "\" in " + file.string() +
                           " in time: " + read_text(file));
}

std::pair<std::string, std::string> host_port(const std::string& url) {
  const auto scheme = url.find("://");
  const auto start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto colon = url.rfind(':');
  if (colon == std::string::npos || colon < start) throw std::runtime_error("no port in " + url);
  return {url.substr(start, colon - start), url.substr(colon + 1)};
}

fs::path make_scratch(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  const fs::path scratch = tmpl;
  fs::create_directories(scratch / "flows");
  std::ofstream(scratch / "flows" / "trivial.yaml") << kTrivialFlow;
  return scratch;
}

LocalNats start_nats(const fs::path& scratch, const fs::path& pyoco) {
  fs::create_directories(scratch / "ports");
  // JetStream's size fixed, not 75% of the disk free: the plugin store
  // reserves its 4 GiB whole when `cluster init` makes it.
  std::ofstream(scratch / "nats.conf") << "jetstream { max_file_store: 64GB }\n";
  LocalNats n;
  n.process = std::make_unique<pyoco::core::BackgroundProcess>(
      std::vector<std::string>{"nats-server", "-js", "-a", "127.0.0.1", "-p", "-1",
                               "--ports_file_dir", (scratch / "ports").string(), "-sd",
                               (scratch / "store").string(), "-c",
                               (scratch / "nats.conf").string()},
      scratch / "nats.log");
  for (const auto until = Clock::now() + 10s; n.url.empty() && Clock::now() < until;) {
    for (const auto& e : fs::directory_iterator(scratch / "ports")) {
      const std::string text = read_text(e.path());
      const auto at = text.find("nats://");
      if (at != std::string::npos) n.url = text.substr(at, text.find('"', at) - at);
    }
    if (n.url.empty()) std::this_thread::sleep_for(20ms);  // the ports file, with a deadline
  }
  if (n.url.empty()) throw std::runtime_error("nats-server did not start");
  const auto init = pyoco::core::run_process({pyoco.string(), "cluster", "init", "--nats", n.url});
  if (init.exit_code != 0) throw std::runtime_error("cluster init: " + init.err);
  return n;
}

Process start_gateway(const fs::path& pyoco, const std::string& nats_url, const fs::path& log,
                      std::string& url, const pyoco::core::ProcessOptions& options) {
  auto p = std::make_unique<pyoco::core::BackgroundProcess>(
      std::vector<std::string>{pyoco.string(), "server", "--nats", nats_url, "--listen",
                               "127.0.0.1:0"},
      log, options);
  url = "http://" + wait_for_line(log, "listening on http://", 20s);
  return p;
}

Process start_worker(const fs::path& pyoco, const std::string& nats_url, const std::string& id,
                     unsigned slots, const fs::path& flows, const fs::path& plugin_dir,
                     const fs::path& log, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{pyoco.string(),  "worker",
                                "--nats",        nats_url,
                                "--worker-id",   id,
                                "--slots",       std::to_string(slots),
                                "--flows",       flows.string(),
                                "--plugin-path", plugin_dir.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<pyoco::core::BackgroundProcess>(argv, log);
}

}  // namespace pyoco::bench
