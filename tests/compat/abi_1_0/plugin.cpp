// compat10: a plugin built against the first released ABI 1.0 headers
// (tests/compat/abi_1_0/include, frozen), using only the SDK API of that
// release. tests/integration/abi_compat_test.cpp runs it under the current
// host: whatever the host's ABI minor, this plugin must keep working.
#include <pyoco/sdk.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

// Built against the frozen copy, never the current sdk/include: 1.0 had no
// testing.hpp, and its ABI minor was 0.
#if __has_include(<pyoco/testing.hpp>)
#error "compat10 must see only tests/compat/abi_1_0/include, not the current sdk/include"
#endif
static_assert(PYOCO_ABI_VERSION_MAJOR == 1 && PYOCO_ABI_VERSION_MINOR == 0,
              "compat10 is built against the ABI 1.0 headers");

namespace {

// (a) Inputs in, a computed object out: an int array, a string, an object's
// members; call info and params read through the context.
struct Compute : pyoco::Task {
  static constexpr const char* name = "compute";
  static constexpr const char* summary =
      "Sums and doubles numbers, echoes a label, lists an object's keys";
  static constexpr const char* usage =
      "c: {use: \"compat10/compute\", inputs: {numbers: [1, 2], label: \"x\", tags: {a: 1}}}";
  static inline const std::vector<pyoco::Io> inputs = {
      {"numbers", "array", true, "ints"},
      {"label", "string", true, "any text"},
      {"tags", "object", false, "its keys are listed in order"}};
  static inline const std::vector<pyoco::Io> outputs = {
      {"result", "object", false, "sum, count, mean, doubled, ..."}};

