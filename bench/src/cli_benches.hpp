// Benchmarks of the `pyoco` command as a whole process: start-up of a small
// run, and plugin discovery over many generated plugin directories.
#pragma once

#include <boost/json/object.hpp>

#include <filesystem>
#include <vector>

namespace pyoco::bench {

struct CliBenchOptions {
  std::filesystem::path pyoco;        // the CLI
  std::filesystem::path source_dir;   // for examples/hello/flow.yaml
  std::filesystem::path plugin_dir;   // holds bench/ (the noop plugin)
  std::filesystem::path scratch_dir;  // emptied by the caller
  unsigned runs = 10;
};

// `pyoco run examples/hello/flow.yaml --non-cute`, PYOCO_HOME in scratch.
boost::json::object bench_startup(const CliBenchOptions& options);

// `pyoco plugins list` over each count of generated plugin directories, and
// `pyoco plugins lint` of the bench plugin.
boost::json::object bench_discovery(const CliBenchOptions& options,
                                    const std::vector<std::size_t>& counts);

}  // namespace pyoco::bench
