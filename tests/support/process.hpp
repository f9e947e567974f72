// Test helpers for running programs, and where the build put things.
#pragma once

#include <pyoco/core/subprocess.hpp>

#include <filesystem>

namespace pyoco::testing {

using core::ProcessOptions;
using core::ProcessResult;
using core::run_process;

std::filesystem::path pyoco_exe();
std::filesystem::path source_dir();
std::filesystem::path binary_dir();

}  // namespace pyoco::testing
