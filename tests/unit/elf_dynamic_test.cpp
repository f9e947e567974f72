// Reading a library's ELF dynamic section and resolving its dependencies
// the way the dynamic loader does, against the built lint fixtures.
#include <pyoco/plugins/elf_dynamic.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>

#include "process.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace pyoco::plugins;
using pyoco::testing::fixture_dir;

namespace {

fs::path fixture_library(const std::string& name) {
  return fixture_dir() / name / ("libpyoco_" + name + ".so");
}

fs::path hidden_deps() { return fixture_dir().parent_path() / "hidden-deps"; }

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_needed_runpath_and_symbols) {
  const auto elf = read_elf_dynamic(fixture_library("runpath_dep"));
  BOOST_TEST_REQUIRE(elf.has_value());
  BOOST_TEST(elf->bits == int(sizeof(void*) * 8));
  BOOST_TEST(contains(elf->needed, "libpyoco_fixture_dep.so"));
  BOOST_TEST(elf->runpath == std::vector<std::string>{"$ORIGIN/../../hidden-deps"},
             boost::test_tools::per_element());
  BOOST_TEST(contains(elf->undefined, "pyoco_fixture_dep_value"));
  BOOST_TEST(elf->exported.count("pyoco_plugin_entry") == 1u);
  BOOST_TEST(elf->exported.count("pyoco_fixture_dep_value") == 0u);
}

BOOST_AUTO_TEST_CASE(weak_undefined_symbols_are_not_needed) {
  // Every C++ shared object has weak references such as __cxa_finalize.
  const auto elf = read_elf_dynamic(fixture_library("clean"));
  BOOST_TEST_REQUIRE(elf.has_value());
  BOOST_TEST(!contains(elf->undefined, "__cxa_finalize"));
  BOOST_TEST(!contains(elf->undefined, "__gmon_start__"));
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_elf_reads_as_nothing) {
  BOOST_TEST(!read_elf_dynamic(fixture_dir() / "clean" / "plugin.toml").has_value());
  BOOST_TEST(!read_elf_dynamic(fixture_dir() / "no such file").has_value());
}

// A 64-bit ELF header is 64 bytes; a file of 52 to 63 bytes (enough for
// a 32-bit header) that claims to be 64-bit was read past the end of the
// buffer (found by fuzz/elf.cpp; fuzz/regressions/elf/).
BOOST_AUTO_TEST_CASE(a_64_bit_header_cut_short_reads_as_nothing) {
  const pyoco::testing::TempDir dir;
  for (const std::size_t size : {52u, 56u, 63u}) {
    BOOST_TEST_CONTEXT(size << " bytes") {
      std::string bytes =
          "\x7f"
          "ELF\x02\x01\x01";
      bytes.resize(size, '\xff');
      const fs::path file = dir.path() / ("short" + std::to_string(size) + ".so");
      std::ofstream(file, std::ios::binary) << bytes;
      BOOST_TEST(!read_elf_dynamic(file).has_value());
    }
  }
}

BOOST_AUTO_TEST_CASE(the_system_cache_lists_libc) {
  const auto cache = read_ld_so_cache("/etc/ld.so.cache");
  BOOST_TEST(std::any_of(cache.begin(), cache.end(),
                         [](const fs::path& p) { return p.filename() == "libc.so.6"; }));
}

BOOST_AUTO_TEST_CASE(a_clean_plugin_resolves_completely) {
  const DependencyCheck c =
      check_dependencies(fixture_library("clean"), LibrarySearch::from_system());
  BOOST_TEST(c.missing_libraries.empty());
  BOOST_TEST(c.missing_symbols.empty());
  BOOST_TEST(std::any_of(c.closure.begin(), c.closure.end(),
                         [](const fs::path& p) { return p.filename() == "libc.so.6"; }));
}

BOOST_AUTO_TEST_CASE(origin_in_runpath_is_the_library_directory) {
  const DependencyCheck c =
      check_dependencies(fixture_library("runpath_dep"), LibrarySearch::from_system());
  BOOST_TEST(c.missing_libraries.empty());
  BOOST_TEST(c.missing_symbols.empty());
  BOOST_TEST(std::count(c.closure.begin(), c.closure.end(),
                        hidden_deps() / "libpyoco_fixture_dep.so") == 1);
}

BOOST_AUTO_TEST_CASE(every_missing_library_is_reported_and_symbols_are_not_guessed) {
  LibrarySearch search = LibrarySearch::from_system();
  search.ld_library_path.clear();
  const DependencyCheck c = check_dependencies(fixture_library("pl021_missing_dep"), search);
  BOOST_TEST(c.missing_libraries == (std::vector<std::string>{"libpyoco_fixture_dep.so",
                                                              "libpyoco_fixture_second_dep.so"}),
             boost::test_tools::per_element());
  // Their symbols are missing too, but only because they are.
  BOOST_TEST(c.missing_symbols.empty());
}

BOOST_AUTO_TEST_CASE(ld_library_path_is_searched) {
  LibrarySearch search = LibrarySearch::from_system();
  search.ld_library_path = {hidden_deps()};
  const DependencyCheck c = check_dependencies(fixture_library("pl021_missing_dep"), search);
  BOOST_TEST(c.missing_libraries.empty());
  BOOST_TEST(c.missing_symbols.empty());
}

BOOST_AUTO_TEST_CASE(every_undefined_symbol_is_reported) {
  const DependencyCheck c =
      check_dependencies(fixture_library("pl022_undefined_symbol"), LibrarySearch::from_system());
  BOOST_TEST(c.missing_libraries.empty());
  BOOST_TEST(c.missing_symbols.size() == 2u);
  BOOST_TEST(contains(c.missing_symbols, "pyoco_fixture_symbol_nobody_defines"));
  BOOST_TEST(contains(c.missing_symbols, "_ZN13pyoco_fixture14also_undefinedEi"));
}
