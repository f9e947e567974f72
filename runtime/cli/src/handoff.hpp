// `pyoco` is the local product; the cluster mode's commands live in a second
// executable installed beside it, `pyoco-cluster`, which `pyoco` runs in its
// own place (exec: same process id, arguments, environment and signals).
// One binary carrying both made every `pyoco run` load and relocate the
// gateway, the worker, cnats, OpenSSL's TLS and protobuf-c before running a
// task (docs/performance.md, "Start-up").
#pragma once

#include <CLI/CLI.hpp>

#include <string_view>

namespace pyoco::cli {

// A command `pyoco-cluster` runs for `pyoco`.
struct HandedOffCommand {
  std::string_view group;  // empty for a top-level command, else its group
  std::string_view name;
  std::string_view description;
};

// Every one, in the order `pyoco --help` lists them within their parent.
inline constexpr HandedOffCommand kClusterCommands[] = {
    {"plugins", "push",
     "Upload a plugin package (or a plugin directory, packed first) to a gateway"},
    {"plugins", "remote", "See and withdraw the plugins pushed to a cluster"},
    {"", "cluster", "Create and inspect the NATS resources of cluster mode"},
    {"", "server",
     "Run the HTTP gateway of cluster mode (and, for one machine, NATS and a worker)"},
    {"", "worker", "Pull runs for some tags from NATS and run them"},
    {"", "client", "Submit, follow and cancel runs through a gateway"},
    {"", "keys", "Make, list, revoke and import the gateway's API keys"},
};

inline constexpr const char* kPluginsDescription = "See, check and create plugins";

// The description of a command of kClusterCommands (a missing one throws).
std::string description_of(std::string_view group, std::string_view name);

// Adds to `parent` (the app, or its group `group`) a command for each of
// kClusterCommands in that group: `pyoco` only names them in its help.
void list_cluster_commands(CLI::App& parent, std::string_view group);

// The command of kClusterCommands argv names, or null.
const HandedOffCommand* find_cluster_command(int argc, char** argv);

// Runs pyoco-cluster (beside this binary) in this process's place with the
// same arguments, for `command`. Returns only if that failed: says why,
// gives the exit code (kExitNotFound).
int hand_off_to_cluster_binary(const HandedOffCommand& command, char** argv);

// This binary's sibling `name` (pyoco-cluster's `pyoco`, for `plugins lint`).
std::string sibling_program(std::string_view name);

}  // namespace pyoco::cli
