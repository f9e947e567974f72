// pyoco_chaos: the chaos run of docs/reliability.md (tools/chaos.sh runs it).
//
//   pyoco_chaos [--runs N] [--span SECONDS] [--seed S] [--out FILE.json]
//
// Prints each step as it happens and a summary; writes the report as JSON
// to FILE; exits 0 when every check held, 1 when one did not.
#include <boost/json.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "chaos.hpp"
#include "fleet.hpp"

int main(int argc, char** argv) try {
  pyoco::chaos::ChaosOptions o;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--runs" && v) {
      o.runs = std::atoi(argv[++i]);
    } else if (a == "--span" && v) {
      o.span = std::chrono::seconds(std::atoi(argv[++i]));
    } else if (a == "--seed" && v) {
      o.seed = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--out" && v) {
      out = argv[++i];
    } else {
      std::cerr << "usage: pyoco_chaos [--runs N] [--span SECONDS] [--seed S] [--out FILE.json]\n";
      return 2;
    }
  }
  if (o.runs < 1 || o.span.count() < 10) {
    std::cerr << "pyoco_chaos: --runs at least 1, --span at least 10 seconds\n";
    return 2;
  }
  o.progress = [](const std::string& line) { std::cout << line << std::endl; };
  pyoco::chaos::stop_process_group_on_signal();
  const auto report = pyoco::chaos::run_chaos(o);
  const auto j = report.to_json();
  if (!out.empty()) std::ofstream(out) << boost::json::serialize(j) << '\n';
  for (const auto& p : report.problems) std::cout << "problem: " << p << '\n';
  std::cout << (report.passed() ? "chaos: every check held" : "chaos: FAILED") << " ("
            << report.accepted << " runs, " << report.faults.size() << " faults, "
            << static_cast<int>(report.seconds) << " s)" << std::endl;
  return report.passed() ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "pyoco_chaos: " << e.what() << '\n';
  return 2;
}