  pyoco::Value run(pyoco::Context& ctx, const pyoco::Inputs& in) override {
    const pyoco::Value numbers = in.require<pyoco::Value>("numbers");
    if (!numbers.is_array()) throw pyoco::Error("input 'numbers' must be an array");
    std::int64_t sum = 0;
    pyoco::Value doubled = pyoco::Value::array();
    for (pyoco::Value n : numbers.items()) {
      const auto i = n.as<std::int64_t>();
      sum += i;
      doubled.push(i * 2);
    }
    pyoco::Value keys = pyoco::Value::array();
    for (auto [key, value] : in["tags"].members()) keys.push(key);
    const std::size_t count = numbers.size();
    const double mean = count == 0 ? 0.0 : static_cast<double>(sum) / static_cast<double>(count);
    return {{"label", in.require<std::string>("label") + "!"},
            {"count", count},
            {"sum", sum},
            {"mean", mean},
            {"doubled", doubled},
            {"keys", keys},
            {"greeting", ctx.param("greeting").get_or<std::string>("none")},
            {"node", ctx.node_name()},
            {"task", ctx.task_name()},
            {"attempt", ctx.attempt()},
            {"flag", true},
            {"nothing", nullptr}};
  }
};

// (a) An array out, built from the input's own elements (passed through).
pyoco::Value reverse(pyoco::Context&, const pyoco::Inputs& in) {
  const pyoco::Value items = in.require<pyoco::Value>("items");
  pyoco::Value out = pyoco::Value::array();
  for (std::size_t i = items.size(); i > 0; --i) out.push(items[i - 1]);
  return out;
}

// (b) Log lines.
pyoco::Value log_lines(pyoco::Context& ctx, const pyoco::Inputs& in) {
  ctx.info("compat10 greets " + in.require<std::string>("who"));
  ctx.warn("compat10 warns");
  return "logged";
}

// (c) Scratch, written by one node and read by a later one.
pyoco::Value scratch_write(pyoco::Context& ctx, const pyoco::Inputs& in) {
  ctx.set_scratch(in.require<std::string>("key"), in["value"]);
  return {};
}

pyoco::Value scratch_read(pyoco::Context& ctx, const pyoco::Inputs& in) {
  return {{"value", ctx.scratch(in.require<std::string>("key"))},
          {"missing_is_null", ctx.scratch("compat10_never_set").is_null()}};
}

// (d) Artifacts: text, and bytes.
pyoco::Value save(pyoco::Context& ctx, const pyoco::Inputs& in) {
  // string_view, not std::string: in 1.0 a std::string text is ambiguous
  // between the text and the Value overloads.
  const std::string text_path =
      ctx.save_artifact(in.require<std::string_view>("name"), in.require<std::string_view>("text"));
  pyoco::Bytes blob;
  for (int i = 0; i < 256; ++i) blob.data.push_back(static_cast<std::uint8_t>(i));
  const std::string blob_path = ctx.save_artifact(in.require<std::string>("blob"), blob);
  return {{"text_path", text_path}, {"blob_path", blob_path}};
}

// (e) Cooperative cancellation: polls until cancelled (or gives up, so that
// a host that never says "cancelled" fails the test instead of hanging it).
// Once cancelled it writes `marker`: proof, whatever the engine does with a
// cancelled node's result, that is_cancelled() reached this plugin.
pyoco::Value wait_cancel(pyoco::Context& ctx, const pyoco::Inputs& in) {
  const std::string marker = in.get<std::string>("marker", "");
  ctx.info("compat10 waiting for cancel");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::int64_t polls = 0;
  while (!ctx.is_cancelled()) {
    if (std::chrono::steady_clock::now() > give_up) throw pyoco::Error("never cancelled");
    ++polls;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!marker.empty()) {
    std::ofstream(marker + ".tmp") << "cancelled after " << polls << " polls\n";
    std::rename((marker + ".tmp").c_str(), marker.c_str());  // appears whole
  }
  return {{"cancelled", true}, {"polls", polls}};
}

// (f) Failure with a message.
pyoco::Value fail(pyoco::Context&, const pyoco::Inputs& in) {
  throw pyoco::Error(in.require<std::string>("message"));
}

pyoco::TaskInfo info(const char* summary, std::vector<pyoco::Io> inputs,
                     std::vector<pyoco::Io> outputs) {
  pyoco::TaskInfo i;
  i.summary = summary;
  i.usage = "see plugin.toml";
  i.inputs = std::move(inputs);
  i.outputs = std::move(outputs);
  return i;
}

void register_tasks(pyoco::Registry& registry) {
  registry.add<Compute>();
  registry.task("reverse", reverse,
                info("Returns its items in reverse order", {{"items", "array", true, "anything"}},
                     {{"items", "array", false, "the same, reversed"}}));
  registry.task("log", log_lines,
                info("Logs a greeting and a warning", {{"who", "string", true, "whom to greet"}},
                     {{"value", "string", false, "\"logged\""}}));
  registry.task("scratch_write", scratch_write,
                info("Stores a value in the run's scratch space",
                     {{"key", "string", true, "scratch key"}, {"value", "any", true, "what"}},
                     {{"value", "null", false, "nothing"}}));
  registry.task(
      "scratch_read", scratch_read,
      info("Reads a value from the run's scratch space", {{"key", "string", true, "scratch key"}},
           {{"result", "object", false, "{value, missing_is_null}"}}));
  registry.task("save", save,
                info("Saves a text artifact and a bytes artifact",
                     {{"name", "string", true, "text artifact name"},
                      {"text", "string", true, "its content"},
                      {"blob", "string", true, "bytes artifact name"}},
                     {{"result", "object", false, "{text_path, blob_path}"}}));
  registry.task("wait_cancel", wait_cancel,
                info("Polls is_cancelled until the run is cancelled",
                     {{"marker", "string", false, "a file to write once cancelled"}},
                     {{"result", "object", false, "{cancelled, polls}"}}));
  registry.task("fail", fail,
                info("Fails with the given message", {{"message", "string", true, "the error"}},
                     {{"value", "null", false, "never"}}));
}

}  // namespace

PYOCO_PLUGIN(register_tasks)
