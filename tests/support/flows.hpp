// Flows and values written inline in tests.
#pragma once

#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>
#include <pyoco/core/value.hpp>

#include <boost/json.hpp>

#include <memory>
#include <string>

namespace pyoco::testing {

// A flow.yaml text, loaded as "test.yaml" and compiled.
inline std::shared_ptr<const core::CompiledFlow> compile_yaml(const std::string& yaml) {
  auto spec = std::make_shared<const core::FlowSpec>(core::parse_flow_text(yaml, "test.yaml"));
  return std::make_shared<const core::CompiledFlow>(core::compile_flow(spec));
}

// A value from JSON text.
inline core::Value json_value(const char* text) {
  return core::from_json(boost::json::parse(text));
}

}  // namespace pyoco::testing
