// pyoco/testing.hpp runs real plugin tasks (the hello and std plugins'
// sources, compiled into this test) with no runtime at all.
#include <pyoco/testing.hpp>

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>

void register_tasks(pyoco::Registry& registry);  // plugins/hello/src/hello.cpp

using pyoco::Value;
using pyoco::testing::TestHost;

BOOST_AUTO_TEST_CASE(registers_the_plugins_tasks) {
  TestHost host(register_tasks);
  const std::vector<std::string> expected = {"fetch_data", "process_data", "save_result"};
  BOOST_TEST(host.task_names() == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(runs_the_seed_example_step_by_step) {
  TestHost host(register_tasks);
  auto fetched = host.run("fetch_data");
  BOOST_TEST_REQUIRE(fetched.ok(), fetched.error());
  BOOST_TEST(fetched.output()["value"].as<std::string>() == "carrot");
  BOOST_TEST(fetched.output()["id"].as<int>() == 1);

  auto processed = host.run("process_data", {{"data", fetched.output()}});
  BOOST_TEST_REQUIRE(processed.ok(), processed.error());
  BOOST_TEST(processed.output().as<std::string>() == "CARROT");

  BOOST_TEST_REQUIRE(host.logs().size() == 2u);
  BOOST_TEST(host.logs()[1].message == "🥕 Processing: carrot");
  BOOST_TEST(host.logs()[1].task == "process_data");
}

BOOST_AUTO_TEST_CASE(task_errors_come_back_as_results) {
  TestHost host(register_tasks);
  auto r = host.run("process_data", {{"data", Value{{"value", 3}}}});
  BOOST_TEST(!r.ok());
  BOOST_TEST(r.error() == "expected string, got int");
  BOOST_TEST(!host.run("nope").ok());
  BOOST_TEST(host.run("nope").error() == "no task 'nope' was registered");
}

BOOST_AUTO_TEST_CASE(values_built_in_the_test_live_as_long_as_the_host) {
  TestHost host(register_tasks);
  Value list = Value::array({1, "two", 3.5, true, nullptr});
  Value obj{{"list", list}, {"n", 7}};
  BOOST_TEST(obj["list"].size() == 5u);
  BOOST_TEST(obj["list"][1].as<std::string>() == "two");
  BOOST_TEST(obj["list"][4].is_null());
  BOOST_TEST(obj["missing"].is_null());
  int sum = 0;
  for (auto [key, value] : obj.members()) {
    if (key == "n") sum += value.as<int>();
  }
  BOOST_TEST(sum == 7);
}
