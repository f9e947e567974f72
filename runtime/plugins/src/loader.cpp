#include <pyoco/core/semver.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/plugins/elf.hpp>
#include <pyoco/plugins/host_abi.hpp>
#include <pyoco/plugins/lint.hpp>
#include <pyoco/plugins/loader.hpp>

#include <dlfcn.h>
#include <unistd.h>
#include <boost/dll/shared_library.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "registration.hpp"
#include "registry_state.hpp"

namespace pyoco::plugins {

const TaskDefinition* LoadedPlugin::find_task(std::string_view name) const {
  for (const TaskDefinition& t : tasks) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void LoadedPlugin::release_tasks() {
  for (TaskDefinition& t : tasks) {
    if (t.release != nullptr) t.release(t.user_data);
  }
  tasks.clear();
}

namespace {

std::string plugin_label(const Manifest& m) {
  return "plugin '" + m.name + "' (" + m.dir.string() + ")";
}

// Libraries are never unloaded: task code, its statics and its thread-locals
// must outlive every run. Deliberately leaked.
std::vector<boost::dll::shared_library>& loaded_libraries() {
  static auto* libs = new std::vector<boost::dll::shared_library>();
  return *libs;
}

}  // namespace

namespace {

std::atomic<const char*> g_loading{nullptr};
std::atomic<const char*> g_loading_plugin{nullptr};

// Named while its code runs (static constructors, register_tasks): a
// program may say which library a crash or an exit came from. One load at
// a time.
// A copy of `text` alive (and reachable) until the process ends.
const char* kept(const std::string& text) {
  static std::mutex mutex;
  static auto* all = new std::deque<std::string>();  // elements never move
  std::lock_guard lock(mutex);
  return all->emplace_back(text).c_str();
}

class Loading {
 public:
  Loading(const char* path, const char* plugin) {
    g_loading_plugin.store(plugin, std::memory_order_release);
    g_loading.store(path, std::memory_order_release);
  }
  ~Loading() {
    g_loading.store(nullptr, std::memory_order_release);
    g_loading_plugin.store(nullptr, std::memory_order_release);
  }
  Loading(const Loading&) = delete;
  Loading& operator=(const Loading&) = delete;
};

// What report_exits_while_loading was told; null: exits are left alone.
struct ExitReport {
  std::string program;
  std::string outcome;
  int exit_code = 1;
};
std::atomic<const ExitReport*> g_exit_report{nullptr};
std::atomic<void (*)()> g_after_load{nullptr};

void put(std::string_view text) {
  while (!text.empty()) {
    const auto n = ::write(STDERR_FILENO, text.data(), text.size());
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Runs among the exit handlers; does anything only while a library loads,
// so an exit at any other time (the program's own) goes on as it would.
void exit_while_loading(const char* how) {
  const ExitReport* report = g_exit_report.load(std::memory_order_acquire);
  const char* library = g_loading.load(std::memory_order_acquire);
  if (report == nullptr || library == nullptr) return;
  put(report->program);
  put(": ");
  put(library);
  put(" called ");
  put(how);
  put(" while loading (in its code run at load or in register_tasks); ");
  put(report->outcome);
  put(" (run `pyoco plugins lint` on its plugin)\n");
  ::_exit(report->exit_code);
}

extern "C" void on_exit_while_loading(int status, void*) {
  char how[32];
  std::snprintf(how, sizeof how, "exit(%d)", status);
  exit_while_loading(how);
}

extern "C" void on_quick_exit_while_loading() { exit_while_loading("quick_exit()"); }

// Registered before each load, so that they run before every exit handler
// registered earlier (the program's statics) and after only those the
// library registered itself.
void arm_exit_handlers() {
  if (g_exit_report.load(std::memory_order_acquire) == nullptr) return;
  ::on_exit(on_exit_while_loading, nullptr);
  std::at_quick_exit(on_quick_exit_while_loading);
}

}  // namespace

const char* library_being_loaded() noexcept { return g_loading.load(std::memory_order_acquire); }

const char* plugin_being_loaded() noexcept {
  const char* name = g_loading_plugin.load(std::memory_order_acquire);
  return name != nullptr ? name : "";
}

void after_each_load(void (*hook)()) { g_after_load.store(hook, std::memory_order_release); }

void report_exits_while_loading(std::string_view program, std::string_view outcome, int exit_code) {
  // Leaked: exit handlers may read it until the process is gone.
  g_exit_report.store(new ExitReport{std::string(program), std::string(outcome), exit_code},
                      std::memory_order_release);
}

void check_platform(const Manifest& m, const LibraryFile& file) {
  const std::string os = host_os(), arch = host_arch();
  if ((!m.platform_os.empty() && m.platform_os != os) ||
      (!m.platform_arch.empty() && m.platform_arch != arch)) {
    throw LoadError(LoadError::Reason::Platform,
                    plugin_label(m) + " is for " + m.platform_os + "/" + m.platform_arch +
                        ", this machine is " + os + "/" + arch +
                        ": install the plugin's build for this platform");
  }
  if (const auto& p = file.platform) {
    if (p->arch != arch || p->bits != int(sizeof(void*) * 8)) {
      throw LoadError(LoadError::Reason::Platform, plugin_label(m) + ": " + m.library + " is a " +
                                                       std::to_string(p->bits) + "-bit " + p->arch +
                                                       " library, this machine is " + arch +
                                                       ": rebuild the plugin for this platform");
    }
  }
}

LoadedPlugin register_plugin(const Manifest& m) {
  const std::filesystem::path path = m.library_path();
  // Read once: its platform, and what dlopen would hang on (a FIFO) or die
  // of (a truncated file, SIGBUS).
  const LibraryFile file = inspect_library_file(path);
  check_platform(m, file);
  // What lint calls broken is never loaded: a manifest that names another
  // ABI, or a name that is not a name, fails here as it fails lint.
  for (const LintFinding& f : check_manifest(m)) {
    if (f.severity != Severity::Error) continue;
    throw LoadError(LoadError::Reason::Manifest, plugin_label(m) + ": " + f.message + " (" +
                                                     f.rule + "; see `pyoco plugins lint " +
                                                     m.dir.string() + "`)");
  }
  std::error_code ec_exists;
  if (!std::filesystem::exists(path, ec_exists)) {
    throw LoadError(LoadError::Reason::Open, plugin_label(m) + ": library " + m.library +
                                                 " not found in " + m.dir.string() +
                                                 ": build the plugin or fix [plugin] library");
  }
  if (!file.problem.empty()) {
    throw LoadError(LoadError::Reason::Open,
                    plugin_label(m) + ": cannot load " + m.library + ": it " + file.problem);
  }

  // Kept for the process's life, a few bytes a plugin: another thread (a
  // signal's) may print them after this load has ended.
  const Loading named(kept(path.string()), kept(m.name));
  arm_exit_handlers();
  boost::dll::fs::error_code ec;
  boost::dll::shared_library lib(
      path.string(), boost::dll::load_mode::rtld_local | boost::dll::load_mode::rtld_now, ec);
  if (ec || !lib.is_loaded()) {
    const char* why = dlerror();
    throw LoadError(LoadError::Reason::Open, plugin_label(m) + ": cannot load " + m.library + ": " +
                                                 (why != nullptr ? why : ec.message()));
  }
  if (!lib.has(PYOCO_PLUGIN_ENTRY_SYMBOL)) {
    throw LoadError(LoadError::Reason::NoEntry,
                    plugin_label(m) + ": " + m.library + " does not export " +
                        PYOCO_PLUGIN_ENTRY_SYMBOL +
                        ": add PYOCO_PLUGIN(register_tasks) to one source file");
  }
  auto entry = lib.get<const pyoco_plugin_descriptor*()>(PYOCO_PLUGIN_ENTRY_SYMBOL);
  const pyoco_plugin_descriptor* d = entry();
  const AbiVersion host = host_abi_version();
  if (d == nullptr || d->struct_size < offsetof(pyoco_plugin_descriptor, abi_minor) + 4) {
    throw LoadError(LoadError::Reason::Abi,
                    plugin_label(m) + ": its entry point returned no usable descriptor");
  }
  if (d->abi_major != host.major) {
    throw LoadError(LoadError::Reason::Abi,
                    plugin_label(m) + " was built for plugin ABI " + std::to_string(d->abi_major) +
                        "." + std::to_string(d->abi_minor) + ", this pyoco speaks ABI " +
                        to_string(host) + ": rebuild it against a pyoco SDK with ABI " +
                        std::to_string(host.major) + ".x");
  }
  if (!PYOCO_HAS_FIELD(d, pyoco_plugin_descriptor, register_tasks) ||
      d->register_tasks == nullptr) {
    throw LoadError(LoadError::Reason::Abi,
                    plugin_label(m) + ": its descriptor has no register_tasks function");
  }

  LoadedPlugin out;
  out.manifest = m;
  out.abi_major = d->abi_major;
  out.abi_minor = d->abi_minor;
  auto field = [&](const char* const pyoco_plugin_descriptor::*member, std::size_t end) {
    const char* s = d->struct_size >= end ? d->*member : nullptr;
    return std::string(s == nullptr ? "" : s);
  };
  out.sdk_version = field(&pyoco_plugin_descriptor::sdk_version,
                          offsetof(pyoco_plugin_descriptor, sdk_version) + sizeof(char*));
  out.plugin_name = field(&pyoco_plugin_descriptor::plugin_name,
                          offsetof(pyoco_plugin_descriptor, plugin_name) + sizeof(char*));
  out.plugin_version = field(&pyoco_plugin_descriptor::plugin_version,
                             offsetof(pyoco_plugin_descriptor, plugin_version) + sizeof(char*));

  // What the library says it is, against what its manifest says: a package
  // whose manifest lies about its name would take another plugin's place
  // (its tasks run as that plugin's, for every flow using it).
  if (!out.plugin_name.empty() && out.plugin_name != m.name) {
    throw LoadError(LoadError::Reason::Identity,
                    plugin_label(m) + ": its library " + m.library + " is plugin '" +
                        core::printable(out.plugin_name) + "' " +
                        core::printable(out.plugin_version) + ", not '" + m.name + "' " +
                        m.version +
                        " as plugin.toml says: refusing to load another plugin's "
                        "library under this name (PL035; see `pyoco plugins lint " +
                        m.dir.string() + "`)");
  }

  RegistryState state;
  state.plugin_name = m.name;
  state.abi_minor = d->abi_minor;
  const pyoco_status s = d->register_tasks(&host_api(), reinterpret_cast<pyoco_registry*>(&state));
  if (s != PYOCO_OK || !state.refused.empty()) {
    LoadedPlugin partial;
    partial.tasks = std::move(state.tasks);
    partial.release_tasks();
    // A task the host refused: why, even when the plugin went on as if it
    // had been added, or said only that it was refused (the SDK does).
    std::string why;
    if (s == PYOCO_OK) {
      why = "the host refused " + state.refused;
    } else {
      // The plugin's words reach a terminal: escaped, as list/info/lint do.
      why = "register_tasks failed: " +
            (state.error.empty() ? "status " + std::to_string(s) : core::printable(state.error));
      if (why.find(state.refused) == std::string::npos) why += " (" + state.refused + ")";
    }
    throw LoadError(LoadError::Reason::Register, plugin_label(m) + ": " + why);
  }
  out.tasks = std::move(state.tasks);
  loaded_libraries().push_back(std::move(lib));
  return out;
}

std::string version_mismatch(const Manifest& m, const LoadedPlugin& p) {
  if (p.plugin_version.empty() || p.plugin_version == m.version) return "";
  const std::string both = "the library says " + (p.plugin_name.empty() ? m.name : p.plugin_name) +
                           " " + p.plugin_version + ", plugin.toml says " + m.name + " " +
                           m.version;
  if (!core::is_semver(p.plugin_version) || !core::is_semver(m.version)) return both;
  return both + (core::compare_versions(p.plugin_version, m.version) < 0
                     ? ": the library is older than its manifest (a stale build?)"
                     : ": the library is newer than its manifest (plugin.toml not rewritten by "
                       "the build?)");
}

const LoadedPlugin& load_plugin(const Manifest& m) {
  static std::mutex mutex;
  static auto* plugins = new std::map<std::filesystem::path, std::unique_ptr<LoadedPlugin>>();
  const std::lock_guard<std::mutex> lock(mutex);
  const std::filesystem::path key = std::filesystem::weakly_canonical(m.dir);
  if (auto it = plugins->find(key); it != plugins->end()) return *it->second;

  LoadedPlugin r = register_plugin(m);
  const TaskMismatch diff = compare_tasks(m, r.tasks);
  if (!diff.empty()) r.release_tasks();
  auto join = [](const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  if (!diff.undeclared.empty()) {
    throw LoadError(LoadError::Reason::TasksMismatch,
                    plugin_label(m) + " registers tasks its plugin.toml does not declare: " +
                        join(diff.undeclared) +
                        ": rebuild the plugin (pyoco_add_plugin writes [[tasks]] from what the "
                        "library registers); never write them by hand");
  }
  if (!diff.unregistered.empty()) {
    throw LoadError(LoadError::Reason::TasksMismatch,
                    plugin_label(m) +
                        " declares tasks it never registers: " + join(diff.unregistered) +
                        ": register them in register_tasks, or rebuild the plugin so its [[tasks]] "
                        "are written from what the library registers");
  }
  if (!diff.differing.empty()) {
    // check reads plugin.toml, a run the library: they must say the same.
    throw LoadError(
        LoadError::Reason::TasksMismatch,
        plugin_label(m) + ": plugin.toml describes " + diff.differing.front() +
            (diff.differing.size() > 1
                 ? " (and " + std::to_string(diff.differing.size() - 1) + " more tasks differ)"
                 : "") +
            ": rebuild the plugin (pyoco_add_plugin writes [[tasks]] from the "
            "library; PL034, see `pyoco plugins lint " +
            m.dir.string() + "`)");
  }
  const LoadedPlugin& loaded =
      *plugins->emplace(key, std::make_unique<LoadedPlugin>(std::move(r))).first->second;
  if (auto* hook = g_after_load.load(std::memory_order_acquire)) hook();
  return loaded;
}

}  // namespace pyoco::plugins
