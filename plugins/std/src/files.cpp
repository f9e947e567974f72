// write_file and read_file: files that belong to a run, kept as artifacts in
// the run's artifact store (which may not be on this machine).
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tasks.hpp"

namespace pyoco_std {
namespace {

using pyoco::Context;
using pyoco::Inputs;
using pyoco::Io;
using pyoco::Value;

struct WriteFile : pyoco::Task {
  static constexpr const char* name = "write_file";
  static constexpr const char* summary = "Saves `content` as an artifact of the run";
  static constexpr const char* usage =
      "save: {use: \"std/write_file\", inputs: {name: \"report.json\", content: "
      "\"$node.build.output\"}}";
  static inline const std::vector<std::string> tags = {"files", "artifacts"};
  static inline const std::vector<Io> inputs = {
      {"name", "string", true,
       "the artifact's name within the run: \"report.json\", \"plots/a.png\""},
      {"content", "any", true, "a string or bytes as is; any other value as JSON"},
      {"media_type", "string", false, "recorded with the artifact"}};
  static inline const std::vector<Io> outputs = {
      {"artifact", "string", false, "the artifact's name, for std/read_file's `artifact` input"}};

  static constexpr bool stateless = true;  // one instance for every call

  Value run(Context& ctx, const Inputs& in) override {
    const std::string file = in.require<std::string>("name");
    const Value content = in["content"];
    const std::string media = in.get<std::string>("media_type", "");
    if (content.is_string()) {
      return ctx.save_artifact(file, content.as<std::string_view>(),
                               media.empty() ? "text/plain" : media.c_str());
    }
    if (content.is_bytes()) {
      const pyoco::BytesView b = content.as<pyoco::BytesView>();
      return ctx.save_artifact(file, pyoco::Bytes{{b.data, b.data + b.size}},
                               media.empty() ? "application/octet-stream" : media.c_str());
    }
    return ctx.save_artifact(file, content);
  }
};

struct ReadFile : pyoco::Task {
  static constexpr const char* name = "read_file";
  static constexpr const char* summary =
      "Reads an artifact an earlier task of the run saved, or a file";
  static constexpr const char* usage =
      "load: {use: \"std/read_file\", inputs: {artifact: \"$node.save.output\"}}";
  static inline const std::vector<std::string> tags = {"files", "artifacts"};
  static inline const std::vector<Io> inputs = {
      {"artifact", "string", false, "an artifact of this run, by name (std/write_file's output)"},
      {"path", "string", false, "a regular file on the machine the task runs on"},
      {"as", "string", false, "\"string\" (default) or \"bytes\""},
      {"max_bytes", "int", false,
       "a file larger fails the task (default 16 MiB: the content is held in memory and "
       "passed on as a value)"}};
  static inline const std::vector<Io> outputs = {{"content", "any", false, "the file's content"}};

  static constexpr bool stateless = true;  // one instance for every call

  Value run(Context& ctx, const Inputs& in) override {
    const std::string as = in.get<std::string>("as", "string");
    if (as != "string" && as != "bytes") {
      throw pyoco::Error("input 'as' must be \"string\" or \"bytes\", not \"" + as + "\"");
    }
    const bool artifact = !in["artifact"].is_null();
    if (artifact == !in["path"].is_null()) {
      throw pyoco::Error(
          "give exactly one of the inputs 'artifact' (an artifact of this run, by name) and "
          "'path' (a file)");
    }
    const std::int64_t limit = in.get<std::int64_t>("max_bytes", std::int64_t{16} << 20);
    if (limit < 0 || limit > (std::int64_t{1} << 32)) {
      throw pyoco::PermanentError("input 'max_bytes' must be from 0 to 4294967296 (4 GiB), not " +
                                  std::to_string(limit));
    }
    std::string text;
    if (artifact) {
      text = ctx.load_artifact(in.require<std::string>("artifact"));
    } else {
      const std::string path = in.require<std::string>("path");
      // A FIFO or a device would block this worker or never end: only
      // regular files (a missing one is reported below).
      std::error_code ec;
      const auto kind = std::filesystem::status(path, ec).type();
      if (!ec && kind != std::filesystem::file_type::regular) {
        throw pyoco::Error("cannot read " + path + ": not a regular file");
      }
      std::ifstream file(path, std::ios::binary);
      if (!file) {
        // Why: errno of the failed open (no such file, permission denied).
        const int err = errno;
        throw pyoco::Error("cannot read " + path + ": " +
                           (ec ? ec.message() : std::string(std::strerror(err != 0 ? err : EIO))) +
                           (path.find('/') == std::string::npos
                                ? " (an artifact std/write_file saved is read with input "
                                  "'artifact', not 'path')"
                                : ""));
      }
      // Read no further than the limit: the file may be larger than its
      // size said a moment ago (it is still being written), or endless.
      char chunk[64 * 1024];
      while (file.read(chunk, sizeof chunk) || file.gcount() > 0) {
        text.append(chunk, static_cast<std::size_t>(file.gcount()));
        if (text.size() > static_cast<std::size_t>(limit)) {
          throw pyoco::PermanentError("cannot read " + path + ": it is over max_bytes (" +
                                      std::to_string(limit) +
                                      " bytes); raise input 'max_bytes' to read it");
        }
      }
    }
    if (as == "bytes") return pyoco::Bytes{{text.begin(), text.end()}};
    return text;
  }
};

}  // namespace

void register_file_tasks(pyoco::Registry& registry) { registry.add<WriteFile>().add<ReadFile>(); }

}  // namespace pyoco_std
