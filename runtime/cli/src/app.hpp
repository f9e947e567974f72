// The `pyoco` command line: builds the CLI11 app and dispatches to commands.
#pragma once

namespace pyoco::cli {

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCancelled = 130;

int run(int argc, char** argv);

}  // namespace pyoco::cli
