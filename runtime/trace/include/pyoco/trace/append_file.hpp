// A trace file that several runs may append to at once (`--trace-file`):
// what is written to it is held until a flush and then given to the file
// in one write() on an O_APPEND descriptor, so no other process's write
// lands inside it. A trace sink flushes after each batch of whole lines,
// so no line is ever split. (A std::ofstream wrote a long batch as a
// writev and its newline as a write of its own: lines of two runs mixed.)
#pragma once

#include <filesystem>
#include <memory>
#include <ostream>

namespace pyoco::trace {

// `path` opened for appending, created when missing; nullptr when it
// cannot be (errno says why). A failed write sets the stream's badbit.
std::shared_ptr<std::ostream> open_append_file(const std::filesystem::path& path);

// Why the first write of such a file failed (its errno), 0 while none has:
// the stream's badbit only says that one did.
int first_write_error(const std::ostream& file);

}  // namespace pyoco::trace
