// The baseline: the same shape as a oneTBB flow graph of continue_nodes with
// trivial bodies, run in the same process on TBB's default arena.
#pragma once

#include "shapes.hpp"

#include <memory>

namespace pyoco::bench {

class TbbShape {
 public:
  explicit TbbShape(const Shape& shape);  // builds the graph (make_edge per edge)
  ~TbbShape();
  TbbShape(const TbbShape&) = delete;
  TbbShape& operator=(const TbbShape&) = delete;

  // One run of the whole graph; returns its wall time in nanoseconds. Throws
  // when a node did not run.
  double run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pyoco::bench
