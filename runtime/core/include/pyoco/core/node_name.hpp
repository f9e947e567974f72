// Node names as runs record them: a loop body's node runs as iterations
// named after it with their index, `each[0]`, `each[1]`, and a loop inside
// a loop's body as `each[1][0]`.
#pragma once

#include <string_view>

namespace pyoco::core {

// Whether `node` is one of `name`'s iterations (or theirs, nested): what
// `runs output`, `runs logs --task` and the gateway's logs take a loop body's
// node name to mean besides the node itself.
inline bool is_iteration_of(std::string_view node, std::string_view name) {
  return node.size() > name.size() && node.starts_with(name) && node[name.size()] == '[';
}

}  // namespace pyoco::core
