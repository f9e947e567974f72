// Artifacts as files. A put writes a temporary file beside the target and
// renames it over, so a reader (or a crash) never meets half an artifact.
#include <pyoco/core/regular_file.hpp>
#include <pyoco/engine/local_artifact_store.hpp>
#include <pyoco/plugins/package.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pyoco {

namespace fs = std::filesystem;

using plugins::sha256_hex;

namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  throw core::ArtifactError(what + " " + path.string() + ": " + std::strerror(err));
}

}  // namespace

LocalArtifactStore::LocalArtifactStore(fs::path root) : root_(std::move(root)) {}

fs::path LocalArtifactStore::file(std::string_view run_id, std::string_view name) const {
  core::check_artifact_name(name);
  if (run_id.empty() || run_id.find('/') != std::string_view::npos || run_id == "." ||
      run_id == "..") {
    throw core::ArtifactError("'" + std::string(run_id) + "' is not a run id");
  }
  return root_ / fs::path(run_id) / fs::path(name);
}

core::ArtifactRecord LocalArtifactStore::put(std::string_view run_id, std::string_view name,
                                             std::string_view bytes, std::string_view media_type) {
  const fs::path target = file(run_id, name);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) fail("cannot create directory", target.parent_path(), ec.value());
  if (fs::is_directory(target, ec)) {
    throw core::ArtifactError("artifact name '" + std::string(name) +
                              "' is a directory of this run's artifacts already");
  }
  try {
    core::replace_file(target, bytes);
  } catch (const core::FileWriteError& e) {
    throw core::ArtifactError(e.what());
  }
  core::ArtifactRecord r;
  r.name = std::string(name);
  r.path = target.string();
  r.size = bytes.size();
  r.sha256 = sha256_hex(bytes);
  r.media_type = media_type.empty() ? core::guess_media_type(name) : std::string(media_type);
  return r;
}

std::optional<std::string> LocalArtifactStore::get(std::string_view run_id,
                                                   std::string_view name) const {
  const fs::path path = file(run_id, name);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read", path, errno);
  std::ostringstream data;
  data << in.rdbuf();
  if (in.bad()) fail("cannot read", path, errno);
  return std::move(data).str();
}

}  // namespace pyoco
