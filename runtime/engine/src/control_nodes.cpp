// Control nodes: a switch runs its chosen case, a loop its iterations, each
// as a child frame of the run's state machine. Its own file: the scheduler
// in run.cpp only starts them and hears when their frames are done.
#include <pyoco/core/expression.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "object_value.hpp"
#include "run_scope.hpp"
#include "run_state.hpp"

namespace pyoco {

using core::GraphNode;
using core::TaskState;
using core::Value;

void RunState::start_switch(Frame& f, std::uint32_t i) {
  const GraphNode& g = f.graph->nodes[i];
  Value on;
  try {
    on = g.switch_term->on.evaluate(FrameScope(*this, f));
  } catch (const core::FlowError& e) {
    fail(f, i, e.what());
    return;
  }
  // As pyoco: labels were compiled as it compiles them, and the first case
  // whose label == the subject (Python's ==: 1 == True == 1.0) is taken.
  auto matches = [&](const Value& label) { return core::python_equal(label, on); };
  std::size_t chosen = SIZE_MAX;
  for (std::size_t c = 0; c < g.switch_term->cases.size(); ++c) {
    const auto& sc = g.switch_term->cases[c];
    if (!sc.is_default && matches(sc.match)) {
      chosen = c;
      break;
    }
  }
  if (chosen == SIZE_MAX) {
    for (std::size_t c = 0; c < g.switch_term->cases.size(); ++c) {
      if (g.switch_term->cases[c].is_default) chosen = c;
    }
  }
  if (chosen == SIZE_MAX) {
    fail(f, i,
         "switch on '" + g.switch_term->on.text() + "': no case matches " + core::to_json_text(on) +
             " and there is no default");
    return;
  }
  NodeExec& n = f.nodes[i];
  if (!room_for(*g.children[chosen])) {
    fail(f, i, over_task_limit());
    return;
  }
  auto child = std::make_unique<Frame>();
  child->graph = g.children[chosen].get();
  child->parent = &f;
  child->parent_node = i;
  child->suffix = f.suffix;
  child->loop = f.loop;
  child->loop_frame = f.loop_frame;
  n.ctl().active_children = 1;
  n.ctl().children.push_back(std::move(child));
  start_frame(*n.ctl().children.back());
}

void RunState::start_loop(Frame& f, std::uint32_t i) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  const auto& l = *g.loop_term;
  n.ctl().loop_count = static_cast<std::size_t>(l.count);
  if (l.kind == core::dsl::LoopTerm::Kind::Repeat && !l.count_expr.empty()) {
    Value count;
    try {
      count = l.count_expr.evaluate(FrameScope(*this, f));
    } catch (const core::FlowError& e) {
      fail(f, i, e.what());
      return;
    }
    if (!count.is_int() && !count.is_bool()) {
      fail(f, i,
           "repeat count '" + l.count_expr.text() + "' must be an integer, not " +
               to_string(count.kind()) + " " + core::to_json_text(count));
      return;
    }
    const std::int64_t c = count.is_bool() ? (count.as_bool() ? 1 : 0) : count.as_int();
    if (c < 0 || c > core::dsl::kMaxIterations) {
      fail(f, i,
           "repeat count '" + l.count_expr.text() + "' is " + std::to_string(c) +
               (c < 0 ? ", a negative count"
                      : ", over the limit of " + std::to_string(core::dsl::kMaxIterations) +
                            " iterations: split the work into several runs"));
      return;
    }
    n.ctl().loop_count = static_cast<std::size_t>(c);
  }
  if (l.kind == core::dsl::LoopTerm::Kind::Foreach) {
    try {
      n.ctl().loop_items = l.over.evaluate(FrameScope(*this, f));
    } catch (const core::FlowError& e) {
      fail(f, i, e.what());
      return;
    }
    if (!n.ctl().loop_items.is_array()) {
      fail(f, i,
           "foreach over '" + l.over.text() + "': expected a list, got " +
               to_string(n.ctl().loop_items.kind()));
      return;
    }
  }
  const std::size_t parallel =
      l.kind == core::dsl::LoopTerm::Kind::Foreach ? static_cast<std::size_t>(l.parallel) : 1;
  bool any = false;
  for (std::size_t k = 0; k < parallel; ++k) {
    if (!start_iteration(f, i)) break;
    any = true;
  }
  if (n.state != TaskState::Running) return;  // an iteration could not start: failed
  if (!any) succeed(f, i, collect(f, i));     // nothing to iterate
}

