// `pyoco plugins list | info | lint` and `pyoco tasks`: the catalog as a
// user sees it. list, info and tasks read manifests only; lint also loads
// each library, in a child process.
#include <pyoco/core/regular_file.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/host_abi.hpp>
#include <pyoco/plugins/lint.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/plugins/scaffold.hpp>
#include <pyoco/plugins/task_tables.hpp>
#include <pyoco/runner/json_views.hpp>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/json.hpp>

#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <set>

#include "app.hpp"
#include "command.hpp"
#include "plugin_path.hpp"
#include "table.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;
namespace json = boost::json;
using plugins::Catalog;
using plugins::Manifest;
using plugins::PluginEntry;

namespace {

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

using core::printable;

// A manifest's text of several lines (a description), each line as
// printable() writes it: its line breaks kept, its escapes not.
std::string printable_lines(std::string_view text) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t nl = std::min(text.find('\n', start), text.size());
    core::append_printable(out, text.substr(start, nl - start));
    if (nl < text.size()) out += '\n';
    start = nl + 1;
  }
  return out;
}

// JSON for machines: valid UTF-8 even when a manifest's text is not.
void print_json(const json::value& v) { std::cout << core::valid_utf8(json::serialize(v)) << '\n'; }

void print_problems(const Catalog& catalog) {
  for (const auto& p : catalog.problems()) {
    std::cerr << "warning: skipped " << p.what() << " (see `pyoco plugins lint`)\n";
  }
}

// ---- list ----

struct ListOptions {
  PluginPathOption path;
  bool json = false;
  bool verbose = false;
};

int list_plugins(const ListOptions& o) {
  const Catalog catalog = o.path.catalog();
  if (o.json) {
    const auto detail = o.verbose ? runner::Detail::Full : runner::Detail::Summary;
    print_json(runner::plugins_json(catalog, detail));
    return kExitOk;
  }
  print_problems(catalog);
  if (catalog.plugins().empty()) {
    std::cout << "No plugins found; " << describe_search_path(catalog.search_path()) << '\n'
              << "Add a directory with --plugin-path DIR or PYOCO_PLUGIN_PATH=DIR.\n";
    return kExitOk;
  }
  Table table({"PLUGIN", "VERSION", "ABI", "STATUS", "TASKS", "PATH"});
  for (const auto& p : catalog.plugins()) {
    const Manifest& m = p.manifest;
    // A plugin of thousands of tasks padded every row to its list (an
    // outside tester's: 300 KB a row): the first few, and how many.
    constexpr std::size_t kNamed = 10, kShownOfMore = 8;
    std::vector<std::string> tasks;
    for (const auto& t : m.tasks) {
      if (m.tasks.size() > kNamed && tasks.size() == kShownOfMore) break;
      tasks.push_back(t.name);
    }
    std::string named = join(tasks);
    if (m.tasks.size() > kNamed) {
      named += ", ... (" + std::to_string(m.tasks.size()) + " in all: plugins info " + m.name +
               " lists them)";
    }
    table.add({m.name, m.version, std::to_string(m.abi),
               p.shadowed_by ? "shadowed" : (m.status.empty() ? "-" : m.status), named,
               m.dir.string()});
  }
  table.print(std::cout);
  for (const auto& p : catalog.plugins()) {
    if (p.shadowed_by) {
      std::cout << "\n"
                << printable(p.manifest.name) << " at " << printable(p.manifest.dir.string())
                << " is shadowed by " << printable(p.shadowed_by->string())
                << ", which comes first.";
    }
  }
  if (o.verbose) {
    for (const auto& p : catalog.plugins()) {
      // What a manifest says reaches the terminal escaped (core::printable):
      // a summary must not clear the screen or forge a line.
      std::cout << "\n" << printable(p.manifest.name) << " " << printable(p.manifest.version);
      if (!p.manifest.summary.empty()) std::cout << ": " << printable(p.manifest.summary);
      std::cout << '\n';
      Table tasks({"  TASK", "SUMMARY"});
      for (const auto& t : p.manifest.tasks) {
        tasks.add({"  " + p.manifest.name + "/" + t.name, t.summary});
      }
      tasks.print(std::cout);
    }
  } else if (std::any_of(catalog.plugins().begin(), catalog.plugins().end(),
                         [](const PluginEntry& p) { return p.shadowed_by.has_value(); })) {
    std::cout << '\n';
  }
  return kExitOk;
}

// ---- info ----

