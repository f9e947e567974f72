// Plugin packages: what `pyoco plugins pack` makes and what a gateway and
// a worker accept. Made from the built hello plugin; damaged copies made
// here byte by byte, as an attacker or a bad disk would.
#include <pyoco/core/semver.hpp>
#include <pyoco/plugins/package.hpp>

#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include "process.hpp"
#include "temp_dir.hpp"

using namespace pyoco;
using namespace pyoco::testing;
namespace fs = std::filesystem;

namespace {

fs::path hello_dir() { return binary_dir() / "lib/pyoco/plugins/hello"; }

std::string error_of(const std::string& bytes) {
  try {
    plugins::open_package(bytes);
  } catch (const plugins::PackageError& e) {
    return e.what();
  }
  return "";
}

// A tar header's checksum, recomputed after a test changed the header.
void reseal(std::string& tar, std::size_t header) {
  std::memset(&tar[header + 148], ' ', 8);
  unsigned sum = 0;
  for (std::size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>(tar[header + i]);
  std::snprintf(&tar[header + 148], 8, "%06o", sum);
  tar[header + 155] = ' ';
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_packed_plugin_opens_and_unpacks_whole) {
  const plugins::PluginPackage p = plugins::pack_plugin(hello_dir());
  BOOST_TEST(p.manifest.name == "hello");
  BOOST_TEST(p.platform() == plugins::host_os() + "-" + plugins::host_arch() + "-abi1");
  BOOST_TEST(p.file_name() == "hello-" + p.manifest.version + "-" + p.platform() + ".pyoco");
  BOOST_TEST(p.files.size() == 3u);  // plugin.toml, the library, SHA256SUMS
  BOOST_TEST(p.sha256 == plugins::sha256_hex(p.bytes));
  // The same plugin packs to the same bytes.
  BOOST_TEST(plugins::pack_plugin(hello_dir()).sha256 == p.sha256);
  const plugins::PluginPackage again = plugins::open_package(p.bytes);
  BOOST_TEST(again.manifest.library == p.manifest.library);

  TempDir dir;
  plugins::unpack_package(p, dir.path() / "hello");
  BOOST_TEST(fs::exists(dir.path() / "hello/plugin.toml"));
  BOOST_TEST(read_text(dir.path() / "hello/SHA256SUMS").find(p.manifest.library) !=
             std::string::npos);
  struct stat st {};
  BOOST_REQUIRE(::stat((dir.path() / "hello" / p.manifest.library).c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0755u);
  BOOST_TEST(plugins::read_manifest(dir.path() / "hello").name == "hello");
  // Nothing left of the staging directory; an existing one is never written over.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  BOOST_TEST(entries == 1u);
  BOOST_CHECK_THROW(plugins::unpack_package(p, dir.path() / "hello"), plugins::PackageError);
}

BOOST_AUTO_TEST_CASE(a_damaged_or_hostile_package_is_refused_and_says_why) {
  const std::string good = plugins::pack_plugin(hello_dir()).bytes;

  std::string flipped = good;  // a byte of the library (the second file) changed
  const std::size_t library_data =
      512 + ((read_text(hello_dir() / "plugin.toml").size() + 511) / 512 * 512) + 512 + 100;
  flipped[library_data] ^= 0x01;
  BOOST_TEST(error_of(flipped).find("does not match its checksum") != std::string::npos,
             error_of(flipped));

  std::string link = good;  // the first entry made a symbolic link
  link[156] = '2';
  reseal(link, 0);
  BOOST_TEST(error_of(link).find("not a regular file") != std::string::npos, error_of(link));

  std::string path = good;  // ../plugin.toml
  path.replace(0, 14, "../plugin.toml");
  reseal(path, 0);
  BOOST_TEST(error_of(path).find("only flat file names") != std::string::npos, error_of(path));

  std::string header = good;  // a header damaged without resealing
  header[0] = 'X';
  BOOST_TEST(error_of(header).find("checksum does not match") != std::string::npos);

  BOOST_TEST(error_of("hello").find("ends early") != std::string::npos);
  BOOST_TEST(error_of(good.substr(0, good.size() / 2)).find("plugin package") != std::string::npos);
  BOOST_CHECK_THROW(plugins::open_package(good, 1024), plugins::PackageError);  // too big
}

BOOST_AUTO_TEST_CASE(versions_are_ordered_as_semver_says) {
  using core::compare_versions;
  BOOST_TEST(compare_versions("1.10.0", "1.9.0") > 0);
  BOOST_TEST(compare_versions("2.0.0", "1.99.99") > 0);
  BOOST_TEST(compare_versions("1.2.3", "1.2.3") == 0);
  BOOST_TEST(compare_versions("1.2.3-rc.1", "1.2.3") < 0);
  BOOST_TEST(compare_versions("1.2.3-rc.2", "1.2.3-rc.10") < 0);
  BOOST_TEST(compare_versions("1.2.3-alpha", "1.2.3-1") > 0);  // text after numbers
  BOOST_TEST(compare_versions("1.2.3+build.5", "1.2.3") == 0);
}

BOOST_AUTO_TEST_CASE(only_a_regular_file_of_a_package_s_size_is_read) {
  TempDir dir;
  const fs::path fifo = dir.path() / "package.pyoco";
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto error_reading = [](const fs::path& file) -> std::string {
    try {
      plugins::read_package(file);
    } catch (const plugins::PackageError& e) {
      return e.what();
    }
    return "";
  };
  BOOST_TEST(error_reading(fifo).find("not a regular file") != std::string::npos);  // no hang
  BOOST_TEST(error_reading("/dev/zero").find("not a regular file") != std::string::npos);
  BOOST_TEST(error_reading(dir.path() / "missing.pyoco").find("no such file") != std::string::npos);
  const plugins::PluginPackage p = plugins::pack_plugin(hello_dir());
  write_text(dir.path() / "hello.pyoco", p.bytes);
  BOOST_TEST(plugins::read_package(dir.path() / "hello.pyoco").sha256 == p.sha256);
}