std::size_t frame_tasks(const core::FlowGraph& graph) {
  std::size_t tasks = 0;
  for (const GraphNode& g : graph.nodes) tasks += g.visible() ? 1 : 0;
  return tasks;
}

// Whether the run may start a frame of `graph`'s tasks within its limit.
bool RunState::room_for(const core::FlowGraph& graph) const {
  return records_.size() + frame_tasks(graph) <= options_.limits.max_tasks;
}

std::string RunState::over_task_limit() const {
  return "this run reached its limit of " + std::to_string(options_.limits.max_tasks) +
         " tasks (PYOCO_MAX_TASKS); loops over that many items belong in several runs";
}

// An until without max_iter stops after pyoco's 1000.
static std::size_t until_max_iter(const core::dsl::LoopTerm& l) {
  return static_cast<std::size_t>(l.max_iter > 0 ? l.max_iter : core::dsl::kDefaultUntilMaxIter);
}

// Starts the next iteration; false when there is none.
bool RunState::start_iteration(Frame& f, std::uint32_t i) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  const auto& l = *g.loop_term;
  const std::size_t k = n.ctl().next_iteration;
  std::vector<std::pair<std::string, Value>> vars;
  for (std::size_t m = 0; m < f.loop.size(); ++m) {
    auto [key, v] = f.loop.member(m);
    vars.emplace_back(std::string(key), v);
  }
  core::ValueBuilder b;
  const Value index = b.wrap(b.arena().make_int(static_cast<std::int64_t>(k)));
  std::size_t count = 0;
  switch (l.kind) {
    case core::dsl::LoopTerm::Kind::Repeat:
      count = n.ctl().loop_count;
      if (k >= count) return false;
      vars.emplace_back("index", index);
      break;
    case core::dsl::LoopTerm::Kind::Foreach:
      count = n.ctl().loop_items.size();
      if (k >= count) return false;
      vars.emplace_back(l.item, n.ctl().loop_items.at(k));
      vars.emplace_back(l.index, index);
      break;
    case core::dsl::LoopTerm::Kind::Until:
      count = until_max_iter(l);
      if (k >= count) return false;
      vars.emplace_back("index", index);
      break;
  }
  if (!room_for(*g.children.front())) {
    if (n.ctl().active_children == 0) {
      fail(f, i, over_task_limit());
    } else {
      n.ctl().over_limit = true;  // fails once the iterations running now have ended
    }
    return false;
  }
  ++n.ctl().next_iteration;
  ++n.ctl().active_children;
  auto child = std::make_unique<Frame>();
  child->graph = g.children.front().get();
  child->parent = &f;
  child->parent_node = i;
  child->iteration = k;
  child->suffix = f.suffix + "[" + std::to_string(k) + "]";
  // In the arena that holds its index: an arena is some 400 bytes, and a
  // run keeps this one as long as the iteration's frame (to its end).
  core::ValueNode* loop = b.arena().make_object(vars.size());
  for (const auto& [key, v] : vars) {
    core::Arena::set(loop, key, v.node() != nullptr ? v.node() : b.arena().make_null());
  }
  b.arena().seal();
  child->loop = b.wrap(loop);
  auto frame = std::make_shared<LoopFrameInfo>();
  frame->outer = f.loop_frame;
  frame->loop = &l;
  frame->index = k;
  frame->count = count;
  if (l.kind == core::dsl::LoopTerm::Kind::Foreach) frame->item = n.ctl().loop_items.at(k);
  if (l.kind == core::dsl::LoopTerm::Kind::Until) frame->condition = n.ctl().until_condition;
  child->loop_frame = std::move(frame);
  n.ctl().children.push_back(std::move(child));
  if (l.collect == core::dsl::Collect::List || l.collect == core::dsl::Collect::Flatten) {
    if (n.ctl().iteration_outputs.size() <= k) n.ctl().iteration_outputs.resize(k + 1);
  }
  start_frame(*n.ctl().children.back());
  return true;
}

