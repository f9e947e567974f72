// What `pyoco check` and `pyoco graph` do with a flow once it is read,
// shared by the flow fuzzers: build the DAG, check it against a catalog,
// draw it. A FlowError anywhere is the expected outcome for bad input.
#pragma once

#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>

#include <memory>
#include <string>
#include <utility>

namespace pyoco::fuzz {

// A catalog in which every task exists but those of the plugin "missing";
// about half of them declare every input they take (one required, two
// typed), so check's input rules run too.
class FuzzCatalog : public core::TaskResolver {
 public:
  TaskInfo resolve(const std::string& name) const override {
    TaskInfo info;
    info.exists = !name.starts_with("missing/");
    if (info.exists && name.size() % 2 == 0) {
      info.inputs = {"x", "n", "data", "value"};
      info.required_inputs = {"x"};
      info.input_types = {{"n", "int"}, {"data", "object"}};
      info.inputs_complete = true;
    }
    return info;
  }
};

// Throws FlowError for what compile_flow_for_check refuses.
inline void check_and_draw(core::FlowSpec spec) {
  const core::Value params = spec.defaults;
  const core::CompiledFlow flow =
      core::compile_flow_for_check(std::make_shared<const core::FlowSpec>(std::move(spec)));
  core::check_flow(flow, FuzzCatalog(), params);
  core::export_dot(flow);
  core::export_mermaid(flow);
}

// A flow file's text, as `pyoco check FILE` reads it; `file`'s extension
// picks YAML or TOML.
inline void check_flow_text(std::string_view text, const std::string& file) {
  try {
    check_and_draw(core::parse_flow_text(text, file));
  } catch (const core::FlowError&) {
  }
}

}  // namespace pyoco::fuzz
