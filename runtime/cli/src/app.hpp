// The `pyoco` command line: builds the CLI11 app and dispatches to commands.
#pragma once

namespace pyoco::cli {

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCancelled = 130;

// Blocks until SIGINT or SIGTERM (a second one exits at once, 130): how a
// long-running command (server, worker) waits before it drains and stops.
void wait_for_stop_signal();

int run(int argc, char** argv);

}  // namespace pyoco::cli
