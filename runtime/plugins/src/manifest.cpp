#include <pyoco/plugins/manifest.hpp>

#include <pyoco/core/regular_file.hpp>
#include <pyoco/core/semver.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/core/toml_depth.hpp>

#include <toml++/toml.h>

#include <algorithm>
#include <set>

namespace pyoco::plugins {

ManifestError::ManifestError(std::filesystem::path file, std::uint32_t line, std::string key,
                             std::string problem)
    : std::runtime_error(file.string() + (line > 0 ? ":" + std::to_string(line) : "") + ": " +
                         (key.empty() ? "" : key + ": ") + problem),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)),
      problem_(std::move(problem)) {}

namespace {

// A manifest is a few KiB; this bounds what a wrong file costs to read.
constexpr std::uint64_t kMaxManifestBytes = 1u << 20;

std::uint32_t line_of(const toml::node& n) { return n.source().begin.line; }

class Reader {
 public:
  explicit Reader(std::filesystem::path file) : file_(std::move(file)) {}

  [[noreturn]] void fail(std::uint32_t line, const std::string& key,
                         const std::string& problem) const {
    throw ManifestError(file_, line, key, problem);
  }

  void only_keys(const toml::table& t, const std::string& where,
                 const std::set<std::string>& known) const {
    for (auto&& [k, v] : t) {
      if (known.count(std::string(k.str())) == 0) {
        std::string list;
        for (const auto& name : known) list += (list.empty() ? "" : ", ") + name;
        fail(line_of(v), where + std::string(k.str()), "unknown key (known keys: " + list + ")");
      }
    }
  }

  std::string string(const toml::table& t, const std::string& where, const char* key, bool required,
                     std::uint32_t table_line) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) {
      if (required) fail(table_line, where + key, "required key is missing");
      return {};
    }
    if (!n->is_string()) fail(line_of(*n), where + key, "expected a string");
    return std::string(n->as_string()->get());
  }

  std::vector<std::string> strings(const toml::table& t, const std::string& where,
                                   const char* key) const {
    std::vector<std::string> out;
    const toml::node* n = t.get(key);
    if (n == nullptr) return out;
    const toml::array* a = n->as_array();
    if (a == nullptr) fail(line_of(*n), where + key, "expected an array of strings");
    for (const toml::node& item : *a) {
      if (!item.is_string()) fail(line_of(item), where + key, "expected an array of strings");
      out.emplace_back(item.as_string()->get());
    }
    return out;
  }

  std::vector<IoSpec> ios(const toml::table& task, const std::string& where,
                          const char* key) const {
    std::vector<IoSpec> out;
    const toml::node* n = task.get(key);
    if (n == nullptr) return out;
    const toml::array* a = n->as_array();
    if (a == nullptr) fail(line_of(*n), where + key, "expected an array of tables");
    for (const toml::node& item : *a) {
      const toml::table* t = item.as_table();
      if (t == nullptr) {
        fail(line_of(item), where + key, "expected {name = ..., type = ..., ...}");
      }
      const std::string at = where + key + ".";
      only_keys(*t, at, {"name", "type", "required", "description"});
      IoSpec io;
      io.line = line_of(item);
      io.name = string(*t, at, "name", true, io.line);
      io.type = string(*t, at, "type", false, io.line);
      io.description = string(*t, at, "description", false, io.line);
      if (const toml::node* r = t->get("required")) {
        if (!r->is_boolean()) fail(line_of(*r), at + "required", "expected true or false");
        io.required = r->as_boolean()->get();
      }
      out.push_back(std::move(io));
    }
    return out;
  }

 private:
  std::filesystem::path file_;
};

}  // namespace

Manifest read_manifest(const std::filesystem::path& dir_or_file) {
  const bool is_dir = std::filesystem::is_directory(dir_or_file);
  const std::filesystem::path file = is_dir ? dir_or_file / "plugin.toml" : dir_or_file;
  std::string text;
  try {
    text = core::read_regular_file(file, kMaxManifestBytes);
  } catch (const core::FileReadError& e) {
    const std::string why = e.what();
    throw ManifestError(file, 0, "", why == "no such file" ? "no plugin.toml here" : why);
  }
  return parse_manifest(text, file);
}

