// `pyoco plugins pack`: a built plugin as one package file, what
// `pyoco plugins push` ships to a cluster (docs/cluster.md, "Shipping
// plugins to workers").
#include <pyoco/core/regular_file.hpp>
#include <pyoco/plugins/package.hpp>

#include <boost/json.hpp>

#include <iostream>
#include <memory>

#include "app.hpp"
#include "command.hpp"

namespace pyoco::cli {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

struct PackArgs {
  std::string dir;
  std::string out = ".";
  bool json = false;
};

int run_pack(const PackArgs& a) {
  try {
    const plugins::PluginPackage p = plugins::pack_plugin(a.dir);
    fs::create_directories(a.out);
    const fs::path file = fs::path(a.out) / p.file_name();
    core::replace_file(file, p.bytes);  // a stopped pack leaves no half package
    if (a.json) {
      std::cout << json::serialize(json::object{{"file", file.string()},
                                                {"name", p.manifest.name},
                                                {"version", p.manifest.version},
                                                {"platform", p.platform()},
                                                {"sha256", p.sha256},
                                                {"size", p.bytes.size()}})
                << '\n';
    } else {
      std::cout << file.string() << '\n';
      std::cerr << "pyoco plugins pack: " << p.manifest.name << " " << p.manifest.version << " for "
                << p.platform() << ", " << p.bytes.size() << " bytes, sha256 " << p.sha256 << "\n";
    }
    return kExitOk;
  } catch (const std::exception& e) {
    // A manifest or library refused, or a file that cannot be written.
    std::cerr << "pyoco plugins pack: " << e.what() << '\n';
    return kExitUsage;
  }
}

}  // namespace

void add_plugin_pack_command(CLI::App* plugins, CommandTable& table) {
  auto a = std::make_shared<PackArgs>();
  CLI::App* pack = plugins->add_subcommand(
      "pack", "Make a package of a built plugin (plugin.toml, library, SHA256SUMS) to push");
  pack->add_option("dir", a->dir, "The plugin's directory (its plugin.toml and library)")
      ->required();
  pack->add_option("--out", a->out, "Where to write <name>-<version>-<platform>.pyoco (default .)")
      ->type_name("DIR");
  pack->add_flag("--json", a->json, "One JSON object: file, name, version, platform, sha256, size");
  table.add(pack, [a] { return run_pack(*a); });
}

}  // namespace pyoco::cli
