// Internal: the plugin releases a worker refused (could not install or
// lint), kept in <--plugins-dir>/refused.json so that a restarted worker
// neither lints them again (up to a lint's timeout each) nor writes a second
// `rejected` entry in the repository's history. Keyed by release and
// package digest: a release pushed again as another package is tried again.
#pragma once

#include <filesystem>
#include <map>
#include <string>

namespace pyoco::worker {

// "<release key>@<sha256>" -> why it was refused.
using RefusedReleases = std::map<std::string, std::string>;

// The refusals kept in `file`: none when it is missing; none, with one
// warning in the process log, when it cannot be read or is not what
// save_refused_releases writes (a refused release is then tried once more).
RefusedReleases load_refused_releases(const std::filesystem::path& file);

// Writes `refused` to `file` whole or not at all (a temporary file beside
// it, then a rename): a worker killed meanwhile leaves the one before.
// Throws core::FileWriteError when it cannot.
void save_refused_releases(const std::filesystem::path& file, const RefusedReleases& refused);

}  // namespace pyoco::worker
