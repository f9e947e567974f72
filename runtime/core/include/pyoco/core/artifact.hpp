// Artifacts: files a task saves during a run (ctx.save_artifact). A task
// names an artifact; where the bytes live is the ArtifactStore's business
// (a local directory today, JetStream in a cluster), so a plugin never
// learns a host path it would have to trust.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pyoco::core {

// What the engine's task records, run events and the history carry.
struct ArtifactRecord {
  std::string name;  // as the task named it: "report.json", "plots/a.png"
  // Where the store keeps it, for people reading the history: a file path
  // for the local store, empty for a store without files.
  std::string path;
  std::uint64_t size = 0;
  std::string sha256;  // lowercase hex of the bytes
  std::string media_type;
};

// A name the store refused, or bytes it could not keep.
class ArtifactError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Holds each run's artifacts by name. Every member may be called from any
// thread at the same time.
class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;
  // Saves `bytes` as `name` of run `run_id`, replacing an artifact of that
  // name; a reader sees the old bytes or the new, never a part. An empty
  // media type is guessed from the name. Throws ArtifactError.
  virtual ArtifactRecord put(std::string_view run_id, std::string_view name, std::string_view bytes,
                             std::string_view media_type) = 0;
  // The bytes of `name` of run `run_id`; nullopt when there is none. Throws
  // ArtifactError for a name no artifact can have, or when reading fails.
  virtual std::optional<std::string> get(std::string_view run_id, std::string_view name) const = 0;
};

// Throws ArtifactError unless `name` is a name any store can keep: 1-255
// bytes of UTF-8 text, a relative path of '/'-separated parts that are not
// empty, "." or "..", without control characters or backslashes.
void check_artifact_name(std::string_view name);

// The media type a name suggests: ".json" is application/json, and so on;
// application/octet-stream when it suggests none.
std::string guess_media_type(std::string_view name);

}  // namespace pyoco::core
