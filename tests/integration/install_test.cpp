// `cmake --install` into a fresh prefix lays out what ARCHITECTURE.md
// promises, and the installed binary works from there.
#include <boost/test/unit_test.hpp>

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
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/abi.h"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/sdk.hpp"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/version.h"));
  BOOST_TEST(fs::is_regular_file(prefix / "include/pyoco/testing.hpp"));
  BOOST_TEST(fs::is_regular_file(prefix / "share/pyoco/templates/plugin/plugin.toml"));
  BOOST_TEST(fs::is_regular_file(prefix / "lib/pyoco/plugins/std/libpyoco_std.so"));
  BOOST_TEST(fs::is_regular_file(prefix / "lib/pyoco/plugins/hello/plugin.toml"));
  BOOST_TEST(fs::is_regular_file(prefix / "lib/pyoco/plugins/hello/libpyoco_hello.so"));

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

BOOST_AUTO_TEST_CASE(installed_binary_runs_without_the_build_tree) {
  const ProcessResult r =
      run_process({(prefix / "bin/pyoco").string(), "--version"}, {.cwd = dir.path()});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out.find("pyoco ") == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
