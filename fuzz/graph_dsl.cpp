// libFuzzer target: the graph DSL (core/graph_dsl.hpp). The input is a
// flow's `graph:` text. What parses is then built and checked as `pyoco
// check` would, in a flow whose tasks: and pipes: declare every name the
// graph uses, so the fuzzer reaches the DAG builder without having to
// invent a consistent flow file. Any input must parse or be refused with
// a FlowError; anything else is a bug.
#include <pyoco/core/graph_dsl.hpp>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "flow_checks.hpp"

namespace {

using namespace pyoco::core;

struct Names {
  std::set<std::string> tasks;
  std::set<std::string> pipes;
};

void collect(const dsl::Pipeline& p, Names& names);

void collect(const dsl::Term& term, Names& names) {
  if (const auto* n = std::get_if<dsl::NodeTerm>(&term)) names.tasks.insert(n->task);
  if (const auto* g = std::get_if<dsl::GroupTerm>(&term)) {
    for (const auto& b : g->branches) collect(b, names);
  }
  if (const auto* p = std::get_if<dsl::PipeTerm>(&term)) names.pipes.insert(p->name);
  if (const auto* s = std::get_if<dsl::SwitchTerm>(&term)) {
    for (const auto& c : s->cases) {
      for (const auto& b : c.body) collect(b, names);
    }
  }
  if (const auto* l = std::get_if<dsl::LoopTerm>(&term)) {
    for (const auto& b : l->body) collect(b, names);
  }
}

void collect(const dsl::Pipeline& p, Names& names) {
  for (const dsl::Term& t : p.terms) collect(t, names);
}

Value empty_object() {
  ValueBuilder b;
  const ValueNode* n = b.arena().make_object();
  b.arena().seal();
  return b.wrap(n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const SourceLocation origin{"fuzz/flow.yaml", 3, 10};
  try {
    const dsl::Graph graph = dsl::parse_graph(text, origin);
    Names names;
    for (const dsl::Pipeline& p : graph.statements) collect(p, names);

    FlowSpec spec;
    spec.file = origin.file;
    spec.name = "fuzz";
    spec.defaults = empty_object();
    spec.graph = std::string(text);
    spec.graph_where = origin;
    // Each pipe is a two-step graph of its own; tasks every other name.
    for (const std::string& pipe : names.pipes) {
      spec.pipes.push_back(PipeSpec{pipe, pipe + "_in >> " + pipe + "_out", {origin.file, 1, 1}});
      names.tasks.insert(pipe + "_in");
      names.tasks.insert(pipe + "_out");
    }
    std::uint32_t line = 20;
    for (const std::string& task : names.tasks) {
      TaskSpec t;
      t.name = task;
      t.use = (line % 2 == 0 ? "fuzz/" : "std/") + task;
      t.where = SourceLocation{origin.file, line++, 3};
      spec.tasks.push_back(std::move(t));
    }
    pyoco::fuzz::check_and_draw(std::move(spec));
  } catch (const FlowError&) {
  }
  return 0;
}
