// The SDK as a CMake package: a plugin project outside this tree builds
// against the build tree and against an install prefix, and the result
// lints clean and lists.
#include <boost/test/unit_test.hpp>

#include <fstream>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A minimal third-party plugin project.
void write_project(const fs::path& dir) {
  write(dir / "CMakeLists.txt", R"(cmake_minimum_required(VERSION 3.25)
project(greeter CXX)
find_package(PyocoSDK 0.1 REQUIRED)
pyoco_add_plugin(greeter SOURCES greeter.cpp MANIFEST plugin.toml)
target_compile_options(greeter PRIVATE -Wall -Wextra -Wpedantic -Werror)
)");
  write(dir / "plugin.toml", R"([plugin]
name = "greeter"
version = "1.0.0"
abi = 1
sdk = "0.1.0"
library = "libpyoco_greeter.so"
summary = "Greets"
authors = ["Third Party"]
license = "Apache-2.0"
status = "experimental"

[[tasks]]
name = "greet"
summary = "Says hello"
usage = "hi: {use: \"greeter/greet\", inputs: {who: \"world\"}}"
inputs = [{name = "who", type = "string", required = true, description = "whom"}]
outputs = [{name = "greeting", type = "string", description = "the greeting"}]
)");
  write(dir / "greeter.cpp", R"(#include <pyoco/sdk.hpp>

struct Greet : pyoco::Task {
  static constexpr const char* name = "greet";
  static constexpr const char* summary = "Says hello";
  static constexpr const char* usage = "hi: {use: \"greeter/greet\", inputs: {who: \"world\"}}";
  static inline const std::vector<pyoco::Io> inputs = {{"who", "string", true, "whom"}};
  static inline const std::vector<pyoco::Io> outputs = {{"greeting", "string", false, "the greeting"}};
  pyoco::Value run(pyoco::Context&, const pyoco::Inputs& in) override {
    return "hello " + in.require<std::string>("who");
  }
};

void register_tasks(pyoco::Registry& r) { r.add<Greet>(); }
PYOCO_PLUGIN(register_tasks)
)");
}

ProcessResult run(const std::vector<std::string>& argv) {
  return run_process(argv, {.timeout = std::chrono::seconds(240)});
}

void build_and_check(const fs::path& project, const std::string& locate_arg) {
  const fs::path build = project / "build";
  ProcessResult r = run({"cmake", "-S", project.string(), "-B", build.string(), locate_arg,
                         "-DCMAKE_BUILD_TYPE=Release"});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  r = run({"cmake", "--build", build.string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  const fs::path plugin = build / "greeter";
  BOOST_TEST(fs::is_regular_file(plugin / "plugin.toml"));
  BOOST_TEST(fs::is_regular_file(plugin / "libpyoco_greeter.so"));

  r = run_pyoco({"plugins", "lint", plugin.string(), "--strict"});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  r = run_pyoco({"tasks", "--plugin-path", build.string()});
  BOOST_TEST(r.out.find("greeter/greet") != std::string::npos, r.out);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_plugin_builds_against_the_build_tree) {
  TempDir dir;
  write_project(dir.path());
  build_and_check(dir.path(), "-DPyocoSDK_DIR=" + binary_dir().string());
}

BOOST_AUTO_TEST_CASE(a_plugin_builds_against_an_install_prefix_only) {
  TempDir dir;
  const fs::path prefix = dir.path() / "prefix";
  const ProcessResult r =
      run({"cmake", "--install", binary_dir().string(), "--prefix", prefix.string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  const fs::path project = dir.path() / "project";
  write_project(project);
  build_and_check(project, "-DCMAKE_PREFIX_PATH=" + prefix.string());
}
