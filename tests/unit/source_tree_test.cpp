// House rules checked on the source tree itself: the one-way arrows of
// ARCHITECTURE.md between libraries, and clang-format on every file.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "process.hpp"

namespace fs = std::filesystem;
using namespace pyoco::testing;

namespace {

bool is_source(const fs::path& p) {
  const auto ext = p.extension();
  return ext == ".cpp" || ext == ".hpp" || ext == ".h" || ext == ".cc";
}

std::vector<fs::path> sources_under(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && is_source(e.path())) out.push_back(e.path());
  }
  return out;
}

// Every `#include <pyoco/...>` of a file.
std::vector<std::string> pyoco_includes(const fs::path& file) {
  static const std::regex include_re(R"(^\s*#\s*include\s*[<"](pyoco/[^>"]+)[>"])");
  std::ifstream in(file);
  std::vector<std::string> out;
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, include_re)) out.push_back(m[1]);
  }
  return out;
}

// What each runtime library may include: itself and what its arrows reach.
const std::map<std::string, std::set<std::string>> kAllowed = {
    {"core", {"core"}},
    {"trace", {"trace", "core"}},
    {"plugins", {"plugins", "core"}},
    {"engine", {"engine", "plugins", "trace", "core"}},
    {"store", {"store", "engine", "plugins", "trace", "core"}},
    {"cluster", {"cluster", "engine", "plugins", "trace", "core"}},
    {"worker", {"worker", "cluster", "engine", "plugins", "trace", "core"}},
    {"server", {"server", "cluster", "store", "engine", "plugins", "trace", "core"}},
    {"runner", {"runner", "store", "engine", "plugins", "trace", "core"}},
    {"cli",
     {"server", "worker", "cluster", "runner", "store", "engine", "plugins", "trace", "core"}},
};

}  // namespace

BOOST_AUTO_TEST_CASE(runtime_libraries_include_only_along_the_arrows) {
  std::size_t checked = 0;
  for (const auto& [lib, allowed] : kAllowed) {
    for (const fs::path& file : sources_under(source_dir() / "runtime" / lib)) {
      for (const std::string& inc : pyoco_includes(file)) {
        ++checked;
        BOOST_TEST(inc != "pyoco/sdk.hpp", file << ": the runtime never includes sdk.hpp");
        if (inc == "pyoco/abi.h" || inc == "pyoco/version.h" || inc == "pyoco/sdk.hpp") continue;
        const std::string target = inc.substr(6, inc.find('/', 6) - 6);
        BOOST_TEST(allowed.count(target) == 1u,
                   file << " (" << lib << ") includes " << inc << ": against the arrows");
      }
    }
  }
  BOOST_TEST(checked > 0u);
}

BOOST_AUTO_TEST_CASE(plugins_include_nothing_but_the_sdk) {
  std::size_t checked = 0;
  for (const fs::path& dir : {source_dir() / "plugins", source_dir() / "templates"}) {
    for (const fs::path& file : sources_under(dir)) {
      for (const std::string& inc : pyoco_includes(file)) {
        ++checked;
        BOOST_TEST((inc == "pyoco/sdk.hpp" || inc == "pyoco/abi.h" || inc == "pyoco/version.h" ||
                    inc == "pyoco/testing.hpp"),
                   file << " includes " << inc << ": plugins see only sdk/");
      }
    }
  }
  BOOST_TEST(checked > 0u);
}

BOOST_AUTO_TEST_CASE(every_source_file_is_clang_formatted) {
  std::vector<std::string> args = {"clang-format", "--dry-run", "--Werror"};
  // templates/ holds {{placeholders}}: its files are checked once rendered
  // (tests/e2e/scaffold_test.cpp builds them warning-free).
  for (const char* dir : {"sdk", "runtime", "plugins", "tests", "examples", "bench", "fuzz"}) {
    for (const fs::path& f : sources_under(source_dir() / dir)) args.push_back(f.string());
  }
  BOOST_TEST_REQUIRE(args.size() > 3u);
  const ProcessResult r = run_process(args, {.cwd = source_dir()});
  BOOST_TEST(r.exit_code == 0, "run clang-format -i on these files:\n" << r.err);
}
