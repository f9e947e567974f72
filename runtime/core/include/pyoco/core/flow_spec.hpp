// A flow as its file describes it (flow.yaml or flow.toml, one schema),
// before its graph is parsed or its tasks are resolved.
#pragma once

#include <pyoco/core/value.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::core {

struct SourceLocation {
  std::string file;
  std::uint32_t line = 0;    // 1-based; 0 when unknown
  std::uint32_t column = 0;  // 1-based; 0 when unknown

  // "file:line:column", leaving out what is unknown.
  std::string to_string() const;
};

// A mistake in a flow the user can fix: one line naming where and what.
class FlowError : public std::runtime_error {
 public:
  FlowError(SourceLocation where, const std::string& problem);
  const SourceLocation& where() const { return where_; }
  const std::string& problem() const { return problem_; }

 private:
  SourceLocation where_;
  std::string problem_;
};

enum class FailPolicy { Stop, Isolate };

struct RetryBackoff {
  double initial_ms = 100;
  double factor = 2.0;
  double max_ms = 5000;
  bool jitter = true;
};

// One `inputs:` entry: a literal value, or a string starting with `$`
// that references a node output, a param or an environment variable.
struct InputBinding {
  std::string name;
  Value value;
  SourceLocation where;
};

struct TaskSpec {
  std::string name;  // the key under `tasks:`
  std::string use;   // "<plugin>/<task>"
  std::vector<InputBinding> inputs;
  std::vector<std::string> outputs;  // context paths, e.g. "params.saved"
  std::uint32_t retries = 0;
  RetryBackoff backoff;
  double timeout_sec = 0;  // 0: no timeout
  FailPolicy fail_policy = FailPolicy::Stop;
  std::string alias_of;  // `use: <entry>` (pyoco's alias): the tasks: entry it runs as
  SourceLocation where;
};

struct PipeSpec {
  std::string name;
  std::string graph;
  SourceLocation where;  // where the graph text starts
};

// A flow's `plugins:` entry: it needs plugin `name` at version
// `min_version` or newer (semver order), or it does not run.
struct PluginRequirement {
  std::string name;
  std::string min_version;
  SourceLocation where;
};

// What a flow may ask of a task, in a file or built in C++ (pyoco::Flow).
// Past these a policy is a mistake (and past about 292 years a deadline in
// nanoseconds overflows: `timeout_sec: 1e10` used to fire at once).
inline constexpr std::int64_t kMaxRetries = 1000;
inline constexpr double kMaxTimeoutSec = 30.0 * 24 * 3600;
inline constexpr double kMaxDelayMs = 24.0 * 3600 * 1000;

// Where a task's output may be copied (`outputs:`): params.<key>,
// scratch.<key> or results.<name>, then keys inside. What is wrong with
// `path`, or "" when nothing is.
std::string output_path_problem(std::string_view path);

struct FlowSpec {
  std::string file;
  std::string name;
  Value defaults;  // an object (possibly empty)
  std::string graph;
  SourceLocation graph_where;  // where the graph text's first character is
  std::vector<PipeSpec> pipes;
  std::vector<TaskSpec> tasks;
  std::vector<PluginRequirement> plugins;

  const TaskSpec* find_task(std::string_view name) const;
  const PipeSpec* find_pipe(std::string_view name) const;
};

}  // namespace pyoco::core
