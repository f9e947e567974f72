// A plugin package: what `pyoco plugins pack` makes and the cluster ships
// to workers. A POSIX tar of a plugin's directory reduced to what runs it —
// plugin.toml, its library, and SHA256SUMS (sha256sum's format, so
// `sha256sum -c` checks an unpacked one) — for the platform and ABI its
// manifest names. Reading one trusts nothing: regular files only, flat
// names, bounded sizes, every file's checksum, nothing unlisted.
#pragma once

#include <pyoco/plugins/manifest.hpp>

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::plugins {

// A package that cannot be made or used; the message says what and why.
class PackageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PackageFile {
  std::string name;  // flat: no '/'
  std::string bytes;
};

struct PluginPackage {
  Manifest manifest;  // as parsed from the package's plugin.toml (dir: none)
  std::vector<PackageFile> files;
  std::string bytes;   // the package (tar) itself
  std::string sha256;  // of `bytes`, lowercase hex
  // "linux-x86_64-abi1": what a worker must be to use it.
  std::string platform() const;
  // "<name>-<version>-<platform>.pyoco"
  std::string file_name() const;
};

inline constexpr std::size_t kMaxPackageBytes = 64 * 1024 * 1024;

// Packs the plugin in `dir` (its plugin.toml and the library it names).
// Throws PackageError (a manifest without platform or ABI, a missing
// library) or ManifestError.
PluginPackage pack_plugin(const std::filesystem::path& dir);

// The ustar archive of `files`, in their order, as a package holds them
// (mode 0644, owner 0, mtime 0): the same files make the same bytes. No
// check of names or sizes: pack_plugin and open_package make those.
std::string ustar_of(const std::vector<PackageFile>& files);

// A package file: a regular file of at most kMaxPackageBytes, opened and
// checked. Throws PackageError naming the file.
PluginPackage read_package(const std::filesystem::path& file);

// Reads and checks a package's bytes. Throws PackageError naming the
// problem (not a tar, a path or file type not allowed, a checksum that
// does not match, a file not listed, no plugin.toml, a manifest error).
PluginPackage open_package(std::string bytes, std::size_t max_bytes = kMaxPackageBytes);

// Unpacks into `dir` so that it appears whole or not at all: written into a
// sibling temporary directory, synced, then renamed. `dir` must not exist.
void unpack_package(const PluginPackage& package, const std::filesystem::path& dir);

// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view bytes);

}  // namespace pyoco::plugins
