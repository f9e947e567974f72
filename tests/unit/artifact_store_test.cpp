// The local artifact store: names stay inside the run, a put replaces
// whole, a get gives back exactly what was put.
#include <pyoco/engine/local_artifact_store.hpp>

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using pyoco::LocalArtifactStore;
using pyoco::core::ArtifactError;
using pyoco::core::check_artifact_name;

BOOST_AUTO_TEST_CASE(names_a_store_keeps_and_names_it_refuses) {
  for (const char* ok :
       {"report.json", "plots/a.png", "a b/c-d_e.txt", "héllo.txt", ".hidden", "x/.y/z"}) {
    BOOST_CHECK_NO_THROW(check_artifact_name(ok));
  }
  const std::vector<std::string> refused = {"",          "/etc/passwd", "../up.txt",
                                            "a/../../b", "./a",         "a//b",
                                            "a/",        "a\\b",        std::string("nul\0x", 5),
                                            "tab\there", "line\nbreak", std::string(256, 'x')};
  for (const std::string& bad : refused) {
    BOOST_CHECK_THROW(check_artifact_name(bad), ArtifactError);
  }
  BOOST_CHECK_NO_THROW(check_artifact_name(std::string(255, 'x')));
}

BOOST_AUTO_TEST_CASE(put_then_get_gives_the_same_bytes_and_a_full_record) {
  pyoco::testing::TempDir dir;
  LocalArtifactStore store(dir.path() / "artifacts");
  const std::string bytes("\0\x01\xffzero", 7);
  const auto r = store.put("run-1", "out/data.bin", bytes, "");
  BOOST_TEST(r.name == "out/data.bin");
  BOOST_TEST(r.path == (dir.path() / "artifacts/run-1/out/data.bin").string());
  BOOST_TEST(r.size == 7u);
  BOOST_TEST(r.media_type == "application/octet-stream");
  BOOST_TEST(r.sha256.size() == 64u);
  BOOST_TEST(store.get("run-1", "out/data.bin").value() == bytes);
  // Runs do not see each other's artifacts.
  BOOST_TEST(!store.get("run-2", "out/data.bin").has_value());
  BOOST_TEST(!store.get("run-1", "other.bin").has_value());
  BOOST_TEST(store.put("run-1", "r.json", "{}", "").media_type == "application/json");
  BOOST_TEST(store.put("run-1", "r.json", "{}", "text/x-mine").media_type == "text/x-mine");
  // The longest name a file may have (255 bytes) is saved: its temporary
  // file's name does not hold it.
  const std::string longest(255, 'n');
  BOOST_TEST(store.put("run-1", longest, "x", "").size == 1u);
  const std::string nested = "d/" + std::string(253, 'n');  // 255 bytes in all
  BOOST_TEST(store.put("run-1", nested, "y", "").size == 1u);
  BOOST_TEST(store.get("run-1", nested).value() == "y");
}

