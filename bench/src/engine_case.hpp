// One engine benchmark case, run in a process of its own so that its peak
// RSS is its own: one shape at one size through pyoco (null sink, and on
// request the cute sink and the SQLite store) and through oneTBB.
#pragma once

#include "shapes.hpp"

#include <boost/json/object.hpp>

#include <filesystem>

namespace pyoco::bench {

struct CaseOptions {
  ShapeKind kind = ShapeKind::Chain;
  std::size_t target = 1000;
  unsigned reps = 5;
  bool observability = false;         // also the cute sink (and the store)
  std::filesystem::path plugin_dir;   // holds bench/ (the noop plugin)
  std::filesystem::path scratch_dir;  // for the store's database
};

// Measures the case; throws when a run does not complete.
boost::json::object run_engine_case(const CaseOptions& options);

}  // namespace pyoco::bench
