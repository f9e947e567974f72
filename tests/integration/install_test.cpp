// `cmake --install` into a fresh prefix lays out what ARCHITECTURE.md
// promises, and the installed binary works from there.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>

#include "installed_pyoco.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

struct InstalledPrefix {
  TempDir dir;
  fs::path prefix = dir.path() / "prefix";
  InstalledPrefix() {
    const ProcessResult r =
        run_process({"cmake", "--install", binary_dir().string(), "--prefix", prefix.string()},
                    {.timeout = std::chrono::seconds(120)});
    BOOST_TEST_REQUIRE(r.exit_code == 0, "cmake --install failed: " << r.err);
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(install, InstalledPrefix)

BOOST_AUTO_TEST_CASE(puts_binary_sdk_and_plugins_in_place) {
  BOOST_TEST(fs::is_regular_file(prefix / "bin/pyoco"));
  BOOST_TEST(fs::is_regular_file(prefix / "bin/pyoco-cluster"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/abi.h"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/sdk.hpp"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/version.h"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/testing.hpp"));
  BOOST_TEST(fs::is_regular_file(prefix / "share/pyoco/templates/plugin/plugin.toml"));
  BOOST_TEST(fs::is_regular_file(prefix / "lib/pyoco/plugins/std/libpyoco_std.so"));
  // std/shell's guard, beside the library it is looked for beside.
  const fs::path guard = prefix / "lib/pyoco/plugins/std/pyoco-shell-guard";
  BOOST_TEST(fs::is_regular_file(guard));
  BOOST_TEST(((fs::status(guard).permissions() & fs::perms::owner_exec) != fs::perms::none));
  BOOST_TEST(fs::is_regular_file(prefix / "lib/pyoco/plugins/hello/plugin.toml"));
  BOOST_TEST(fs::is_regular_file(prefix / "lib/pyoco/plugins/hello/libpyoco_hello.so"));
  // The systemd units and /etc/pyoco/*.env are the Debian package's alone
  // (cmake/PyocoPackaging.cmake): they name /usr/bin/pyoco and /etc.
  BOOST_TEST(!fs::exists(prefix / "lib/systemd"));

  bool sdk_config = false;
  for (const auto& e : fs::recursive_directory_iterator(prefix)) {
    if (e.path().filename() == "PyocoSDKConfig.cmake") {
      sdk_config = true;
      BOOST_TEST(fs::is_regular_file(e.path().parent_path() / "PyocoPlugin.cmake"));
      BOOST_TEST(fs::is_regular_file(e.path().parent_path() / "PyocoSDKTargets.cmake"));
    }
  }
  BOOST_TEST(sdk_config, "no PyocoSDKConfig.cmake under " << prefix);
}

BOOST_AUTO_TEST_CASE(installs_runtime_libraries_and_their_headers) {
  bool plugins_lib = false;
  for (const auto& e : fs::recursive_directory_iterator(prefix)) {
    if (e.path().filename() == "libpyoco_plugins.a") plugins_lib = true;
  }
  BOOST_TEST(plugins_lib);
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/plugins/search_path.hpp"));
}

// The installed pyoco works from the prefix alone (installed_pyoco.hpp).
BOOST_AUTO_TEST_CASE(installed_binary_runs_without_the_build_tree) {
  check_installed_pyoco_runs(prefix, dir.path());
}

// examples/embed on its own, as a user who copies it from the install
// (docs/embedding.md: <prefix>/share/pyoco/examples/embed) would build it:
// find_package(Pyoco) from the install prefix, pyoco::runtime and nothing
// else, then the seed flow with the installed hello plugin.
BOOST_AUTO_TEST_CASE(embedding_example_builds_against_the_installed_package) {
  const fs::path example = prefix / "share/pyoco/examples/embed";
  for (const char* f : {"CMakeLists.txt", "main.cpp"}) {
    BOOST_TEST_REQUIRE(fs::is_regular_file(example / f), "the install has no " << example / f);
  }
  const fs::path build = dir.path() / "embed";
  const ProcessOptions slow{.timeout = std::chrono::seconds(300)};
  ProcessResult r = run_process(
      {"cmake", "-S", example.string(), "-B", build.string(), "-G", "Ninja",
       "-DCMAKE_PREFIX_PATH=" + prefix.string(), "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
       "-DCMAKE_CXX_COMPILER=" PYOCO_TEST_CXX_COMPILER, "-DCMAKE_CXX_FLAGS=" PYOCO_TEST_CXX_FLAGS,
       "-DCMAKE_EXE_LINKER_FLAGS=" PYOCO_TEST_EXE_LINKER_FLAGS},
      slow);
  BOOST_TEST_REQUIRE(r.exit_code == 0, "configure failed:\n" << r.out << r.err);

  // The package came from the prefix, not from some other pyoco.
  std::ifstream cache(build / "CMakeCache.txt");
  std::stringstream ss;
  ss << cache.rdbuf();
  const std::string pyoco_dir = "Pyoco_DIR:PATH=" + prefix.string() + "/";
  BOOST_TEST(ss.str().find(pyoco_dir) != std::string::npos, "no " << pyoco_dir << "...");

  r = run_process({"cmake", "--build", build.string()}, slow);
  BOOST_TEST_REQUIRE(r.exit_code == 0, "build failed:\n" << r.out << r.err);
  // Nothing of the build tree went into it: no header, library or rule.
  std::ifstream rules(build / "build.ninja");
  std::stringstream ninja;
  ninja << rules.rdbuf();
  const std::string build_tree = fs::canonical(binary_dir()).string() + "/";
  BOOST_TEST(ninja.str().find(build_tree) == std::string::npos,
             "build.ninja names the build tree " << build_tree);

  r = run_process({(build / "hello_embed").string(), (prefix / "lib/pyoco/plugins").string()},
                  {.cwd = dir.path(),
                   .env = {{"LD_DEBUG", "files"}},
                   .unset_env = {"PYOCO_PLUGIN_PATH", "LD_LIBRARY_PATH"}});
  BOOST_TEST(r.exit_code == 0, r.out << r.err);
  BOOST_TEST(r.err.find(build_tree) == std::string::npos, "loaded from the build tree:\n" << r.err);
  for (const char* line : {"🐰 Fetching data...", "✨ Saved: CARROT!", "status: COMPLETED",
                           "  save_result  SUCCEEDED  \"CARROT!\""}) {
    BOOST_TEST(r.out.find(line) != std::string::npos, "missing: " << line << "\n" << r.out);
  }
}

BOOST_AUTO_TEST_SUITE_END()
