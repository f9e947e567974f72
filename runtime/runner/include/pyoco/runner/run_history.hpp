// The local run history as `pyoco run` and `pyoco runs` open it: a SQLite
// file, $PYOCO_HOME/state.db unless told otherwise, with the runs left
// behind by dead processes ended first, so nobody sees them RUNNING.
#pragma once

#include <pyoco/store/state_store.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace pyoco::runner {

// Throws store::StoreError with a line naming the file and what to do.
// `on_wait`, if set, gets a line to show once when a wait for the file's
// lock (another process writing, or holding it) has passed a second.
std::shared_ptr<store::StateStore> open_run_history(
    const std::filesystem::path& file = store::default_store_file(),
    std::function<void(const std::string& line)> on_wait = {});

}  // namespace pyoco::runner
