#include <pyoco/core/subprocess.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/elf.hpp>
#include <pyoco/plugins/elf_dynamic.hpp>
#include <pyoco/plugins/host_abi.hpp>
#include <pyoco/plugins/lint.hpp>

#include <cxxabi.h>
#include <boost/dll/library_info.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "registration.hpp"

namespace pyoco::plugins {

namespace fs = std::filesystem;

const char* to_string(Severity s) {
  switch (s) {
    case Severity::Error:
      return "error";
    case Severity::Warning:
      return "warning";
    case Severity::Note:
      break;
  }
  return "note";
}

std::size_t PluginLint::count(Severity s) const {
  std::size_t n = 0;
  for (const auto& f : findings) n += f.severity == s ? 1 : 0;
  return n;
}

const std::vector<LintRule>& lint_rules() {
  using S = Severity;
  static const std::vector<LintRule> rules = {
      // manifest
      {"PL001", S::Error, "plugin.toml is unreadable, not TOML, or breaks the schema",
       "fix what the message names: the file (readable, TOML, at most 1 MiB) or the key in it; "
       "docs/plugins.md lists the schema"},
      {"PL002", S::Error, "plugin name is not [a-z][a-z0-9_]*, or is longer than 64 characters",
       "use lower case letters, digits and _; start with a letter; at most 64 of them"},
      {"PL003", S::Error,
       "plugin version is not a semantic version, is longer than 64 characters, or has a "
       "number past 64 bits",
       "write MAJOR.MINOR.PATCH, e.g. \"1.4.0\"; at most 64 characters"},
      {"PL004", S::Error, "manifest abi differs from the runtime's ABI major",
       "rebuild against an SDK of this runtime's ABI major and set abi to match"},
      {"PL005", S::Error, "[plugin.platform] names another OS or architecture",
       "build the plugin for this platform, or fix os/arch"},
      {"PL006", S::Error, "status is not stable, beta or experimental",
       "set status to one of stable, beta, experimental"},
      {"PL007", S::Warning, "plugin summary, license or authors missing",
       "fill them in: they are what `pyoco plugins list --verbose` and `info` show"},
      {"PL008", S::Error, "the library named by [plugin] library is not in the plugin directory",
       "build the plugin, or fix library to the file's name"},
      {"PL009", S::Error, "task name is not [a-z][a-z0-9_]*",
       "use lower case letters, digits and _; start with a letter"},
      {"PL010", S::Error, "a task is declared twice", "remove or rename one of the [[tasks]]"},
      {"PL011", S::Warning, "task has no summary",
       "give the task a one-line summary in its code (the build writes it to [[tasks]])"},
      {"PL012", S::Warning, "task has no usage",
       "give the task a usage in its code: a line of flow.yaml that uses it"},
      {"PL013", S::Warning, "task input or output has no type",
       "give it a type in the task's code: any|null|bool|int|number|string|bytes|array|object"},
      {"PL014", S::Error, "task input or output has an unknown type",
       "use one of any, null, bool, int, number, string, bytes, array, object"},
      {"PL015", S::Warning, "task name is also a task of another plugin on the search path",
       "flows must qualify it as <plugin>/<task>; consider a more specific name"},
      {"PL016", S::Warning,
       "a plugin of the same name comes first: beside it in its directory (a warning: this one "
       "is never loaded), or elsewhere on the search path (a note)",
       "pyoco loads the first plugin of a name it finds: remove or rename one of two in one "
       "directory; give --plugin-path to choose which of two elsewhere comes first"},
      {"PL017", S::Warning, "[plugin] sdk is missing or not a semantic version",
       "set sdk to the pyoco SDK version the plugin was built with"},
      {"PL018", S::Error, "task input or output name is not [a-z][a-z0-9_]*, or is declared twice",
       "name each of a task's inputs, and each of its outputs, once, with lower case letters, "
       "digits and _, starting with a letter"},
      // library
      {"PL020", S::Error, "the library cannot be loaded", "read the loader's message"},
      {"PL021", S::Error, "a shared library it depends on is not found on this machine",
       "install the named library, or link it statically"},
      {"PL022", S::Error, "a symbol it needs is not defined by it or its dependencies",
       "link the library that defines the symbol (pyoco_add_plugin links with --no-undefined)"},
      {"PL023", S::Error, "the library does not export pyoco_plugin_entry",
       "write PYOCO_PLUGIN(register_tasks) in one source file"},
      {"PL024", S::Error, "the library was built for another plugin ABI major",
       "rebuild it against this runtime's SDK"},
      {"PL025", S::Error, "the library crashed while loading or registering",
       "run the plugin's register_tasks under a debugger; static initialisers run at load"},
      {"PL026", S::Error, "the library did not finish loading in time",
       "loading must not block: move slow work out of static initialisers and register_tasks"},
      {"PL027", S::Error, "register_tasks failed", "read its message"},
      {"PL028", S::Error, "the library registers a task plugin.toml does not declare",
       "rebuild the plugin: pyoco_add_plugin writes [[tasks]] from what the library registers"},
      {"PL029", S::Error, "plugin.toml declares a task the library does not register",
       "register it in register_tasks, or rebuild the plugin so its [[tasks]] are written from "
       "the library"},
      {"PL030", S::Warning, "the library exports symbols besides pyoco_plugin_entry",
       "build with pyoco_add_plugin (hidden visibility and a version script)"},
      {"PL031", S::Error, "the library is built for another architecture",
       "rebuild it for this machine"},
      {"PL032", S::Warning, "the library's compiled-in version differs from plugin.toml's",
       "rebuild the plugin so that plugin.toml and its library come from one build "
       "(pyoco_add_plugin compiles the manifest's version into the library); a worker refuses "
       "such a release"},
      {"PL033", S::Error, "the library file is truncated, corrupt or not a regular file",
       "rebuild or reinstall the plugin; loading it would hang or crash the process"},
      {"PL034", S::Error,
       "plugin.toml describes a task differently from what the library registers",
       "rebuild the plugin: pyoco_add_plugin writes [[tasks]] from the library (or run `pyoco "
       "plugins manifest`)"},
      {"PL035", S::Error, "the library's compiled-in name is another plugin's",
       "the directory holds another plugin's library: put this plugin's own build beside its "
       "plugin.toml (pyoco_add_plugin compiles the manifest's name into the library)"},
  };
  return rules;
}

const LintRule& lint_rule(std::string_view id) {
  for (const LintRule& r : lint_rules()) {
    if (r.id == id) return r;
  }
  throw std::out_of_range("no lint rule " + std::string(id));
}

namespace {

class Findings {
 public:
  explicit Findings(PluginLint& out) : out_(out) {}
  void add(std::string_view rule, fs::path file, std::uint32_t line, std::string message) {
    add(rule, lint_rule(rule).severity, std::move(file), line, std::move(message));
  }
  void add(std::string_view rule, Severity severity, fs::path file, std::uint32_t line,
           std::string message) {
    out_.findings.push_back(
        LintFinding{std::string(rule), severity, std::move(file), line, std::move(message)});
  }

