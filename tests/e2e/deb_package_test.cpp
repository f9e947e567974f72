// `cpack -G DEB` of this build makes the two Debian packages of
// cmake/PyocoPackaging.cmake, with what each promises; unpacked under any
// root, pyoco runs from there with its own plugins, its systemd units
// verify, and a plugin builds against its SDK.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "greeter_project.hpp"
#include "installed_pyoco.hpp"
#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace utf = boost::unit_test;
using namespace pyoco::testing;

namespace {

ProcessResult run(const std::vector<std::string>& argv) {
  return run_process(argv, {.timeout = std::chrono::seconds(180)});
}

// The packages of this build, made once for every case (cpack installs
// from the build tree, strips and compresses: seconds), and unpacked
// (dpkg-deb -x) into one root, as dpkg would lay them out.
struct Packages {
  TempDir dir;
  fs::path root = dir.path() / "root";
  std::map<std::string, fs::path> debs;  // by package name
  std::string cpack_output;

  Packages() {
    const fs::path out = dir.path() / "out";
    const ProcessResult r =
        run({"cpack", "-G", "DEB", "--config", (binary_dir() / "CPackConfig.cmake").string(), "-B",
             out.string()});
    cpack_output = r.out + r.err;
    if (r.exit_code != 0) return;
    for (const auto& e : fs::directory_iterator(out)) {
      if (e.path().extension() != ".deb") continue;
      debs[field(e.path(), "Package")] = e.path();
      run({"dpkg-deb", "-x", e.path().string(), root.string()});
    }
  }

  static std::string field(const fs::path& deb, const std::string& name) {
    std::string value = run({"dpkg-deb", "--field", deb.string(), name}).out;
    while (!value.empty() && value.back() == '\n') value.pop_back();
    return value;
  }

  fs::path deb(const std::string& package) const {
    const auto it = debs.find(package);
    BOOST_TEST_REQUIRE((it != debs.end()), "no " << package << " package; cpack said:\n"
                                                 << cpack_output);
    return it->second;
  }

