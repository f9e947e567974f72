// The seed example's three tasks, as a pyoco plugin.
#include <pyoco/sdk.hpp>

#include <algorithm>
#include <cctype>
#include <string>

namespace {

struct FetchData : pyoco::Task {
  static constexpr const char* name = "fetch_data";
  static constexpr const char* summary = "Returns the record {id: 1, value: \"carrot\"}";
  static constexpr const char* usage = "fetch_data: {use: \"hello/fetch_data\"}";
  static inline const std::vector<std::string> tags = {"example"};
  static inline const std::vector<pyoco::Io> outputs = {{"record", "object", false, "{id, value}"}};

  pyoco::Value run(pyoco::Context& ctx, const pyoco::Inputs&) override {
    ctx.info("🐰 Fetching data...");
    return {{"id", 1}, {"value", "carrot"}};
  }
};

struct ProcessData : pyoco::Task {
  static constexpr const char* name = "process_data";
  static constexpr const char* summary = "Upper-cases the record's value";
  static constexpr const char* usage =
      "process_data: {use: \"hello/process_data\", inputs: {data: \"$node.fetch_data.output\"}}";
  static inline const std::vector<std::string> tags = {"example"};
  static inline const std::vector<pyoco::Io> inputs = {
      {"data", "object", true, "a record with a string `value`"}};
  static inline const std::vector<pyoco::Io> outputs = {
      {"value", "string", false, "the value, upper-cased"}};

  pyoco::Value run(pyoco::Context& ctx, const pyoco::Inputs& in) override {
    std::string value = in.require<pyoco::Value>("data")["value"].as<std::string>();
    ctx.info("🥕 Processing: " + value);
    std::transform(value.begin(), value.end(), value.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return value;
  }
};

struct SaveResult : pyoco::Task {
  static constexpr const char* name = "save_result";
  static constexpr const char* summary = "Reports the result it was given as saved";
  static constexpr const char* usage =
      "save_result: {use: \"hello/save_result\", inputs: {result: \"$node.process_data.output\"}}";
  static inline const std::vector<std::string> tags = {"example"};
  static inline const std::vector<pyoco::Io> inputs = {{"result", "string", true, "what to save"}};
  static inline const std::vector<pyoco::Io> outputs = {
      {"saved", "string", false, "the saved result"}};

  pyoco::Value run(pyoco::Context& ctx, const pyoco::Inputs& in) override {
    std::string result = in.require<std::string>("result");
    ctx.info("✨ Saved: " + result);
    return result;
  }
};

}  // namespace

void register_tasks(pyoco::Registry& registry) {
  registry.add<FetchData>().add<ProcessData>().add<SaveResult>();
}
PYOCO_PLUGIN(register_tasks)
