// Reading flow.yaml / flow.toml into a FlowSpec. Both formats share one
// schema (../docs/flows.md); every error is a FlowError naming file, line
// and key.
#pragma once

#include <pyoco/core/flow_spec.hpp>

#include <filesystem>
#include <string_view>

namespace pyoco::core {

// By extension: .yaml/.yml or .toml.
FlowSpec load_flow_file(const std::filesystem::path& file);

// The same from text; `file` names it in messages and picks the format.
FlowSpec parse_flow_text(std::string_view text, const std::string& file);

}  // namespace pyoco::core
