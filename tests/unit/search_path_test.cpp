#include <pyoco/plugins/search_path.hpp>

#include <boost/test/unit_test.hpp>

namespace fs = std::filesystem;
using pyoco::plugins::install_plugin_dir_for;
using pyoco::plugins::plugin_search_path;

BOOST_AUTO_TEST_CASE(install_dir_is_relative_to_the_binary) {
  BOOST_TEST(install_plugin_dir_for("/opt/pyoco/bin/pyoco") ==
             fs::path("/opt/pyoco/lib/pyoco/plugins"));
  BOOST_TEST(install_plugin_dir_for("/usr/local/bin/pyoco") ==
             fs::path("/usr/local/lib/pyoco/plugins"));
}

BOOST_AUTO_TEST_CASE(install_dir_of_this_process_ends_in_lib_pyoco_plugins) {
  const fs::path dir = pyoco::plugins::install_plugin_dir();
  BOOST_TEST(dir.is_absolute());
  BOOST_TEST(dir.filename() == "plugins");
  BOOST_TEST(dir.parent_path().filename() == "pyoco");
}

BOOST_AUTO_TEST_CASE(search_path_order_is_flags_then_env_then_install) {
  const auto path = plugin_search_path({"/a", "/b"}, "/c:/d", "/install");
  const std::vector<fs::path> expected = {"/a", "/b", "/c", "/d", "/install"};
  BOOST_TEST(path == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(empty_env_entries_are_skipped) {
  const auto path = plugin_search_path({}, ":/c::/d:", "/install");
  const std::vector<fs::path> expected = {"/c", "/d", "/install"};
  BOOST_TEST(path == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(no_flags_and_no_env_leaves_the_install_dir) {
  const auto path = plugin_search_path({}, "", "/install");
  BOOST_TEST(path.size() == 1u);
  BOOST_TEST(path.front() == fs::path("/install"));
}