// Keeps a failed iteration among the lowest kNamed: O(kNamed) per failed
// iteration, nothing for one that succeeds. True when it is the lowest yet.
static bool note_failed_iteration(ControlExec& c, std::size_t iteration) {
  const std::size_t kept = std::min(c.failed_iterations, ControlExec::kNamed);
  ++c.failed_iterations;
  std::size_t at = kept;
  while (at > 0 && c.failed_first[at - 1] > iteration) --at;
  if (at == ControlExec::kNamed) return false;  // not among the lowest
  for (std::size_t k = std::min(kept, ControlExec::kNamed - 1); k > at; --k) {
    c.failed_first[k] = c.failed_first[k - 1];
  }
  c.failed_first[at] = iteration;
  return at == 0;
}

// "iteration 3 did not succeed: boom[3]: broke", "iterations 4, 5 and 9 did
// not succeed; iteration 4: boom[4]: broke", past kNamed: "iterations 0, 1,
// 2, 3, 4 and 7 more did not succeed; ...".
static std::string failed_iterations_error(const ControlExec& c) {
  const std::size_t n = c.failed_iterations;
  const std::size_t named = n <= ControlExec::kNamed ? n : ControlExec::kNamed - 1;
  std::string out = n == 1 ? "iteration " : "iterations ";
  for (std::size_t k = 0; k < named; ++k) {
    if (k > 0) out += (k + 1 == named && named == n) ? " and " : ", ";
    out += std::to_string(c.failed_first[k]);
  }
  if (named < n) out += " and " + std::to_string(n - named) + " more";
  out += " did not succeed";
  if (c.first_failure.empty()) return out;
  if (n == 1) return out + ": " + c.first_failure;
  return out + "; iteration " + std::to_string(c.failed_first[0]) + ": " + c.first_failure;
}