BOOST_AUTO_TEST_CASE(a_put_replaces_the_artifact_whole_and_leaves_no_temporary_file) {
  pyoco::testing::TempDir dir;
  LocalArtifactStore store(dir.path());
  store.put("r", "a.txt", std::string(1 << 20, 'a'), "");
  // Readers racing a replacement see either all of the old bytes or all of
  // the new, never a mix or a short file.
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::thread reader([&] {
    while (!done) {
      const std::string now = store.get("r", "a.txt").value_or("");
      if (now != std::string(1 << 20, 'a') && now != std::string(1 << 20, 'b')) ++torn;
    }
  });
  for (int i = 0; i < 20; ++i) store.put("r", "a.txt", std::string(1 << 20, i % 2 ? 'a' : 'b'), "");
  done = true;
  reader.join();
  BOOST_TEST(torn.load() == 0);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path() / "r")) {
    files.push_back(e.path().filename().string());
  }
  BOOST_TEST(files == std::vector<std::string>{"a.txt"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(refuses_what_would_leave_the_run_and_says_why) {
  pyoco::testing::TempDir dir;
  LocalArtifactStore store(dir.path() / "artifacts");
  try {
    store.put("run-1", "../../escape.txt", "x", "");
    BOOST_FAIL("a name with '..' was accepted");
  } catch (const ArtifactError& e) {
    BOOST_TEST(std::string(e.what()) ==
               "artifact name '../../escape.txt' must stay inside the run: no '.' or '..' parts");
  }
  BOOST_CHECK_THROW(store.put("../run", "a.txt", "x", ""), ArtifactError);
  BOOST_CHECK_THROW(store.get("run-1", "/etc/passwd"), ArtifactError);
  BOOST_TEST(!fs::exists(dir.path() / "escape.txt"));
  // A name that is a directory already (a/b saved, then a) is refused, not
  // a crash or a silently lost directory.
  store.put("run-1", "a/b.txt", "x", "");
  BOOST_CHECK_THROW(store.put("run-1", "a", "y", ""), ArtifactError);
  BOOST_TEST(store.get("run-1", "a/b.txt").value() == "x");
}

BOOST_AUTO_TEST_CASE(a_store_that_cannot_write_says_where_and_why) {
  pyoco::testing::TempDir dir;
  // The root is a file: nothing can be created under it.
  std::ofstream(dir.path() / "file") << "x";
  LocalArtifactStore store(dir.path() / "file");
  try {
    store.put("run-1", "a.txt", "x", "");
    BOOST_FAIL("a put under a file succeeded");
  } catch (const ArtifactError& e) {
    BOOST_TEST(std::string(e.what()).find((dir.path() / "file").string()) != std::string::npos,
               e.what());
  }
}

// A symbolic link under the run's directory, to a directory outside it,
// was followed: the artifact was written wherever it pointed. No link is
// followed below the root, neither to write nor to read.
BOOST_AUTO_TEST_CASE(a_symbolic_link_under_the_run_is_refused_not_followed) {
  pyoco::testing::TempDir dir;
  const std::filesystem::path outside = dir.path() / "outside";
  std::filesystem::create_directories(outside);
  std::filesystem::create_directories(dir.path() / "root/run-1");
  std::filesystem::create_directory_symlink(outside, dir.path() / "root/run-1/sub");
  std::filesystem::create_directory_symlink(outside, dir.path() / "root/run-2");
  std::ofstream(outside / "secret.txt") << "outside";
  LocalArtifactStore store(dir.path() / "root");
  for (const auto& [run, name] : {std::pair<std::string, std::string>{"run-1", "sub/a.txt"},
                                  {"run-1", "sub/deeper/a.txt"},
                                  {"run-2", "a.txt"}}) {
    BOOST_TEST_CONTEXT(run << "/" << name) {
      try {
        store.put(run, name, "x", "");
        BOOST_ERROR("wrote through a symbolic link");
      } catch (const ArtifactError& e) {
        BOOST_TEST(std::string(e.what()).find("is a symbolic link") != std::string::npos, e.what());
      }
    }
  }
  BOOST_TEST(!std::filesystem::exists(outside / "a.txt"));
  BOOST_TEST(!std::filesystem::exists(outside / "deeper"));
  BOOST_CHECK_THROW(store.get("run-1", "sub/secret.txt"), ArtifactError);
  BOOST_CHECK_THROW(store.get("run-2", "secret.txt"), ArtifactError);
  // A link as the artifact itself is not read, and replaced, not written through.
  std::filesystem::create_symlink(outside / "secret.txt", dir.path() / "root/run-1/b.txt");
  BOOST_CHECK_THROW(store.get("run-1", "b.txt"), ArtifactError);
  store.put("run-1", "b.txt", "mine", "");
  BOOST_TEST(store.get("run-1", "b.txt").value() == "mine");
  std::ifstream in(outside / "secret.txt");
  std::string kept;
  std::getline(in, kept);
  BOOST_TEST(kept == "outside");
  // The root itself may be a link: the user chose it.
  std::filesystem::create_directory_symlink(dir.path() / "root", dir.path() / "root-link");
  LocalArtifactStore linked(dir.path() / "root-link");
  linked.put("run-3", "c/d.txt", "y", "");
  BOOST_TEST(linked.get("run-3", "c/d.txt").value() == "y");
}
