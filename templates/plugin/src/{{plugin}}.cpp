// The {{plugin}} plugin: its tasks and the function that registers them.
#include <pyoco/sdk.hpp>

#include <string>
#include <vector>

namespace {
{{#tasks}}

// {{task}}: greets `who`. Replace the body with the real work. The
// metadata below is what `pyoco tasks`, `pyoco check` and the build's
// plugin.toml say about the task: it is written here and nowhere else.
struct {{Task}} : pyoco::Task {
  static constexpr const char* name = "{{task}}";
  static constexpr const char* summary = "Greets someone";
  static constexpr const char* usage = "{{task}}: {use: \"{{plugin}}/{{task}}\", inputs: {who: \"world\"}}";
  static inline const std::vector<std::string> tags = {"example"};
  static inline const std::vector<pyoco::Io> inputs = {{"who", "string", true, "whom to greet"}};
  static inline const std::vector<pyoco::Io> outputs = {
      {"greeting", "string", false, "the greeting"}};

  pyoco::Value run(pyoco::Context& ctx, const pyoco::Inputs& in) override {
    const std::string greeting = "hello " + in.require<std::string>("who") + " from {{task}}";
    ctx.info(greeting);
    return greeting;
  }
};
{{/tasks}}
}  // namespace

void register_tasks(pyoco::Registry& registry) {
  // One line per task; the build writes plugin.toml's [[tasks]] from them.
{{#tasks}}  registry.add<{{Task}}>();
{{/tasks}}}

PYOCO_PLUGIN(register_tasks)
