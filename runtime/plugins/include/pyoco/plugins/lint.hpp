// `pyoco plugins lint`: numbered rules a plugin is checked against.
//
// Manifest rules read plugin.toml. Library rules inspect the library file
// without running it (exports, platform, dependencies and undefined
// symbols, from its ELF dynamic section) and then load it in a child
// process, so a plugin that crashes or hangs while loading becomes a
// finding instead of taking the linter down.
#pragma once

#include <pyoco/plugins/catalog.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::plugins {

// A note says something worth knowing that needs no fix: it fails nothing,
// not even --strict.
enum class Severity { Error, Warning, Note };
const char* to_string(Severity s);

struct LintRule {
  std::string_view id;  // "PL001"
  Severity severity;    // a finding's, but for PL016's notes
  std::string_view title;
  std::string_view hint;  // how to fix it
};

// Every rule, in id order. Ids are stable: a rule may be retired, never renumbered.
const std::vector<LintRule>& lint_rules();
const LintRule& lint_rule(std::string_view id);

struct LintFinding {
  std::string rule;
  Severity severity;
  std::filesystem::path file;
  std::uint32_t line = 0;  // 0 when not tied to a line
  std::string message;
};

struct PluginLint {
  std::filesystem::path dir;
  std::string name;  // empty when the manifest could not be read
  std::string version;
  std::vector<LintFinding> findings;

  std::size_t count(Severity s) const;
};

struct LintOptions {
  // The command that probes one plugin directory in a child process; the
  // directory is appended. The CLI passes {"<pyoco>", "plugins", "__probe"}.
  std::vector<std::string> probe_command;
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
  // The search path without the dirs given for this lint (--plugin-path):
  // a plugin shadowed there is never loaded by a `pyoco run` given none (a
  // warning, PL016); one shadowed only by those dirs gets a note. Null: the
  // lint's own catalog is taken as that.
  const Catalog* configured = nullptr;
  // What linting many plugins in one go can share (lint_memo()): the
  // plugins beside each, canonical paths, who has which task name. Null:
  // each lint works it out alone (a directory of 1,000 plugins took
  // minutes, every plugin reading every other's manifest). One memo serves
  // one lint command: the catalogs given with it must outlive it.
  std::shared_ptr<class LintMemo> memo;
};
std::shared_ptr<LintMemo> lint_memo();

// The rules a manifest is checked against on its own (PL002-PL014, PL017, PL018):
// what `plugins lint` reports for it, and what makes register_plugin refuse
// to load a plugin (any error among them).
std::vector<LintFinding> check_manifest(const Manifest& manifest);

// Lints the plugin in `dir` against every rule; `catalog` is the search
// path's view, for the rules that compare a plugin with the others.
PluginLint lint_plugin(const std::filesystem::path& dir, const Catalog& catalog,
                       const LintOptions& options);

// The child side of the library rules: loads the plugin in `dir` in this
// process and returns the findings as one line of JSON for the parent.
std::string probe_plugin(const std::filesystem::path& dir);

// The marker the probe's result line starts with (a plugin may print to
// stdout while it loads; the parent looks for this line).
inline constexpr std::string_view kProbeResultMarker = "pyoco-probe-result: ";

}  // namespace pyoco::plugins
