// The artifact store of one machine: run R's artifact N is the file
// <root>/R/N. `pyoco run` uses one at .pyoco/artifacts (or --artifact-dir).
#pragma once

#include <pyoco/core/artifact.hpp>

#include <filesystem>
#include <memory>

namespace pyoco {

class LocalArtifactStore final : public core::ArtifactStore {
 public:
  // Nothing is created until the first put.
  explicit LocalArtifactStore(std::filesystem::path root);

  core::ArtifactRecord put(std::string_view run_id, std::string_view name, std::string_view bytes,
                           std::string_view media_type) override;
  std::optional<std::string> get(std::string_view run_id, std::string_view name) const override;

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path file(std::string_view run_id, std::string_view name) const;
  std::filesystem::path root_;
};

}  // namespace pyoco
