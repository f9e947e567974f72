// plugin.toml's [[tasks]] have one source, the library: what task_tables()
// writes reads back as exactly what was registered, and compare_tasks()
// names every way a hand-written manifest can differ from its library.
#include <pyoco/plugins/task_tables.hpp>

#include <boost/test/unit_test.hpp>

#include <stdexcept>
#include <string>
#include <vector>

using namespace pyoco::plugins;

namespace {

const std::string kPlugin = R"([plugin]
name = "acme"
version = "0.1.0"
abi = 1
library = "libpyoco_acme.so"
)";

TaskDefinition greet() {
  TaskDefinition t;
  t.plugin = "acme";
  t.name = "greet";
  t.summary = "Greets someone";
  t.usage = "greet: {use: \"acme/greet\", inputs: {who: \"world\"}}";
  t.tags = {"example"};
  t.inputs = {{"who", "string", true, "whom to greet", 0}, {"times", "int", false, "", 0}};
  t.outputs = {{"greeting", "string", false, "the greeting", 0}};
  return t;
}

Manifest manifest_of(const std::string& tasks) {
  return parse_manifest(kPlugin + tasks, "/plugins/acme/plugin.toml");
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += s + "\n";
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(what_is_written_reads_back_as_registered) {
  TaskDefinition tricky = greet();
  tricky.name = "tricky";
  tricky.summary =
      "quotes \" and \\ backslash\nnewline\ttab \x01 ctrl \x7f del, \xc3\xbcnicode "
      "\xf0\x9f\x90\xb0";
  tricky.usage = "'single' \"\"\" triple";
  tricky.tags = {"a\"b", "", "c\\d"};
  tricky.inputs[0].description = "line one\r\nline two";
  TaskDefinition bare;
  bare.plugin = "acme";
  bare.name = "bare";  // no metadata at all
  const std::vector<TaskDefinition> tasks = {greet(), tricky, bare};

  const std::string text = task_tables(tasks);
  const Manifest m = manifest_of(text);
  const TaskMismatch diff = compare_tasks(m, tasks);
  BOOST_TEST(diff.empty(), joined(diff.differing) << text);
  BOOST_REQUIRE_EQUAL(m.tasks.size(), 3u);
  BOOST_TEST(m.tasks[1].summary == tricky.summary);
  BOOST_TEST(m.tasks[1].tags == tricky.tags);
  BOOST_TEST(m.tasks[0].inputs[0].required);
  BOOST_TEST(!m.tasks[0].inputs[1].required);
  BOOST_TEST(m.tasks[2].inputs.empty());
  // One input on the key's line; several, one per line.
  BOOST_TEST(text.find("outputs = [{name = \"greeting\", type = \"string\", description = \"the "
                       "greeting\"}]\n") != std::string::npos,
             text);
  BOOST_TEST(
      text.find("inputs = [\n  {name = \"who\", type = \"string\", required = true, "
                "description = \"whom to greet\"},\n  {name = \"times\", type = \"int\"},\n]\n") !=
          std::string::npos,
      text);
}

BOOST_AUTO_TEST_CASE(each_difference_is_named_in_one_finding_per_task) {
  const std::string same = task_tables({greet()});
  struct Case {
    const char* what;
    std::string from, to;  // a change to the written tables
    const char* message;   // what the finding says
  };
  const Case cases[] = {
      {"summary", "summary = \"Greets someone\"", "summary = \"Greets\"",
       "task 'greet': summary: \"Greets\" in plugin.toml, \"Greets someone\" in the library"},
      {"usage", "usage = ", "# usage = ",
       "task 'greet': usage: \"\" in plugin.toml, \"greet: {use: \"acme/greet\", inputs: {who: "
       "\"world\"}}\" in the library"},
      {"tags", "tags = [\"example\"]", "tags = [\"examples\"]",
       "task 'greet': tags: \"[examples]\" in plugin.toml, \"[example]\" in the library"},
      {"an input's type", "{name = \"times\", type = \"int\"}",
       "{name = \"times\", type = \"number\"}",
       "task 'greet': input 'times' type: \"number\" in plugin.toml, \"int\" in the library"},
      {"an input's required", "type = \"string\", required = true,", "type = \"string\",",
       "task 'greet': input 'who' required: \"false\" in plugin.toml, \"true\" in the library"},
      {"an input's name", "{name = \"times\"", "{name = \"count\"",
       "task 'greet': inputs: [who, count] in plugin.toml, [who, times] in the library"},
      {"an input's description", "description = \"whom to greet\"", "description = \"who\"",
       "task 'greet': input 'who' description: \"who\" in plugin.toml, \"whom to greet\" in the "
       "library"},
      {"an output missing",
       "outputs = [{name = \"greeting\", type = \"string\", description = \"the greeting\"}]", "",
       "task 'greet': outputs: [] in plugin.toml, [greeting] in the library"},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.what) {
      std::string text = same;
      const auto at = text.find(c.from);
      BOOST_TEST_REQUIRE(at != std::string::npos);
      text.replace(at, c.from.size(), c.to);
      const TaskMismatch diff = compare_tasks(manifest_of(text), {greet()});
      BOOST_TEST(diff.undeclared.empty());
      BOOST_TEST(diff.unregistered.empty());
      BOOST_TEST_REQUIRE(diff.differing.size() == 1u);
      BOOST_TEST(diff.differing[0] == c.message);
    }
  }

  // Several differences of one task: one finding naming each.
  std::string text = same;
  text.replace(text.find("type = \"int\""), 12, "type = \"any\"");
  text.replace(text.find("summary = \"Greets someone\""), 26, "summary = \"Hi\"");
  const TaskMismatch diff = compare_tasks(manifest_of(text), {greet()});
  BOOST_TEST_REQUIRE(diff.differing.size() == 1u);
  BOOST_TEST(diff.differing[0] ==
             "task 'greet': summary: \"Hi\" in plugin.toml, \"Greets someone\" in the library; "
             "input 'times' type: \"any\" in plugin.toml, \"int\" in the library");
}

