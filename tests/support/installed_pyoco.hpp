// A pyoco laid out under a prefix (`cmake --install`, or a .deb unpacked)
// works there on its own: started from a directory outside the build tree,
// it finds its plugins in the prefix, runs the hello flow with them, and
// loads no file of the build tree (LD_DEBUG=files names every library
// loaded).
#pragma once

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "process.hpp"

namespace pyoco::testing {

// `scratch` is an empty directory of the test's, for the run's files.
inline void check_installed_pyoco_runs(const std::filesystem::path& prefix,
                                       const std::filesystem::path& scratch) {
  namespace fs = std::filesystem;
  const fs::path work = scratch / "work";
  fs::create_directories(work);
  fs::copy_file(source_dir() / "examples/hello/flow.yaml", work / "flow.yaml");
  const fs::path plugins = fs::canonical(prefix / "lib/pyoco/plugins");
  const std::string build_tree = fs::canonical(binary_dir()).string() + "/";
  const ProcessOptions outside{
      .cwd = work,
      .env = {{"PYOCO_HOME", (scratch / "home").string()}, {"LD_DEBUG", "files"}},
      .unset_env = {"PYOCO_PLUGIN_PATH", "LD_LIBRARY_PATH"}};
  const std::string pyoco = (prefix / "bin/pyoco").string();

  ProcessResult r = run_process({pyoco, "--version"}, outside);
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out.find("pyoco ") == 0u);

  r = run_process({pyoco, "plugins", "list", "--json"}, outside);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  const boost::json::value listed = boost::json::parse(r.out);
  BOOST_TEST(listed.at("search_path") == boost::json::array{boost::json::string(plugins.string())},
             r.out);
  std::vector<std::string> names;
  for (const auto& p : listed.at("plugins").as_array()) {
    names.emplace_back(p.at("name").as_string());
    BOOST_TEST(std::string(p.at("path").as_string()).starts_with(plugins.string() + "/"), r.out);
  }
  BOOST_TEST((names == std::vector<std::string>{"hello", "std"}), r.out);

  r = run_process({pyoco, "run", "flow.yaml", "--non-cute"}, outside);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("INFO pyoco log node=save_result ✨ Saved: CARROT\n") != std::string::npos,
             r.out);
  BOOST_TEST(r.out.find("status=COMPLETED") != std::string::npos, r.out);
  const std::string loaded = "file=" + (plugins / "hello/libpyoco_hello.so").string() + " ";
  BOOST_TEST(r.err.find(loaded) != std::string::npos, "no " << loaded << " in\n" << r.err);
  BOOST_TEST(r.err.find(build_tree) == std::string::npos, "loaded from the build tree:\n" << r.err);
  // The local product loads none of the cluster mode (NATS, TLS).
  for (const char* library : {"libnats", "libssl", "libprotobuf-c"}) {
    BOOST_TEST(r.err.find(library) == std::string::npos, "pyoco run loaded " << library);
  }

  // std/shell runs its command behind the guard installed beside
  // libpyoco_std.so (pyoco-shell-guard).
  std::ofstream(work / "shell.yaml")
      << "flow: {name: sh, graph: say}\ntasks:\n  say: {use: \"std/shell\", inputs: "
         "{command: \"echo guarded > guarded.txt\"}}\n";
  r = run_process({pyoco, "run", "shell.yaml", "--non-cute"}, outside);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  std::ifstream guarded(work / "guarded.txt");
  std::string line;
  BOOST_TEST((std::getline(guarded, line) && line == "guarded"), r.out << r.err);

  // A cluster command runs pyoco-cluster (the one beside this pyoco:
  // cli_test's a_pyoco_without_its_cluster_half_says_so shows it is looked
  // for there and nowhere else).
  r = run_process({pyoco, "worker", "--help"}, outside);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.out.find("Usage: pyoco worker [OPTIONS]") != std::string::npos, r.out);
  BOOST_TEST(r.err.find("file=libnats") != std::string::npos, "no NATS loaded:\n" << r.err);
}

}  // namespace pyoco::testing
