#include <pyoco/plugins/elf_dynamic.hpp>
#include <pyoco/plugins/manifest.hpp>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>

namespace pyoco::plugins {

namespace fs = std::filesystem;

namespace {

// Section types and dynamic tags from the ELF specification.
constexpr std::uint32_t kShtDynamic = 6;
constexpr std::uint32_t kShtDynsym = 11;
constexpr std::int64_t kDtNull = 0;
constexpr std::int64_t kDtNeeded = 1;
constexpr std::int64_t kDtRpath = 15;
constexpr std::int64_t kDtRunpath = 29;
constexpr unsigned kStbGlobal = 1;
constexpr unsigned kStbWeak = 2;
constexpr unsigned kStbGnuUnique = 10;
constexpr unsigned kStvHidden = 2;
constexpr unsigned kStvInternal = 1;

// A section larger than this is not one a sane library has: refuse it
// rather than allocate whatever a corrupt header claims.
constexpr std::uint64_t kMaxSection = 512ull << 20;

class ElfReader {
 public:
  explicit ElfReader(const fs::path& file) : in_(file, std::ios::binary) {
    if (in_) {
      in_.seekg(0, std::ios::end);
      size_ = static_cast<std::uint64_t>(in_.tellg());
      in_.seekg(0);
    }
  }

  // Reads [offset, offset + n) or returns false when the file is shorter.
  bool read(std::uint64_t offset, std::uint64_t n, std::string& out) {
    if (!in_ || offset > size_ || n > size_ - offset || n > kMaxSection) return false;
    out.resize(static_cast<std::size_t>(n));
    in_.seekg(static_cast<std::streamoff>(offset));
    return static_cast<bool>(in_.read(out.data(), static_cast<std::streamsize>(n)));
  }

  // 0 past the end of `buf`: a field the buffer lacks reads as absent.
  std::uint64_t uint(const std::string& buf, std::size_t at, std::size_t width) const {
    if (at > buf.size() || width > buf.size() - at) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) {
      const auto byte = static_cast<std::uint64_t>(static_cast<unsigned char>(buf[at + i]));
      v |= little_ ? byte << (8 * i) : byte << (8 * (width - 1 - i));
    }
    return v;
  }

  void set_little_endian(bool little) { little_ = little; }

