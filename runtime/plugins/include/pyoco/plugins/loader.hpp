// Loads a plugin's library (Boost.DLL, RTLD_LOCAL), checks its descriptor,
// and calls its register_tasks. Libraries stay loaded for the process's
// life; each plugin is loaded at most once.
#pragma once

#include <pyoco/abi.h>
#include <pyoco/plugins/catalog.hpp>
#include <pyoco/plugins/task.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::plugins {

// A plugin that cannot be loaded. One line naming the plugin and what to do.
class LoadError : public std::runtime_error {
 public:
  enum class Reason {
    Platform,       // manifest or library is for another OS/arch
    Manifest,       // plugin.toml breaks a lint rule of severity error
    Open,           // dlopen failed (missing file, dependency, symbol)
    NoEntry,        // no pyoco_plugin_entry
    Abi,            // ABI major mismatch or unusable descriptor
    Register,       // register_tasks failed
    TasksMismatch,  // registered tasks differ from the manifest's
    Identity,       // the library's compiled-in name is another plugin's (PL035)
  };
  LoadError(Reason reason, const std::string& message)
      : std::runtime_error(message), reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

struct LoadedPlugin {
  Manifest manifest;
  std::uint32_t abi_major = 0;
  std::uint32_t abi_minor = 0;
  std::string sdk_version;     // from the descriptor
  std::string plugin_name;     // from the descriptor (may be empty)
  std::string plugin_version;  // from the descriptor (may be empty)
  std::vector<TaskDefinition> tasks;

  const TaskDefinition* find_task(std::string_view name) const;
  // Frees each task's plugin-side data (its `release` callback) and forgets
  // the tasks: for plugins the host drops instead of keeping.
  void release_tasks();
};

// "" when the library's compiled-in version is its manifest's (or it has
// none, an SDK before 0.1); else one line naming both and whether the
// library is older or newer (PL032). A name that differs never gets this
// far: register_plugin refuses it (LoadError::Reason::Identity, PL035).
std::string version_mismatch(const Manifest& manifest, const LoadedPlugin& plugin);

// Loads (once) and returns the plugin described by `manifest`. Thread-safe.
// Throws LoadError; a library whose compiled-in name is not the manifest's
// (another plugin's library under this name) is refused, Reason::Identity.
const LoadedPlugin& load_plugin(const Manifest& manifest);

// The library load_plugin is loading now (its code may be running: static
// constructors, register_tasks), or null. Async-signal-safe: a program's
// fault handler may name it.
const char* library_being_loaded() noexcept;
// The name (from plugin.toml) of the plugin whose library that is, or "".
const char* plugin_being_loaded() noexcept;

// For a program that loads plugins in its own process (`pyoco run`,
// `pyoco plugins manifest`): a library that calls exit() or quick_exit()
// while it loads (static constructors, register_tasks) ends the program
// with one line on stderr, "<program>: <library> called exit(N) while
// loading (...); <outcome> (...)", and `exit_code`, instead of the plugin's
// code and no word. An exit at any other time is left alone. Call it before
// the plugins load; a later call replaces what is said.
void report_exits_while_loading(std::string_view program, std::string_view outcome, int exit_code);

// Called on the loading thread after each plugin library has loaded (its
// own exit handlers, static destructors among them, registered): a program
// that guards exit() re-registers its handlers there, so that they run
// before the library's. Null (the default): nothing. Set it before loading.
void after_each_load(void (*hook)());

// The host's function table, for tests that drive a plugin by hand.
const pyoco_host_api& host_api();

}  // namespace pyoco::plugins
