// Semantic versions (semver.org 2.0.0): what plugin manifests and a flow's
// `plugins:` requirements are written in.
#pragma once

#include <string_view>

namespace pyoco::core {

// MAJOR.MINOR.PATCH, with an optional -pre.release and +build.
bool is_semver(std::string_view version);

// Their order (2.0.0 > 1.10.0 > 1.9.0 > 1.9.0-rc.1; build metadata has
// none): negative, zero or positive. Both must be is_semver.
int compare_versions(std::string_view a, std::string_view b);

}  // namespace pyoco::core
