// Binding a flow to its tasks: every task node gets the callable definition
// it runs, from a plugin or from the caller's in-process tasks (which go
// through the same callbacks as plugin tasks).
#include <pyoco/plugins/loader.hpp>

#include <unordered_map>

#include "run_state.hpp"

namespace pyoco {

namespace {

pyoco_status run_local(void* fn, pyoco_context* c, const pyoco_value* in, const pyoco_value** out) {
  auto& ctx = *reinterpret_cast<plugins::Call*>(c);
  try {
    TaskCall call(ctx);
    const auto* node = reinterpret_cast<const core::ValueNode*>(in);
    const core::Value inputs(core::ArenaPtr(node != nullptr ? node->owner : nullptr), node);
    const core::Value result = (*static_cast<TaskFn*>(fn))(call, inputs);
    // The result may live in an arena only `result` holds: the call's arena
    // keeps it alive until the host has taken its own reference.
    if (result.node() != nullptr) ctx.values().retain(result.node()->owner);
    *out = reinterpret_cast<const pyoco_value*>(result.node());
    return PYOCO_OK;
  } catch (const std::exception& e) {
    ctx.error = e.what();
  } catch (...) {
    ctx.error = "unknown exception (not derived from std::exception)";
  }
  return PYOCO_ERR_TASK;
}

// Definitions already bound in this flow, by `use`: a task used by 10,000
// nodes is looked up (and its plugin's load checked) once, not 10,000 times.
using BoundByUse = std::unordered_map<std::string_view, const plugins::TaskDefinition*>;

const plugins::TaskDefinition* bind_task(const core::TaskSpec& spec, BoundFlow& bound,
                                         const plugins::Catalog& catalog,
                                         const std::map<std::string, TaskFn>& local) {
  if (auto it = local.find(spec.use); it != local.end()) {
    auto fn = std::make_unique<TaskFn>(it->second);
    auto def = std::make_unique<plugins::TaskDefinition>();
    def->plugin = "local";
    def->name = spec.use.substr(spec.use.find('/') + 1);
    def->user_data = fn.get();
    def->run = &run_local;
    def->abi_minor = PYOCO_ABI_VERSION_MINOR;
    bound.local_functions.push_back(std::move(fn));
    bound.local_definitions.push_back(std::move(def));
    return bound.local_definitions.back().get();
  }
  const auto ref = catalog.find_task(spec.use);
  if (!ref) {
    const std::string why = plugins::why_task_missing(catalog, spec.use);
    throw core::FlowError(spec.where, "task '" + spec.name + "' uses \"" + spec.use +
                                          "\", which no plugin on the search path provides" +
                                          (why.empty() ? " (see `pyoco tasks`)" : why));
  }
  const plugins::LoadedPlugin& plugin = plugins::load_plugin(ref->plugin->manifest);
  bound.plugins[plugin.manifest.name] = plugin.manifest.version;
  const plugins::TaskDefinition* def = plugin.find_task(ref->task->name);
  if (def == nullptr) {
    throw core::FlowError(spec.where, "plugin '" + plugin.manifest.name +
                                          "' did not register task '" + ref->task->name + "'");
  }
  return def;
}

void bind_graph(const core::FlowGraph& g, BoundFlow& bound, const plugins::Catalog& catalog,
                const std::map<std::string, TaskFn>& local, BoundByUse& by_use) {
  std::vector<const plugins::TaskDefinition*>& defs = bound.tasks[&g];
  defs.assign(g.nodes.size(), nullptr);
  const BoundByUse::value_type* last = nullptr;  // the previous task node's
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const core::GraphNode& n = g.nodes[i];
    for (const auto& child : n.children) bind_graph(*child, bound, catalog, local, by_use);
    if (n.kind != core::GraphNode::Kind::Task) continue;
    const core::TaskSpec& spec = *n.task;
    // Neighbouring nodes mostly use the same task: compared, not hashed.
    if (last != nullptr && spec.use == last->first) {
      defs[i] = last->second;
      continue;
    }
    auto [it, fresh] = by_use.try_emplace(spec.use, nullptr);
    if (fresh) it->second = bind_task(spec, bound, catalog, local);
    defs[i] = it->second;
    last = &*it;
  }
}

// The flow's `plugins:` requirements against the catalog it binds with:
// an older plugin fails the run before anything runs, rather than running
// code the flow was not written for.
void check_requirements(const core::FlowSpec& spec, const plugins::Catalog& catalog) {
  for (const core::PluginRequirement& r : spec.plugins) {
    if (std::string why = plugins::unmet_requirement(catalog, r.name, r.min_version);
        !why.empty()) {
      throw core::FlowError(r.where, why);
    }
  }
}

}  // namespace

std::shared_ptr<BoundFlow> bind_flow(std::shared_ptr<const core::CompiledFlow> flow,
                                     const plugins::Catalog& catalog,
                                     const std::map<std::string, TaskFn>& local_tasks) {
  // Compiled for check, a flow with a cycle has it cut out: never run that.
  if (!flow->errors.empty()) {
    throw core::FlowError(flow->errors.front().where, flow->errors.front().message);
  }
  check_requirements(*flow->spec, catalog);
  auto bound = std::make_shared<BoundFlow>();
  bound->flow = std::move(flow);
  BoundByUse by_use;
  bind_graph(bound->flow->graph, *bound, catalog, local_tasks, by_use);
  return bound;
}

}  // namespace pyoco
