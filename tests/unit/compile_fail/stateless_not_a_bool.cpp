// Must not compile: `stateless` is declared as something other than a
// static constexpr bool (a string here), which would otherwise read as true.
// The SDK refuses it with a message that says how to declare it
// (tests/unit/CMakeLists.txt checks the message).
#include <pyoco/sdk.hpp>

struct Careless : pyoco::Task {
  static constexpr const char* name = "careless";
  static constexpr const char* stateless = "no";
  pyoco::Value run(pyoco::Context&, const pyoco::Inputs&) override { return {}; }
};

void register_tasks(pyoco::Registry& registry) { registry.add<Careless>(); }