struct InfoOptions {
  PluginPathOption path;
  std::string name;
  bool json = false;
};

// A plugin given by name (on the search path) or by directory.
const PluginEntry* resolve_plugin(const Catalog& catalog, const std::string& name_or_dir,
                                  std::optional<PluginEntry>& by_path, std::string& error) {
  if (name_or_dir.find('/') != std::string::npos ||
      fs::exists(fs::path(name_or_dir) / "plugin.toml")) {
    try {
      by_path = PluginEntry{plugins::read_manifest(name_or_dir), std::nullopt};
      return &*by_path;
    } catch (const plugins::ManifestError& e) {
      error = e.what();
      return nullptr;
    }
  }
  if (const PluginEntry* p = catalog.find_plugin(name_or_dir)) return p;
  error = "no plugin named '" + name_or_dir + "'; " + describe_search_path(catalog.search_path());
  return nullptr;
}

void print_ios(const char* title, const std::vector<plugins::IoSpec>& ios) {
  if (ios.empty()) return;
  std::cout << "    " << title << ":\n";
  for (const auto& io : ios) {
    std::cout << "      " << printable(io.name) << ": "
              << (io.type.empty() ? "any" : printable(io.type)) << (io.required ? ", required" : "")
              << (io.description.empty() ? "" : " — " + printable(io.description)) << '\n';
  }
}

int plugin_info(const InfoOptions& o) {
  const Catalog catalog = o.path.catalog();
  std::optional<PluginEntry> by_path;
  std::string error;
  const PluginEntry* p = resolve_plugin(catalog, o.name, by_path, error);
  if (p == nullptr) {
    std::cerr << "pyoco plugins info: " << printable_lines(error) << '\n';
    return kExitUsage;
  }
  if (o.json) {
    print_json(runner::to_json(*p, runner::Detail::Full));
    return kExitOk;
  }
  const Manifest& m = p->manifest;
  // Everything the manifest says is escaped (core::printable), as in a
  // table: a summary or a description must not steer the terminal.
  std::cout << printable(m.name) << " " << printable(m.version)
            << (m.summary.empty() ? "" : " — " + printable(m.summary)) << '\n';
  if (!m.description.empty())
    std::cout << '\n'
              << printable_lines(m.description) << (m.description.back() == '\n' ? "" : "\n");
  std::cout << '\n';
  Table facts({"", ""});
  auto fact = [&](const char* k, const std::string& v) {
    if (!v.empty()) facts.add({k, v});
  };
  fact("status:", m.status);
  fact("abi:", std::to_string(m.abi));
  fact("sdk:", m.sdk);
  fact("platform:", m.platform_os.empty() && m.platform_arch.empty()
                        ? std::string()
                        : m.platform_os + "/" + m.platform_arch);
  fact("authors:", join(m.authors));
  fact("license:", m.license);
  fact("homepage:", m.homepage);
  fact("path:", m.dir.string());
  fact("library:", m.library);
  if (p->shadowed_by) fact("shadowed by:", p->shadowed_by->string());
  std::ostringstream rows;
  facts.print(rows);
  std::cout << rows.str().substr(rows.str().find('\n') + 1);  // no header row
  std::cout << "\ntasks:\n";
  for (const auto& t : m.tasks) {
    std::cout << "  " << printable(m.name) << "/" << printable(t.name)
              << (t.summary.empty() ? "" : "  " + printable(t.summary)) << '\n';
    if (!t.usage.empty()) std::cout << "    usage: " << printable(t.usage) << '\n';
    if (!t.tags.empty()) std::cout << "    tags: " << printable(join(t.tags)) << '\n';
    print_ios("inputs", t.inputs);
    print_ios("outputs", t.outputs);
  }
  return kExitOk;
}

// ---- lint ----

struct LintCliOptions {
  PluginPathOption path;
  std::vector<std::string> targets;
  bool json = false;
  bool strict = false;
  double timeout_sec = 10;
};

