#include "run_history.hpp"

#include <pyoco/store/history.hpp>

namespace pyoco::cli {

std::shared_ptr<store::StateStore> open_run_history() {
  auto history = store::open_sqlite_store(store::default_store_file());
  store::recover_interrupted_runs(*history);
  return history;
}

}  // namespace pyoco::cli
