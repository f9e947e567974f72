// libFuzzer target: plugin.toml (plugins/manifest.hpp), parsed and then
// checked against the manifest's own lint rules, as `plugins list` and
// register_plugin do. Any input must be read or refused with a
// ManifestError; another exception, a crash, a sanitizer report, a hang or
// a blown memory limit is a bug.
#include <pyoco/plugins/lint.hpp>
#include <pyoco/plugins/manifest.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    // A directory that does not exist: the rules that look for the
    // library find nothing, and the fuzzer never reads real files.
    const auto m = pyoco::plugins::parse_manifest(text, "/nonexistent/pyoco-fuzz/plugin.toml");
    pyoco::plugins::check_manifest(m);
  } catch (const pyoco::plugins::ManifestError&) {
  }
  return 0;
}
