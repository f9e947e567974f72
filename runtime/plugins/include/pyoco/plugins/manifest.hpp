// plugin.toml: what a plugin says about itself, read without running it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::plugins {

struct IoSpec {
  std::string name;
  std::string type;  // empty when the manifest gives none
  bool required = false;
  std::string description;
  std::uint32_t line = 0;
};

struct TaskManifest {
  std::string name;
  std::string summary;
  std::string usage;
  std::vector<std::string> tags;
  std::vector<IoSpec> inputs;
  std::vector<IoSpec> outputs;
  std::uint32_t line = 0;  // where its [[tasks]] table starts
};

struct Manifest {
  std::filesystem::path file;  // the plugin.toml
  std::filesystem::path dir;   // the plugin directory
  std::string name;
  std::string version;
  std::int64_t abi = 0;
  std::string sdk;
  std::string library;  // file name, relative to dir
  std::string summary;
  std::string description;
  std::vector<std::string> authors;
  std::string license;
  std::string homepage;
  std::string status;  // stable | beta | experimental; empty when absent
  std::string platform_os;
  std::string platform_arch;
  std::vector<TaskManifest> tasks;
  // Where each [plugin] key is written: "name", "abi", "platform.os", ...;
  // "plugin" is the [plugin] table itself.
  std::map<std::string, std::uint32_t, std::less<>> key_lines;

  std::filesystem::path library_path() const { return dir / library; }
  // The line of a [plugin] key, else of the [plugin] table (0 when unknown).
  std::uint32_t line_of(std::string_view key) const;
};

// A manifest that cannot be used: its message names the file, the line and
// the key, e.g. "plugins/acme/plugin.toml:3: [plugin] version: expected a string".
class ManifestError : public std::runtime_error {
 public:
  ManifestError(std::filesystem::path file, std::uint32_t line, std::string key,
                std::string problem);
  const std::filesystem::path& file() const { return file_; }
  std::uint32_t line() const { return line_; }
  const std::string& key() const { return key_; }
  const std::string& problem() const { return problem_; }

 private:
  std::filesystem::path file_;
  std::uint32_t line_;
  std::string key_;
  std::string problem_;
};

// Reads <dir>/plugin.toml (or the file itself when given a file). Checks
// the schema: required keys present and typed, no unknown keys. Rules about
// values (semver, name format, ...) are lint's business, not the parser's.
Manifest read_manifest(const std::filesystem::path& dir_or_file);

// The same for manifest text already read; `file` names it in errors and
// gives the plugin directory (its parent).
Manifest parse_manifest(std::string_view text, const std::filesystem::path& file);

// Type names an input or output may declare.
bool is_known_io_type(const std::string& type);

// [a-z][a-z0-9_]*
bool is_valid_name(const std::string& name);

// Semantic version 2.0.0: MAJOR.MINOR.PATCH[-pre][+build].
bool is_semver(const std::string& version);

// A plugin's name and version name its directories (a worker installs a
// release in <name>/<version>-<sha256 prefix>/, and a file name has at most
// 255 bytes): both are bounded, as `plugins new` bounds names.
inline constexpr std::size_t kMaxPluginNameLength = 64;
inline constexpr std::size_t kMaxPluginVersionLength = 64;

// Why `name` cannot be a plugin's name (lint rule PL002: [a-z][a-z0-9_]*,
// at most kMaxPluginNameLength characters), as one line; "" when it can.
std::string plugin_name_problem(const std::string& name);

// Why `version` cannot be a plugin's version (lint rule PL003: semantic, at
// most kMaxPluginVersionLength characters, each number within 64 bits), as
// one line; "" when it can.
std::string plugin_version_problem(const std::string& version);

// [plugin.platform] os and arch name a package's platform, its file name and
// a key of the cluster's plugin index: [a-z0-9_]+, at most this long.
inline constexpr std::size_t kMaxPlatformFieldLength = 64;

// Why `value` cannot be [plugin.platform] `field` ("os" or "arch"; lint rule
// PL005), as one line naming the field; "" when it can (or is empty: the
// platform is optional until a package is made).
std::string platform_field_problem(const char* field, const std::string& value);

// The first of platform_field_problem for os and arch; "" when both can be.
std::string platform_problem(const Manifest& m);

// This machine's platform, as manifests spell it ("linux", "x86_64").
std::string host_os();
std::string host_arch();

// "linux-x86_64-abi1": a platform as packages, releases and workers name it.
std::string platform_name(const std::string& os, const std::string& arch, std::int64_t abi_major);

}  // namespace pyoco::plugins
