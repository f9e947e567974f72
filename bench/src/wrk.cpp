#include "wrk.hpp"

#include <pyoco/core/subprocess.hpp>

#include <sys/resource.h>

#include <regex>
#include <stdexcept>
#include <vector>

namespace pyoco::bench {

namespace {

double ms_of(double value, const std::string& unit) {
  if (unit == "us") return value / 1000;
  if (unit == "ms") return value;
  if (unit == "s") return value * 1000;
  if (unit == "m") return value * 60000;
  throw std::runtime_error("wrk: unknown time unit " + unit);
}

// The wrk child's CPU: this process reaps no other child meanwhile.
double children_cpu_ms() {
  rusage u{};
  ::getrusage(RUSAGE_CHILDREN, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000 +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000;
}

}  // namespace

WrkResult run_wrk(const std::string& url, unsigned threads, unsigned connections, unsigned seconds,
                  const std::filesystem::path& script) {
  std::vector<std::string> argv{"wrk", "-t" + std::to_string(threads),
                                "-c" + std::to_string(connections),
                                "-d" + std::to_string(seconds) + "s", "--latency"};
  if (!script.empty()) argv.insert(argv.end(), {"-s", script.string()});
  argv.push_back(url);
  pyoco::core::ProcessOptions options;
  options.timeout = std::chrono::seconds(seconds + 30);
  const double cpu_before = children_cpu_ms();
  const auto r = pyoco::core::run_process(argv, options);
  WrkResult w;
  w.cpu_ms = children_cpu_ms() - cpu_before;
  w.report = r.out + r.err;
  if (r.exit_code != 0) {
    throw std::runtime_error("wrk " + url + " exited " + std::to_string(r.exit_code) + ": " +
                             w.report);
  }
  std::smatch m;
  auto need = [&](const std::regex& re, const char* what) {
    if (!std::regex_search(w.report, m, re))
      throw std::runtime_error(std::string("wrk's report has no ") + what + ":\n" + w.report);
  };
  need(std::regex(R"(Requests/sec:\s+([0-9.]+))"), "Requests/sec");
  w.requests_per_s = std::stod(m[1]);
  need(std::regex(R"((\d+) requests in)"), "request count");
  w.requests = std::stoull(m[1]);
  const std::pair<const char*, double*> percentiles[] = {
      {"50", &w.p50_ms}, {"90", &w.p90_ms}, {"99", &w.p99_ms}};
  for (const auto& [p, out] : percentiles) {
    need(std::regex(std::string(R"(\n\s+)") + p + R"(%\s+([0-9.]+)(us|ms|s|m)\b)"), "percentile");
    *out = ms_of(std::stod(m[1]), m[2]);
  }
  // Both lines appear only when something went wrong.
  if (std::regex_search(w.report, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))")))
    w.non_2xx = std::stoull(m[1]);
  if (std::regex_search(
          w.report, m,
          std::regex(R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))"))) {
    for (int i = 1; i <= 4; ++i) w.socket_errors += std::stoull(m[i]);
  }
  return w;
}

}  // namespace pyoco::bench
