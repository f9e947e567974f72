#include <pyoco/runner/run_history.hpp>
#include <pyoco/store/history.hpp>

#include <chrono>

namespace pyoco::runner {

std::shared_ptr<store::StateStore> open_run_history(
    const std::filesystem::path& file, std::function<void(const std::string& line)> on_wait) {
  constexpr std::chrono::seconds patience(10);
  std::function<void()> notice;
  if (on_wait) {
    notice = [line = file.string() + " is locked by another process; waiting for it up to " +
                     std::to_string(patience.count()) + " s",
              on_wait = std::move(on_wait)] { on_wait(line); };
  }
  auto history = store::open_sqlite_store(file, patience, std::move(notice));
  store::recover_interrupted_runs(*history);
  return history;
}

}  // namespace pyoco::runner