// The plugin directories to lint: each target is a plugin directory, a
// directory of plugin directories, a plugin.toml, or a plugin name.
bool lint_targets(const LintCliOptions& o, const Catalog& catalog, std::vector<fs::path>& dirs) {
  if (o.targets.empty()) {
    for (const auto& p : catalog.plugins()) dirs.push_back(p.manifest.dir);
    for (const auto& p : catalog.problems()) dirs.push_back(p.file().parent_path());
    return true;
  }
  // error_code forms throughout: a symlink loop is a finding of its plugin
  // (PL001, its manifest cannot be read), or a target that says so.
  std::error_code ec;
  for (const std::string& t : o.targets) {
    const fs::path path(t);
    if (fs::is_regular_file(path, ec)) {
      dirs.push_back(path.parent_path().empty() ? fs::path(".") : path.parent_path());
    } else if (fs::is_directory(path, ec)) {
      if (fs::exists(fs::symlink_status(path / "plugin.toml", ec))) {
        dirs.push_back(path);
        continue;
      }
      const Catalog inside = Catalog::discover({path});
      const std::size_t before = dirs.size();
      for (const auto& p : inside.plugins()) dirs.push_back(p.manifest.dir);
      for (const auto& p : inside.problems()) dirs.push_back(p.file().parent_path());
      if (dirs.size() == before) {
        std::cerr << "pyoco plugins lint: no plugin.toml in " << t << " or its subdirectories\n";
        return false;
      }
    } else if (const PluginEntry* p = catalog.find_plugin(t)) {
      dirs.push_back(p->manifest.dir);
    } else if (fs::is_symlink(path, ec) && !fs::exists(path, ec) && ec) {
      std::cerr << "pyoco plugins lint: " << core::printable(t)
                << ": cannot follow it: " << ec.message() << '\n';
      return false;
    } else {
      std::cerr << "pyoco plugins lint: '" << t << "' is neither a path nor a plugin name; "
                << describe_search_path(catalog.search_path()) << '\n';
      return false;
    }
  }
  return true;
}

int lint(const LintCliOptions& o) {
  const Catalog catalog = o.path.catalog();
  std::vector<fs::path> dirs;
  if (!lint_targets(o, catalog, dirs)) return kExitUsage;

  plugins::LintOptions options;
  options.probe_command = {boost::dll::program_location().string(), "plugins", "__probe",
                           "--parent", std::to_string(getpid())};
  const Catalog configured = o.path.configured_catalog();
  options.configured = &configured;
  options.memo = plugins::lint_memo();
  options.timeout = std::chrono::milliseconds(std::llround(o.timeout_sec * 1000));

  std::vector<plugins::PluginLint> results;
  for (fs::path& dir : dirs) {
    dir = fs::absolute(dir).lexically_normal();
    if (!o.json && dirs.size() > 1 && isatty(STDERR_FILENO)) {
      std::cerr << "linting " << dir.string() << " ...\r" << std::flush;
    }
    results.push_back(plugins::lint_plugin(dir, catalog, options));
  }

  if (!o.json && dirs.size() > 1 && isatty(STDERR_FILENO)) std::cerr << "\33[2K" << std::flush;
  std::size_t errors = 0, warnings = 0, notes = 0;
  for (const auto& r : results) {
    errors += r.count(plugins::Severity::Error);
    warnings += r.count(plugins::Severity::Warning);
    notes += r.count(plugins::Severity::Note);
  }
  const bool failed = errors > 0 || (o.strict && warnings > 0);

  if (o.json) {
    json::array plugins;
    for (const auto& r : results) plugins.push_back(runner::to_json(r));
    print_json(json::object{{"plugins", std::move(plugins)},
                            {"errors", errors},
                            {"warnings", warnings},
                            {"notes", notes},
                            {"strict", o.strict},
                            {"ok", !failed}});
    return failed ? kExitFailed : kExitOk;
  }

  for (const auto& r : results) {
    std::cout << (r.name.empty() ? "(name unknown)" : printable(r.name))
              << (r.version.empty() ? "" : " " + printable(r.version)) << "  "
              << printable(r.dir.string()) << '\n';
    if (r.count(plugins::Severity::Error) + r.count(plugins::Severity::Warning) == 0) {
      std::cout << "  ok\n";
    }
    for (const auto& f : r.findings) {
      std::string where = f.file.filename().string();
      if (f.line > 0) where += ":" + std::to_string(f.line);
      const std::string label = plugins::to_string(f.severity);
      std::cout << "  " << label << std::string(8 - label.size(), ' ') << f.rule << " "
                << printable(where) << ": " << printable(f.message) << '\n';
      // A note needs no fix; its message says what to do, if anything.
      if (f.severity != plugins::Severity::Note) {
        std::cout << "                fix: " << plugins::lint_rule(f.rule).hint << '\n';
      }
    }
  }
  std::cout << results.size() << (results.size() == 1 ? " plugin" : " plugins")
            << " linted: " << errors << (errors == 1 ? " error, " : " errors, ") << warnings
            << (warnings == 1 ? " warning" : " warnings")
            << (notes == 0   ? ""
                : notes == 1 ? ", 1 note"
                             : ", " + std::to_string(notes) + " notes")
            << (o.strict ? " (strict)" : "") << '\n';
  return failed ? kExitFailed : kExitOk;
}

