// A cluster on this machine for the benchmarks: a nats-server on a free
// loopback port, `pyoco server` and `pyoco worker` processes, waited for
// with deadlines, and what the benchmarks read of them (/proc CPU time).
#pragma once

#include <pyoco/core/subprocess.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pyoco::bench {

using Clock = std::chrono::steady_clock;
using Process = std::unique_ptr<pyoco::core::BackgroundProcess>;

double ms_between(Clock::time_point a, Clock::time_point b);

// User + system CPU a process has used, in milliseconds.
double cpu_ms(int pid);

std::string read_text(const std::filesystem::path& p);

// Polls `file` until it contains `marker`; the text after it up to the end
// of the line. Throws at the deadline with what the file holds.
std::string wait_for_line(const std::filesystem::path& file, const std::string& marker,
                          std::chrono::seconds deadline);

// "http://127.0.0.1:8000" -> {"127.0.0.1", "8000"}.
std::pair<std::string, std::string> host_port(const std::string& url);

// The flow the cluster benchmarks submit by name ("trivial"): one
// bench/noop task, so a run costs the cluster and nothing else.
inline constexpr const char* kTrivialFlow = R"(flow:
  graph: t
tasks:
  t: {use: "bench/noop"}
)";

// A new directory under the system's temporary one, named `prefix`-XXXXXX,
// with flows/trivial.yaml (kTrivialFlow) for the workers' --flows.
std::filesystem::path make_scratch(const std::string& prefix);

// A nats-server with JetStream on a free loopback port (its store and ports
// file under `scratch`), `pyoco cluster init` run against it.
struct LocalNats {
  Process process;
  std::string url;  // nats://127.0.0.1:PORT
};
LocalNats start_nats(const std::filesystem::path& scratch, const std::filesystem::path& pyoco);

// `pyoco server` on a free loopback port, logging to `log`; `url` is set
// to where it listens (http://127.0.0.1:PORT) once it says so.
Process start_gateway(const std::filesystem::path& pyoco, const std::string& nats_url,
                      const std::filesystem::path& log, std::string& url,
                      const pyoco::core::ProcessOptions& options = {});

// `pyoco worker` running `flows`/NAME.yaml with the plugins of `plugin_dir`.
Process start_worker(const std::filesystem::path& pyoco, const std::string& nats_url,
                     const std::string& id, unsigned slots, const std::filesystem::path& flows,
                     const std::filesystem::path& plugin_dir, const std::filesystem::path& log,
                     const std::vector<std::string>& extra = {});

}  // namespace pyoco::bench
