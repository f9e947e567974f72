// The SDK as a CMake package: a plugin project outside this tree builds
// against the build tree and against an install prefix, and the result
// lints clean and lists.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "greeter_project.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

ProcessResult run(const std::vector<std::string>& argv) {
  return run_process(argv, {.timeout = std::chrono::seconds(240)});
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_plugin_builds_against_the_build_tree) {
  TempDir dir;
  write_greeter_project(dir.path());
  build_and_check_greeter(dir.path(), "-DPyocoSDK_DIR=" + binary_dir().string(), pyoco_exe());
}

BOOST_AUTO_TEST_CASE(a_plugin_builds_against_an_install_prefix_only) {
  TempDir dir;
  const fs::path prefix = dir.path() / "prefix";
  const ProcessResult r =
      run({"cmake", "--install", binary_dir().string(), "--prefix", prefix.string()});
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  const fs::path project = dir.path() / "project";
  write_greeter_project(project);
  build_and_check_greeter(project, "-DCMAKE_PREFIX_PATH=" + prefix.string(), pyoco_exe());
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
      write_text(dir.path() / file, text);
      const ProcessResult r =
          run({"c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-unused-but-set-variable",
               "-fsyntax-only", "-I" + (source_dir() / "sdk/include").string(),
               (dir.path() / file).string()});
      BOOST_TEST(r.exit_code == 0, text << r.out << r.err);
    }
  }
}
