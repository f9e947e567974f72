// A note a `pyoco run` that crashes leaves, from its fault handler, naming
// the task whose plugin code was running when the fault came: the history
// is a moment behind the run (its writer batches), so without it the next
// process could only say which tasks were last recorded running.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace pyoco::store {

struct CrashNote {
  std::string node;  // the node's name as the trace shows it ("step[2]")
  std::string task;  // its `use`
  std::string what;  // "a segmentation fault (SIGSEGV)"
};

// The note's file for run `run_id` in `dir` (StateStore::notes_dir()).
std::filesystem::path crash_note_file(const std::filesystem::path& dir, std::string_view run_id);

// Its three lines, node, task and what, each ended by '\n'. A fault handler
// writes them with write(2) alone; this is the one reader.
std::optional<CrashNote> read_crash_note(const std::filesystem::path& file);

}  // namespace pyoco::store
