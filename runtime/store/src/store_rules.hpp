// Internal: the rules both stores apply the same way.
#pragma once

#include <pyoco/store/state_store.hpp>

namespace pyoco::store {

inline bool is_active(core::RunStatus s) { return !core::is_terminal(s); }

// Newest first; ties (same microsecond) by id, so the order is stable.
inline bool newest_first(const RunRecord& a, const RunRecord& b) {
  return a.started != b.started ? a.started > b.started : a.id > b.id;
}

inline bool matches(const RunFilter& f, const RunRecord& r) {
  if (f.status && r.status != *f.status) return false;
  if (!f.flow.empty() && r.flow != f.flow) return false;
  if (f.active_only && !is_active(r.status)) return false;
  return true;
}

}  // namespace pyoco::store
