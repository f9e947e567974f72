#include "cli_benches.hpp"

#include <boost/json.hpp>

#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "process.hpp"
#include "stats.hpp"

namespace pyoco::bench {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs `spec` once unmeasured (page cache, dynamic loader) and then `runs`
// times; every run must exit with `expect_exit` (-2: any exit code).
json::object measure(ProcessSpec spec, unsigned runs, int expect_exit = 0) {
  const std::string what = spec.argv.size() > 2 ? spec.argv[1] + " " + spec.argv[2] : "pyoco";
  const fs::path out_path = spec.stdout_path;
  const fs::path err_path = spec.stderr_path;
  std::vector<double> wall, rss;
  json::array wall_samples;
  int exit_code = 0;
  for (unsigned i = 0; i <= runs; ++i) {
    const ProcessResult r = run_process(spec);
    exit_code = r.exit_code;
    if (expect_exit != -2 && r.exit_code != expect_exit) {
      throw std::runtime_error("`pyoco " + what + "` exited " + std::to_string(r.exit_code) + ": " +
                               read_text(err_path) + read_text(out_path));
    }
    if (i == 0) continue;
    wall.push_back(r.wall_ms);
    rss.push_back(static_cast<double>(r.max_rss_kib));
    wall_samples.push_back(r.wall_ms);
  }
  json::object o;
  o["runs"] = runs;
  o["wall_ms"] = median(wall);
  o["wall_ms_min"] = *std::min_element(wall.begin(), wall.end());
  o["peak_rss_kib"] = median(rss);
  o["peak_rss_mib"] = median(rss) / 1024.0;
  o["exit_code"] = exit_code;
  o["samples_wall_ms"] = std::move(wall_samples);
  return o;
}

std::map<std::string, std::string> cli_env(const fs::path& scratch) {
  // A home of its own (run history goes there), and no plugin path from the
  // caller's environment.
  return {{"PYOCO_HOME", (scratch / "home").string()}, {"PYOCO_PLUGIN_PATH", ""}};
}

// n plugin directories p0..p(n-1), each a copy of the bench plugin's
// manifest under another name and a link to its library.
void make_plugin_dirs(const fs::path& root, std::size_t n, const fs::path& bench_plugin) {
  const std::string manifest = read_text(bench_plugin / "plugin.toml");
  const std::string name_line = "name = \"bench\"";
  const auto at = manifest.find(name_line);
  if (at == std::string::npos) {
    throw std::runtime_error((bench_plugin / "plugin.toml").string() + " has no " + name_line);
  }
  fs::create_directories(root);
  for (std::size_t i = 0; i < n; ++i) {
    const fs::path dir = root / ("p" + std::to_string(i));
    fs::create_directory(dir);
    std::string m = manifest;
    m.replace(at, name_line.size(), "name = \"bench_" + std::to_string(i) + "\"");
    std::ofstream(dir / "plugin.toml") << m;
    fs::create_symlink(bench_plugin / "libpyoco_bench.so", dir / "libpyoco_bench.so");
  }
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

json::object bench_startup(const CliBenchOptions& o) {
  const fs::path cwd = o.scratch_dir / "startup";
  fs::create_directories(cwd);
  fs::create_directories(o.scratch_dir / "home");
  ProcessSpec spec;
  spec.argv = {o.pyoco.string(), "run", (o.source_dir / "examples/hello/flow.yaml").string(),
               "--non-cute"};
  spec.env = cli_env(o.scratch_dir);
  spec.cwd = cwd;
  spec.stdout_path = o.scratch_dir / "startup.out";
  spec.stderr_path = o.scratch_dir / "startup.err";
  json::object r = measure(spec, o.runs);
  r["command"] = "pyoco run examples/hello/flow.yaml --non-cute";
  return r;
}

json::object bench_discovery(const CliBenchOptions& o, const std::vector<std::size_t>& counts) {
  const fs::path bench_plugin = o.plugin_dir / "bench";
  json::array lists;
  for (std::size_t n : counts) {
    const fs::path root = o.scratch_dir / ("plugins-" + std::to_string(n));
    make_plugin_dirs(root, n, bench_plugin);
    ProcessSpec spec;
    spec.argv = {o.pyoco.string(), "plugins", "list", "--plugin-path", root.string(), "--json"};
    spec.env = cli_env(o.scratch_dir);
    spec.stdout_path = o.scratch_dir / "list.out";
    spec.stderr_path = o.scratch_dir / "list.err";
    // It must see every generated plugin, or it timed the wrong thing.
    run_process(spec);
    const std::size_t seen = count_of(read_text(spec.stdout_path), "\"bench_");
    if (seen < n) {
      throw std::runtime_error("`pyoco plugins list` saw " + std::to_string(seen) + " of " +
                               std::to_string(n) + " generated plugins");
    }
    spec.argv.pop_back();  // time the table people read, not --json
    json::object r = measure(spec, o.runs);
    r["plugins"] = n;
    lists.push_back(std::move(r));
    fs::remove_all(root);
  }

  ProcessSpec lint;
  lint.argv = {o.pyoco.string(), "plugins", "lint", bench_plugin.string()};
  lint.env = cli_env(o.scratch_dir);
  lint.stdout_path = o.scratch_dir / "lint.out";
  lint.stderr_path = o.scratch_dir / "lint.err";
  json::object lint_result = measure(lint, o.runs, -2);
  lint_result["output"] = read_text(lint.stdout_path);

  json::object out;
  out["list"] = std::move(lists);
  out["lint"] = std::move(lint_result);
  return out;
}

}  // namespace pyoco::bench
