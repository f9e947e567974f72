// The seed example, embedded in a C++ program: plugin tasks from the hello
// plugin, one in-process C++ task, a parallel group, and the cute trace.
//
//   ./build/default/bin/hello_embed [PLUGIN_DIR]
//
// Plugins come from PLUGIN_DIR when given (e.g. <prefix>/lib/pyoco/plugins
// for a copy built against an installed pyoco), else from
// <this program's directory>/../lib/pyoco/plugins.
#include <pyoco/engine/engine.hpp>
#include <pyoco/trace/sinks.hpp>

#include <exception>
#include <iostream>
#include <optional>

int main(int argc, char** argv) {
  pyoco::Flow flow{"hello_embed"};

  auto fetch = flow.task("fetch_data", "hello/fetch_data");
  auto process =
      flow.task("process_data", "hello/process_data").input("data", "$node.fetch_data.output");

  // A task written right here: inputs in, a value out.
  auto exclaim = flow.task("exclaim", [](pyoco::TaskCall& call, const pyoco::core::Value& in) {
    const std::string text(in.find("text").as_string());
    call.log("📣 adding emphasis");
    return call.wrap(call.arena().make_string(text + "!"));
  });
  exclaim.input("text", "$node.process_data.output");

  auto count = flow.task("count", [](pyoco::TaskCall& call, const pyoco::core::Value& in) {
    return call.wrap(
        call.arena().make_int(static_cast<std::int64_t>(in.find("text").as_string().size())));
  });
  count.input("text", "$node.process_data.output");

  auto save = flow.task("save_result", "hello/save_result").input("result", "$node.exclaim.output");

  // exclaim and count run in parallel; save_result waits for both.
  flow >> fetch >> process >> (exclaim & count) >> save;

  pyoco::EngineOptions engine_options;
  if (argc > 1) engine_options.plugin_search_path = {argv[1]};
  pyoco::Engine engine(engine_options);  // create once, reuse for every run
  pyoco::RunOptions options;
  options.listener = pyoco::trace::make_trace_sink(
      pyoco::trace::TraceFormat::Cute,
      std::shared_ptr<std::ostream>(&std::cout, [](std::ostream*) {}));
  std::optional<pyoco::Run> started;
  try {
    started = engine.start(flow, {}, options);
  } catch (const std::exception& e) {
    // An unknown task (no hello plugin where we looked), a plugin that does
    // not load, a cycle: say it, and how to point at the plugins.
    std::cerr << "hello_embed: " << e.what() << "\n(usage: " << argv[0] << " [PLUGIN_DIR])\n";
    return 2;
  }
  pyoco::Run& run = *started;
  run.wait();

  std::cout << "status: " << pyoco::core::to_string(run.status()) << '\n';
  for (const pyoco::TaskRecord& t : run.tasks()) {
    std::cout << "  " << t.node << "  " << pyoco::core::to_string(t.state) << "  "
              << t.output_summary << '\n';
  }
  return run.status() == pyoco::core::RunStatus::Completed ? 0 : 1;
}
