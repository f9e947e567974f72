// What a shared library needs from the machine, read from its ELF dynamic
// section and dynamic symbol table without loading it: the libraries it
// names (DT_NEEDED), where it asks the loader to look (DT_RUNPATH, DT_RPATH),
// the symbols it leaves undefined and the ones it exports.
//
// `check_dependencies` resolves the needed libraries the way the dynamic
// loader does and names every one that is missing and every undefined
// symbol that nothing in the resolved closure defines. It reads files only;
// no code of the library or its dependencies runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pyoco::plugins {

struct ElfDynamic {
  int bits = 0;  // 32 or 64
  bool little_endian = true;
  std::uint16_t machine = 0;  // e_machine
  std::vector<std::string> needed;
  std::vector<std::string> rpath;    // DT_RPATH entries, unexpanded
  std::vector<std::string> runpath;  // DT_RUNPATH entries, unexpanded
  // Global (not weak) undefined dynamic symbols, without version suffixes.
  std::vector<std::string> undefined;
  // Dynamic symbols this object defines and others may bind to.
  std::set<std::string> exported;
};

// Nullopt when the file is not a readable ELF object.
std::optional<ElfDynamic> read_elf_dynamic(const std::filesystem::path& file);

// Where the dynamic loader finds a library by name, besides RPATH/RUNPATH.
struct LibrarySearch {
  std::vector<std::filesystem::path> ld_library_path;  // LD_LIBRARY_PATH, in order
  std::vector<std::filesystem::path> cache;            // paths listed in /etc/ld.so.cache
  std::vector<std::filesystem::path> default_dirs;     // the loader's trusted directories

  // This process's environment, this machine's ld.so.cache and directories.
  static LibrarySearch from_system();
};

// Paths /etc/ld.so.cache (or another cache file) lists, in its order.
std::vector<std::filesystem::path> read_ld_so_cache(const std::filesystem::path& cache_file);

struct DependencyCheck {
  std::vector<std::string> missing_libraries;  // DT_NEEDED names not found, first seen first
  std::vector<std::string> missing_symbols;    // undefined and not defined by any dependency
  // Every library the closure resolved to, the library itself first.
  std::vector<std::filesystem::path> closure;
};

// Resolves `library`'s dependency closure and checks its undefined symbols
// against it. Symbols are only checked when every library was found: a
// missing library's symbols would all be reported missing too.
DependencyCheck check_dependencies(const std::filesystem::path& library,
                                   const LibrarySearch& search);

}  // namespace pyoco::plugins
