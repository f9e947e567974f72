// A private run history for a test: `pyoco` runs with PYOCO_HOME and the
// artifact directory inside a fresh temp dir, and the JSON views read back.
#pragma once

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "child.hpp"
#include "process.hpp"
#include "sync.hpp"
#include "temp_dir.hpp"

namespace pyoco::testing {

struct RunsFixture {
  TempDir dir;
  std::map<std::string, std::string> env{{"PYOCO_HOME", (dir.path() / "home").string()},
                                         {"PYOCO_ARTIFACT_DIR", (dir.path() / "a").string()}};

  ProcessResult pyoco(std::vector<std::string> args) {
    ProcessOptions o;
    o.cwd = dir.path();
    o.env = env;
    return run_pyoco(std::move(args), o);
  }
  std::unique_ptr<ChildProcess> background(std::vector<std::string> args) {
    args.insert(args.begin(), pyoco_exe().string());
    auto e = env;
    e["PYOCO_PLUGIN_PATH"] = "";
    return std::make_unique<ChildProcess>(args, e, dir.path());
  }
  boost::json::array runs_json(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"runs", "list", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ProcessResult r = pyoco(args);
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
    return boost::json::parse(r.out).as_array();
  }
  boost::json::object show_json(const std::string& id) {
    const ProcessResult r = pyoco({"runs", "show", id, "--json"});
    BOOST_TEST_REQUIRE(r.exit_code == 0, r.err);
    return boost::json::parse(r.out).as_object();
  }
  // The id of the one run that is RUNNING, once the history has it.
  std::string running_id() {
    std::string id;
    BOOST_TEST_REQUIRE(eventually([&] {
      const auto runs = runs_json({"--status", "running"});
      if (runs.empty()) return false;
      id = std::string(runs[0].at("run_id").as_string());
      return true;
    }));
    return id;
  }
};

}  // namespace pyoco::testing