BOOST_AUTO_TEST_CASE(tasks_on_one_side_only_are_listed_by_name) {
  TaskDefinition other = greet();
  other.name = "farewell";
  const TaskMismatch diff = compare_tasks(manifest_of(task_tables({greet()})), {other});
  BOOST_TEST(diff.undeclared == std::vector<std::string>{"farewell"});
  BOOST_TEST(diff.unregistered == std::vector<std::string>{"greet"});
  BOOST_TEST(diff.differing.empty());
  BOOST_TEST(!diff.empty());
}

BOOST_AUTO_TEST_CASE(a_long_value_is_cut_in_the_message) {
  TaskDefinition t = greet();
  t.summary = std::string(100, 'x');
  const TaskMismatch diff = compare_tasks(manifest_of(task_tables({greet()})), {t});
  BOOST_TEST_REQUIRE(diff.differing.size() == 1u);
  BOOST_TEST(diff.differing[0].find("\"" + std::string(60, 'x') + "...\" in the library") !=
                 std::string::npos,
             diff.differing[0]);
}

BOOST_AUTO_TEST_CASE(text_that_is_not_utf8_is_refused_not_written) {
  TaskDefinition t = greet();
  t.summary = "bad \xff byte";
  BOOST_CHECK_EXCEPTION(task_tables({t}), std::invalid_argument, [](const std::exception& e) {
    return std::string(e.what()) == "task 'greet' summary: \"bad \\xff byte\" is not UTF-8";
  });
  // The message names the task and the field (it named neither).
  t = greet();
  t.inputs = {IoSpec{"who", "string", false, "bad \xfe"}};
  BOOST_CHECK_EXCEPTION(task_tables({t}), std::invalid_argument, [](const std::exception& e) {
    return std::string(e.what()) ==
           "task 'greet' input 'who' description: \"bad \\xfe\" is not UTF-8";
  });
}
