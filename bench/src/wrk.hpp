// One wrk run (Debian's /usr/bin/wrk) and what its --latency report says.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace pyoco::bench {

struct WrkResult {
  double requests_per_s = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0;
  std::uint64_t requests = 0;       // answered in the run
  std::uint64_t non_2xx = 0;        // wrk counts 4xx and 5xx
  std::uint64_t socket_errors = 0;  // connect, read, write and timeout together
  double cpu_ms = 0;                // wrk's own user + system CPU
  std::string report;               // what it printed
};

// wrk -t`threads` -c`connections` -d`seconds`s --latency [-s script] url.
// Throws when wrk cannot run or its report lacks a figure.
WrkResult run_wrk(const std::string& url, unsigned threads, unsigned connections, unsigned seconds,
                  const std::filesystem::path& script = {});

}  // namespace pyoco::bench
