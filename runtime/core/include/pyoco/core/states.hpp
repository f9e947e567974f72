// The states of a run and of its tasks (ARCHITECTURE.md §4).
#pragma once

#include <optional>
#include <string_view>

namespace pyoco::core {

// PENDING -> RUNNING -> COMPLETED | FAILED | CANCELLING -> CANCELLED
enum class RunStatus { Pending, Running, Completed, Failed, Cancelling, Cancelled };

// PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED | SKIPPED
// (SKIPPED: never ran because an upstream failed under `isolate`.)
enum class TaskState { Pending, Running, Succeeded, Failed, Cancelled, Skipped };

const char* to_string(RunStatus s);
const char* to_string(TaskState s);
std::optional<RunStatus> run_status_from(std::string_view s);
std::optional<TaskState> task_state_from(std::string_view s);

inline bool is_terminal(RunStatus s) {
  return s == RunStatus::Completed || s == RunStatus::Failed || s == RunStatus::Cancelled;
}
inline bool is_terminal(TaskState s) { return s != TaskState::Pending && s != TaskState::Running; }

}  // namespace pyoco::core
