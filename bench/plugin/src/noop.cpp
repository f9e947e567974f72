// The bench plugin: one task whose body does nothing, so a benchmark that
// runs it times only the engine around the call.
#include <pyoco/sdk.hpp>

namespace {

struct Noop : pyoco::Task {
  static constexpr const char* name = "noop";
  static constexpr const char* summary = "Does nothing and returns null";
  static constexpr const char* usage = "n1: {use: \"bench/noop\"}";
  static inline const std::vector<std::string> tags = {"bench"};
  static constexpr bool stateless = true;  // no instance per node: see the SDK's Task

  pyoco::Value run(pyoco::Context&, const pyoco::Inputs&) override { return {}; }
};

}  // namespace

void register_tasks(pyoco::Registry& registry) { registry.add<Noop>(); }
PYOCO_PLUGIN(register_tasks)
