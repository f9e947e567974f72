// The README's two commands are the project's promise to a new user: CI must
// run the test command exactly as written, and the hello command's last step
// must work against this build.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco::testing;

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  BOOST_TEST_REQUIRE(in.good(), "cannot read " << p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The commands marked `<!-- readme-command: NAME -->`, each the single line
// of the ```sh block that follows its marker.
std::map<std::string, std::string> readme_commands() {
  std::istringstream in(read_file(source_dir() / "README.md"));
  std::map<std::string, std::string> commands;
  std::string line, pending;
  bool in_block = false;
  std::vector<std::string> block;
  while (std::getline(in, line)) {
    const std::string marker = "<!-- readme-command: ";
    if (line.rfind(marker, 0) == 0) {
      pending = line.substr(marker.size(), line.find(" -->") - marker.size());
    } else if (!pending.empty() && !in_block && line == "```sh") {
      in_block = true;
      block.clear();
    } else if (in_block && line == "```") {
      BOOST_TEST_REQUIRE(block.size() == 1u, "README command '" << pending << "' must be one line");
      commands[pending] = block.front();
      pending.clear();
      in_block = false;
    } else if (in_block) {
      block.push_back(line);
    }
  }
  return commands;
}

std::vector<std::string> steps(const std::string& command) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t pos = command.find(" && ", start);
    out.push_back(command.substr(start, pos - start));
    if (pos == std::string::npos) return out;
    start = pos + 4;
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(readme_has_exactly_the_two_commands) {
  const auto commands = readme_commands();
  BOOST_TEST(commands.size() == 2u);
  BOOST_TEST(commands.count("hello") == 1u);
  BOOST_TEST(commands.count("test") == 1u);
}

BOOST_AUTO_TEST_CASE(both_commands_install_then_build) {
  for (const auto& [name, command] : readme_commands()) {
    const auto s = steps(command);
    BOOST_TEST_REQUIRE(s.size() >= 3u, name);
    BOOST_TEST(s[0] == "./tools/setup.sh", name);
    BOOST_TEST(s[1] == "cmake --preset default", name);
    BOOST_TEST(s[2] == "cmake --build --preset default", name);
  }
}

BOOST_AUTO_TEST_CASE(ci_runs_the_readme_test_command_verbatim) {
  const std::string ci = read_file(source_dir() / ".ci/run");
  const std::string command = readme_commands().at("test");
  BOOST_TEST(ci.find("\n" + command + "\n") != std::string::npos,
             ".ci/run does not contain the README's test command:\n"
                 << command);
  BOOST_TEST(command.find("ctest --preset default") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(hello_command_last_step_works_against_this_build) {
  const auto s = steps(readme_commands().at("hello"));
  std::string last = s.back();
  const std::string default_exe = "./build/default/bin/pyoco";
  BOOST_TEST_REQUIRE(last.rfind(default_exe, 0) == 0u, "hello must end by running the binary");
  last.replace(0, default_exe.size(), pyoco_exe().string());
  TempDir artifacts;
  ProcessOptions o;
  o.cwd = source_dir();
  o.env["PYOCO_ARTIFACT_DIR"] = artifacts.path().string();
  o.unset_env = {"PYOCO_PLUGIN_PATH", "PYOCO_CUTE"};
  const ProcessResult r = run_process({"sh", "-c", last}, o);
  BOOST_TEST(r.exit_code == 0, last << "\n" << r.out << r.err);
  // Not a terminal: plain lines, the seed's run in order.
  for (const char* line :
       {"INFO pyoco start flow=hello_pyoco run_id=", "INFO pyoco start node=fetch_data",
        "Fetching data...", "Processing: carrot", "Saved: CARROT",
        "INFO pyoco end flow=hello_pyoco status=COMPLETED"}) {
    BOOST_TEST(r.out.find(line) != std::string::npos, "missing: " << line << "\n" << r.out);
  }
}

BOOST_AUTO_TEST_CASE(setup_script_is_idempotent_when_everything_is_present) {
  // CI ran setup.sh moments ago, so a second run finds all packages present.
  const ProcessResult r = run_process({(source_dir() / "tools/setup.sh").string()});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find("packages present") != std::string::npos, r.out);
}

// A link a user follows from the README or the docs must lead somewhere.
BOOST_AUTO_TEST_CASE(every_relative_link_in_the_docs_resolves) {
  namespace fs = std::filesystem;
  std::vector<fs::path> pages{source_dir() / "README.md", source_dir() / "tests/README.md",
                              source_dir() / "bench/README.md"};
  for (const auto& e : fs::recursive_directory_iterator(source_dir() / "docs")) {
    if (e.path().extension() == ".md") pages.push_back(e.path());
  }
  const std::regex link(R"(\]\(([^)\s]+)\))");
  std::size_t checked = 0;
  for (const auto& page : pages) {
    if (!fs::exists(page)) continue;
    // Prose only: code blocks and `code` spans hold lambdas, not links.
    std::string text = std::regex_replace(read_file(page), std::regex("```[^]*?```"), "");
    text = std::regex_replace(text, std::regex("`[^`\n]*`"), "");
    for (std::sregex_iterator it(text.begin(), text.end(), link), end; it != end; ++it) {
      std::string target = (*it)[1];
      if (target.starts_with("http://") || target.starts_with("https://") ||
          target.starts_with("mailto:") || target.starts_with("#")) {
        continue;
      }
      target = target.substr(0, target.find('#'));
      ++checked;
      BOOST_TEST(fs::exists(page.parent_path() / target),
                 page.lexically_relative(source_dir()).string()
                     << " links to " << target << ", which does not exist");
    }
  }
  BOOST_TEST(checked > 20u);  // the pages do link to each other
}
