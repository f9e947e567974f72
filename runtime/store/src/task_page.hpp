// A page of a run's task table as the SQLite store keeps it: JSON text, an
// array with one object per known task, so `sqlite3 state.db` and its json
// functions can read the history by hand.
#pragma once

#include <pyoco/store/state_store.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pyoco::store {

// The known tasks of `tasks` (an empty node: not known), whose first has seq
// `first_seq`. Fields at their default are left out.
std::string encode_task_page(std::span<const TaskRecord> tasks, std::uint32_t first_seq);

// Appends the page's tasks with their seqs. Throws StoreError, naming
// `where`, when `text` is not a page.
void decode_task_page(std::string_view text, std::string_view where,
                      std::vector<std::pair<std::uint32_t, TaskRecord>>& out);

}  // namespace pyoco::store
