// The four DAG shapes the engine benchmarks run, described once so that
// pyoco and oneTBB run the identical graph: node i's successors, nodes named
// n<i>, and how pyoco's graph DSL writes the shape.
#pragma once

#include <pyoco/core/flow_spec.hpp>
#include <pyoco/core/graph_dsl.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pyoco::bench {

enum class ShapeKind { Chain, Fan, Tree, Grid };

// "chain", "fan", "tree", "grid"; parse_shape_kind throws on anything else.
const char* to_string(ShapeKind kind);
ShapeKind parse_shape_kind(std::string_view name);
inline constexpr ShapeKind kAllShapes[] = {ShapeKind::Chain, ShapeKind::Fan, ShapeKind::Tree,
                                           ShapeKind::Grid};

struct Shape {
  ShapeKind kind = ShapeKind::Chain;
  std::size_t param = 0;  // chain length, fan width, tree depth, grid side
  std::string label;      // "chain 10000", "fan 10000", "tree depth 13", "grid 100x100"
  std::vector<std::vector<std::uint32_t>> successors;  // one list per node

  std::size_t nodes() const { return successors.size(); }
  std::size_t edges() const;
};

// The shape of `kind` closest to `target` nodes: a chain of target nodes,
// a fan of target-wide (target + 2 nodes), a binary tree of depth
// round(log2(target + 1)), a grid of round(sqrt(target)) squared.
Shape make_shape(ShapeKind kind, std::size_t target);

// The shape as a flow: one task per node, each using `use`, and the graph
// written the way a person would write it (a >> b >> c; a >> (b & c) >> d).
struct FlowParts {
  std::shared_ptr<core::FlowSpec> spec;
  std::shared_ptr<core::dsl::Graph> graph;
};
FlowParts make_flow(const Shape& shape, const std::string& use);

}  // namespace pyoco::bench
