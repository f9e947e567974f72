#include <pyoco/store/crash_note.hpp>

#include <fstream>

namespace pyoco::store {

std::filesystem::path crash_note_file(const std::filesystem::path& dir, std::string_view run_id) {
  return dir / (std::string(run_id) + ".crash");
}

std::optional<CrashNote> read_crash_note(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  CrashNote note;
  // A note cut short (the process died while writing it) is no note.
  if (!std::getline(in, note.node) || !std::getline(in, note.task) ||
      !std::getline(in, note.what) || note.node.empty()) {
    return std::nullopt;
  }
  return note;
}

}  // namespace pyoco::store