 private:
  PluginLint& out_;
};

void check_manifest_alone(const Manifest& m, Findings& f) {
  const fs::path& file = m.file;
  if (std::string why = plugin_name_problem(m.name); !why.empty()) {
    f.add("PL002", file, m.line_of("name"), std::move(why));
  }
  if (std::string why = plugin_version_problem(m.version); !why.empty()) {
    f.add("PL003", file, m.line_of("version"), std::move(why));
  }
  const AbiVersion host = host_abi_version();
  if (m.abi != std::int64_t(host.major)) {
    f.add("PL004", file, m.line_of("abi"),
          "abi = " + std::to_string(m.abi) + ", this runtime speaks ABI " + to_string(host));
  }
  if (std::string why = platform_problem(m); !why.empty()) {
    const bool os_bad = !platform_field_problem("os", m.platform_os).empty();
    f.add("PL005", file, m.line_of(os_bad ? "platform.os" : "platform.arch"), std::move(why));
  } else if ((!m.platform_os.empty() && m.platform_os != host_os()) ||
             (!m.platform_arch.empty() && m.platform_arch != host_arch())) {
    const bool os_differs = !m.platform_os.empty() && m.platform_os != host_os();
    f.add("PL005", file, m.line_of(os_differs ? "platform.os" : "platform.arch"),
          "platform " + m.platform_os + "/" + m.platform_arch + ", this machine is " + host_os() +
              "/" + host_arch());
  }
  if (!m.status.empty() && m.status != "stable" && m.status != "beta" &&
      m.status != "experimental") {
    f.add("PL006", file, m.line_of("status"),
          "status '" + m.status + "' is not stable, beta or experimental");
  }
  std::vector<std::string> missing;
  if (m.summary.empty()) missing.push_back("summary");
  if (m.license.empty()) missing.push_back("license");
  if (m.authors.empty()) missing.push_back("authors");
  if (!missing.empty()) {
    std::string list;
    for (const auto& k : missing) list += (list.empty() ? "" : ", ") + k;
    f.add("PL007", file, m.line_of("plugin"), "[plugin] lacks " + list);
  }
  if (m.sdk.empty() || !is_semver(m.sdk)) {
    f.add("PL017", file, m.line_of("sdk"),
          m.sdk.empty() ? "[plugin] sdk is missing" : "sdk '" + m.sdk + "' is not a version");
  }

  std::set<std::string> seen;
  for (const TaskManifest& t : m.tasks) {
    if (!is_valid_name(t.name)) {
      f.add("PL009", file, t.line, "task name '" + t.name + "' is not [a-z][a-z0-9_]*");
    }
    if (!seen.insert(t.name).second) {
      f.add("PL010", file, t.line, "task '" + t.name + "' is declared twice");
    }
    if (t.summary.empty()) f.add("PL011", file, t.line, "task '" + t.name + "' has no summary");
    if (t.usage.empty()) f.add("PL012", file, t.line, "task '" + t.name + "' has no usage");
    auto check_ios = [&](const std::vector<IoSpec>& ios, const char* what) {
      std::set<std::string> names;
      for (const IoSpec& io : ios) {
        const std::string label = "task '" + t.name + "' " + what + " '" + io.name + "'";
        if (!is_valid_name(io.name)) {
          f.add("PL018", file, io.line, label + ": the name is not [a-z][a-z0-9_]*");
        } else if (!names.insert(io.name).second) {
          f.add("PL018", file, io.line, label + " is declared twice");
        }
        if (io.type.empty()) {
          f.add("PL013", file, io.line, label + " has no type");
        } else if (!is_known_io_type(io.type)) {
          f.add("PL014", file, io.line, label + " has unknown type '" + io.type + "'");
        }
      }
    };
    check_ios(t.inputs, "input");
    check_ios(t.outputs, "output");
  }
}

// PL016. Two plugin directories of one name in one directory: whichever
// search path holds that directory, the first by name is loaded and this one
// never is: a warning. A copy elsewhere that `pyoco run` finds first (an
// installed release, while this is a new build) is how a new build is tested
// (--plugin-path puts it first): a note, which fails nothing.
}  // namespace

class LintMemo {
 public:
  fs::path canonical(const fs::path& p) {
    auto it = canonical_.find(p.native());
    if (it == canonical_.end()) it = canonical_.emplace(p.native(), fs::weakly_canonical(p)).first;
    return it->second;
  }
  const Catalog& beside(const fs::path& parent) {
    auto it = beside_.find(parent.native());
    if (it == beside_.end())
      it = beside_.emplace(parent.native(), Catalog::discover({parent})).first;
    return it->second;
  }
  // The plugins of `catalog` with a task of each name.
  const std::unordered_multimap<std::string, const PluginEntry*>& tasks(const Catalog& catalog) {
    auto& index = tasks_[&catalog];
    if (index.empty()) {
      for (const PluginEntry& p : catalog.plugins()) {
        for (const TaskManifest& t : p.manifest.tasks) index.emplace(t.name, &p);
      }
    }
    return index;
  }

