// write_file and read_file: files that belong to a run, kept as artifacts.
#include <fstream>
#include <sstream>

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
      {"name", "string", true, "file name within the run's artifact directory"},
      {"content", "any", true, "a string or bytes as is; any other value as JSON"},
      {"media_type", "string", false, "recorded with the artifact"}};
  static inline const std::vector<Io> outputs = {
      {"path", "string", false, "where the artifact was written"}};

  Value run(Context& ctx, const Inputs& in) override {
    const std::string file = in.require<std::string>("name");
    const Value content = in["content"];
    const std::string media = in.get<std::string>("media_type", "");
    std::string path;
    if (content.is_string()) {
      path = ctx.save_artifact(file, content.as<std::string_view>(),
                               media.empty() ? "text/plain" : media.c_str());
    } else if (content.is_bytes()) {
      const pyoco::BytesView b = content.as<pyoco::BytesView>();
      path = ctx.save_artifact(file, pyoco::Bytes{{b.data, b.data + b.size}},
                               media.empty() ? "application/octet-stream" : media.c_str());
    } else {
      path = ctx.save_artifact(file, content);
    }
    return path;
  }
};

struct ReadFile : pyoco::Task {
  static constexpr const char* name = "read_file";
  static constexpr const char* summary = "Reads a file, such as an artifact an earlier task wrote";
  static constexpr const char* usage =
      "load: {use: \"std/read_file\", inputs: {path: \"$node.save.output\"}}";
  static inline const std::vector<std::string> tags = {"files", "artifacts"};
  static inline const std::vector<Io> inputs = {
      {"path", "string", true, "the file to read"},
      {"as", "string", false, "\"string\" (default) or \"bytes\""}};
  static inline const std::vector<Io> outputs = {{"content", "any", false, "the file's content"}};

  Value run(Context&, const Inputs& in) override {
    const std::string path = in.require<std::string>("path");
    const std::string as = in.get<std::string>("as", "string");
    if (as != "string" && as != "bytes") {
      throw pyoco::Error("input 'as' must be \"string\" or \"bytes\", not \"" + as + "\"");
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) throw pyoco::Error("cannot read " + path);
    std::ostringstream data;
    data << file.rdbuf();
    const std::string text = data.str();
    if (as == "bytes") return pyoco::Bytes{{text.begin(), text.end()}};
    return text;
  }
};

}  // namespace

void register_file_tasks(pyoco::Registry& registry) { registry.add<WriteFile>().add<ReadFile>(); }

}  // namespace pyoco_std
