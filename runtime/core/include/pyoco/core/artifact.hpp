// A file a task saved during a run (ctx.save_artifact): where it is and
// what it holds. The engine's task records, run events and the run history
// all carry it.
#pragma once

#include <cstdint>
#include <string>

namespace pyoco::core {

struct ArtifactRecord {
  std::string name;
  std::string path;
  std::uint64_t size = 0;
  std::string sha256;
  std::string media_type;
};

}  // namespace pyoco::core
