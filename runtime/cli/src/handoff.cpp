#include "handoff.hpp"

#include <boost/dll/runtime_symbol_info.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>

#include "app.hpp"

namespace pyoco::cli {

std::string description_of(std::string_view group, std::string_view name) {
  for (const HandedOffCommand& c : kClusterCommands) {
    if (c.group == group && c.name == name) return std::string(c.description);
  }
  throw std::logic_error("no cluster command " + std::string(name));
}

void list_cluster_commands(CLI::App& parent, std::string_view group) {
  for (const HandedOffCommand& c : kClusterCommands) {
    if (c.group == group) parent.add_subcommand(std::string(c.name), std::string(c.description));
  }
}

bool names_cluster_command(int argc, char** argv) {
  if (argc < 2) return false;
  const std::string_view first = argv[1];
  const std::string_view second = argc > 2 ? argv[2] : "";
  for (const HandedOffCommand& c : kClusterCommands) {
    if (c.group.empty() ? first == c.name : first == c.group && second == c.name) return true;
  }
  return false;
}

std::string sibling_program(std::string_view name) {
  return (boost::dll::program_location().parent_path() / std::string(name)).string();
}

int hand_off_to_cluster_binary(char** argv) {
  const std::string cluster = sibling_program("pyoco-cluster");
  ::execv(cluster.c_str(), argv);
  const int error = errno;
  std::string command = argv[1];
  for (const HandedOffCommand& c : kClusterCommands) {
    if (c.group == command) {
      command += std::string(" ") + argv[2];  // names_cluster_command saw it
      break;
    }
  }
  std::cerr << "pyoco " << command << ": cannot run " << cluster << " (" << std::strerror(error)
            << "): the cluster commands need it installed beside pyoco, as the pyoco package "
               "does\n";
  return kExitFailed;
}

}  // namespace pyoco::cli
