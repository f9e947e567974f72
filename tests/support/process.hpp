// Test helpers for running programs, and where the build put things.
#pragma once

#include <pyoco/core/subprocess.hpp>

#include <filesystem>

namespace pyoco::testing {

using core::ProcessOptions;
using core::ProcessResult;
using core::run_process;

std::filesystem::path pyoco_exe();

// Runs the built `pyoco` with `args`. PYOCO_PLUGIN_PATH is unset so that
// only the build's own plugins are found unless a test says otherwise.
ProcessResult run_pyoco(std::vector<std::string> args, ProcessOptions options = {});
std::filesystem::path source_dir();
std::filesystem::path binary_dir();
std::filesystem::path fixture_dir();  // built lint/ABI fixture plugins

}  // namespace pyoco::testing
