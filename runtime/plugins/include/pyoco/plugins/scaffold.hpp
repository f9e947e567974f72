// `pyoco plugins new`: a new plugin project rendered from templates/plugin.
//
// Template files may use {{name}} for the variables below and repeat a
// block once per task with {{#tasks}} ... {{/tasks}}, where {{task}} and
// {{Task}} (CamelCase) name the task. Unknown {{...}} text is left alone,
// so C++ brace initialisers survive. File and directory names are
// rendered too (src/{{plugin}}.cpp).
#pragma once

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyoco::plugins {

using TemplateVars = std::map<std::string, std::string>;

// Renders one template text.
std::string render_template(const std::string& text, const TemplateVars& vars,
                            const std::vector<TemplateVars>& tasks);

struct ScaffoldOptions {
  std::string plugin;               // [a-z][a-z0-9_]*
  std::vector<std::string> tasks;   // each [a-z][a-z0-9_]*, at least one
  std::filesystem::path templates;  // the template directory
  std::filesystem::path out;        // must not exist, or be empty
  std::string author;
  std::string prefix_arg;  // how the README tells cmake where pyoco is ("" or " -D...")
};

// A request that cannot be honoured: one line saying what to change.
class ScaffoldError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes the project; returns the files written (relative to out).
std::vector<std::filesystem::path> scaffold_plugin(const ScaffoldOptions& options);

// Where an installation keeps its templates: <exe>/../share/pyoco/templates/plugin.
std::filesystem::path install_template_dir();

}  // namespace pyoco::plugins