void RunState::child_done(Frame& child) {
  Frame& f = *child.parent;
  const std::uint32_t i = child.parent_node;
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  --n.ctl().active_children;
  bool failed = false, a_task_failed = false;
  for (const NodeExec& c : child.nodes) {
    a_task_failed = a_task_failed || c.state == TaskState::Failed;
    failed = failed || c.state == TaskState::Failed ||
             (c.state == TaskState::Skipped || c.state == TaskState::Cancelled);
  }
  n.ctl().child_failed = n.ctl().child_failed || failed;
  if (n.state != TaskState::Running) return;  // already ended (cancelled)

  if (g.kind == GraphNode::Kind::Switch) {
    if (!n.ctl().child_failed) {
      succeed(f, i, frame_output(child));
    } else if (stopping_ && !a_task_failed) {
      // Its case was cancelled by the stop, as a loop's iterations are: the
      // switch did not fail (it was FAILED, with an error line, on Ctrl+C).
      end_without_running(f, i, TaskState::Cancelled, stop_reason());
    } else {
      fail(f, i, "a task of the chosen case did not succeed");
    }
    return;
  }
  if (failed && note_failed_iteration(n.ctl(), child.iteration)) {
    // The lowest failed iteration so far: its first task that failed says
    // why, else one that did not run does.
    const NodeExec* why = nullptr;
    for (const NodeExec& c : child.nodes) {
      if (c.record == SIZE_MAX || record(c).error.empty()) continue;
      if (c.state == TaskState::Failed) {
        why = &c;
        break;
      }
      if (why == nullptr && c.state != TaskState::Succeeded) why = &c;
    }
    n.ctl().first_failure =
        why == nullptr ? std::string() : std::string(why->display) + ": " + record(*why).error;
  }
  const auto& l = *g.loop_term;
  // Only what `collect` needs is kept: with last or first, one output, not
  // one per iteration.
  switch (l.collect) {
    case core::dsl::Collect::List:
    case core::dsl::Collect::Flatten:
      n.ctl().iteration_outputs[child.iteration] = frame_output(child);
      break;
    case core::dsl::Collect::Last:
      if (child.iteration + 1 >= n.ctl().kept_iteration) {
        n.ctl().kept_output = frame_output(child);
        n.ctl().kept_iteration = child.iteration + 1;
      }
      break;
    case core::dsl::Collect::First:
      if (child.iteration == 0) n.ctl().kept_output = frame_output(child);
      break;
  }
  if (n.ctl().child_failed || stopping_) {
    if (n.ctl().active_children == 0) {
      if (stopping_) {
        end_without_running(f, i, TaskState::Cancelled, stop_reason());
      } else {
        fail(f, i, failed_iterations_error(n.ctl()));
      }
    }
    return;
  }
  bool more = true;
  if (l.kind == core::dsl::LoopTerm::Kind::Until) {
    try {
      n.ctl().until_condition = l.cond.evaluate(FrameScope(*this, child));
      more = !core::truthy(n.ctl().until_condition);
    } catch (const core::FlowError& e) {
      fail(f, i, e.what());
      return;
    }
    // As pyoco: running out of iterations with the condition still false
    // is a failure, not a quiet stop.
    if (more && n.ctl().next_iteration >= until_max_iter(l)) {
      fail(f, i,
           "until condition '" + l.cond.text() +
               "' is still false after max_iter=" + std::to_string(until_max_iter(l)));
      return;
    }
  }
  if (more && !n.ctl().over_limit && start_iteration(f, i)) return;
  if (n.state != TaskState::Running) return;  // the next iteration could not start: failed
  if (n.ctl().active_children > 0) return;
  if (n.ctl().over_limit) {
    fail(f, i, over_task_limit());
    return;
  }
  succeed(f, i, collect(f, i));
}

// A loop's output from what its iterations gave, as its `collect` says.
Value RunState::collect(const Frame& f, std::uint32_t i) const {
  const auto& l = *f.graph->nodes[i].loop_term;
  const NodeExec& n = f.nodes[i];
  if (l.collect == core::dsl::Collect::Last || l.collect == core::dsl::Collect::First) {
    return n.ctl().kept_output;
  }
  core::ValueBuilder b;
  core::ValueNode* arr = b.arena().make_array(n.ctl().next_iteration);
  for (std::size_t k = 0; k < n.ctl().next_iteration && k < n.ctl().iteration_outputs.size(); ++k) {
    const Value& o = n.ctl().iteration_outputs[k];
    if (l.collect == core::dsl::Collect::Flatten && o.is_array()) {
      for (std::size_t e = 0; e < o.size(); ++e) core::Arena::push(arr, o.at(e).node());
    } else {
      core::Arena::push(arr, o.node() != nullptr ? o.node() : b.arena().make_null());
    }
  }
  b.arena().seal();
  return b.wrap(arr);
}

// What a frame yields: the output of its last node, or of its sinks by name.
Value RunState::frame_output(const Frame& f) const {
  std::vector<std::pair<std::string, Value>> sinks;
  for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
    const GraphNode& g = f.graph->nodes[i];
    if (g.successors.empty() && g.visible()) sinks.emplace_back(g.name, f.nodes[i].output);
  }
  if (sinks.size() == 1) return sinks.front().second;
  if (sinks.empty()) return Value();
  return make_object(sinks);
}

}  // namespace pyoco
