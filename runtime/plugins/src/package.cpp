#include <pyoco/core/regular_file.hpp>
#include <pyoco/plugins/package.hpp>

#include <openssl/evp.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

namespace pyoco::plugins {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kBlock = 512;
constexpr std::size_t kMaxFiles = 64;

// ---- ustar -------------------------------------------------------------------

void put_octal(char* field, std::size_t width, std::uint64_t value) {
  // width-1 octal digits and a NUL, as tar writes them
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

std::uint64_t octal(std::string_view field, const char* what) {
  while (!field.empty() && (field.back() == '\0' || field.back() == ' ')) field.remove_suffix(1);
  while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), v, 8);
  if (ec != std::errc() || end != field.data() + field.size()) {
    throw PackageError(std::string("not a plugin package: a tar header's ") + what +
                       " is not a number");
  }
  return v;
}

std::vector<PackageFile> files_of(std::string_view tar) {
  std::vector<PackageFile> files;
  std::size_t at = 0;
  for (;;) {
    if (at + kBlock > tar.size()) throw PackageError("not a plugin package: the tar ends early");
    const std::string_view h = tar.substr(at, kBlock);
    if (std::all_of(h.begin(), h.end(), [](char c) { return c == '\0'; })) break;  // the end
    unsigned sum = 0;
    for (std::size_t i = 0; i < kBlock; ++i) {
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    }
    if (sum != octal(h.substr(148, 8), "checksum")) {
      throw PackageError("not a plugin package: a tar header's checksum does not match");
    }
    if (h.substr(257, 5) != "ustar") throw PackageError("not a plugin package: not a ustar tar");
    const std::string name(h.substr(0, std::min<std::size_t>(100, h.find('\0'))));
    const char type = h[156];
    if (type != '0' && type != '\0') {
      throw PackageError("plugin package: \"" + name +
                         "\" is not a regular file (links, directories and devices are refused)");
    }
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
        h[345] != '\0') {
      throw PackageError("plugin package: \"" + name + "\": only flat file names are allowed");
    }
    const std::uint64_t size = octal(h.substr(124, 12), "size");
    at += kBlock;
    if (size > tar.size() - at) throw PackageError("plugin package: \"" + name + "\" is cut short");
    if (files.size() == kMaxFiles) throw PackageError("plugin package: too many files");
    for (const PackageFile& f : files) {
      if (f.name == name) throw PackageError("plugin package: \"" + name + "\" is there twice");
    }
    files.push_back({name, std::string(tar.substr(at, size))});
    at += (size + kBlock - 1) / kBlock * kBlock;
  }
  return files;
}

// ---- checksums ---------------------------------------------------------------

std::string sums_of(const std::vector<PackageFile>& files) {
  std::string out;
  for (const PackageFile& f : files) out += sha256_hex(f.bytes) + "  " + f.name + "\n";
  return out;
}

// A regular file only (a FIFO would block, a device never end), and no
// more than a package may hold.
std::string read_file(const fs::path& file) {
  try {
    return core::read_regular_file(file, kMaxPackageBytes);
  } catch (const core::FileReadError& e) {
    throw PackageError(file.string() + ": " + e.what());
  }
}

void write_synced(const fs::path& file, std::string_view bytes, mode_t mode) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw PackageError("cannot write " + file.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      throw PackageError("cannot write " + file.string() + ": " + std::strerror(e));
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) throw PackageError("cannot sync " + file.string());
}

void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += hex[md[i] >> 4], out += hex[md[i] & 15];
  return out;
}

std::string PluginPackage::platform() const {
  return platform_name(manifest.platform_os, manifest.platform_arch, manifest.abi);
}

std::string PluginPackage::file_name() const {
  return manifest.name + "-" + manifest.version + "-" + platform() + ".pyoco";
}

PluginPackage pack_plugin(const fs::path& dir) {
  Manifest m = read_manifest(dir);
  if (m.platform_os.empty() || m.platform_arch.empty()) {
    throw PackageError(m.file.string() +
                       ": [plugin.platform] os and arch are needed to pack it (workers take "
                       "only packages made for their platform)");
  }
  if (std::string why = platform_problem(m); !why.empty()) {
    throw PackageError(m.file.string() + ": " + why + " (lint rule PL005)");
  }
  if (m.library.empty() || m.library.find('/') != std::string::npos) {
    throw PackageError(m.file.string() + ": [plugin] library must name a file beside it");
  }
  std::vector<PackageFile> files{{"plugin.toml", read_file(m.file)},
                                 {m.library, read_file(m.library_path())}};
  files.push_back({"SHA256SUMS", sums_of(files)});
  return open_package(ustar_of(files));
}

PluginPackage read_package(const fs::path& file) { return open_package(read_file(file)); }

