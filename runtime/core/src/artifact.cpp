// The rules every artifact store shares: which names are allowed, and the
// media type a name suggests.
#include <pyoco/core/artifact.hpp>
#include <pyoco/core/text.hpp>

#include <array>
#include <utility>

namespace pyoco::core {

void check_artifact_name(std::string_view name) {
  auto refuse = [&](const std::string& why) {
    throw ArtifactError("artifact name '" + printable(name) + "' " + why);
  };
  if (name.empty()) throw ArtifactError("an artifact needs a name");
  if (name.size() > 255) refuse("is longer than 255 bytes");
  if (name.front() == '/') refuse("must be relative: it names a file within the run, not a path");
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) refuse("contains a control character");
    if (c == '\\') refuse("contains a backslash; separate directories with '/'");
  }
  if (invalid_utf8_at(name) != std::string_view::npos) refuse("is not UTF-8");
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t slash = std::min(name.find('/', start), name.size());
    const std::string_view part = name.substr(start, slash - start);
    if (part.empty()) refuse("has an empty part ('//' or a trailing '/')");
    if (part == "." || part == "..") refuse("must stay inside the run: no '.' or '..' parts");
    start = slash + 1;
  }
}

std::string guess_media_type(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kTypes{{
      {".json", "application/json"},
      {".txt", "text/plain"},
      {".log", "text/plain"},
      {".md", "text/markdown"},
      {".csv", "text/csv"},
      {".html", "text/html"},
      {".png", "image/png"},
      {".svg", "image/svg+xml"},
      {".pdf", "application/pdf"},
  }};
  for (const auto& [ext, type] : kTypes) {
    if (name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext) {
      return std::string(type);
    }
  }
  return "application/octet-stream";
}

}  // namespace pyoco::core
