// Building a flow's DAG: the limit on pipe expansion guards against nested
// pipes, not against large flows written out node by node.
#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/flow_graph.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

using namespace pyoco;

namespace {

core::CompiledFlow compile(const std::string& yaml) {
  auto spec = std::make_shared<const core::FlowSpec>(core::parse_flow_text(yaml, "test.yaml"));
  return core::compile_flow(spec);
}

}  // namespace

// 100,000 nodes: past the pipe limit, and deep enough that a recursive
// cycle check or checker would overflow the stack.
BOOST_AUTO_TEST_CASE(a_flow_of_100000_written_out_nodes_compiles_and_checks) {
  constexpr int kNodes = 100000;
  std::string graph = "n0";
  std::string tasks;
  for (int i = 0; i < kNodes; ++i) {
    if (i > 0) graph += " >> n" + std::to_string(i);
    tasks += "  n" + std::to_string(i) + ": {use: \"std/echo\"}\n";
  }
  const core::CompiledFlow flow =
      compile("flow:\n  name: big\n  graph: \"" + graph + "\"\ntasks:\n" + tasks);
  BOOST_TEST(flow.graph.nodes.size() == static_cast<std::size_t>(kNodes));
  struct AnyTask : core::TaskResolver {
    TaskInfo resolve(const std::string&) const override {
      TaskInfo info;
      info.exists = true;
      return info;
    }
  };
  const auto diagnostics = core::check_flow(flow, AnyTask{}, core::Value());
  BOOST_TEST(diagnostics.empty());
}

BOOST_AUTO_TEST_CASE(pipes_that_expand_exponentially_are_refused) {
  // p0 expands to 2^13 copies of a.
  std::string pipes;
  for (int i = 0; i < 13; ++i) {
    const std::string next = "pipe(p" + std::to_string(i + 1) + ")";
    pipes += "  p" + std::to_string(i) + ": \"" + next + " >> " + next + "\"\n";
  }
  pipes += "  p13: \"a\"\n";
  BOOST_CHECK_EXCEPTION(compile("flow:\n  name: pipes\n  graph: \"pipe(p0)\"\npipes:\n" + pipes +
                                "tasks:\n  a: {use: \"std/echo\"}\n"),
                        core::FlowError, [](const core::FlowError& e) {
                          return std::string(e.what()).find("pipes are probably nested too deep") !=
                                 std::string::npos;
                        });
}

// docs/flows.md "pipe(NAME)": nesting deeper than 128 is an error; a graph
// that expands to more than 4096 steps is one too.
BOOST_AUTO_TEST_CASE(pipes_nest_128_deep_and_expand_to_4096_steps) {
  auto chain = [](int depth) {
    std::string pipes;
    for (int i = 0; i < depth; ++i) {
      pipes += "  p" + std::to_string(i) + ": \"pipe(p" + std::to_string(i + 1) + ")\"\n";
    }
    pipes += "  p" + std::to_string(depth) + ": \"a\"\n";
    return "flow:\n  name: pipes\n  graph: \"pipe(p0)\"\npipes:\n" + pipes +
           "tasks:\n  a: {use: \"std/echo\"}\n";
  };
  BOOST_TEST(compile(chain(127)).graph.nodes.size() == 1u);  // 128 pipes
  BOOST_CHECK_EXCEPTION(compile(chain(128)), core::FlowError, [](const core::FlowError& e) {
    return std::string(e.what()).find("pipes nest deeper than 128") != std::string::npos;
  });
  auto wide = [](int steps) {
    std::string body = "a0";
    std::string tasks = "  a0: {use: \"std/echo\"}\n";
    for (int i = 1; i < steps; ++i) {
      body += " >> a" + std::to_string(i);
      tasks += "  a" + std::to_string(i) + ": {use: \"std/echo\"}\n";
    }
    return "flow:\n  name: wide\n  graph: \"pipe(p)\"\npipes:\n  p: \"" + body + "\"\ntasks:\n" +
           tasks;
  };
  BOOST_TEST(compile(wide(4096)).graph.nodes.size() == 4096u);
  BOOST_CHECK_EXCEPTION(compile(wide(4097)), core::FlowError, [](const core::FlowError& e) {
    return std::string(e.what()).find("4096") != std::string::npos;
  });
}

// A wide group after a wide group waits for every pair: 12,000 by 12,000
// (a 200 KB file) made 144 million edges, gigabytes and minutes to compile
// (a gateway's POST /runs/yaml took it). Refused past 2,000,000 edges;
// 1,000 by 1,000 (a million) still compiles.
BOOST_AUTO_TEST_CASE(a_graph_of_more_than_two_million_edges_is_refused) {
  auto wide = [](int n) {
    std::string a, b, tasks;
    for (int i = 0; i < n; ++i) {
      a += (i ? " & a" : "a") + std::to_string(i);
      b += (i ? " & b" : "b") + std::to_string(i);
      tasks += "  a" + std::to_string(i) + ": {use: \"std/echo\"}\n  b" + std::to_string(i) +
               ": {use: \"std/echo\"}\n";
    }
    return "flow:\n  graph: \"(" + a + ") >> (" + b + ")\"\ntasks:\n" + tasks;
  };
  BOOST_TEST(compile(wide(1000)).graph.nodes.size() == 2000u);
  BOOST_CHECK_EXCEPTION(compile(wide(2000)), core::FlowError, [](const core::FlowError& e) {
    return std::string(e.what()).find("more than 2000000 edges") != std::string::npos;
  });
}