 private:
  std::ifstream in_;
  std::uint64_t size_ = 0;
  bool little_ = true;
};

struct Section {
  std::uint32_t type = 0;
  std::uint64_t offset = 0, size = 0, entsize = 0;
  std::uint32_t link = 0;
};

std::string string_at(const std::string& table, std::uint64_t offset) {
  if (offset >= table.size()) return {};
  return std::string(table.c_str() + offset);
}

std::vector<std::string> split_path_list(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t colon = list.find(':', start);
    const std::string item = list.substr(start, colon - start);
    if (!item.empty()) out.push_back(item);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

}  // namespace

std::optional<ElfDynamic> read_elf_dynamic(const fs::path& file) {
  ElfReader r(file);
  std::string h;
  if (!r.read(0, 64, h) && !r.read(0, 52, h)) return std::nullopt;
  if (h.compare(0, 4,
                "\x7f"
                "ELF") != 0) {
    return std::nullopt;
  }
  ElfDynamic out;
  const bool wide = h[4] == 2;
  if (wide && h.size() < 64) return std::nullopt;  // a 64-bit ELF header is 64 bytes
  out.bits = wide ? 64 : 32;
  out.little_endian = h[5] == 1;
  r.set_little_endian(out.little_endian);
  out.machine = static_cast<std::uint16_t>(r.uint(h, 18, 2));
  const std::size_t addr = wide ? 8 : 4;
  const std::uint64_t shoff = r.uint(h, wide ? 40 : 32, addr);
  const std::uint64_t shentsize = r.uint(h, wide ? 58 : 46, 2);
  std::uint64_t shnum = r.uint(h, wide ? 60 : 48, 2);
  if (shoff == 0 || shentsize < (wide ? 64u : 40u)) return out;  // no section headers

  auto section = [&](std::uint64_t index) -> std::optional<Section> {
    std::string s;
    if (!r.read(shoff + index * shentsize, shentsize, s)) return std::nullopt;
    Section sec;
    sec.type = static_cast<std::uint32_t>(r.uint(s, 4, 4));
    sec.offset = r.uint(s, wide ? 24 : 16, addr);
    sec.size = r.uint(s, wide ? 32 : 20, addr);
    sec.link = static_cast<std::uint32_t>(r.uint(s, wide ? 40 : 24, 4));
    sec.entsize = r.uint(s, wide ? 56 : 36, addr);
    return sec;
  };
  if (shnum == 0) {  // more sections than e_shnum holds: section 0 has the count
    const auto first = section(0);
    if (!first) return std::nullopt;
    shnum = first->size;
  }
  if (shnum > 65536 * 16) return std::nullopt;

  auto strings_of = [&](const Section& s) -> std::optional<std::string> {
    const auto table = section(s.link);
    std::string data;
    if (!table || !r.read(table->offset, table->size, data)) return std::nullopt;
    return data;
  };

  for (std::uint64_t i = 0; i < shnum; ++i) {
    const auto s = section(i);
    if (!s) return std::nullopt;
    if (s->type == kShtDynamic) {
      const auto strings = strings_of(*s);
      std::string data;
      if (!strings || !r.read(s->offset, s->size, data)) return std::nullopt;
      const std::size_t entry = 2 * addr;
      for (std::size_t at = 0; at + entry <= data.size(); at += entry) {
        const auto tag = static_cast<std::int64_t>(r.uint(data, at, addr));
        const std::uint64_t value = r.uint(data, at + addr, addr);
        if (tag == kDtNull) break;
        if (tag == kDtNeeded) out.needed.push_back(string_at(*strings, value));
        if (tag == kDtRpath) out.rpath = split_path_list(string_at(*strings, value));
        if (tag == kDtRunpath) out.runpath = split_path_list(string_at(*strings, value));
      }
    } else if (s->type == kShtDynsym) {
      const auto strings = strings_of(*s);
      std::string data;
      if (!strings || !r.read(s->offset, s->size, data)) return std::nullopt;
      const std::size_t entry = wide ? 24 : 16;
      for (std::size_t at = entry; at + entry <= data.size(); at += entry) {  // 0 is null
        const std::string name = string_at(*strings, r.uint(data, at, 4));
        const auto info = static_cast<unsigned char>(data[at + (wide ? 4 : 12)]);
        const auto other = static_cast<unsigned char>(data[at + (wide ? 5 : 13)]);
        const auto shndx = r.uint(data, at + (wide ? 6 : 14), 2);
        const unsigned bind = info >> 4;
        const unsigned visibility = other & 3u;
        if (name.empty()) continue;
        if (shndx == 0) {
          if (bind == kStbGlobal) out.undefined.push_back(name);
        } else if ((bind == kStbGlobal || bind == kStbWeak || bind == kStbGnuUnique) &&
                   visibility != kStvHidden && visibility != kStvInternal) {
          out.exported.insert(name);
        }
      }
    }
  }
  return out;
}

std::vector<fs::path> read_ld_so_cache(const fs::path& cache_file) {
  // glibc's "new" cache format (the only one glibc >= 2.32 writes, and the
  // second half of older combined caches): a header, then entries of
  // {int32 flags, uint32 key, uint32 value, uint32 osversion, uint64 hwcap}
  // whose key and value are offsets from the header to the name and path.
  std::ifstream in(cache_file, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  static constexpr std::string_view magic = "glibc-ld.so.cache1.1";
  const std::size_t start = data.find(magic);
  std::vector<fs::path> out;
  if (start == std::string::npos) return out;
  auto u32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    std::memcpy(&v, data.data() + at, sizeof v);  // the cache is in host byte order
    return v;
  };
  constexpr std::size_t header = 48, entry = 24;
  if (data.size() < start + header) return out;
  const std::uint32_t count = u32(start + 20);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t at = start + header + std::size_t(i) * entry;
    if (at + entry > data.size()) break;
    const std::size_t value = start + u32(at + 8);
    if (value >= data.size()) continue;
    out.emplace_back(std::string(data.c_str() + value));
  }
  return out;
}

namespace {

// The Debian/Ubuntu multiarch triplet for this machine's libraries.
std::string multiarch_triplet() {
  const std::string arch = host_arch();
  if (arch == "x86_64") return "x86_64-linux-gnu";
  if (arch == "aarch64") return "aarch64-linux-gnu";
  if (arch == "x86") return "i386-linux-gnu";
  if (arch == "arm") return "arm-linux-gnueabihf";
  if (arch == "riscv64") return "riscv64-linux-gnu";
  return {};
}

std::string expand_tokens(std::string dir, const fs::path& origin) {
  const std::string lib = multiarch_triplet().empty() ? "lib" : "lib/" + multiarch_triplet();
  const std::pair<const char*, std::string> tokens[] = {
      {"${ORIGIN}", origin.string()}, {"$ORIGIN", origin.string()}, {"${LIB}", lib}, {"$LIB", lib},
      {"${PLATFORM}", host_arch()},   {"$PLATFORM", host_arch()}};
  for (const auto& [token, value] : tokens) {
    for (std::size_t at = dir.find(token); at != std::string::npos;
         at = dir.find(token, at + value.size())) {
      dir.replace(at, std::strlen(token), value);
    }
  }
  return dir;
}

struct Node {
  fs::path path;
  ElfDynamic elf;
  int parent = -1;  // index of the object that needed it; -1 for the library itself
};

}  // namespace