Manifest parse_manifest(std::string_view text, const std::filesystem::path& file) {
  Manifest m;
  m.file = file;
  m.dir = file.parent_path();
  const Reader r(m.file);
  if (text.size() > kMaxManifestBytes) {
    r.fail(0, "", "is larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  }

  if (const core::TextPosition at = core::find_overlong_toml_key(text); at.line != 0) {
    r.fail(static_cast<std::uint32_t>(at.line), "",
           "a dotted key of more than " + std::to_string(core::kMaxTomlKeyParts) +
               " parts: nested too deep");
  }
  toml::table root;
  try {
    root = toml::parse(text, m.file.string());
  } catch (const toml::parse_error& e) {
    r.fail(e.source().begin.line, "", "not valid TOML: " + core::toml_error_text(e.description()));
  }

  r.only_keys(root, "", {"plugin", "tasks"});
  const toml::table* plugin = root["plugin"].as_table();
  if (plugin == nullptr) {
    if (const toml::node* n = root.get("plugin")) r.fail(line_of(*n), "plugin", "expected a table");
    r.fail(1, "[plugin]", "required table is missing");
  }
  const std::string p = "[plugin] ";
  const std::uint32_t pl = line_of(*plugin);
  r.only_keys(*plugin, p,
              {"name", "version", "abi", "sdk", "library", "summary", "description", "authors",
               "license", "homepage", "status", "platform"});
  m.key_lines["plugin"] = pl;
  for (auto&& [k, v] : *plugin) m.key_lines[std::string(k.str())] = line_of(v);
  m.name = r.string(*plugin, p, "name", true, pl);
  m.version = r.string(*plugin, p, "version", true, pl);
  if (const toml::node* abi = plugin->get("abi")) {
    if (!abi->is_integer()) r.fail(line_of(*abi), p + "abi", "expected an integer (the ABI major)");
    m.abi = abi->as_integer()->get();
  } else {
    r.fail(pl, p + "abi", "required key is missing");
  }
  m.sdk = r.string(*plugin, p, "sdk", false, pl);
  m.library = r.string(*plugin, p, "library", true, pl);
  if (m.library.find('/') != std::string::npos) {
    r.fail(line_of(*plugin->get("library")), p + "library",
           "a file name in the plugin directory, not a path");
  }
  if (const toml::node* lib = plugin->get("library"); lib != nullptr && m.library.empty()) {
    r.fail(line_of(*lib), p + "library",
           "empty: name the shared library in the plugin directory, e.g. \"libmyplugin.so\"");
  }
  if (m.library == "." || m.library == "..") {
    r.fail(line_of(*plugin->get("library")), p + "library",
           "a file name in the plugin directory, not \"" + m.library + "\"");
  }
  m.summary = r.string(*plugin, p, "summary", false, pl);
  m.description = r.string(*plugin, p, "description", false, pl);
  m.authors = r.strings(*plugin, p, "authors");
  m.license = r.string(*plugin, p, "license", false, pl);
  m.homepage = r.string(*plugin, p, "homepage", false, pl);
  m.status = r.string(*plugin, p, "status", false, pl);
  if (const toml::node* platform = plugin->get("platform")) {
    const toml::table* t = platform->as_table();
    if (t == nullptr) r.fail(line_of(*platform), "[plugin.platform]", "expected a table");
    for (auto&& [k, v] : *t) m.key_lines["platform." + std::string(k.str())] = line_of(v);
    const std::string pp = "[plugin.platform] ";
    r.only_keys(*t, pp, {"os", "arch"});
    m.platform_os = r.string(*t, pp, "os", false, line_of(*t));
    m.platform_arch = r.string(*t, pp, "arch", false, line_of(*t));
  }

  if (const toml::node* tasks = root.get("tasks")) {
    const toml::array* a = tasks->as_array();
    if (a == nullptr) r.fail(line_of(*tasks), "tasks", "expected [[tasks]] tables");
    for (const toml::node& item : *a) {
      const toml::table* t = item.as_table();
      if (t == nullptr) r.fail(line_of(item), "tasks", "expected [[tasks]] tables");
      TaskManifest task;
      task.line = line_of(*t);
      const std::string where = "[[tasks]] ";
      r.only_keys(*t, where, {"name", "summary", "usage", "tags", "inputs", "outputs"});
      task.name = r.string(*t, where, "name", true, task.line);
      const std::string named = "[[tasks]] " + task.name + ".";
      task.summary = r.string(*t, named, "summary", false, task.line);
      task.usage = r.string(*t, named, "usage", false, task.line);
      task.tags = r.strings(*t, named, "tags");
      task.inputs = r.ios(*t, named, "inputs");
      task.outputs = r.ios(*t, named, "outputs");
      m.tasks.push_back(std::move(task));
    }
  }
  return m;
}

std::uint32_t Manifest::line_of(std::string_view key) const {
  if (auto it = key_lines.find(key); it != key_lines.end()) return it->second;
  if (auto it = key_lines.find("plugin"); it != key_lines.end()) return it->second;
  return 0;
}

bool is_known_io_type(const std::string& type) {
  static const std::set<std::string> types = {"any",    "null",  "bool",  "int",   "number",
                                              "string", "bytes", "array", "object"};
  return types.count(type) == 1;
}

bool is_valid_name(const std::string& name) {
  if (name.empty() || name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool is_semver(const std::string& version) { return core::is_semver(version); }

namespace {

// A long name or version, shown by its start.
std::string quoted_start(const std::string& s) {
  constexpr std::size_t kShown = 24;
  return "'" + core::printable(s.size() > kShown ? s.substr(0, kShown) + "..." : s) + "'";
}

// `what` (a name, a version) longer than `max`: said by its start.
std::string too_long(const char* what, const std::string& s, std::size_t max) {
  return std::string(what) + " " + quoted_start(s) + " is " + std::to_string(s.size()) +
         " characters long: at most " + std::to_string(max) + " (directories are named after it)";
}

}  // namespace

std::string plugin_name_problem(const std::string& name) {
  if (name.size() > kMaxPluginNameLength) {
    return too_long("plugin name", name, kMaxPluginNameLength);
  }
  if (!is_valid_name(name)) {
    return "plugin name '" + core::printable(name) + "' is not [a-z][a-z0-9_]*";
  }
  return "";
}

std::string platform_field_problem(const char* field, const std::string& value) {
  const std::string what = std::string("[plugin.platform] ") + field;
  if (value.size() > kMaxPlatformFieldLength) {
    return what + " " + quoted_start(value) + " is " + std::to_string(value.size()) +
           " characters long: at most " + std::to_string(kMaxPlatformFieldLength);
  }
  for (char c : value) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return what + " " + quoted_start(value) + " is not [a-z0-9_]+ (as \"linux\", \"x86_64\")";
    }
  }
  return "";
}

std::string platform_problem(const Manifest& m) {
  if (std::string why = platform_field_problem("os", m.platform_os); !why.empty()) return why;
  return platform_field_problem("arch", m.platform_arch);
}

std::string plugin_version_problem(const std::string& version) {
  if (version.size() > kMaxPluginVersionLength) {
    return too_long("version", version, kMaxPluginVersionLength);
  }
  if (!is_semver(version)) {
    return "version '" + core::printable(version) + "' is not MAJOR.MINOR.PATCH";
  }
  if (const std::string_view n = core::number_past_64_bits(version); !n.empty()) {
    return "version '" + core::printable(version) + "': " + std::string(n) +
           " does not fit in 64 bits (at most 18446744073709551615)";
  }
  return "";
}

// What this binary was built for: a plugin must match the process that
// loads it, whatever the kernel underneath reports.
std::string host_os() {
#if defined(__linux__)
  return "linux";
#elif defined(__APPLE__)
  return "macos";
#elif defined(_WIN32)
  return "windows";
#else
  return "unknown";
#endif
}

std::string host_arch() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#elif defined(__i386__)
  return "x86";
#elif defined(__arm__)
  return "arm";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#else
  return "unknown";
#endif
}

std::string platform_name(const std::string& os, const std::string& arch, std::int64_t abi_major) {
  return os + "-" + arch + "-abi" + std::to_string(abi_major);
}

}  // namespace pyoco::plugins
