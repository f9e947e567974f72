#include "shapes.hpp"

#include <boost/json.hpp>

#include <cmath>
#include <stdexcept>

namespace pyoco::bench {

namespace dsl = core::dsl;

namespace {

std::string node_name(std::size_t i) { return "n" + std::to_string(i); }

dsl::Term node_term(std::size_t i) {
  const std::string name = node_name(i);
  return dsl::NodeTerm{name, name, {}};
}

dsl::Pipeline single(std::size_t i) {
  dsl::Pipeline p;
  p.terms.push_back(node_term(i));
  return p;
}

// a >> (b & c & ...)
dsl::Pipeline to_all(std::size_t from, const std::vector<std::uint32_t>& to) {
  dsl::Pipeline p = single(from);
  if (to.size() == 1) {
    p.terms.push_back(node_term(to.front()));
    return p;
  }
  dsl::GroupTerm group;
  for (std::uint32_t s : to) group.branches.push_back(single(s));
  p.terms.push_back(std::move(group));
  return p;
}

}  // namespace

const char* to_string(ShapeKind kind) {
  switch (kind) {
    case ShapeKind::Chain:
      return "chain";
    case ShapeKind::Fan:
      return "fan";
    case ShapeKind::Tree:
      return "tree";
    case ShapeKind::Grid:
      return "grid";
  }
  return "?";
}

ShapeKind parse_shape_kind(std::string_view name) {
  for (ShapeKind k : kAllShapes) {
    if (name == to_string(k)) return k;
  }
  throw std::invalid_argument("unknown shape '" + std::string(name) +
                              "' (chain, fan, tree or grid)");
}

std::size_t Shape::edges() const {
  std::size_t e = 0;
  for (const auto& s : successors) e += s.size();
  return e;
}

Shape make_shape(ShapeKind kind, std::size_t target) {
  Shape s;
  s.kind = kind;
  auto& succ = s.successors;
  switch (kind) {
    case ShapeKind::Chain: {
      s.param = target;
      s.label = "chain " + std::to_string(target);
      succ.resize(target);
      for (std::uint32_t i = 0; i + 1 < target; ++i) succ[i].push_back(i + 1);
      break;
    }
    case ShapeKind::Fan: {
      // n0 fans out to n1..nW, which all feed n(W+1).
      const std::size_t width = target;
      s.param = width;
      s.label = "fan " + std::to_string(width);
      succ.resize(width + 2);
      const auto sink = static_cast<std::uint32_t>(width + 1);
      for (std::uint32_t i = 1; i <= width; ++i) {
        succ[0].push_back(i);
        succ[i].push_back(sink);
      }
      break;
    }
    case ShapeKind::Tree: {
      // Out-tree in heap order: node i feeds 2i+1 and 2i+2.
      const auto depth = static_cast<std::size_t>(
          std::max(1.0, std::round(std::log2(static_cast<double>(target) + 1))));
      s.param = depth;
      s.label = "tree depth " + std::to_string(depth);
      const std::size_t n = (std::size_t{1} << depth) - 1;
      succ.resize(n);
      for (std::size_t i = 0; 2 * i + 2 < n; ++i) {
        succ[i].push_back(static_cast<std::uint32_t>(2 * i + 1));
        succ[i].push_back(static_cast<std::uint32_t>(2 * i + 2));
      }
      break;
    }
    case ShapeKind::Grid: {
      // Wavefront: (r, c) waits for (r-1, c) and (r, c-1).
      const auto side = static_cast<std::size_t>(
          std::max(1.0, std::round(std::sqrt(static_cast<double>(target)))));
      s.param = side;
      s.label = "grid " + std::to_string(side) + "x" + std::to_string(side);
      succ.resize(side * side);
      for (std::size_t r = 0; r < side; ++r) {
        for (std::size_t c = 0; c < side; ++c) {
          const std::size_t i = r * side + c;
          if (c + 1 < side) succ[i].push_back(static_cast<std::uint32_t>(i + 1));
          if (r + 1 < side) succ[i].push_back(static_cast<std::uint32_t>(i + side));
        }
      }
      break;
    }
  }
  return s;
}

FlowParts make_flow(const Shape& shape, const std::string& use) {
  FlowParts out;
  out.spec = std::make_shared<core::FlowSpec>();
  out.spec->name = std::string("bench_") + to_string(shape.kind);
  out.spec->file = "<bench " + shape.label + ">";
  out.spec->defaults = core::from_json(boost::json::object());
  out.spec->tasks.resize(shape.nodes());
  for (std::size_t i = 0; i < shape.nodes(); ++i) {
    out.spec->tasks[i].name = node_name(i);
    out.spec->tasks[i].use = use;
  }

  out.graph = std::make_shared<dsl::Graph>();
  auto& statements = out.graph->statements;
  const std::size_t n = shape.nodes();
  switch (shape.kind) {
    case ShapeKind::Chain: {  // n0 >> n1 >> ... >> nN-1
      dsl::Pipeline p;
      for (std::size_t i = 0; i < n; ++i) p.terms.push_back(node_term(i));
      statements.push_back(std::move(p));
      break;
    }
    case ShapeKind::Fan: {  // n0 >> (n1 & ... & nW) >> nW+1
      dsl::Pipeline p = to_all(0, shape.successors[0]);
      p.terms.push_back(node_term(n - 1));
      statements.push_back(std::move(p));
      break;
    }
    case ShapeKind::Tree: {  // one statement per inner node: a >> (b & c)
      for (std::size_t i = 0; i < n; ++i) {
        if (!shape.successors[i].empty()) statements.push_back(to_all(i, shape.successors[i]));
      }
      break;
    }
    case ShapeKind::Grid: {  // one statement per row and one per column
      const std::size_t side = shape.param;
      for (std::size_t r = 0; r < side; ++r) {
        dsl::Pipeline p;
        for (std::size_t c = 0; c < side; ++c) p.terms.push_back(node_term(r * side + c));
        statements.push_back(std::move(p));
      }
      for (std::size_t c = 0; side > 1 && c < side; ++c) {
        dsl::Pipeline p;
        for (std::size_t r = 0; r < side; ++r) p.terms.push_back(node_term(r * side + c));
        statements.push_back(std::move(p));
      }
      break;
    }
  }
  return out;
}

}  // namespace pyoco::bench
