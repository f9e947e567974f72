#include "tbb_baseline.hpp"

#include <oneapi/tbb/flow_graph.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

namespace pyoco::bench {

namespace flow = oneapi::tbb::flow;
using Node = flow::continue_node<flow::continue_msg>;

struct TbbShape::Impl {
  flow::graph graph;
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<std::uint32_t> roots;
  // One byte per node, written by its body: no shared counter to contend on,
  // and a check that every body ran.
  std::vector<unsigned char> ran;
};

TbbShape::TbbShape(const Shape& shape) : impl_(std::make_unique<Impl>()) {
  const std::size_t n = shape.nodes();
  impl_->ran.assign(n, 0);
  impl_->nodes.reserve(n);
  std::vector<bool> has_pred(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char* flag = &impl_->ran[i];
    impl_->nodes.push_back(
        std::make_unique<Node>(impl_->graph, [flag](const flow::continue_msg&) { *flag = 1; }));
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::uint32_t s : shape.successors[i]) {
      flow::make_edge(*impl_->nodes[i], *impl_->nodes[s]);
      has_pred[s] = true;
    }
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!has_pred[i]) impl_->roots.push_back(i);
  }
}

TbbShape::~TbbShape() = default;

double TbbShape::run() {
  std::fill(impl_->ran.begin(), impl_->ran.end(), 0);
  const auto start = std::chrono::steady_clock::now();
  for (std::uint32_t r : impl_->roots) impl_->nodes[r]->try_put(flow::continue_msg());
  impl_->graph.wait_for_all();
  const auto end = std::chrono::steady_clock::now();
  if (std::find(impl_->ran.begin(), impl_->ran.end(), 0) != impl_->ran.end()) {
    throw std::runtime_error("oneTBB: a node did not run");
  }
  return std::chrono::duration<double, std::nano>(end - start).count();
}

}  // namespace pyoco::bench