// ---- tasks ----

struct TasksOptions {
  PluginPathOption path;
  bool json = false;
};

int list_tasks(const TasksOptions& o) {
  const Catalog catalog = o.path.catalog();
  if (o.json) {
    print_json(runner::tasks_json(catalog));
    return kExitOk;
  }
  print_problems(catalog);
  Table table({"TASK", "SUMMARY"});
  for (const auto& p : catalog.plugins()) {
    if (p.shadowed_by) continue;
    for (const auto& t : p.manifest.tasks) table.add({p.manifest.name + "/" + t.name, t.summary});
  }
  if (table.size() == 0) {
    std::cout << "No tasks found; " << describe_search_path(catalog.search_path()) << '\n';
    return kExitOk;
  }
  table.print(std::cout);
  return kExitOk;
}

// ---- new ----

struct NewOptions {
  std::string name;
  std::string dir;
  std::vector<std::string> tasks;
  std::string author;
};

// How to name this pyoco in the printed commands: "pyoco" when PATH finds
// this very binary, else its full path.
std::string self_command() {
  const fs::path self = boost::dll::program_location().string();
  const char* path = std::getenv("PATH");
  std::string entries = path == nullptr ? "" : path;
  std::size_t start = 0;
  while (start <= entries.size()) {
    const std::size_t colon = entries.find(':', start);
    const fs::path candidate = fs::path(entries.substr(start, colon - start)) / "pyoco";
    std::error_code ec;
    if (fs::exists(candidate, ec) && fs::equivalent(candidate, self, ec)) return "pyoco";
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return self.string();
}

// What cmake needs to find this pyoco's SDK, as an argument (or nothing).
std::string sdk_location_arg() {
  const fs::path prefix =
      fs::path(boost::dll::program_location().string()).parent_path().parent_path();
  if (fs::exists(prefix / "PyocoSDKConfig.cmake")) return " -DPyocoSDK_DIR=" + prefix.string();
  if (prefix == "/usr" || prefix == "/usr/local") return "";
  return " -DCMAKE_PREFIX_PATH=" + prefix.string();
}

// plugin.toml's author without --author: $USER, else the login name of
// this user id (a container, cron or `env -i` often has no $USER); empty
// (the scaffold writes "you") when neither says.
std::string default_author() {
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') return user;
  if (const passwd* pw = getpwuid(getuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  return "";
}

int new_plugin(const NewOptions& o) {
  plugins::ScaffoldOptions s;
  s.plugin = o.name;
  s.tasks = o.tasks.empty() ? std::vector<std::string>{"greet"} : o.tasks;
  s.templates = plugins::install_template_dir();
  s.out = o.dir.empty() ? fs::path(o.name) : fs::path(o.dir);
  s.author = !o.author.empty() ? o.author : default_author();
  s.prefix_arg = sdk_location_arg();
  // A name pyoco already finds (a first-party plugin, an installed one),
  // looked for before this one is written (a search path holding its
  // directory would find this one).
  std::string taken_at;
  if (const Catalog catalog = PluginPathOption().catalog();
      const PluginEntry* taken = catalog.find_plugin(s.plugin)) {
    taken_at = printable(taken->manifest.dir.string());
  }
  std::vector<fs::path> files;
  try {
    files = plugins::scaffold_plugin(s);
  } catch (const plugins::ScaffoldError& e) {
    std::cerr << "pyoco plugins new: " << e.what() << '\n';
    return kExitUsage;
  }
  const std::string dir = s.out.string();
  const std::string pyoco = self_command();
  // The printed run command puts this one first and hides that one from flows.
  if (!taken_at.empty()) {
    std::cerr << "pyoco plugins new: warning: a plugin named '" << s.plugin
              << "' is already on the search path, at " << taken_at
              << ". When run with --plugin-path " << dir
              << "/build (as printed below), the new one "
              << "shadows it: flows that use " << s.plugin
              << "/<task> get the new plugin's tasks instead of that one's. Unless you mean to "
              << "replace it, choose another name: remove " << dir << "/ and run `" << pyoco
              << " plugins new my_" << s.plugin << "`\n";
  }
  std::cout << "Created plugin '" << s.plugin << "' in " << dir << "/ with task"
            << (s.tasks.size() == 1 ? " " : "s ") << join(s.tasks) << ":\n";
  for (const auto& f : files) std::cout << "  " << f.string() << '\n';
  std::cout << "\nNext: build and test it, lint it, run its example flow:\n"
            << "  cmake -S " << dir << " -B " << dir << "/build" << s.prefix_arg
            << " && cmake --build " << dir << "/build && ctest --test-dir " << dir << "/build\n"
            << "  " << pyoco << " plugins lint " << dir << "/build/" << s.plugin << " --strict\n"
            << "  " << pyoco << " run " << dir << "/flow.yaml --plugin-path " << dir << "/build\n";
  return kExitOk;
}

// ---- manifest ----

struct ManifestOptions {
  std::string source;
  std::string library;
  std::string output;
};

// While `plugins manifest` loads a library (its register_tasks runs in this
// process): a crash or a hang there is named, with the library, instead of
// make's bare "Segmentation fault" or a build that never ends. Only write(2)
// and _exit(2) in the handler.
const char* g_loading = nullptr;

extern "C" void on_library_fault(int sig) {
  const char* what = sig == SIGALRM ? "is still loading after 60 s" : "crashed while loading";
  const char* tail = sig == SIGALRM ? "; nothing was written (run `pyoco plugins lint` on it)\n"
                                    : " (a fault in its code run at load or in register_tasks); "
                                      "nothing was written (run `pyoco plugins lint` on it)\n";
  auto put = [](const char* text) {
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, text, std::strlen(text));
  };
  put("pyoco plugins manifest: ");
  put(g_loading != nullptr ? g_loading : "the library");
  put(" ");
  put(what);
  put(tail);
  ::_exit(kExitFailed);
}

int write_manifest(const ManifestOptions& o) {
  try {
    g_loading = o.library.c_str();
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM}) {
      std::signal(sig, on_library_fault);
    }
    // An exit() there is named too, and fails as a library that does not load.
    plugins::report_exits_while_loading("pyoco plugins manifest", "nothing was written",
                                        kExitFailed);
    alarm(60);
    std::string text;
    try {
      text = plugins::built_manifest(o.source, o.library);
    } catch (...) {
      alarm(0);
      throw;
    }
    // Loaded: what follows (the write, static destructors) is not the load's.
    alarm(0);
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM}) std::signal(sig, SIG_DFL);
    if (o.output.empty() || o.output == "-") {
      std::cout << text << std::flush;
    } else {
      core::replace_file(o.output, text);  // a stopped build leaves the old one whole
    }
    return kExitOk;
  } catch (const std::exception& e) {  // ManifestError, LoadError, a write that failed
    std::cerr << "pyoco plugins manifest: " << e.what() << "\n";
  }
  return kExitFailed;
}

}  // namespace

