// A flow file made ready to run: compiled, with the params given for the
// run, and checked against the plugins as `pyoco run` checks it first.
//
//   pyoco::runner::LoadedFlow flow =
//       pyoco::runner::load_flow("flow.yaml", {.assignments = {"who=pyoco"}});
//   for (const auto& error : pyoco::runner::check_before_run(flow, *engine.catalog())) ...
#pragma once

#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/value.hpp>
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/runner/setup_error.hpp>

#include <boost/json/object.hpp>
#include <filesystem>

#include <memory>
#include <string>
#include <vector>

namespace pyoco::runner {

// Run params as a command line gives them.
struct ParamArgs {
  // A file holding one object, as JSON or YAML; empty: none.
  std::filesystem::path file;
  // KEY=VALUE, applied over the file's in order. VALUE is JSON when it
  // parses as JSON, else a string.
  std::vector<std::string> assignments;
  // Secret params, applied last: KEY=VALUE, or KEY alone for the value of
  // the environment variable KEY (so it stays out of shell history and the
  // process list). VALUE is always a string of at least 4 bytes, and is
  // masked as *** in what the run records and prints (trace/redaction.hpp).
  std::vector<std::string> secrets;
};

// A params file: a regular file of at most 16 MiB holding one object, as
// JSON or YAML (block or flow style). Throws SetupError naming the file
// (and the line and column of a YAML error).
boost::json::object read_params_file(const std::filesystem::path& file);

struct LoadedFlow {
  std::shared_ptr<const core::CompiledFlow> flow;
  // The params given for the run, an object; the engine merges them over
  // the flow's defaults.
  core::Value params;
  // The values of the params given as secrets: LocalRun masks them.
  std::vector<std::string> secrets;
};

// Loads and compiles a flow file (yaml or toml), then reads `params`.
// Throws core::FlowError (naming the file, line and column) for the flow,
// SetupError for the params.
LoadedFlow load_flow(const std::filesystem::path& file, const ParamArgs& params = {});

// What `pyoco check` reports beyond compile errors, against the tasks of
// `catalog`, with the params merged over the flow's defaults: errors and
// warnings.
std::vector<core::Diagnostic> check(const LoadedFlow& flow, const plugins::Catalog& catalog);

// The errors among them: `pyoco run` starts a run only when there are none.
std::vector<core::Diagnostic> check_before_run(const LoadedFlow& flow,
                                               const plugins::Catalog& catalog);

}  // namespace pyoco::runner
