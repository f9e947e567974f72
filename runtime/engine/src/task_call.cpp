#include <pyoco/core/artifact.hpp>
#include <pyoco/core/value.hpp>
#include <pyoco/engine/task_call.hpp>

namespace pyoco {

void TaskCall::log(std::string_view message, plugins::LogLevel level) {
  if (call_.services != nullptr) call_.services->log(call_.info, level, message);
}

void TaskCall::heartbeat(double progress, std::string_view message) {
  if (call_.services != nullptr) call_.services->heartbeat(call_.info, progress, message);
}

bool TaskCall::is_cancelled() const {
  return call_.cancelled != nullptr && call_.cancelled->load(std::memory_order_relaxed);
}

core::ArtifactRecord TaskCall::save_artifact(std::string_view name, std::string_view bytes,
                                             std::string_view media_type) {
  if (call_.services == nullptr) throw std::runtime_error("no artifact store for this call");
  return call_.services->save_artifact(call_.info, name, bytes, media_type);
}

core::ArtifactRecord TaskCall::save_artifact(std::string_view name, const core::Value& value) {
  // The limits every value keeps, as a plugin's save has them: a list held
  // twice over 60 levels would be written out for ever, NaN as null.
  if (std::string why = core::unfit_value(value, "value"); !why.empty()) {
    throw core::ArtifactError("cannot save artifact '" + std::string(name) + "': " + why);
  }
  return save_artifact(name, core::to_json_text(value), "application/json");
}

std::optional<std::string> TaskCall::load_artifact(std::string_view name) {
  if (call_.services == nullptr) throw std::runtime_error("no artifact store for this call");
  return call_.services->load_artifact(name);
}

core::Value TaskCall::scratch(std::string_view key) const {
  return call_.services != nullptr ? call_.services->scratch_get(key) : core::Value();
}

void TaskCall::set_scratch(std::string_view key, const core::Value& value) {
  if (call_.services != nullptr) call_.services->scratch_set(key, value);
}

}  // namespace pyoco
