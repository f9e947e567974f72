// The in-memory StateStore: for embedding and tests. Same contract as the
// SQLite store (tests/unit/state_store_test.cpp runs one suite over both).
#include <pyoco/core/node_name.hpp>
#include <pyoco/store/state_store.hpp>

#include <algorithm>
#include <map>
#include <mutex>

#include "store_rules.hpp"

namespace pyoco::store {

namespace {

// Whether a line of `node` is one the filter's node asks for.
bool log_of(const LogFilter& filter, const std::string& node) {
  return node == filter.node || (filter.iterations && core::is_iteration_of(node, filter.node));
}

class MemoryStateStore final : public StateStore {
 public:
  void write(const Batch& batch) override {
    std::lock_guard lock(mutex_);
    write_locked(batch);
  }

  bool write_if_active(const Batch& batch) override {
    std::lock_guard lock(mutex_);
    for (const RunRecord& r : batch.runs) {
      auto it = runs_.find(r.id);
      if (it == runs_.end() || !is_active(it->second.run.status)) return false;
    }
    write_locked(batch);
    return true;
  }

 private:
  // write()'s work: the caller holds mutex_.
  void write_locked(const Batch& batch) {
    for (const RunRecord& r : batch.runs) {
      auto [it, fresh] = runs_.try_emplace(r.id);
      const bool requested = !fresh && it->second.run.cancel_requested;
      it->second.run = r;
      it->second.run.cancel_requested = requested;
    }
    for (const TaskPages& pages : batch.tasks) {
      auto run = runs_.find(pages.run_id);
      if (run == runs_.end()) continue;  // a run trimmed away meanwhile
      auto& tasks = run->second.tasks;
      for (const std::uint32_t p : pages.pages) {
        const std::size_t first = std::size_t{p} * kTasksPerPage;
        const std::size_t end = std::min<std::size_t>(first + kTasksPerPage, pages.tasks.size());
        if (tasks.size() < end) tasks.resize(end);
        for (std::size_t i = first; i < end; ++i) tasks[i] = pages.tasks[i];
      }
      if (pages.whole) tasks.resize(std::min(tasks.size(), pages.tasks.size()));
    }
    for (const auto& [id, ms] : batch.alive) {
      auto run = runs_.find(id);
      if (run != runs_.end() && run->second.run.ended == Clock::time_point{}) {
        run->second.run.duration_ms = ms;
      }
    }
    for (const auto& [id, line] : batch.logs) {
      auto run = runs_.find(id);
      if (run != runs_.end()) run->second.logs.push_back(line);
    }
    for (const auto& [id, output] : batch.outputs) {
      auto run = runs_.find(id);
      if (run != runs_.end()) run->second.outputs[output.seq] = output;
    }
  }

 public:
  std::vector<RunRecord> runs(const RunFilter& filter) const override {
    std::lock_guard lock(mutex_);
    std::vector<RunRecord> out;
    for (const auto& [id, data] : runs_) {
      if (matches(filter, data.run)) out.push_back(data.run);
    }
    std::sort(out.begin(), out.end(), newest_first);
    if (filter.limit > 0 && out.size() > filter.limit) out.resize(filter.limit);
    return out;
  }

  std::optional<RunRecord> run(std::string_view id) const override {
    std::lock_guard lock(mutex_);
    auto it = runs_.find(std::string(id));
    if (it == runs_.end()) return std::nullopt;
    return it->second.run;
  }

  std::vector<std::string> ids_with_prefix(std::string_view prefix,
                                           std::size_t max) const override {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (auto it = runs_.lower_bound(std::string(prefix));
         it != runs_.end() && it->first.starts_with(prefix) && out.size() < max; ++it) {
      out.push_back(it->first);
    }
    return out;
  }

  std::vector<TaskRecord> tasks(std::string_view run_id) const override {
    std::lock_guard lock(mutex_);
    std::vector<TaskRecord> out;
    auto it = runs_.find(std::string(run_id));
    if (it == runs_.end()) return out;
    for (const TaskRecord& t : it->second.tasks) {
      if (!t.node.empty()) out.push_back(t);
    }
    return out;
  }

  std::vector<LogEntry> logs(std::string_view run_id, const LogFilter& filter) const override {
    std::lock_guard lock(mutex_);
    std::vector<LogEntry> out;
    auto it = runs_.find(std::string(run_id));
    if (it == runs_.end()) return out;
    for (const LogEntry& l : it->second.logs) {
      if (l.seq > filter.after && (filter.node.empty() || log_of(filter, l.node))) out.push_back(l);
    }
    if (filter.tail > 0 && out.size() > filter.tail) {
      out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(filter.tail));
    }
    return out;
  }

  std::vector<OutputRecord> outputs(std::string_view run_id) const override {
    std::lock_guard lock(mutex_);
    std::vector<OutputRecord> out;
    auto it = runs_.find(run_id);
    if (it == runs_.end()) return out;
    for (const auto& [seq, output] : it->second.outputs) out.push_back(output);
    return out;
  }

  bool claim(const RunRecord& run) override {
    std::lock_guard lock(mutex_);
    if (runs_.contains(run.id)) return false;
    runs_[run.id].run = run;
    return true;
  }

  void unclaim(std::string_view run_id) override {
    std::lock_guard lock(mutex_);
    auto it = runs_.find(std::string(run_id));
    if (it != runs_.end() && it->second.run.status == core::RunStatus::Pending &&
        it->second.tasks.empty()) {
      runs_.erase(it);
    }
  }

  bool request_cancel(std::string_view run_id) override {
    std::lock_guard lock(mutex_);
    auto it = runs_.find(std::string(run_id));
    if (it == runs_.end()) return false;
    it->second.run.cancel_requested = true;
    return true;
  }

  std::size_t trim(std::size_t keep) override {
    std::lock_guard lock(mutex_);
    std::vector<const RunRecord*> all;
    for (const auto& [id, data] : runs_) all.push_back(&data.run);
    std::sort(all.begin(), all.end(),
              [](const RunRecord* a, const RunRecord* b) { return newest_first(*a, *b); });
    std::vector<std::string> doomed;
    for (std::size_t i = keep; i < all.size(); ++i) {
      if (!is_active(all[i]->status)) doomed.push_back(all[i]->id);
    }
    for (const auto& id : doomed) runs_.erase(id);
    return doomed.size();
  }

 private:
  struct RunData {
    RunRecord run;
    std::vector<TaskRecord> tasks;  // by seq; an empty node: not known
    std::vector<LogEntry> logs;
    std::map<std::uint32_t, OutputRecord> outputs;  // by seq
  };

  mutable std::mutex mutex_;
  std::map<std::string, RunData, std::less<>> runs_;
};

}  // namespace

std::shared_ptr<StateStore> open_memory_store() { return std::make_shared<MemoryStateStore>(); }

}  // namespace pyoco::store
