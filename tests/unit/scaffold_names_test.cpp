// `pyoco plugins new` refuses up front what its project could not be made
// or configured with, and never leaves a half-made project behind.
#include <pyoco/plugins/scaffold.hpp>

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <string>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using pyoco::plugins::ScaffoldError;
using pyoco::plugins::ScaffoldOptions;

namespace {

ScaffoldOptions options(const pyoco::testing::TempDir& dir, const std::string& plugin) {
  ScaffoldOptions o;
  o.plugin = plugin;
  o.tasks = {"greet"};
  o.templates = pyoco::testing::source_dir() / "templates" / "plugin";
  o.out = dir.path() / "out";
  return o;
}

// What scaffold_plugin refused the options with, or "made".
std::string refusal(const ScaffoldOptions& o) {
  try {
    pyoco::plugins::scaffold_plugin(o);
  } catch (const ScaffoldError& e) {
    return e.what();
  }
  return "made";
}

}  // namespace

// The scaffold's CMakeLists.txt names the plugin's target after it: these
// passed `plugins new` and failed `cmake` (the name is reserved).
BOOST_AUTO_TEST_CASE(a_name_cmake_reserves_for_a_target_is_refused) {
  for (const char* name : {"test", "all", "install", "clean", "help"}) {
    const pyoco::testing::TempDir dir;
    const std::string why = refusal(options(dir, name));
    BOOST_TEST(why.find("is a target name CMake reserves") != std::string::npos, why);
    BOOST_TEST(why.find(std::string("e.g. '") + name + "_plugin'") != std::string::npos, why);
    BOOST_TEST(!fs::exists(dir.path() / "out"));
  }
  const pyoco::testing::TempDir dir;
  BOOST_TEST(refusal(options(dir, "tests")) == "made");
}

// 300 characters gave a raw filesystem error (exit 1); 250 a half-made
// directory.
BOOST_AUTO_TEST_CASE(a_name_too_long_for_its_files_is_refused_up_front) {
  for (const std::size_t n : {65u, 250u, 300u}) {
    const pyoco::testing::TempDir dir;
    const std::string why = refusal(options(dir, std::string(n, 'a')));
    BOOST_TEST(why.find("is " + std::to_string(n) + " characters long: choose one of at most 64") !=
                   std::string::npos,
               why);
    BOOST_TEST(!fs::exists(dir.path() / "out"));
  }
  const pyoco::testing::TempDir dir;
  BOOST_TEST(refusal(options(dir, std::string(64, 'a'))) == "made");
}

// An empty regular file was "not empty".
BOOST_AUTO_TEST_CASE(a_dir_that_is_a_file_is_said_to_be_one) {
  const pyoco::testing::TempDir dir;
  ScaffoldOptions o = options(dir, "acme");
  std::ofstream(o.out).flush();
  const std::string why = refusal(o);
  BOOST_TEST(why.find("exists and is not a directory") != std::string::npos, why);
  BOOST_TEST(fs::is_regular_file(o.out));
}

// A file that cannot be written leaves nothing behind: the next try would
// say "not empty", and a project without its plugin.toml does not build.
BOOST_AUTO_TEST_CASE(a_failure_midway_leaves_no_half_made_project) {
  const pyoco::testing::TempDir dir;
  const fs::path templates = dir.path() / "templates";
  fs::create_directories(templates / "src");
  std::ofstream(templates / "plugin.toml") << "name = \"{{plugin}}\"\n";
  // Rendered, its name is past the 255 bytes a file name may have.
  std::ofstream(templates / "src" / ("{{plugin}}" + std::string(240, 'x'))) << "x";
  ScaffoldOptions o = options(dir, std::string(40, 'p'));
  o.templates = templates;
  const std::string why = refusal(o);
  BOOST_TEST(why.find("cannot write") == 0, why);
  BOOST_TEST(!fs::exists(o.out));

  // An empty directory given with --dir stays, empty.
  fs::create_directories(o.out);
  BOOST_TEST(refusal(o).find("cannot write") == 0);
  BOOST_TEST(fs::is_directory(o.out));
  BOOST_TEST(fs::is_empty(o.out));
}
