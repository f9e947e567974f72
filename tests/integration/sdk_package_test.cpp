// The SDK as a CMake package: a plugin project outside this tree builds
// against the build tree and against an install prefix, and the result
// lints clean and lists.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

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
  // The build wrote the task's table from its code, with the pyoco that
  // came with the SDK.
  std::ifstream in(plugin / "plugin.toml");
  const std::string manifest{std::istreambuf_iterator<char>(in), {}};
  BOOST_TEST(
      manifest.find("[[tasks]]\nname = \"greet\"\nsummary = \"Says hello\"\n") != std::string::npos,
      manifest);
  BOOST_TEST(manifest.find("inputs = [{name = \"who\", type = \"string\", required = true, "
                           "description = \"whom\"}]") != std::string::npos,
             manifest);

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

// docs/plugins.md: its C++ examples compile against the SDK as written
// (C++17, warnings as errors), so a reader can copy them.
BOOST_AUTO_TEST_CASE(the_docs_cpp_examples_compile) {
  std::ifstream page(source_dir() / "docs/plugins.md");
  std::vector<std::string> blocks;
  std::string line, body;
  bool inside = false;
  while (std::getline(page, line)) {
    const std::string fence = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    if (fence == "```cpp") {  // some blocks are indented in a list
      inside = true;
      body.clear();
    } else if (inside && fence == "```") {
      blocks.push_back(body);
      inside = false;
    } else if (inside) {
      body += line + "\n";
    }
  }
  auto block = [&](const std::string& needle) {
    for (const std::string& b : blocks) {
      if (b.find(needle) != std::string::npos) return b;
    }
    BOOST_FAIL("docs/plugins.md has no C++ block with " << needle);
    return std::string();
  };
  // A Task subclass, then the same plugin registering a callable too.
  const std::string count_words = block("struct CountWords : pyoco::Task");
  std::string both = count_words.substr(0, count_words.find("void register_tasks"));
  both += block("pyoco::TaskInfo shout;") + "PYOCO_PLUGIN(register_tasks)\n";
  const std::vector<std::pair<std::string, std::string>> sources = {
      {"count_words.cpp", count_words},
      {"shout.cpp", "#include <cctype>\n" + both},
      {"nap.cpp", block("struct Nap : pyoco::AsyncTask")},
      {"values.cpp",
       "#include <pyoco/sdk.hpp>\n#include <cstdint>\n#include <string>\n"
       "pyoco::Value f(std::int64_t count, std::string longest) {\n" +
           block("pyoco::Value n = 42;") + "}\n"},
      {"handles.cpp",
       "#include <pyoco/sdk.hpp>\n#include <string>\nstruct Report : pyoco::Task "
       "{\n" +
           block("ctx.save_artifact(\"report.csv\"") + "};\n"},
  };
  TempDir dir;
  for (const auto& [file, text] : sources) {
    BOOST_TEST_CONTEXT(file) {
      write(dir.path() / file, text);
      const ProcessResult r =
          run({"c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-unused-but-set-variable",
               "-fsyntax-only", "-I" + (source_dir() / "sdk/include").string(),
               (dir.path() / file).string()});
      BOOST_TEST(r.exit_code == 0, text << r.out << r.err);
    }
  }
}
