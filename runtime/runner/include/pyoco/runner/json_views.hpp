// The JSON views of runs, tasks, artifacts, flow diagnostics and plugins:
// what `pyoco ... --json` prints, and what the gateway will serve. Times are
// UTC (ISO 8601), durations milliseconds.
#pragma once

#include <pyoco/core/artifact.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/engine/engine.hpp>
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/plugins/lint.hpp>
#include <pyoco/store/state_store.hpp>

#include <boost/json.hpp>

#include <ostream>
#include <vector>

namespace pyoco::runner {

// ---- runs (`pyoco runs ... --json`) ----

// One run: `runs list`. Its params as they were recorded.
boost::json::object to_json(const store::RunRecord& run);
// One run with its tasks (under "tasks"), each task's "output" the whole
// value from `outputs` (by seq) when the history kept it: `runs show`.
boost::json::object to_json(const store::RunRecord& run, const std::vector<TaskRecord>& tasks,
                            const std::vector<store::OutputRecord>& outputs);
// The same as text (what `pyoco runs show --json` prints), written a task
// at a time: a run of 200,000 tasks as one value took 13 times the memory
// of its text.
void write_json(std::ostream& out, const store::RunRecord& run,
                const std::vector<TaskRecord>& tasks,
                const std::vector<store::OutputRecord>& outputs);
// One task's record, with its artifacts and last heartbeat; "output" is
// null and "output_summary" the record's summary (200 characters).
boost::json::object to_json(const TaskRecord& task);
// A kept output as JSON (null when it was not kept).
boost::json::value output_json(const store::OutputRecord& output);
// One artifact: name, path, size, sha256, media_type.
boost::json::object to_json(const core::ArtifactRecord& artifact);
// Every artifact of a run's tasks, each with its task's "node": `runs artifacts`.
boost::json::array artifacts_json(const std::vector<TaskRecord>& tasks);

// ---- flows (`pyoco check --json`) ----

boost::json::object to_json(const core::Diagnostic& diagnostic);

// ---- plugins (`pyoco plugins ... --json`, `pyoco tasks --json`) ----

// Summary: what lists show; Full: every field of the manifest.
enum class Detail { Summary, Full };

boost::json::object to_json(const plugins::TaskManifest& task, Detail detail);
boost::json::object to_json(const plugins::PluginEntry& plugin, Detail detail);
// `plugins list`: the search path, every plugin found, and the manifests
// that could not be read.
boost::json::object plugins_json(const plugins::Catalog& catalog, Detail detail);
// `tasks`: every task of the plugins that are not shadowed, named
// "<plugin>/<task>".
boost::json::object tasks_json(const plugins::Catalog& catalog);
// One plugin's lint findings, each with its rule's fix hint.
boost::json::object to_json(const plugins::PluginLint& lint);

}  // namespace pyoco::runner
