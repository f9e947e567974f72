#include <pyoco/core/states.hpp>

namespace pyoco::core {

const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::Pending:
      return "PENDING";
    case RunStatus::Running:
      return "RUNNING";
    case RunStatus::Completed:
      return "COMPLETED";
    case RunStatus::Failed:
      return "FAILED";
    case RunStatus::Cancelling:
      return "CANCELLING";
    case RunStatus::Cancelled:
      return "CANCELLED";
  }
  return "?";
}

const char* to_string(TaskState s) {
  switch (s) {
    case TaskState::Pending:
      return "PENDING";
    case TaskState::Running:
      return "RUNNING";
    case TaskState::Succeeded:
      return "SUCCEEDED";
    case TaskState::Failed:
      return "FAILED";
    case TaskState::Cancelled:
      return "CANCELLED";
    case TaskState::Skipped:
      return "SKIPPED";
  }
  return "?";
}

std::optional<RunStatus> run_status_from(std::string_view s) {
  for (RunStatus r : {RunStatus::Pending, RunStatus::Running, RunStatus::Completed,
                      RunStatus::Failed, RunStatus::Cancelling, RunStatus::Cancelled}) {
    if (s == to_string(r)) return r;
  }
  return std::nullopt;
}

std::optional<TaskState> task_state_from(std::string_view s) {
  for (TaskState t : {TaskState::Pending, TaskState::Running, TaskState::Succeeded,
                      TaskState::Failed, TaskState::Cancelled, TaskState::Skipped}) {
    if (s == to_string(t)) return t;
  }
  return std::nullopt;
}

}  // namespace pyoco::core
