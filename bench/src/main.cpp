// pyoco_bench: the benchmark suite. Without --case it drives everything and
// writes <out>/latest.json and <out>/latest.md; each engine case runs in a
// child process (this program with --case) so that its peak RSS is its own.
//
//   pyoco_bench [--smoke] [--out DIR] [--reps N] [--pyoco PATH]
//               [--plugin-dir DIR] [--source-dir DIR]
#include <sys/utsname.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_benches.hpp"
#include "engine_case.hpp"
#include "process.hpp"
#include "report.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::bench;

namespace {

struct Args {
  bool smoke = false;
  fs::path out = PYOCO_BENCH_SOURCE_DIR "/bench/results";
  fs::path pyoco = PYOCO_BENCH_CLI;
  fs::path plugin_dir = PYOCO_BENCH_PLUGIN_DIR;
  fs::path source_dir = PYOCO_BENCH_SOURCE_DIR;
  unsigned reps = 0;  // 0: the mode's
  // --case KIND TARGET [--observability]: one engine case, JSON on stdout.
  bool is_case = false;
  std::string case_kind;
  std::size_t case_target = 0;
  bool observability = false;
};

Args parse(int argc, char** argv) {
  Args a;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--smoke") {
      a.smoke = true;
    } else if (arg == "--out") {
      a.out = value(i);
    } else if (arg == "--reps") {
      a.reps = static_cast<unsigned>(std::stoul(value(i)));
    } else if (arg == "--pyoco") {
      a.pyoco = value(i);
    } else if (arg == "--plugin-dir") {
      a.plugin_dir = value(i);
    } else if (arg == "--source-dir") {
      a.source_dir = value(i);
    } else if (arg == "--case") {
      a.is_case = true;
      a.case_kind = value(i);
      a.case_target = std::stoul(value(i));
    } else if (arg == "--observability") {
      a.observability = true;
    } else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: pyoco_bench [--smoke] [--out DIR] [--reps N] [--pyoco PATH] "
                   "[--plugin-dir DIR] [--source-dir DIR]\n";
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown argument " + arg + " (see --help)");
    }
  }
  return a;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string first_field(const fs::path& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        const auto start = line.find_first_not_of(" \t", colon + 1);
        return start == std::string::npos ? "" : line.substr(start);
      }
    }
  }
  return "unknown";
}

json::object describe_machine() {
  json::object m;
  m["nproc"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  m["cpu"] = first_field("/proc/cpuinfo", "model name");
  const std::string mem_kib = first_field("/proc/meminfo", "MemTotal");
  m["memory_gib"] = std::strtod(mem_kib.c_str(), nullptr) / (1024.0 * 1024.0);
  struct utsname u {};
  ::uname(&u);
  m["kernel"] = std::string(u.sysname) + " " + u.release;
  m["compiler"] = "g++ " __VERSION__;
  m["build_type"] = PYOCO_BENCH_BUILD_TYPE;
  m["loadavg_at_start"] = read_text("/proc/loadavg");
  return m;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

fs::path make_scratch() {
  std::string tmpl = (fs::temp_directory_path() / "pyoco-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

int run_case(const Args& a) {
  CaseOptions o;
  o.kind = parse_shape_kind(a.case_kind);
  o.target = a.case_target;
  o.reps = a.reps == 0 ? 5 : a.reps;
  o.observability = a.observability;
  o.plugin_dir = a.plugin_dir;
  o.scratch_dir = fs::temp_directory_path();
  std::cout << json::serialize(run_engine_case(o)) << '\n';
  return 0;
}

// Each case in a fresh process: this program with --case.
json::object spawn_case(const Args& a, const fs::path& scratch, ShapeKind kind, std::size_t target,
                        unsigned reps, bool observability) {
  ProcessSpec spec;
  // /proc/self/exe: this very binary, even if a rebuild has replaced the file.
  spec.argv = {
      "/proc/self/exe",     "--case",       to_string(kind),      std::to_string(target), "--reps",
      std::to_string(reps), "--plugin-dir", a.plugin_dir.string()};
  if (observability) spec.argv.push_back("--observability");
  spec.env = {{"TMPDIR", scratch.string()}};
  spec.stdout_path = scratch / "case.out";
  spec.stderr_path = scratch / "case.err";
  const ProcessResult r = run_process(spec);
  if (r.exit_code != 0) {
    throw std::runtime_error(std::string("engine case ") + to_string(kind) + " " +
                             std::to_string(target) + " failed (exit " +
                             std::to_string(r.exit_code) + "): " + read_text(spec.stderr_path));
  }
  return json::parse(read_text(spec.stdout_path)).as_object();
}

int drive(const Args& a) {
  const std::vector<std::size_t> sizes =
      a.smoke ? std::vector<std::size_t>{200} : std::vector<std::size_t>{1000, 10000, 100000};
  const std::size_t main_size = a.smoke ? 200 : 10000;
  const unsigned reps = a.reps != 0 ? a.reps : (a.smoke ? 1 : 5);
  const unsigned cli_runs = a.smoke ? 1 : 15;
  const std::vector<std::size_t> plugin_counts =
      a.smoke ? std::vector<std::size_t>{10} : std::vector<std::size_t>{10, 100, 1000};

  const fs::path scratch = make_scratch();
  json::object results;
  results["schema"] = 1;
  results["mode"] = a.smoke ? "smoke" : "full";
  results["generated_at"] = utc_now();
  results["machine"] = describe_machine();
  json::object config;
  config["sizes"] = json::value_from(sizes);
  config["main_size"] = main_size;
  config["reps"] = reps;
  config["cli_runs"] = cli_runs;
  config["plugin_counts"] = json::value_from(plugin_counts);

  json::array engine;
  for (ShapeKind kind : kAllShapes) {
    for (std::size_t size : sizes) {
      std::cerr << "bench: " << to_string(kind) << " " << size << "\n";
      engine.push_back(spawn_case(a, scratch, kind, size, reps, size == main_size));
    }
  }
  config["jobs"] = engine.front().at("jobs");
  results["config"] = std::move(config);
  results["engine"] = std::move(engine);

  CliBenchOptions cli;
  cli.pyoco = a.pyoco;
  cli.source_dir = a.source_dir;
  cli.plugin_dir = a.plugin_dir;
  cli.scratch_dir = scratch;
  cli.runs = cli_runs;
  std::cerr << "bench: start-up\n";
  results["startup"] = bench_startup(cli);
  std::cerr << "bench: discovery\n";
  results["discovery"] = bench_discovery(cli, plugin_counts);
  fs::remove_all(scratch);

  results["machine"].as_object()["loadavg_at_end"] = read_text("/proc/loadavg");
  summarize_results(results);
  fs::create_directories(a.out);
  std::ofstream(a.out / "latest.json") << pretty_json(results);
  const std::string md = render_markdown(results);
  std::ofstream(a.out / "latest.md") << md;
  std::cout << md;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    return a.is_case ? run_case(a) : drive(a);
  } catch (const std::exception& e) {
    std::cerr << "pyoco_bench: " << e.what() << '\n';
    return 1;
  }
}
