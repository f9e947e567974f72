// libFuzzer target: the expression language of flow files
// (core/expression.hpp), parsed, its paths listed, and evaluated against
// params, results, scratch, loop and env that hold one value of each kind,
// including the integers at the ends of the range. Any input must parse
// and evaluate or be refused with a FlowError; anything else is a bug.
#include <pyoco/core/expression.hpp>

#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

using namespace pyoco::core;

const Value& world() {
  static const Value v = from_json(boost::json::parse(R"({
    "n": 3, "zero": 0, "one": 1, "minus_one": -1, "half": 0.5, "nan_like": 1e308,
    "max": 9223372036854775807, "min": -9223372036854775808,
    "s": "carrot", "empty": "", "flag": true, "nothing": null,
    "list": [1, 2.5, "x", null, true, [1], {"a": 1}], "none": [],
    "obj": {"a": 1, "b": {"c": "deep"}, "list": [3, 4]}
  })"));
  return v;
}

class World : public Expression::Scope {
 public:
  std::optional<Value> lookup(PathRoot root, std::string_view name,
                              std::string& why) const override {
    Value v = world();
    if (root == PathRoot::Loop) v = v.find("obj");  // a different tree for one root
    if (name.empty()) return v;
    if (!v.contains(name)) {
      why = "absent";
      return std::nullopt;
    }
    return v.find(name);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const Expression e = Expression::parse(text, SourceLocation{"fuzz/flow.yaml", 4, 12});
    e.paths();
    truthy(e.evaluate(World()));
  } catch (const FlowError&) {
  }
  return 0;
}
