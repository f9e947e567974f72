#include <pyoco/runner/run_history.hpp>
#include <pyoco/store/history.hpp>

namespace pyoco::runner {

std::shared_ptr<store::StateStore> open_run_history(const std::filesystem::path& file) {
  auto history = store::open_sqlite_store(file);
  store::recover_interrupted_runs(*history);
  return history;
}

}  // namespace pyoco::runner
