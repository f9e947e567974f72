// A command: a CLI11 subcommand and what it does once parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <functional>
#include <map>
#include <string>

namespace pyoco::cli {

// An option's value must be a whole number from `min` to `max`, digits
// only: CLI11 alone reads "-1" into an unsigned as its largest value, and
// "5abc" as 5. `what` follows the range in the message.
inline CLI::Validator whole_number_in(unsigned long min, unsigned long max,
                                      const std::string& what = {}) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        unsigned long n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc() || end != text.data() + text.size() || n < min || n > max) {
          return "expected a whole number from " + std::to_string(min) + " to " +
                 std::to_string(max) + (what.empty() ? "" : " (" + what + ")");
        }
        return {};
      },
      "N in " + std::to_string(min) + ".." + std::to_string(max));
}

// An option's value must be a number of seconds, more than 0 and at most
// `max`: CLI11 alone takes "-1" (a wait that gave up at once) and "1e300"
// (a duration that overflows).
inline CLI::Validator seconds_up_to(double max, const std::string& what = {}) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double s = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), s);
        if (ec != std::errc() || end != text.data() + text.size() || !(s > 0) || !(s <= max)) {
          return "expected seconds, more than 0 and at most " +
                 std::to_string(static_cast<long long>(max)) +
                 (what.empty() ? "" : " (" + what + ")");
        }
        return {};
      },
      "SECONDS in (0, " + std::to_string(static_cast<long long>(max)) + "]");
}

// Maps each leaf subcommand to its action; filled while the app is built.
class CommandTable {
 public:
  void add(CLI::App* command, std::function<int()> action) {
    actions_[command] = std::move(action);
  }
  // The action of the most deeply selected subcommand, or null.
  const std::function<int()>* find(CLI::App* command) const {
    auto it = actions_.find(command);
    return it == actions_.end() ? nullptr : &it->second;
  }

 private:
  std::map<CLI::App*, std::function<int()>> actions_;
};

// Command groups, one file each. pyoco: flow, tasks, plugins, pack, runs.
void add_plugins_commands(CLI::App* plugins, CommandTable& table);
void add_plugin_pack_command(CLI::App* plugins, CommandTable& table);
// pyoco-cluster: push and remote.
void add_plugin_distribution_commands(CLI::App* plugins, CommandTable& table);
void add_tasks_command(CLI::App& app, CommandTable& table);
void add_flow_commands(CLI::App& app, CommandTable& table);
void add_runs_commands(CLI::App* runs, CommandTable& table);
// pyoco-cluster (handoff.hpp).
void add_cluster_commands(CLI::App* cluster, CommandTable& table);
void add_worker_command(CLI::App& app, CommandTable& table);
void add_server_command(CLI::App& app, CommandTable& table);
void add_client_commands(CLI::App* client, CommandTable& table);
void add_keys_commands(CLI::App* keys, CommandTable& table);

}  // namespace pyoco::cli
