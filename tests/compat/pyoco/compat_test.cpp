// The pyoco compatibility suite: each directory of cases/ holds a flow.yaml
// taken from one of pyoco's own tests and an expect.json saying what pyoco
// 0.7.2 does with it (or, where `differs` says so, what ours does on
// purpose). Each case is a test case of its own, named by its id
// (`--run_test=cases/L3-until-results`): the built pyoco runs or checks the
// flow in a fresh directory with a history of its own, and every field of
// expect.json is compared. README.md beside this file describes the fields.
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "process.hpp"
#include "runs_fixture.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace pyoco::testing;

namespace {

const fs::path kCases = PYOCO_COMPAT_CASES_DIR;

std::vector<std::string> case_ids() {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kCases, ec)) {
    if (entry.is_directory()) ids.push_back(entry.path().filename().string());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

bool is_string_array(const json::value& v) {
  return v.is_array() && std::all_of(v.as_array().begin(), v.as_array().end(),
                                     [](const json::value& e) { return e.is_string(); });
}

std::vector<std::string> strings(const json::object& o, const char* key) {
  std::vector<std::string> out;
  if (const json::value* v = o.if_contains(key)) {
    for (const auto& e : v->as_array()) out.emplace_back(e.as_string());
  }
  return out;
}

// What is wrong with an expect.json's shape, or "" (so that a typo in a
// key or a value of the wrong kind fails its case instead of being ignored).
std::string shape_error(const json::object& e) {
  static const std::set<std::string> kKeys{
      "pyoco_test", "adapted", "command", "args",    "check_args", "env",    "exit",
      "status",     "ran",     "not_ran", "outputs", "messages",   "differs"};
  for (const auto& [key, value] : e) {
    if (kKeys.count(std::string(key)) == 0) return "unknown key \"" + std::string(key) + "\"";
  }
  const json::value* test = e.if_contains("pyoco_test");
  if (test == nullptr || !((test->is_string() && !test->as_string().empty()) ||
                           (is_string_array(*test) && !test->as_array().empty()))) {
    return "pyoco_test: a test (\"tests/...py:LINE name\"), a list of them, or \"probe\"";
  }
  const json::value* command = e.if_contains("command");
  if (command == nullptr || !command->is_string() ||
      (command->as_string() != "run" && command->as_string() != "check")) {
    return "command: \"run\" or \"check\"";
  }
  const bool run = command->as_string() == "run";
  if (!e.contains("exit") || !e.at("exit").is_int64()) return "exit: the expected exit code";
  for (const char* key : {"args", "check_args", "ran", "not_ran"}) {
    if (e.contains(key) && !is_string_array(e.at(key))) return std::string(key) + ": strings";
  }
  if (e.contains("adapted") && !e.at("adapted").is_string()) return "adapted: a string";
  if (const json::value* env = e.if_contains("env")) {
    if (!env->is_object()) return "env: an object of strings";
    for (const auto& [k, v] : env->as_object()) {
      if (!v.is_string()) return "env." + std::string(k) + ": a string";
    }
  }
  if (const json::value* messages = e.if_contains("messages")) {
    if (!messages->is_array()) return "messages: a list";
    for (const auto& m : messages->as_array()) {
      if (!m.is_string() && !(is_string_array(m) && !m.as_array().empty())) {
        return "messages: each a string, or a list of strings one of which must appear";
      }
    }
  }
  if (const json::value* differs = e.if_contains("differs")) {
    if (!differs->is_object() || differs->as_object().size() != 2 ||
        !differs->as_object().contains("why") || !differs->at("why").is_string() ||
        !differs->as_object().contains("pyoco") || !differs->at("pyoco").is_string()) {
      return "differs: {\"why\": \"...\", \"pyoco\": \"...\"}";
    }
  }
  if (run) {
    if (e.contains("check_args")) return "check_args: only for command check";
    if (!e.contains("status") || !(e.at("status").is_string() || e.at("status").is_null())) {
      return "status: the run's status, or null when no run may be recorded";
    }
    if (!e.contains("ran")) return "ran: the nodes that must have SUCCEEDED (may be [])";
    if (e.contains("outputs") && !e.at("outputs").is_object()) return "outputs: an object";
  } else {
    for (const char* key : {"ran", "not_ran", "outputs"}) {
      if (e.contains(key)) return std::string(key) + ": only for command run";
    }
    if (e.contains("status") && !e.at("status").is_string()) return "status: a string";
  }
  return "";
}

// A task record of `runs show --json` whose node is `name`, or an iteration
// of it: `bump[0]`, `TaskP[1][0]`. `index` is empty for the plain name.
struct NodeRecord {
  std::vector<long> index;
  const json::object* task;
};

bool iteration_of(const std::string& node, const std::string& name, std::vector<long>& index) {
  if (node.compare(0, name.size(), name) != 0) return false;
  std::size_t at = name.size();
  index.clear();
  while (at < node.size()) {
    if (node[at] != '[') return false;
    const std::size_t close = node.find(']', at);
    if (close == std::string::npos || close == at + 1) return false;
    const std::string digits = node.substr(at + 1, close - at - 1);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    index.push_back(std::stol(digits));
    at = close + 1;
  }
  return true;
}

std::vector<NodeRecord> succeeded(const json::array& tasks, const std::string& name) {
  std::vector<NodeRecord> found;
  for (const auto& t : tasks) {
    std::vector<long> index;
    if (iteration_of(std::string(t.at("node").as_string()), name, index) &&
        t.at("state").as_string() == "SUCCEEDED") {
      found.push_back({index, &t.as_object()});
    }
  }
  // The last iteration last: indices compare outer loop first.
  std::sort(found.begin(), found.end(),
            [](const NodeRecord& a, const NodeRecord& b) { return a.index < b.index; });
  return found;
}

std::string states_of(const json::array& tasks) {
  std::string s;
  for (const auto& t : tasks) {
    s += std::string(t.at("node").as_string()) + "=" + std::string(t.at("state").as_string()) + " ";
  }
  return s;
}

void run_case(const std::string& id) {
  const fs::path dir = kCases / id;
  BOOST_TEST_REQUIRE(fs::is_regular_file(dir / "flow.yaml"), dir / "flow.yaml"
                                                                 << " is missing");
  json::object expect;
  try {
    expect = json::parse(read_text(dir / "expect.json")).as_object();
  } catch (const std::exception& ex) {
    BOOST_FAIL(dir / "expect.json"
               << " is not a JSON object: " << ex.what());
  }
  const std::string shape = shape_error(expect);
  BOOST_TEST_REQUIRE(shape.empty(), dir / "expect.json"
                                        << ": " << shape);

  RunsFixture fx;
  fx.env["PYOCO_PLUGIN_PATH"] = PYOCO_COMPAT_PLUGIN_DIR;  // std, the tasks every case uses
  if (const json::value* env = expect.if_contains("env")) {
    for (const auto& [k, v] : env->as_object()) fx.env[std::string(k)] = v.as_string();
  }
  fs::copy_file(dir / "flow.yaml", fx.dir.path() / "flow.yaml");

  const bool run = expect.at("command").as_string() == "run";
  std::vector<std::string> args;
  if (run) {
    args = {"run", "flow.yaml", "--non-cute", "--run-id", id};
  } else {
    args = {"check", "flow.yaml"};
    const auto check_args = expect.contains("check_args")
                                ? strings(expect, "check_args")
                                : std::vector<std::string>{"--dry-run", "--json"};
    args.insert(args.end(), check_args.begin(), check_args.end());
  }
  const auto extra = strings(expect, "args");
  args.insert(args.end(), extra.begin(), extra.end());

  const ProcessResult r = fx.pyoco(args);
  const std::string said = r.out + r.err;
  BOOST_TEST_CONTEXT("pyoco " << joined(args) << " printed:\n" << said) {
    BOOST_TEST(r.exit_code == expect.at("exit").as_int64());

    const std::string said_lower = lower(said);
    if (const json::value* messages = expect.if_contains("messages")) {
      for (const auto& m : messages->as_array()) {
        std::vector<std::string> alternatives;
        if (m.is_string()) {
          alternatives.emplace_back(m.as_string());
        } else {
          for (const auto& a : m.as_array()) alternatives.emplace_back(a.as_string());
        }
        const bool found = std::any_of(
            alternatives.begin(), alternatives.end(),
            [&](const std::string& a) { return said_lower.find(lower(a)) != std::string::npos; });
        BOOST_TEST(found, "no message with \"" << joined(alternatives) << "\" (any one of them)");
      }
    }

    if (!run) {
      if (const json::value* status = expect.if_contains("status")) {
        const std::size_t open = r.out.find('{');
        BOOST_TEST_REQUIRE(open != std::string::npos, "check printed no JSON");
        json::value report;
        try {
          report = json::parse(r.out.substr(open));
        } catch (const std::exception& ex) {
          BOOST_FAIL("check printed no JSON object: " << ex.what());
        }
        const json::value* got =
            report.is_object() ? report.as_object().if_contains("status") : nullptr;
        BOOST_TEST_REQUIRE(got != nullptr, "the check report has no \"status\"");
        BOOST_TEST(*got == *status);
      }
      return;
    }
  }

  // The run as the history recorded it.
  const ProcessResult shown = fx.pyoco({"runs", "show", id, "--json"});
  if (expect.at("status").is_null()) {
    BOOST_TEST(shown.exit_code != 0, "a run was recorded: " << shown.out);
    return;
  }
  BOOST_TEST_REQUIRE(shown.exit_code == 0, "no run " << id << " recorded: " << shown.err << "\n"
                                                     << said);
  const json::object recorded = json::parse(shown.out).as_object();
  const json::array& tasks = recorded.at("tasks").as_array();
  BOOST_TEST_CONTEXT("pyoco " << joined(args) << " printed:\n"
                              << said << "tasks: " << states_of(tasks)) {
    BOOST_TEST(recorded.at("status") == expect.at("status"));
    for (const auto& name : strings(expect, "ran")) {
      BOOST_TEST(!succeeded(tasks, name).empty(), name << " did not succeed");
    }
    for (const auto& name : strings(expect, "not_ran")) {
      BOOST_TEST(succeeded(tasks, name).empty(), name << " ran, and should not have");
    }
    if (const json::value* outputs = expect.if_contains("outputs")) {
      for (const auto& [node, want] : outputs->as_object()) {
        const auto found = succeeded(tasks, std::string(node));
        if (found.empty()) {
          BOOST_TEST(false, "no output of " << node << ": it did not succeed");
          continue;
        }
        const json::value& got = found.back().task->at("output");
        BOOST_TEST(got == want, "output of " << found.back().task->at("node").as_string() << " is "
                                             << json::serialize(got) << ", expected "
                                             << json::serialize(want));
      }
    }
  }
}

// One test case per directory of cases/, named by its id.
struct RegisterCases {
  RegisterCases() {
    auto* suite = BOOST_TEST_SUITE("cases");
    for (const std::string& id : case_ids()) {
      suite->add(boost::unit_test::make_test_case([id] { run_case(id); }, id, __FILE__, __LINE__));
    }
    boost::unit_test::framework::master_test_suite().add(suite);
  }
} const register_cases;

}  // namespace

BOOST_AUTO_TEST_CASE(every_case_has_a_flow_and_an_expectation) {
  const auto ids = case_ids();
  BOOST_TEST(!ids.empty(), "no cases in " << kCases);
  for (const auto& id : ids) {
    BOOST_TEST(fs::is_regular_file(kCases / id / "flow.yaml"), id << " has no flow.yaml");
    BOOST_TEST(fs::is_regular_file(kCases / id / "expect.json"), id << " has no expect.json");
  }
}
