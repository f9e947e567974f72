// A run's task record by node name, for engine tests.
#pragma once

#include <pyoco/engine/engine.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

namespace pyoco::testing {

inline TaskRecord record_of(const std::vector<TaskRecord>& records, const std::string& node) {
  for (const auto& r : records) {
    if (r.node == node) return r;
  }
  BOOST_FAIL("no record for " << node);
  return {};
}

inline TaskRecord record_of(const Run& run, const std::string& node) {
  return record_of(run.tasks(), node);
}

}  // namespace pyoco::testing
