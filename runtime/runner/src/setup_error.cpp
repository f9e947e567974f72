#include <pyoco/runner/setup_error.hpp>

namespace pyoco::runner {

const char* to_string(SetupError::Setting setting) {
  switch (setting) {
    case SetupError::Setting::Param:
      return "param";
    case SetupError::Setting::ParamsFile:
      return "params file";
    case SetupError::Setting::Secret:
      return "secret";
    case SetupError::Setting::TraceFile:
      return "trace file";
    case SetupError::Setting::RunId:
      return "run id";
    case SetupError::Setting::Environment:
      return "environment variable";
  }
  return "setting";
}

SetupError::SetupError(Setting setting, std::string detail)
    : std::runtime_error(std::string(to_string(setting)) + " " + detail),
      setting_(setting),
      detail_(std::move(detail)) {}

}  // namespace pyoco::runner
