// A value a program was given for a run that cannot be used: a param, a
// params file, a trace file, a run id, an environment variable.
#pragma once

#include <stdexcept>
#include <string>

namespace pyoco::runner {

class SetupError : public std::runtime_error {
 public:
  enum class Setting { Param, ParamsFile, Secret, TraceFile, RunId, Environment };

  // what(): the setting in words, then `detail`: "param oops: expected KEY=VALUE".
  SetupError(Setting setting, std::string detail);

  Setting setting() const { return setting_; }
  // The value and what is wrong with it, for a caller that names the setting
  // its own way (`pyoco run` says "--param oops: expected KEY=VALUE").
  const std::string& detail() const { return detail_; }

 private:
  Setting setting_;
  std::string detail_;
};

// "param", "params file", "secret", "trace file", "run id", "environment variable".
const char* to_string(SetupError::Setting setting);

}  // namespace pyoco::runner