 private:
  std::unordered_map<std::string, fs::path> canonical_;
  std::unordered_map<std::string, Catalog> beside_;
  std::unordered_map<const Catalog*, std::unordered_multimap<std::string, const PluginEntry*>>
      tasks_;
};

std::shared_ptr<LintMemo> lint_memo() { return std::make_shared<LintMemo>(); }

namespace {

void lint_shadowing(const Manifest& m, const Catalog& catalog, LintMemo& memo,
                    const LintOptions& options, Findings& f) {
  const fs::path self = memo.canonical(m.dir);
  const fs::path parent = m.dir.parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::exists(fs::symlink_status(parent / "plugin.toml", ec))) {
    const Catalog& beside = memo.beside(parent);
    for (const PluginEntry& p : beside.plugins()) {
      if (!p.shadowed_by || memo.canonical(p.manifest.dir) != self) continue;
      f.add("PL016", Severity::Warning, m.file, m.line_of("name"),
            "plugin '" + m.name + "' at " + p.shadowed_by->string() +
                " is in the same directory and comes first by name: from " + parent.string() +
                " this one is never loaded; remove or rename one");
      return;
    }
  }
  auto holds_self = [&](const Catalog& c) {
    return std::any_of(c.plugins().begin(), c.plugins().end(), [&](const PluginEntry& p) {
      return memo.canonical(p.manifest.dir) == self;
    });
  };
  // Both on the configured search path (PYOCO_PLUGIN_PATH, the install):
  // a `pyoco run` given no --plugin-path never loads this one, which a CI
  // lint must catch.
  const Catalog& configured = options.configured != nullptr ? *options.configured : catalog;
  if (const PluginEntry* first = configured.find_plugin(m.name);
      first != nullptr && memo.canonical(first->manifest.dir) != self && holds_self(configured)) {
    f.add("PL016", Severity::Warning, m.file, m.line_of("name"),
          "plugin '" + m.name + "' at " + first->manifest.dir.string() +
              " comes first on the search path: this one is shadowed and never loaded there; "
              "remove one or rename one");
    return;
  }
  // Otherwise (a build tested beside its installed release, or a copy put
  // first by --plugin-path): how --plugin-path works, a note.
  const PluginEntry* winner = catalog.find_plugin(m.name);
  if (winner == nullptr || memo.canonical(winner->manifest.dir) == self) return;
  // --plugin-path names a directory pyoco can load this one from: not a
  // source project's (plugin.toml with no library, PL008), but its build.
  std::string put_first = "`--plugin-path " + m.dir.string() + "` puts this one first";
  std::error_code lib_ec;
  if (!fs::exists(m.library_path(), lib_ec)) {
    const fs::path build = m.dir / "build";
    put_first = fs::exists(build / m.name / "plugin.toml", lib_ec)
                    ? "this directory has no library to load (the source, not a build): "
                      "`--plugin-path " +
                          build.string() + "` puts its build first"
                    : "this directory has no library to load (the source, not a build): "
                      "build it, and `--plugin-path` with the build directory puts the "
                      "build first";
  }
  f.add("PL016", Severity::Note, m.file, m.line_of("name"),
        "plugin '" + m.name + "' at " + winner->manifest.dir.string() +
            (holds_self(catalog) ? " comes first on the search path"
                                 : " is on the search path, this one is not") +
            ": `pyoco run` loads that one; " + put_first);
}

void lint_manifest(const Manifest& m, const Catalog& catalog, const LintOptions& options,
                   Findings& f) {
  check_manifest_alone(m, f);
  std::shared_ptr<LintMemo> own;
  LintMemo& memo = options.memo ? *options.memo : *(own = lint_memo());
  lint_shadowing(m, catalog, memo, options, f);
  // Against the other plugins on the search path: by task, then in the
  // search path's order.
  const fs::path self = memo.canonical(m.dir);
  const auto& tasks = memo.tasks(catalog);
  for (const TaskManifest& t : m.tasks) {
    std::vector<const PluginEntry*> others;
    const auto [from, to] = tasks.equal_range(t.name);
    for (auto it = from; it != to; ++it) {
      const PluginEntry& other = *it->second;
      if (other.manifest.name == m.name) continue;  // PL016's
      if (memo.canonical(other.manifest.dir) == self) continue;
      others.push_back(&other);
    }
    std::sort(others.begin(), others.end());  // catalog order: entries are in one vector
    for (const PluginEntry* other : others) {
      f.add("PL015", m.file, t.line,
            "task '" + t.name + "' is also a task of plugin '" + other->manifest.name + "'");
    }
  }
}

std::string demangle(const std::string& symbol) {
  int status = 0;
  char* d = abi::__cxa_demangle(symbol.c_str(), nullptr, nullptr, &status);
  if (d == nullptr) return symbol;
  std::string out = d;
  std::free(d);
  return out == symbol ? symbol : symbol + " (" + out + ")";
}

// PL022 findings past this many become one "... and N more".
constexpr std::size_t kMaxSymbolFindings = 20;

// "is a FIFO, ..." as a finding's message after the file's name: "a FIFO, ...".
std::string without_is(const std::string& problem) {
  return problem.starts_with("is ") ? problem.substr(3) : problem;
}

// Rules that read the library file without running any of it.
bool lint_library_file(const Manifest& m, Findings& f) {
  const fs::path lib = m.library_path();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(lib, ec))) {
    f.add("PL008", m.file, m.line_of("library"),
          "library " + m.library + " is not in " + m.dir.string());
    return false;
  }
  if (fs::is_directory(lib, ec)) {  // there, but not a file: "not in" was false
    f.add("PL033", lib, 0, "a directory, not the library file");
    return false;
  }
  const LibraryFile file = inspect_library_file(lib);
  const auto& platform = file.platform;
  if (!platform) {
    if (file.problem == "is not an ELF shared library") {
      f.add("PL031", lib, 0, m.library + " " + file.problem);
    } else {
      f.add("PL033", lib, 0, without_is(file.problem));
    }
    return false;
  }
  if (platform->arch != host_arch() || platform->bits != int(sizeof(void*) * 8)) {
    f.add("PL031", lib, 0,
          m.library + " is a " + std::to_string(platform->bits) + "-bit " + platform->arch +
              " library, this machine is " + host_arch());
    return false;
  }
  if (!file.problem.empty()) {
    f.add("PL033", lib, 0, without_is(file.problem));
    return false;
  }
  try {
    boost::dll::library_info info(lib.string());
    std::vector<std::string> extra;
    for (const std::string& s : info.symbols()) {
      if (s != PYOCO_PLUGIN_ENTRY_SYMBOL) extra.push_back(s);
    }
    if (!extra.empty()) {
      std::string list;
      for (std::size_t i = 0; i < extra.size() && i < 5; ++i) {
        list += (i == 0 ? "" : ", ") + demangle(extra[i]);
      }
      if (extra.size() > 5) list += ", ... (" + std::to_string(extra.size()) + " in all)";
      f.add("PL030", lib, 0, "exports " + list);
    }
  } catch (const std::exception& e) {
    f.add("PL020", lib, 0, std::string("cannot read its symbols: ") + e.what());
    return false;
  }
  // Every missing library and symbol, where dlopen would name only the first.
  const DependencyCheck deps = check_dependencies(lib, LibrarySearch::from_system());
  for (const std::string& name : deps.missing_libraries) {
    f.add("PL021", lib, 0, "needs " + name + ", which is not found on this machine");
  }
  const std::size_t shown = std::min(deps.missing_symbols.size(), kMaxSymbolFindings);
  for (std::size_t i = 0; i < shown; ++i) {
    f.add("PL022", lib, 0, "undefined symbol " + demangle(deps.missing_symbols[i]));
  }
  if (deps.missing_symbols.size() > shown) {
    f.add("PL022", lib, 0,
          "... and " + std::to_string(deps.missing_symbols.size() - shown) +
              " more undefined symbols");
  }
  // Loading it would only fail on the first of them.
  return deps.missing_libraries.empty() && deps.missing_symbols.empty();
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

