// Semantic versions (semver.org 2.0.0): what plugin manifests and a flow's
// `plugins:` requirements are written in.
#pragma once

#include <string_view>

namespace pyoco::core {

// MAJOR.MINOR.PATCH, with an optional -pre.release and +build.
bool is_semver(std::string_view version);

}  // namespace pyoco::core
