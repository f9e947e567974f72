// A minimal third-party plugin project, built against an SDK package (the
// build tree's, an install prefix's, a .deb's) to show a plugin author's
// path works: it builds, its plugin.toml gets the task's table from the
// code, and it lints clean and lists.
#pragma once

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "process.hpp"
#include "temp_dir.hpp"

namespace pyoco::testing {

inline void write_greeter_project(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  write_text(dir / "CMakeLists.txt", R"(cmake_minimum_required(VERSION 3.25)
project(greeter CXX)
find_package(PyocoSDK 0.1 REQUIRED)
pyoco_add_plugin(greeter SOURCES greeter.cpp MANIFEST plugin.toml)
target_compile_options(greeter PRIVATE -Wall -Wextra -Wpedantic -Werror)
)");
  write_text(dir / "plugin.toml", R"([plugin]
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
  write_text(dir / "greeter.cpp", R"(#include <pyoco/sdk.hpp>

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

// Configures the project in `project`/build with `locate_arg` (how CMake
// finds the SDK), builds it, and checks the plugin with `pyoco`.
inline void build_and_check_greeter(const std::filesystem::path& project,
                                    const std::string& locate_arg,
                                    const std::filesystem::path& pyoco) {
  namespace fs = std::filesystem;
  const ProcessOptions slow{.timeout = std::chrono::seconds(240)};
  const fs::path build = project / "build";
  ProcessResult r = run_process({"cmake", "-S", project.string(), "-B", build.string(), locate_arg,
                                 "-DCMAKE_BUILD_TYPE=Release"},
                                slow);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  r = run_process({"cmake", "--build", build.string()}, slow);
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  const fs::path plugin = build / "greeter";
  BOOST_TEST(fs::is_regular_file(plugin / "plugin.toml"));
  BOOST_TEST(fs::is_regular_file(plugin / "libpyoco_greeter.so"));
  // The build wrote the task's table from its code, with the pyoco that
  // came with the SDK.
  const std::string manifest = read_text(plugin / "plugin.toml");
  BOOST_TEST(
      manifest.find("[[tasks]]\nname = \"greet\"\nsummary = \"Says hello\"\n") != std::string::npos,
      manifest);
  BOOST_TEST(manifest.find("inputs = [{name = \"who\", type = \"string\", required = true, "
                           "description = \"whom\"}]") != std::string::npos,
             manifest);

  const ProcessOptions own_plugins{.unset_env = {"PYOCO_PLUGIN_PATH"}};
  r = run_process({pyoco.string(), "plugins", "lint", plugin.string(), "--strict"}, own_plugins);
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  r = run_process({pyoco.string(), "tasks", "--plugin-path", build.string()}, own_plugins);
  BOOST_TEST(r.out.find("greeter/greet") != std::string::npos, r.out);
}

}  // namespace pyoco::testing