void lint_library_in_child(const Manifest& m, const LintOptions& options, Findings& f) {
  std::vector<std::string> argv = options.probe_command;
  argv.push_back(m.dir.string());
  core::ProcessOptions po;
  po.timeout = options.timeout;
  const core::ProcessResult r = core::run_process(argv, po);
  const fs::path lib = m.library_path();
  if (r.timed_out) {
    f.add("PL026", lib, 0,
          "still loading after " + std::to_string(options.timeout.count()) + " ms; killed");
    return;
  }
  if (r.signal != 0) {
    f.add("PL025", lib, 0, "the process loading it died of " + signal_name(r.signal));
    return;
  }
  const std::size_t at = r.out.rfind(kProbeResultMarker);
  // A pyoco built with a sanitizer turns a crash into a report and an exit.
  if (at == std::string::npos && (r.err.find("DEADLYSIGNAL") != std::string::npos ||
                                  r.err.find("SEGV on unknown address") != std::string::npos)) {
    f.add("PL025", lib, 0, "the process loading it crashed: " + r.err.substr(0, r.err.find('\n')));
    return;
  }
  if (at == std::string::npos) {
    // The probe always prints its result; a process that ended without one
    // was ended by the library: said as `pyoco run` says it.
    std::string why = r.err.empty() ? "nothing on stderr" : r.err.substr(0, r.err.find('\n'));
    f.add("PL020", lib, 0,
          "called exit(" + std::to_string(r.exit_code) +
              ") while loading (in its code run at load or in register_tasks), before the probe "
              "gave a result; stderr: " +
              why);
    return;
  }
  const std::size_t start = at + kProbeResultMarker.size();
  const std::string line = r.out.substr(start, r.out.find('\n', start) - start);
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(line, ec);
  if (ec || !v.is_array()) {
    f.add("PL020", lib, 0, "the probe's result is unreadable");
    return;
  }
  for (const auto& item : v.as_array()) {
    const auto& o = item.as_object();
    f.add(std::string(o.at("rule").as_string()), lib, 0, std::string(o.at("message").as_string()));
  }
}

}  // namespace

