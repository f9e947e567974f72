#include "refused_releases.hpp"

#include <pyoco/cluster/process_log.hpp>
#include <pyoco/core/regular_file.hpp>

#include <boost/json.hpp>

#include <optional>

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

}  // namespace

RefusedReleases load_refused_releases(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec) && !ec) return {};
  try {
    // Bounded: a worker refuses a few releases, never megabytes of them.
    if (auto refused = parse(core::read_regular_file(file, 16 << 20))) return *refused;
  } catch (const core::FileReadError&) {
    // said below, as a damaged file is
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
  // Whole or not at all: a worker killed meanwhile leaves the one before.
  core::replace_file(file, json::serialize(json::object{{"refused", std::move(list)}}) + "\n");
}

}  // namespace pyoco::worker