PluginPackage open_package(std::string bytes, std::size_t max_bytes) {
  if (bytes.size() > max_bytes) {
    throw PackageError("plugin package: " + std::to_string(bytes.size()) +
                       " bytes, over the limit of " + std::to_string(max_bytes));
  }
  PluginPackage p;
  p.files = files_of(bytes);
  auto find = [&](std::string_view name) -> const PackageFile* {
    for (const PackageFile& f : p.files)
      if (f.name == name) return &f;
    return nullptr;
  };
  const PackageFile* sums = find("SHA256SUMS");
  if (sums == nullptr) throw PackageError("plugin package: no SHA256SUMS");
  // Every file but SHA256SUMS listed once, with its checksum.
  std::map<std::string, std::string> listed;
  std::istringstream lines(sums->bytes);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() < 67 || line.compare(64, 2, "  ") != 0) {
      throw PackageError("plugin package: SHA256SUMS has a line that is not \"<sha256>  <file>\"");
    }
    listed[line.substr(66)] = line.substr(0, 64);
  }
  for (const PackageFile& f : p.files) {
    if (f.name == "SHA256SUMS") continue;
    auto it = listed.find(f.name);
    if (it == listed.end()) {
      throw PackageError("plugin package: \"" + f.name + "\" is not in SHA256SUMS");
    }
    if (it->second != sha256_hex(f.bytes)) {
      throw PackageError("plugin package: \"" + f.name +
                         "\" does not match its checksum in SHA256SUMS (damaged?)");
    }
    listed.erase(it);
  }
  if (!listed.empty()) {
    throw PackageError("plugin package: SHA256SUMS lists \"" + listed.begin()->first +
                       "\", which it does not hold");
  }
  const PackageFile* toml = find("plugin.toml");
  if (toml == nullptr) throw PackageError("plugin package: no plugin.toml");
  p.manifest = parse_manifest(toml->bytes, "plugin.toml");
  // Its name and version become keys of the cluster's index and a worker's
  // directories: what lint allows, nothing else.
  if (std::string why = plugin_name_problem(p.manifest.name); !why.empty()) {
    throw PackageError("plugin package: " + why + " (lint rule PL002)");
  }
  if (!is_semver(p.manifest.version) && p.manifest.version.size() <= kMaxPluginVersionLength) {
    throw PackageError("plugin package: version \"" + p.manifest.version +
                       "\" is not a semantic version (1.2.3)");
  }
  if (std::string why = plugin_version_problem(p.manifest.version); !why.empty()) {
    throw PackageError("plugin package: " + why + " (lint rule PL003)");
  }
  if (p.manifest.platform_os.empty() || p.manifest.platform_arch.empty()) {
    throw PackageError("plugin package: its plugin.toml names no [plugin.platform] os and arch");
  }
  // They too are a key of the cluster's index and a part of file names.
  if (std::string why = platform_problem(p.manifest); !why.empty()) {
    throw PackageError("plugin package: " + why + " (lint rule PL005)");
  }
  if (find(p.manifest.library) == nullptr || p.manifest.library == "plugin.toml" ||
      p.manifest.library == "SHA256SUMS") {
    throw PackageError("plugin package: it does not hold its library \"" + p.manifest.library +
                       "\"");
  }
  p.sha256 = sha256_hex(bytes);
  p.bytes = std::move(bytes);
  return p;
}

void unpack_package(const PluginPackage& package, const fs::path& dir) {
  if (fs::exists(dir)) throw PackageError(dir.string() + " exists already");
  fs::create_directories(dir.parent_path());
  thread_local std::mt19937_64 gen{std::random_device{}()};
  const fs::path staging =
      dir.parent_path() / ("." + dir.filename().string() + ".partial-" + std::to_string(gen()));
  fs::create_directory(staging);
  try {
    for (const PackageFile& f : package.files) {
      write_synced(staging / f.name, f.bytes, f.name == package.manifest.library ? 0755 : 0644);
    }
    sync_dir(staging);
    fs::rename(staging, dir);  // whole, or not at all
    sync_dir(dir.parent_path());
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
}

std::string ustar_of(const std::vector<PackageFile>& files) {
  std::string out;
  for (const PackageFile& f : files) {
    std::array<char, kBlock> h{};
    std::memcpy(h.data(), f.name.data(), std::min<std::size_t>(f.name.size(), 99));
    put_octal(&h[100], 8, 0644);
    put_octal(&h[108], 8, 0);
    put_octal(&h[116], 8, 0);
    put_octal(&h[124], 12, f.bytes.size());
    put_octal(&h[136], 12, 0);  // mtime 0: the same plugin packs to the same bytes
    h[156] = '0';
    std::memcpy(&h[257], "ustar", 6);
    std::memcpy(&h[263], "00", 2);
    std::memset(&h[148], ' ', 8);
    unsigned sum = 0;
    for (char c : h) sum += static_cast<unsigned char>(c);
    std::snprintf(&h[148], 8, "%06o", sum);
    h[155] = ' ';
    out.append(h.data(), h.size());
    out += f.bytes;
    out.append((kBlock - f.bytes.size() % kBlock) % kBlock, '\0');
  }
  out.append(2 * kBlock, '\0');
  return out;
}

}  // namespace pyoco::plugins
