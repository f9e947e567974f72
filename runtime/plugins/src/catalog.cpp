#include <pyoco/core/semver.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/plugins/package.hpp>

#include <algorithm>
#include <system_error>

namespace pyoco::plugins {

namespace fs = std::filesystem;

namespace {

// The plugin directories directly under `dir`, in name order so that the
// catalog is the same on every machine.
// A plugin.toml that is not a regular file (a FIFO, a directory) still
// makes a plugin directory: reading it then says what is wrong, rather than
// the plugin silently missing from the list.
bool has_manifest(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(dir / "plugin.toml", ec));
}

std::vector<fs::path> plugin_dirs_in(const fs::path& dir) {
  std::error_code ec;
  if (has_manifest(dir)) return {dir};
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && has_manifest(it->path())) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Catalog Catalog::discover(const std::vector<fs::path>& search_path) {
  Catalog c;
  c.search_path_ = search_path;
  for (const fs::path& dir : search_path) {
    for (const fs::path& plugin_dir : plugin_dirs_in(dir)) {
      try {
        c.plugins_.push_back(PluginEntry{read_manifest(plugin_dir), std::nullopt});
      } catch (const ManifestError& e) {
        c.problems_.push_back(e);
      }
    }
  }
  c.index();
  return c;
}

void Catalog::index() {
  by_name_.clear();
  for (std::size_t i = 0; i < plugins_.size(); ++i) {
    PluginEntry& p = plugins_[i];
    auto [it, inserted] = by_name_.emplace(p.manifest.name, i);
    if (!inserted) p.shadowed_by = plugins_[it->second].manifest.dir;
  }
}

const PluginEntry* Catalog::find_plugin(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &plugins_[it->second];
}

std::optional<TaskRef> Catalog::find_task(std::string_view qualified_name) const {
  const std::size_t slash = qualified_name.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const PluginEntry* plugin = find_plugin(qualified_name.substr(0, slash));
  if (plugin == nullptr) return std::nullopt;
  const std::string_view task = qualified_name.substr(slash + 1);
  for (const TaskManifest& t : plugin->manifest.tasks) {
    if (t.name == task) return TaskRef{plugin, &t};
  }
  return std::nullopt;
}

std::string why_task_missing(const Catalog& catalog, std::string_view qualified_name) {
  const std::size_t slash = qualified_name.find('/');
  if (slash == std::string_view::npos) return "";
  const std::string_view plugin = qualified_name.substr(0, slash);
  const std::string_view task = qualified_name.substr(slash + 1);
  // A plugin of that name that has the task, behind one that has not (a new
  // build named like a shipped plugin, first with --plugin-path).
  for (const PluginEntry& p : catalog.plugins()) {
    if (!p.shadowed_by || p.manifest.name != plugin) continue;
    for (const TaskManifest& t : p.manifest.tasks) {
      if (t.name != task) continue;
      return "; plugin '" + core::printable(plugin) + "' at " +
             core::printable(p.manifest.dir.string()) +
             " provides it but is shadowed by the one at " +
             core::printable(p.shadowed_by->string()) +
             ", which comes first on the search path and has no task '" + core::printable(task) +
             "' (see `pyoco plugins list`)";
    }
  }
  // A plugin directory of that name whose manifest could not be read, or
  // names the plugin with what is no name (a control character, upper case):
  // that, not a missing plugin, is what to fix.
  for (const ManifestError& e : catalog.problems()) {
    if (e.file().parent_path().filename() != plugin) continue;
    return "; its plugin's manifest " + e.file().string() +
           (e.line() > 0 ? ":" + std::to_string(e.line()) : "") +
           " was skipped: " + (e.key().empty() ? "" : e.key() + ": ") + e.problem() +
           " (see `pyoco plugins lint`)";
  }
  for (const PluginEntry& p : catalog.plugins()) {
    const Manifest& m = p.manifest;
    if (m.dir.filename() != plugin || m.name == plugin || is_valid_name(m.name)) continue;
    const std::uint32_t line = m.line_of("name");
    return "; its plugin's manifest " + core::printable(m.file.string()) +
           (line > 0 ? ":" + std::to_string(line) : "") + " was skipped: name: plugin name '" +
           core::printable(m.name) + "' is not [a-z][a-z0-9_]* (PL002; see `pyoco plugins lint`)";
  }
  return "";
}

std::string unmet_requirement(const Catalog& catalog, const std::string& name,
                              const std::string& min_version) {
  const PluginEntry* p = catalog.find_plugin(name);
  const std::string needs = "flow needs plugin " + name + " >= " + min_version;
  if (p == nullptr) {
    return needs + "; there is no plugin " + name + " here (see `pyoco plugins list`)";
  }
  if (is_semver(p->manifest.version) &&
      core::compare_versions(p->manifest.version, min_version) >= 0) {
    return "";
  }
  return needs + "; this host has " + p->manifest.version + " (" + p->manifest.dir.string() + ")";
}

}  // namespace pyoco::plugins
