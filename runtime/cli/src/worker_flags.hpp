// The flags `pyoco worker` and `pyoco server --with-worker` share about the
// worker they start, checked before anything connects.
#pragma once

#include <pyoco/core/text.hpp>
#include <pyoco/worker/worker.hpp>

#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>

namespace pyoco::cli {

// --worker-id: a name a worker's record and directories can have; given
// empty it is a mistake, not the host name.
inline CLI::Validator worker_id_option() {
  return CLI::Validator(
      [](std::string& id) -> std::string {
        if (id.empty()) return "empty: leave --worker-id out to use the host name";
        return worker::worker_id_problem(id);
      },
      "");
}

// Without --worker-id, the host name must be one: said at start, before
// anything connects. "" when it is.
inline std::string default_worker_id_problem() {
  const std::string host = worker::default_worker_id();
  const std::string why = worker::worker_id_problem(host);
  return why.empty() ? std::string()
                     : "this host's name \"" + core::printable(host) +
                           "\" cannot be a worker id (" + why + "): give --worker-id";
}

// --flows: a directory that exists. One that does not (a typo) would fail
// every run submitted by name, each with a dead letter.
inline CLI::Validator flows_option() {
  return CLI::Validator(
      [](std::string& dir) -> std::string {
        std::error_code ec;
        if (std::filesystem::is_directory(dir, ec)) return {};
        const std::string what = " (the flows a worker runs by name, NAME.yaml in it)";
        if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
          return "cannot be read: " + ec.message() + what;
        }
        return (std::filesystem::exists(dir, ec) ? "not a directory" : "no such directory") + what;
      },
      "");
}

}  // namespace pyoco::cli