void add_plugins_commands(CLI::App* plugins, CommandTable& table) {
  auto new_opts = std::make_shared<NewOptions>();
  CLI::App* new_cmd = plugins->add_subcommand("new", "Create a plugin project from the template");
  new_cmd->add_option("name", new_opts->name, "The plugin's name: [a-z][a-z0-9_]*")->required();
  new_cmd
      ->add_option("--dir", new_opts->dir,
                   "Where to create it (default: ./NAME); must be new or empty")
      ->type_name("DIR");
  new_cmd
      ->add_option("--task", new_opts->tasks, "A task to start with (repeatable; default: greet)")
      ->type_name("TASK")
      // One value per occurrence: `--plugin-path dir flow.yaml` must not
      // take flow.yaml as a second directory.
      ->allow_extra_args(false);
  new_cmd->add_option("--author", new_opts->author,
                      "For plugin.toml (default: $USER, else the login name)");
  new_cmd->footer(
      "\nThe project builds with CMake against the installed SDK (find_package(PyocoSDK)),\n"
      "has a unit test on the SDK's in-process test host, and an example flow.");
  table.add(new_cmd, [new_opts] { return new_plugin(*new_opts); });

  auto list = std::make_shared<ListOptions>();
  CLI::App* list_cmd = plugins->add_subcommand(
      "list", "List the plugins on the search path (reads manifests only; runs no plugin code)");
  list->path.attach(list_cmd);
  list_cmd->add_flag("--json", list->json, "Print JSON for machines");
  list_cmd->add_flag("-v,--verbose", list->verbose, "Also list each plugin's tasks and summaries");
  table.add(list_cmd, [list] { return list_plugins(*list); });

  auto info = std::make_shared<InfoOptions>();
  CLI::App* info_cmd =
      plugins->add_subcommand("info", "Show everything about one plugin and its tasks");
  info_cmd
      ->add_option("plugin", info->name, "A plugin name on the search path, or a plugin directory")
      ->required();
  info->path.attach(info_cmd);
  info_cmd->add_flag("--json", info->json, "Print JSON for machines");
  table.add(info_cmd, [info] { return plugin_info(*info); });

  auto lint_opts = std::make_shared<LintCliOptions>();
  CLI::App* lint_cmd = plugins->add_subcommand(
      "lint", "Check plugins against the rules PL001...; libraries load in a child process");
  lint_cmd->add_option("targets", lint_opts->targets,
                       "Plugin directories, directories of plugins, plugin.toml files or plugin "
                       "names (default: every plugin on the search path)");
  lint_opts->path.attach(lint_cmd);
  lint_cmd->add_flag("--json", lint_opts->json, "Print JSON for machines");
  lint_cmd->add_flag("--strict", lint_opts->strict, "Fail on warnings too");
  lint_cmd
      ->add_option("--timeout", lint_opts->timeout_sec,
                   "Seconds a library may take to load before it is a finding (PL026); 0.1 to "
                   "86400 (a day)")
      ->capture_default_str()
      ->check(seconds_between(0.1, 86400));
  lint_cmd->footer(
      "\nExit codes: 0 clean, 1 errors (with --strict, warnings too), 2 usage.\n"
      "Every rule, with its fix, is listed in docs/plugins.md.");
  table.add(lint_cmd, [lint_opts] { return lint(*lint_opts); });

  auto manifest = std::make_shared<ManifestOptions>();
  CLI::App* manifest_cmd = plugins->add_subcommand(
      "manifest",
      "Write a plugin's plugin.toml: the source manifest plus [[tasks]] from the library");
  manifest_cmd
      ->add_option("source", manifest->source,
                   "The plugin's source plugin.toml: [plugin] and [plugin.platform], no [[tasks]]")
      ->required();
  manifest_cmd
      ->add_option("--library", manifest->library,
                   "The built library; it is loaded and its registered tasks described")
      ->required()
      ->type_name("LIB");
  manifest_cmd
      ->add_option("-o,--output", manifest->output,
                   "Where to write the manifest (default: standard output)")
      ->type_name("FILE");
  manifest_cmd->footer(
      "\npyoco_add_plugin runs this after each link, so each task's name, summary, usage,\n"
      "tags, inputs and outputs are written once, in its code. The library is loaded\n"
      "(its register_tasks runs); its file name must be [plugin] library.\n"
      "Exit codes: 0 written, 1 the manifest or the library is refused, 2 usage.");
  table.add(manifest_cmd, [manifest] { return write_manifest(*manifest); });

  // The child side of lint: loads one plugin and reports. Hidden.
  auto probe_dir = std::make_shared<std::string>();
  auto probe_parent = std::make_shared<long>(0);
  CLI::App* probe = plugins->add_subcommand("__probe", "");
  probe->group("");
  probe->add_option("dir", *probe_dir)->required();
  probe->add_option("--parent", *probe_parent);
  table.add(probe, [probe_dir, probe_parent] {
    // It goes with the lint that started it (a CI job's timeout sends lint
    // SIGTERM): a plugin that hangs while loading is not left running. A
    // lint gone before the line below: gone now too.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (*probe_parent != 0 && getppid() != *probe_parent) std::_Exit(kExitFailed);
    std::cout << plugins::probe_plugin(*probe_dir) << std::flush;
    // A throwaway process: skip static destructors and exit handlers, which
    // a plugin under inspection has no business running.
    std::_Exit(kExitOk);
    return kExitOk;
  });
}

void add_tasks_command(CLI::App& app, CommandTable& table) {
  auto o = std::make_shared<TasksOptions>();
  CLI::App* cmd =
      app.add_subcommand("tasks", "List every task the plugins provide (from manifests)");
  o->path.attach(cmd);
  cmd->add_flag("--json", o->json, "Print JSON for machines");
  table.add(cmd, [o] { return list_tasks(*o); });
}

}  // namespace pyoco::cli