LibrarySearch LibrarySearch::from_system() {
  LibrarySearch s;
  if (const char* env = std::getenv("LD_LIBRARY_PATH")) {
    for (const std::string& dir : split_path_list(env)) s.ld_library_path.emplace_back(dir);
  }
  s.cache = read_ld_so_cache("/etc/ld.so.cache");
  const std::string triplet = multiarch_triplet();
  if (!triplet.empty()) {
    s.default_dirs.push_back("/lib/" + triplet);
    s.default_dirs.push_back("/usr/lib/" + triplet);
  }
  for (const char* dir : {"/lib64", "/usr/lib64", "/lib", "/usr/lib"})
    s.default_dirs.push_back(dir);
  return s;
}

DependencyCheck check_dependencies(const fs::path& library, const LibrarySearch& search) {
  DependencyCheck out;
  auto root = read_elf_dynamic(library);
  if (!root) return out;
  const int bits = root->bits;
  const std::uint16_t machine = root->machine;
  std::vector<Node> nodes;
  nodes.push_back(Node{fs::absolute(library).lexically_normal(), std::move(*root), -1});

  // The loader skips files it cannot use (another class or machine) and
  // tries the next candidate.
  auto usable = [&](const fs::path& candidate) -> std::optional<ElfDynamic> {
    std::error_code ec;
    if (!fs::is_regular_file(candidate, ec)) return std::nullopt;
    auto elf = read_elf_dynamic(candidate);
    if (!elf || elf->bits != bits || elf->machine != machine) return std::nullopt;
    return elf;
  };

  std::map<std::string, bool> seen;  // needed name -> found; a name is loaded once
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::vector<std::string> needed = nodes[i].elf.needed;
    for (const std::string& name : needed) {
      if (seen.count(name) != 0) continue;
      std::vector<fs::path> candidates;
      if (name.find('/') != std::string::npos) {
        candidates.push_back(expand_tokens(name, nodes[i].path.parent_path()));
      } else {
        // DT_RPATH of the object and of those that loaded it, unless the
        // object has DT_RUNPATH; then LD_LIBRARY_PATH; then its DT_RUNPATH;
        // then the cache and the default directories (ld.so(8)).
        if (nodes[i].elf.runpath.empty()) {
          for (int n = int(i); n >= 0; n = nodes[std::size_t(n)].parent) {
            const Node& o = nodes[std::size_t(n)];
            if (!o.elf.runpath.empty()) continue;
            for (const std::string& dir : o.elf.rpath) {
              candidates.push_back(fs::path(expand_tokens(dir, o.path.parent_path())) / name);
            }
          }
        }
        for (const fs::path& dir : search.ld_library_path) candidates.push_back(dir / name);
        for (const std::string& dir : nodes[i].elf.runpath) {
          candidates.push_back(fs::path(expand_tokens(dir, nodes[i].path.parent_path())) / name);
        }
        for (const fs::path& p : search.cache) {
          if (p.filename() == name) candidates.push_back(p);
        }
        for (const fs::path& dir : search.default_dirs) candidates.push_back(dir / name);
      }
      bool found = false;
      for (const fs::path& candidate : candidates) {
        if (auto elf = usable(candidate)) {
          nodes.push_back(
              Node{fs::absolute(candidate).lexically_normal(), std::move(*elf), int(i)});
          found = true;
          break;
        }
      }
      seen[name] = found;
      if (!found) out.missing_libraries.push_back(name);
    }
  }

  for (const Node& n : nodes) out.closure.push_back(n.path);
  if (!out.missing_libraries.empty()) return out;
  std::set<std::string> reported;
  for (const std::string& symbol : nodes.front().elf.undefined) {
    bool defined = false;
    for (std::size_t i = 1; i < nodes.size() && !defined; ++i) {
      defined = nodes[i].elf.exported.count(symbol) != 0;
    }
    if (!defined && reported.insert(symbol).second) out.missing_symbols.push_back(symbol);
  }
  return out;
}

}  // namespace pyoco::plugins