std::vector<LintFinding> check_manifest(const Manifest& m) {
  PluginLint out;
  Findings f(out);
  check_manifest_alone(m, f);
  return out.findings;
}

PluginLint lint_plugin(const fs::path& dir, const Catalog& catalog, const LintOptions& options) {
  PluginLint out;
  out.dir = dir;
  Findings f(out);
  Manifest m;
  try {
    m = read_manifest(dir);
  } catch (const ManifestError& e) {
    f.add("PL001", e.file(), e.line(), (e.key().empty() ? "" : e.key() + ": ") + e.problem());
    return out;
  }
  out.name = m.name;
  out.version = m.version;
  lint_manifest(m, catalog, options, f);
  // A manifest with errors is never loaded (register_plugin refuses it), so
  // neither is it here: its library's rules would only repeat that.
  const bool loadable =
      out.findings.end() ==
      std::find_if(out.findings.begin(), out.findings.end(), [](const LintFinding& x) {
        return x.severity == Severity::Error && x.rule != "PL015" && x.rule != "PL016";
      });
  if (lint_library_file(m, f) && loadable) lint_library_in_child(m, options, f);
  return out;
}

std::string probe_plugin(const fs::path& dir) {
  boost::json::array findings;
  auto add = [&](const char* rule, const std::string& message) {
    // JSON the parent can read: bytes that are not UTF-8 (a plugin's
    // message) made the whole result unreadable (PL020 instead of PL027).
    findings.push_back(boost::json::object{{"rule", rule}, {"message", core::valid_utf8(message)}});
  };
  try {
    const Manifest m = read_manifest(dir);
    LoadedPlugin p = register_plugin(m);
    const TaskMismatch diff = compare_tasks(m, p.tasks);
    for (const auto& name : diff.undeclared) {
      add("PL028", "registers task '" + name + "', which plugin.toml does not declare");
    }
    for (const auto& name : diff.unregistered) {
      add("PL029", "plugin.toml declares task '" + name + "', which is never registered");
    }
    for (const auto& message : diff.differing) add("PL034", message);
    if (std::string why = version_mismatch(m, p); !why.empty()) add("PL032", why);
    p.release_tasks();
  } catch (const ManifestError& e) {
    add("PL001", e.what());
  } catch (const LoadError& e) {
    const std::string msg = e.what();
    switch (e.reason()) {
      case LoadError::Reason::Platform:
        add("PL031", msg);
        break;
      case LoadError::Reason::Manifest:  // the parent reports the rule itself
        break;
      case LoadError::Reason::NoEntry:
        add("PL023", msg);
        break;
      case LoadError::Reason::Abi:
        add("PL024", msg);
        break;
      case LoadError::Reason::Register:
        add("PL027", msg);
        break;
      case LoadError::Reason::TasksMismatch:
        add("PL029", msg);
        break;
      case LoadError::Reason::Identity:
        add("PL035", msg);
        break;
      case LoadError::Reason::Open: {
        // The parent has already named every missing library and symbol it
        // could find in the ELF file; this names the first one it could not.
        // dlerror: "<dep>: cannot open shared object file: ..." names a
        // missing dependency; "...: undefined symbol: <name>" a missing symbol.
        const std::string undefined = "undefined symbol: ";
        const std::size_t u = msg.find(undefined);
        const std::size_t c = msg.find(": cannot open shared object file");
        if (u != std::string::npos) {
          add("PL022", "undefined symbol " + demangle(msg.substr(u + undefined.size())));
        } else if (c != std::string::npos) {
          const std::size_t from = msg.rfind(": ", c - 1);
          const std::string dep = msg.substr(from == std::string::npos ? 0 : from + 2,
                                             c - (from == std::string::npos ? 0 : from + 2));
          add("PL021", "needs " + dep + ", which is not found on this machine");
        } else {
          add("PL020", msg);
        }
        break;
      }
    }
  } catch (const std::exception& e) {
    add("PL020", e.what());
  }
  return std::string(kProbeResultMarker) + boost::json::serialize(findings) + "\n";
}

}  // namespace pyoco::plugins
