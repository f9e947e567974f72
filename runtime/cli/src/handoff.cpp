#include "handoff.hpp"

#include <boost/dll/runtime_symbol_info.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>

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

namespace {

// The first two words of argv that are not options: the command (and, in a
// group, its command). `pyoco --help server` asks for server's help too;
// no option before a command takes a value.
std::pair<std::string_view, std::string_view> command_words(int argc, char** argv) {
  std::string_view words[2];
  int found = 0;
  for (int i = 1; i < argc && found < 2; ++i) {
    const std::string_view arg = argv[i];
    if (!arg.starts_with('-')) words[found++] = arg;
  }
  return {words[0], words[1]};
}

}  // namespace

const HandedOffCommand* find_cluster_command(int argc, char** argv) {
  const auto [first, second] = command_words(argc, argv);
  for (const HandedOffCommand& c : kClusterCommands) {
    if (c.group.empty() ? first == c.name : first == c.group && second == c.name) return &c;
  }
  return nullptr;
}

std::string sibling_program(std::string_view name) {
  boost::system::error_code ec;  // no /proc (a bare chroot): look on PATH
  const boost::dll::fs::path self = boost::dll::program_location(ec);
  if (ec) return std::string(name);
  return (self.parent_path() / std::string(name)).string();
}

int hand_off_to_cluster_binary(const HandedOffCommand& command, char** argv) {
  const std::string cluster = sibling_program("pyoco-cluster");
  ::execvp(cluster.c_str(), argv);
  const int error = errno;
  std::cerr << "pyoco " << command.group << (command.group.empty() ? "" : " ") << command.name
            << ": cannot run " << cluster << " (" << std::strerror(error)
            << "): the cluster commands need it installed beside pyoco, as the pyoco package "
               "does\n";
  return kExitNotFound;
}

}  // namespace pyoco::cli
