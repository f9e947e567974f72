// The five-minute path of a plugin author, end to end, against an install
// prefix only: pyoco plugins new, build out of tree, the plugin's own unit
// test, lint clean under --strict, run its example flow.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <iterator>
#include <string>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

ProcessResult run(const std::vector<std::string>& argv, const fs::path& cwd) {
  ProcessOptions o;
  o.cwd = cwd;
  o.timeout = std::chrono::seconds(300);
  o.unset_env = {"PYOCO_PLUGIN_PATH"};
  return run_process(argv, o);
}

bool has(const std::string& s, const std::string& n) { return s.find(n) != std::string::npos; }

struct Installed {
  TempDir dir;
  fs::path prefix = dir.path() / "prefix";
  fs::path pyoco = prefix / "bin/pyoco";
  Installed() {
    const ProcessResult r =
        run({"cmake", "--install", binary_dir().string(), "--prefix", prefix.string()}, dir.path());
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  }
  // The default scaffold's C++ is in the project's own style (.clang-format
  // at the root). Long task names may make a line that clang-format would
  // wrap; the default names never do.
  void expect_formatted(const fs::path& project) {
    const std::string style = "--style=file:" + (source_dir() / ".clang-format").string();
    for (const auto& e : fs::recursive_directory_iterator(project)) {
      const auto ext = e.path().extension();
      if (ext != ".cpp" && ext != ".hpp") continue;
      const ProcessResult r =
          run({"clang-format", style, "--dry-run", "--Werror", e.path().string()}, dir.path());
      BOOST_TEST(r.exit_code == 0, e.path() << " is not clang-formatted:\n" << r.err);
    }
  }
  // cmake configure + build of the project in `project`; true on success.
  void build(const fs::path& project, const std::string& standard) {
    ProcessResult r =
        run({"cmake", "-S", project.string(), "-B", (project / "build").string(),
             "-DCMAKE_PREFIX_PATH=" + prefix.string(), "-DCMAKE_CXX_STANDARD=" + standard,
             "-DCMAKE_CXX_FLAGS=-Werror", "-DCMAKE_BUILD_TYPE=Release"},
            dir.path());
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
    r = run({"cmake", "--build", (project / "build").string()}, dir.path());
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);  // warning-free: -Werror
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(scaffold, Installed)

BOOST_AUTO_TEST_CASE(new_plugin_builds_tests_lints_and_runs) {
  ProcessResult r = run({pyoco.string(), "plugins", "new", "acme"}, dir.path());
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  BOOST_TEST(has(r.out, "Created plugin 'acme' in acme/ with task greet"), r.out);
  BOOST_TEST(has(r.out, "cmake -S acme -B acme/build -DCMAKE_PREFIX_PATH=" + prefix.string()),
             r.out);
  BOOST_TEST(has(r.out, "plugins lint acme/build/acme --strict"), r.out);
  BOOST_TEST(has(r.out, "run acme/flow.yaml --plugin-path acme/build"), r.out);
  for (const char* f : {"CMakeLists.txt", "plugin.toml", "src/acme.cpp", "tests/acme_test.cpp",
                        "flow.yaml", "README.md", ".gitignore"}) {
    BOOST_TEST(fs::is_regular_file(dir.path() / "acme" / f), f);
  }

  const fs::path project = dir.path() / "acme";
  expect_formatted(project);
  build(project, "20");
  r = run({"ctest", "--test-dir", (project / "build").string(), "--output-on-failure"}, dir.path());
  BOOST_TEST(r.exit_code == 0, r.out);
  BOOST_TEST(has(r.out, "100% tests passed"), r.out);

  // The tutorial: the built plugin.toml edited by hand is put right by a
  // rebuild, though its sources did not change.
  const fs::path built = project / "build/acme/plugin.toml";
  const auto read = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string written = read(built);
  BOOST_TEST_REQUIRE(has(written, "type = \"string\""), written);
  std::string edited = written;
  edited.replace(edited.find("type = \"string\""), 15, "type = \"int\"");
  std::ofstream(built) << edited;
  r = run({"cmake", "--build", (project / "build").string()}, dir.path());
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(read(built) == written);

  r = run({pyoco.string(), "plugins", "lint", (project / "build/acme").string(), "--strict"},
          dir.path());
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(has(r.out, "0 errors, 0 warnings"), r.out);

  r = run({pyoco.string(), "run", (project / "flow.yaml").string(), "--plugin-path",
           (project / "build").string(), "--non-cute", "--param", "who=pyoco"},
          dir.path());
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(has(r.out, "INFO pyoco log node=greet hello pyoco from greet"), r.out);
  BOOST_TEST(has(r.out, "status=COMPLETED"), r.out);
}

BOOST_AUTO_TEST_CASE(several_tasks_and_cxx17) {
  ProcessResult r = run({pyoco.string(), "plugins", "new", "multi", "--dir", "m", "--task", "first",
                         "--task", "second_step"},
                        dir.path());
  BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
  const fs::path project = dir.path() / "m";
  build(project, "17");  // the SDK promises C++17
  r = run({"ctest", "--test-dir", (project / "build").string()}, dir.path());
  BOOST_TEST(r.exit_code == 0, r.out);
  r = run({pyoco.string(), "run", (project / "flow.yaml").string(), "--plugin-path",
           (project / "build").string(), "--non-cute"},
          dir.path());
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(has(r.out, "node=second_step hello world from second_step"), r.out);
}

BOOST_AUTO_TEST_CASE(refuses_bad_names_and_existing_directories) {
  ProcessResult r = run({pyoco.string(), "plugins", "new", "Acme"}, dir.path());
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "plugin name 'Acme' must be lower case"), r.err);
  r = run({pyoco.string(), "plugins", "new", "ok", "--task", "Bad-Task"}, dir.path());
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "task name 'Bad-Task'"), r.err);
  fs::create_directories(dir.path() / "taken");
  std::ofstream(dir.path() / "taken/file") << "x";
  r = run({pyoco.string(), "plugins", "new", "ok", "--dir", "taken"}, dir.path());
  BOOST_TEST(r.exit_code == 2);
  BOOST_TEST(has(r.err, "taken already exists and is not empty"), r.err);
  BOOST_TEST(fs::is_regular_file(dir.path() / "taken/file"));  // nothing lost
}

BOOST_AUTO_TEST_SUITE_END()
