// pyoco_soak: the soak run of docs/reliability.md (tools/soak.sh runs it).
//
//   pyoco_soak [--minutes M] [--interval SECONDS] [--rate RUNS_PER_S] [--out FILE.json]
//
// Prints a sample every interval and the growth of every process; writes
// the report as JSON to FILE; exits 0 when nothing grew, no request failed
// and every run ended, 1 otherwise.
#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "fleet.hpp"
#include "soak.hpp"

int main(int argc, char** argv) try {
  pyoco::chaos::SoakOptions o;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--minutes" && has_value) {
      o.duration = std::chrono::seconds(static_cast<long>(std::atof(argv[++i]) * 60));
    } else if (a == "--interval" && has_value) {
      o.interval = std::chrono::seconds(std::atoi(argv[++i]));
    } else if (a == "--rate" && has_value) {
      o.runs_per_second = std::atof(argv[++i]);
    } else if (a == "--out" && has_value) {
      out = argv[++i];
    } else {
      std::cerr << "usage: pyoco_soak [--minutes M] [--interval SECONDS] [--rate RUNS_PER_S] "
                   "[--out FILE.json]\n";
      return 2;
    }
  }
  if (o.interval.count() < 1 || o.duration < o.interval * 3 || !(o.runs_per_second > 0)) {
    std::cerr << "pyoco_soak: the run needs at least three intervals (--minutes, --interval) "
                 "and a rate above 0\n";
    return 2;
  }
  o.progress = [](const std::string& line) { std::cout << line << std::endl; };
  pyoco::chaos::stop_process_group_on_signal();
  const auto report = pyoco::chaos::run_soak(o);
  if (!out.empty()) std::ofstream(out) << boost::json::serialize(report.to_json()) << '\n';
  std::cout << "growth from the second sample to the last:\n";
  for (const auto& g : report.growth) {
    std::printf("  %-9s RSS %7.1f -> %7.1f MiB, fds %3d -> %3d%s\n", g.name.c_str(), g.rss_from_mib,
                g.rss_to_mib, g.fds_from, g.fds_to,
                g.grew ? (g.judged ? "  GREW" : "  grew (NATS's stream cache: not judged)") : "");
  }
  std::cout << "runs: " << report.submitted << " submitted, " << report.ended << " ended\n"
            << (report.passed() ? "soak: nothing grew" : "soak: FAILED") << std::endl;
  return report.passed() ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "pyoco_soak: " << e.what() << '\n';
  return 2;
}
