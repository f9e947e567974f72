#include <iostream>

#include "app.hpp"
#include "command.hpp"

namespace pyoco::cli {

void add_not_implemented(CommandTable& table, CLI::App* command, const char* tracking) {
  command->allow_extras();
  command->description(command->get_description() + " [not implemented yet]");
  table.add(command, [command, tracking] {
    std::string path = command->get_name();
    for (const CLI::App* p = command->get_parent(); p != nullptr && p->get_parent() != nullptr;
         p = p->get_parent()) {
      path.insert(0, p->get_name() + " ");
    }
    std::cerr << "pyoco " << path << ": not implemented yet (" << tracking << ")\n";
    return kExitNotImplemented;
  });
}

}  // namespace pyoco::cli
