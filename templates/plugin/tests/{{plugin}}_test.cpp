// Unit tests of the {{plugin}} tasks, run on the SDK's in-process test host.
#define BOOST_TEST_MODULE {{plugin}}
#include <pyoco/testing.hpp>

#include <boost/test/unit_test.hpp>

void register_tasks(pyoco::Registry& registry);  // src/{{plugin}}.cpp
{{#tasks}}

BOOST_AUTO_TEST_CASE({{task}}_greets) {
  pyoco::testing::TestHost host(register_tasks);
  auto result = host.run("{{task}}", {{"who", "world"}});
  BOOST_TEST_REQUIRE(result.ok(), result.error());
  BOOST_TEST(result.output().as<std::string>() == "hello world from {{task}}");
  BOOST_TEST_REQUIRE(host.logs().size() == 1u);
  BOOST_TEST(host.logs()[0].message == "hello world from {{task}}");
}

BOOST_AUTO_TEST_CASE({{task}}_needs_who) {
  pyoco::testing::TestHost host(register_tasks);
  auto result = host.run("{{task}}");
  BOOST_TEST(!result.ok());
  BOOST_TEST(result.error() == "input 'who' is required");
}
{{/tasks}}
