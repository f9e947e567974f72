#include "refused_releases.hpp"

#include <pyoco/cluster/process_log.hpp>

#include <boost/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <optional>
#include <system_error>

namespace pyoco::worker {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// {"refused": [{"release": "<key>@<sha256>", "error": "..."}, ...]}, or
// nullopt when the text is anything else.
std::optional<RefusedReleases> parse(const std::string& text) {
  boost::system::error_code ec;
  const json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::value* list = v.as_object().if_contains("refused");
  if (list == nullptr || !list->is_array()) return std::nullopt;
  RefusedReleases out;
  for (const json::value& e : list->as_array()) {
    const json::object* o = e.if_object();
    const json::value* release = o != nullptr ? o->if_contains("release") : nullptr;
    const json::value* error = o != nullptr ? o->if_contains("error") : nullptr;
    if (release == nullptr || !release->is_string() || release->as_string().empty() ||
        error == nullptr || !error->is_string()) {
      return std::nullopt;
    }
    out[std::string(release->as_string())] = std::string(error->as_string());
  }
  return out;
}

void write_all(int fd, const std::string& text, const fs::path& file) {
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw std::system_error(errno, std::generic_category(), "cannot write " + file.string());
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

RefusedReleases load_refused_releases(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec) && !ec) return {};
  // A read cut short parses as damaged, as does a file not opened.
  if (std::ifstream in(file, std::ios::binary); in.is_open()) {
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto refused = parse(text)) return *refused;
  }
  cluster::log(cluster::LogLevel::warning,
               "worker: " + file.string() +
                   " is unreadable or damaged: starting with no refused plugin releases (each "
                   "is tried once more; the file is written again after the next refusal)",
               {{"path", file.string()}});
  return {};
}

void save_refused_releases(const fs::path& file, const RefusedReleases& refused) {
  json::array list;
  for (const auto& [release, error] : refused) {
    list.push_back(json::object{{"release", release}, {"error", error}});
  }
  const std::string text = json::serialize(json::object{{"refused", std::move(list)}}) + "\n";
  const fs::path temporary = file.parent_path() / ("." + file.filename().string() + ".tmp");
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot write " + temporary.string());
  }
  try {
    write_all(fd, text, temporary);
    // On disk before the rename: a crash leaves the old file or the new, whole.
    if (::fsync(fd) != 0) {
      throw std::system_error(errno, std::generic_category(), "cannot write " + temporary.string());
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  fs::rename(temporary, file);  // fs::filesystem_error is a std::system_error
}

}  // namespace pyoco::worker