  // The paths a package holds, as dpkg-deb --contents names them (./usr/...).
  static std::string contents(const fs::path& deb) {
    return run({"dpkg-deb", "--contents", deb.string()}).out;
  }
};

const Packages& packages() {
  static const Packages made;
  return made;
}

bool holds(const std::string& listing, const std::string& path) {
  return listing.find(" ./" + path + "\n") != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(cpack_makes_pyoco_and_pyoco_dev_and_nothing_else) {
  const Packages& p = packages();
  std::vector<std::string> names;
  for (const auto& [name, path] : p.debs) names.push_back(name);
  // A third one would be an install() rule without a component.
  BOOST_TEST((names == std::vector<std::string>{"pyoco", "pyoco-dev"}), p.cpack_output);
  const std::string arch = run({"dpkg", "--print-architecture"}).out;
  const std::string version = Packages::field(p.deb("pyoco"), "Version");
  BOOST_TEST(version == PYOCO_TEST_PROJECT_VERSION "-1");
  BOOST_TEST(p.deb("pyoco").filename().string() ==
             "pyoco_" + version + "_" + arch.substr(0, arch.find('\n')) + ".deb");
}

BOOST_AUTO_TEST_CASE(pyoco_holds_the_binary_plugins_units_and_its_conffiles) {
  const fs::path deb = packages().deb("pyoco");
  const std::string listing = Packages::contents(deb);
  for (const char* path :
       {"usr/bin/pyoco", "usr/bin/pyoco-cluster", "usr/lib/pyoco/plugins/std/libpyoco_std.so",
        "usr/lib/pyoco/plugins/std/plugin.toml", "usr/lib/pyoco/plugins/std/pyoco-shell-guard",
        "usr/lib/pyoco/plugins/hello/libpyoco_hello.so",
        "usr/share/pyoco/templates/plugin/plugin.toml", "usr/share/doc/pyoco/deploy.md",
        "usr/lib/systemd/system/pyoco-server.service",
        "usr/lib/systemd/system/pyoco-worker@.service", "etc/pyoco/server.env",
        "etc/pyoco/worker.env"}) {
    BOOST_TEST(holds(listing, path), "pyoco has no " << path << ":\n" << listing);
  }
  BOOST_TEST(!holds(listing, "usr/include/pyoco/sdk.hpp"), "headers are pyoco-dev's");
  // Secrets go in the .env files: root's alone.
  BOOST_TEST(listing.find("-rw------- root/root") != std::string::npos, listing);

  BOOST_TEST(run({"dpkg-deb", "--info", deb.string(), "conffiles"}).out ==
             "/etc/pyoco/server.env\n/etc/pyoco/worker.env\n");
  const std::string depends = Packages::field(deb, "Depends");
  // adduser by hand (postinst); the shared libraries by dpkg-shlibdeps.
  for (const char* dep : {"adduser", "libnats3.4", "libyaml-cpp0.7", "libboost-json1.81.0"}) {
    BOOST_TEST(depends.find(dep) != std::string::npos, "Depends: " << depends);
  }
  BOOST_TEST(Packages::field(deb, "Recommends") == "nats-server");
  BOOST_TEST(run({"dpkg-deb", "--info", deb.string(), "postinst"}).out.find("adduser --system") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(pyoco_dev_holds_the_sdk_and_the_cmake_packages) {
  const fs::path deb = packages().deb("pyoco-dev");
  const std::string listing = Packages::contents(deb);
  for (const char* path :
       {"usr/include/pyoco/abi.h", "usr/include/pyoco/sdk.hpp", "usr/include/pyoco/version.h",
        "usr/include/pyoco/plugins/search_path.hpp", "usr/lib/cmake/PyocoSDK/PyocoSDKConfig.cmake",
        "usr/lib/cmake/PyocoSDK/PyocoPlugin.cmake", "usr/lib/cmake/Pyoco/PyocoConfig.cmake",
        "usr/lib/cmake/Pyoco/PyocoTargets.cmake", "usr/lib/libpyoco_core.a",
        "usr/share/pyoco/examples/embed/CMakeLists.txt",
        "usr/share/pyoco/examples/embed/main.cpp"}) {
    BOOST_TEST(holds(listing, path), "pyoco-dev has no " << path << ":\n" << listing);
  }
  BOOST_TEST(!holds(listing, "usr/bin/pyoco"), "the binary is pyoco's");

  // Exactly this build's pyoco, and the -dev packages of what
  // PyocoConfig.cmake finds with find_dependency().
  const std::string depends = Packages::field(deb, "Depends");
  const std::string version = Packages::field(packages().deb("pyoco"), "Version");
  BOOST_TEST(depends.starts_with("pyoco (= " + version + ")"), "Depends: " << depends);
  const std::string config = read_text(source_dir() / "cmake/PyocoConfig.cmake.in");
  const std::map<std::string, std::string> dev_of = {
      {"find_dependency(Boost", "libboost-json1.81-dev"},
      {"find_dependency(tomlplusplus", "libtomlplusplus-dev"},
      {"find_dependency(yaml-cpp", "libyaml-cpp-dev"},
      {"find_dependency(SQLite3", "libsqlite3-dev"},
      {"find_dependency(OpenSSL", "libssl-dev"}};
  for (const auto& [call, dev] : dev_of) {
    BOOST_TEST(config.find(call) != std::string::npos, call);
    BOOST_TEST(depends.find(dev) != std::string::npos, "Depends: " << depends);
  }
}

// Unpacked under a root of the test's, /usr/bin/pyoco finds
// <root>/usr/lib/pyoco/plugins (not the build tree's) and runs hello.
BOOST_AUTO_TEST_CASE(the_unpacked_pyoco_runs_hello_with_its_own_plugins) {
  const Packages& p = packages();
  BOOST_TEST_REQUIRE(fs::is_regular_file(p.root / "usr/bin/pyoco"), p.cpack_output);
  TempDir scratch;
  check_installed_pyoco_runs(p.root / "usr", scratch.path());
}

namespace {

// systemd-analyze verify checks a unit's syntax, its directives and that
// ExecStart's program exists; under --root it reads the unpacked tree.
boost::test_tools::assertion_result systemd_analyze_runs(utf::test_unit_id) {
  const ProcessResult r = run_process({"systemd-analyze", "--version"});
  boost::test_tools::assertion_result result{r.exit_code == 0};
  result.message() << "systemd-analyze is not installed or does not run here: units not verified";
  return result;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_units_verify, *utf::precondition(systemd_analyze_runs)) {
  const Packages& p = packages();
  const fs::path units = p.root / "usr/lib/systemd/system";
  BOOST_TEST_REQUIRE(fs::is_directory(units), p.cpack_output);
  // The units want network-online.target and multi-user.target, which
  // verify loads from the root too: the host's targets, copied beside them.
  for (const auto& e : fs::directory_iterator("/lib/systemd/system")) {
    if (e.path().extension() == ".target" && e.is_regular_file()) {
      fs::copy_file(e.path(), units / e.path().filename(), fs::copy_options::skip_existing);
    }
  }
  for (const char* unit : {"pyoco-server.service", "pyoco-worker@1.service"}) {
    const ProcessResult r = run({"systemd-analyze", "verify", "--root=" + p.root.string(), unit});
    // verify warns of an unknown key or a bad value and still exits 0.
    BOOST_TEST(r.exit_code == 0, unit << ":\n" << r.out << r.err);
    BOOST_TEST(r.out + r.err == "", unit << ":\n" << r.out << r.err);
  }
}

// A plugin author with pyoco-dev: find_package(PyocoSDK) from the unpacked
// /usr, and pyoco_add_plugin runs the unpacked pyoco to write plugin.toml.
BOOST_AUTO_TEST_CASE(a_plugin_builds_against_the_unpacked_sdk) {
  const Packages& p = packages();
  const fs::path usr = p.root / "usr";
  BOOST_TEST_REQUIRE(fs::is_regular_file(usr / "bin/pyoco"), p.cpack_output);
  TempDir project;
  write_greeter_project(project.path());
  build_and_check_greeter(project.path(), "-DCMAKE_PREFIX_PATH=" + usr.string(), usr / "bin/pyoco");
  const std::string cache = read_text(project.path() / "build/CMakeCache.txt");
  BOOST_TEST(cache.find("PYOCO_EXECUTABLE:FILEPATH=" + (usr / "bin/pyoco").string() + "\n") !=
                 std::string::npos,
             cache);
  BOOST_TEST(cache.find("PyocoSDK_DIR:PATH=" + (usr / "lib/cmake/PyocoSDK").string() + "\n") !=
                 std::string::npos,
             cache);
}
