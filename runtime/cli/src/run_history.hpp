// The local run history as the CLI opens it: $PYOCO_HOME/state.db, with runs
// left behind by dead processes ended first, so nobody sees them RUNNING.
#pragma once

#include <pyoco/store/state_store.hpp>

#include <memory>

namespace pyoco::cli {

// Throws store::StoreError with a line naming the file and what to do.
std::shared_ptr<store::StateStore> open_run_history();

}  // namespace pyoco::cli
