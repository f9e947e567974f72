// A command: a CLI11 subcommand and what it does once parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>
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

// --jobs of `pyoco run`, `worker` and `server --with-worker`: a thread
// each, so more than a machine could use is a typo, not a wish (100000000
// made threads until the process could make no more).
inline constexpr unsigned long kMaxJobs = 1024;
inline CLI::Validator jobs_option() {
  return whole_number_in(1, kMaxJobs,
                         "task bodies at once, a thread each; async tasks hold none while they "
                         "wait");
}

// The one check of an option given in seconds (a float): the whole text a
// number, finite, and from `min` (or, with `above_min`, more than it) to
// `max`. CLI11 alone takes "nan", "1e300" and "-1": durations that wrap
// ("still loading after -9223372036854775808 ms") or give up at once.
// Returns the problem, or "".
inline std::string seconds_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}
inline std::string check_seconds(const std::string& text, double min, double max, bool above_min,
                                 const std::string& what) {
  const auto number = seconds_text;
  double s = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), s);
  const bool low = above_min ? !(s > min) : !(s >= min);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(s) || low ||
      !(s <= max)) {
    return (above_min ? "expected seconds, more than " + number(min) + " and at most "
                      : "must be between " + number(min) + " and ") +
           number(max) + (above_min ? "" : " seconds") + (what.empty() ? "" : " (" + what + ")");
  }
  return {};
}

// Seconds from `min` to `max`, both included.
inline CLI::Validator seconds_between(double min, double max, const std::string& what = {}) {
  return CLI::Validator(
      [=](std::string& text) { return check_seconds(text, min, max, false, what); },
      "SECONDS in [" + seconds_text(min) + ", " + seconds_text(max) + "]");
}

// Seconds more than 0 and at most `max`.
inline CLI::Validator seconds_up_to(double max, const std::string& what = {}) {
  return CLI::Validator([=](std::string& text) { return check_seconds(text, 0, max, true, what); },
                        "SECONDS in (0, " + seconds_text(max) + "]");
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
