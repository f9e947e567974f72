// Semantic versions (semver.org 2.0.0): what plugin manifests and a flow's
// `plugins:` requirements are written in.
#pragma once

#include <string_view>

namespace pyoco::core {

// MAJOR.MINOR.PATCH, with an optional -pre.release and +build.
bool is_semver(std::string_view version);

// The first numeric identifier of `version` (MAJOR, MINOR, PATCH or a
// pre-release number) past 2^64 - 1, empty when none is: such a number
// orders fine (by its digits) but no tool reading versions as integers
// takes it, and one typo in it would outrank every later release for good.
std::string_view number_past_64_bits(std::string_view version);

// Their order (2.0.0 > 1.10.0 > 1.9.0 > 1.9.0-rc.1; build metadata has
// none): negative, zero or positive. Both must be is_semver.
int compare_versions(std::string_view a, std::string_view b);

}  // namespace pyoco::core
