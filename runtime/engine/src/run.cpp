// The run state machine. Ready tasks are posted to the pool; a finished
// task's result goes back to the run's strand (taken there by the worker
// that ran it, when the strand is free), which releases its successors. Control nodes (switch,
// loops) run their bodies as child frames of the same machine (control_nodes.cpp).
#include <pyoco/core/output_summary.hpp>

#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "inputs.hpp"
#include "object_value.hpp"
#include "run_state.hpp"

namespace pyoco {

using core::GraphNode;
using core::TaskState;
using core::Value;
using trace::EventKind;

namespace {

double ms_between(std::chrono::steady_clock::time_point from,
                  std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// Waits and deadlines are saturated here too: a flow built in C++ is not
// checked as a file is, and a steady_clock deadline past ~292 years wraps.
constexpr double kMaxWaitMs = 30.0 * 24 * 3600 * 1000;

// How long a run's end waits for an async task's start() that still ran
// when the run gave its attempt up (RunState::finish). Well under the
// second ~Engine gives its runs to end.
constexpr std::chrono::milliseconds kStartGrace{500};

double backoff_ms(const core::RetryBackoff& b, std::uint32_t retry) {
  double d = b.initial_ms * std::pow(b.factor, static_cast<double>(retry - 1));
  d = std::min(d, b.max_ms);
  if (!(d >= 0)) d = 0;  // NaN
  d = std::min(d, kMaxWaitMs);
  if (b.jitter) {
    thread_local std::mt19937 rng{std::random_device{}()};
    d *= std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  }
  return d;
}

// What a task returned against what its plugin declares (one output: the
// value itself; several: an object of them): empty when it fits. A missing
// or null output is fine unless it is required.
std::string output_mismatch(const plugins::TaskDefinition& def, const Value& out) {
  if (def.outputs.empty()) return {};
  auto a = [](const Value& v) -> std::string {
    if (v.is_null()) return "null";
    const std::string kind = core::to_string(v.kind());
    return (std::string("aeiou").find(kind[0]) == std::string::npos ? "a " : "an ") + kind;
  };
  auto wrong = [&](const plugins::IoSpec& io, const Value& v) -> std::string {
    if (v.is_null() && !io.required) return {};
    if (core::fits_type(v, io.type)) return {};
    return def.qualified_name() + " returned " +
           (def.outputs.size() == 1 ? "" : "'" + io.name + "' as ") + a(v) +
           ", but the task declares " +
           (def.outputs.size() == 1 ? "its output '" + io.name + "'" : "it") + " as " + io.type +
           " (a bug of the task or of its declaration)";
  };
  if (def.outputs.size() == 1) return wrong(def.outputs.front(), out);
  if (!out.is_object()) {
    return def.qualified_name() + " returned " + a(out) + ", but the task declares an object of " +
           std::to_string(def.outputs.size()) +
           " outputs (a bug of the task or of its declaration)";
  }
  for (const plugins::IoSpec& io : def.outputs) {
    if (std::string w = wrong(io, out.find(io.name)); !w.empty()) return w;
  }
  return {};
}

const char* control_kind(const GraphNode& g) {
  if (g.kind == GraphNode::Kind::Switch) return "switch";
  return core::dsl::to_string(g.loop_term->kind);
}

}  // namespace

// ---- the run ---------------------------------------------------------------

const ControlExec& NodeExec::ctl() const {
  static const ControlExec kNone;
  return control ? *control : kNone;
}

RunState::RunState(std::shared_ptr<Executors> executors, std::shared_ptr<BoundFlow> flow,
                   RunOptions options, std::string id)
    : executors_(std::move(executors)),
      serial_(executors_->control()),
      flow_(std::move(flow)),
      options_(std::move(options)),
      id_(std::move(id)),
      listener_(options_.listener.get()),
      launch_window_(2 * std::max(1u, executors_->jobs())) {
  // Params: the flow's defaults, overridden by the caller's.
  params_ = merged_over(flow_->flow->spec->defaults, options_.params);
}

void RunState::emit(EventKind kind, const NodeExec* n, std::string_view message,
                    const GraphNode* g) {
  if (listener_ == nullptr) return;
  trace::RunEvent e{};
  e.kind = kind;
  e.run_id = id_;
  e.flow = flow_name();
  e.status = status();
  e.message = message;
  if (n != nullptr) {
    e.node = n->display;
    e.attempt = n->attempts;
    e.task_state = n->state;
    if (kind == EventKind::NodeRetry) e.delay_ms = n->retry_delay_ms;
    if (n->record != SIZE_MAX) {
      // The record's own times and figures, so listeners agree with tasks().
      const Record& r = records_[n->record];
      e.task = r.task;
      e.record = static_cast<std::uint32_t>(n->record);
      if (kind == EventKind::NodeStart) e.time = r.started;
      if (kind == EventKind::NodeDone || kind == EventKind::NodeError ||
          kind == EventKind::NodeCancelled || kind == EventKind::NodeSkipped) {
        if (r.ended != std::chrono::system_clock::time_point{}) e.time = r.ended;
        e.duration_ms = r.duration_ms;
        e.output = r.output_summary;
        if (kind == EventKind::NodeDone) e.value = &n->output;
        if (r.extra) e.artifacts = r.extra->artifacts;
      }
    }
  }
  if (g != nullptr && g->task != nullptr) e.max_attempts = g->task->retries + 1;
  // Node events carry their record's time; the clock is read for the rest.
  if (e.time == std::chrono::system_clock::time_point{}) e.time = clock_.wall();
  publish(e);
}

void RunState::emit_planned(std::span<const trace::PlannedNode> planned) {
  trace::RunEvent e{};
  e.kind = EventKind::NodesPlanned;
  e.time = clock_.wall();
  e.run_id = id_;
  e.flow = flow_name();
  e.status = status();
  e.planned = planned;
  publish(e);
}

// RunStart says what the run was started with: listeners (the history, a
// cluster's event stream) need nothing else to record it.
void RunState::start_event() {
  if (listener_ == nullptr) return;
  const std::string params = core::to_json_text(params_);
  boost::json::object versions;
  for (const auto& [name, version] : plugins()) versions[name] = version;
  const std::string plugins_json = boost::json::serialize(versions);
  trace::RunEvent e{};
  e.kind = EventKind::RunStart;
  e.time = clock_.wall();
  e.run_id = id_;
  e.flow = flow_name();
  e.status = status();
  e.flow_file = flow_->flow->spec->file;
  e.params = params;
  e.params_value = &params_;
  e.plugins = plugins_json;
  publish(e);
}

void RunState::start(bool cancelled) {
  on_strand([this, cancelled] {
    status_.store(core::RunStatus::Running, std::memory_order_release);
    start_event();
    if (cancelled) {  // as cancel() does; no frame yet: each node ends as it is ready
      status_.store(core::RunStatus::Cancelling, std::memory_order_release);
      emit(EventKind::RunCancelling);
      stop(true);
    }
    top_ = std::make_unique<Frame>();
    top_->graph = &flow_->flow->graph;
    start_frame(*top_);
    if (cancelled && !top_->done) cancel_pending(*top_);
  });
}

// The visible nodes node `i` waits for, seen through the hidden joins
// between them: "a,b". Through joins at most kThroughJoins names: a join of
// a thousand nodes before a thousand others would otherwise make a million.
std::string RunState::visible_predecessors(const Frame& f, std::uint32_t i,
                                           std::vector<std::uint32_t>& marks,
                                           std::vector<std::uint32_t>& todo) const {
  constexpr std::size_t kThroughJoins = 64;
  const std::uint32_t stamp = i + 1;  // marks[p] == stamp: p seen for this node
  std::string out;
  auto name = [&](std::uint32_t p) {
    marks[p] = stamp;
    if (!out.empty()) out += ',';
    out += f.nodes[p].display;
  };
  todo.clear();  // the hidden joins still to look through
  for (const core::Requirement& req : f.graph->nodes[i].requirements) {
    for (const std::uint32_t p : req.nodes) {
      if (marks[p] == stamp) continue;
      if (f.nodes[p].record != SIZE_MAX) {
        name(p);
      } else {
        marks[p] = stamp;
        todo.push_back(p);
      }
    }
  }
  std::size_t via_joins = 0;
  while (!todo.empty() && via_joins < kThroughJoins) {
    const std::uint32_t join = todo.back();
    todo.pop_back();
    for (const core::Requirement& req : f.graph->nodes[join].requirements) {
      for (const std::uint32_t p : req.nodes) {
        if (marks[p] == stamp || via_joins >= kThroughJoins) continue;
        if (f.nodes[p].record != SIZE_MAX) {
          name(p);
          ++via_joins;
        } else {
          marks[p] = stamp;
          todo.push_back(p);
        }
      }
    }
  }
  return out;
}

void RunState::start_frame(Frame& f) {
  f.nodes.resize(f.graph->nodes.size());
  f.definitions = &flow_->tasks.at(f.graph);
  f.remaining = f.nodes.size();
  std::size_t counters = 0;
  for (const GraphNode& g : f.graph->nodes) counters += 2 * g.requirements.size();
  f.counts.assign(counters, 0);
  // Room for the frame's records at once (geometric: loops start many frames).
  if (const std::size_t need = records_.size() + f.nodes.size(); need > records_.capacity()) {
    records_.reserve(std::max(need, 2 * records_.capacity()));
  }
  counters = 0;
  for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
    const GraphNode& g = f.graph->nodes[i];
    NodeExec& n = f.nodes[i];
    n.counts_at = static_cast<std::uint32_t>(counters);
    counters += 2 * g.requirements.size();
    n.unmet = g.requirements.size();
    if (f.suffix.empty()) {
      n.display = g.name;
    } else {
      n.display_owned = g.name + f.suffix;
      n.display = n.display_owned;
    }
    if (g.visible()) n.record = add_record(n, g);
  }
  if (listener_ != nullptr) {
    // One event per frame, not per node: listeners that keep records learn
    // of every node before it runs (a `runs show` of a running flow lists
    // what is still to come).
    std::vector<std::string> after(f.nodes.size());
    std::vector<std::uint32_t> marks(f.nodes.size(), 0), todo;
    for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
      if (f.nodes[i].record != SIZE_MAX) after[i] = visible_predecessors(f, i, marks, todo);
    }
    std::vector<trace::PlannedNode> planned;
    planned.reserve(f.nodes.size());
    for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
      const NodeExec& n = f.nodes[i];
      if (n.record == SIZE_MAX) continue;
      planned.push_back(
          {n.display, records_[n.record].task, static_cast<std::uint32_t>(n.record), after[i]});
    }
    if (!planned.empty()) emit_planned(planned);
  }
  if (f.nodes.empty()) {
    frame_done(f);
    return;
  }
  for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
    // A root that started before may have stopped the run (a switch whose
    // expression fails at once): the roots after it have ended already.
    if (f.graph->nodes[i].requirements.empty() && f.nodes[i].state == TaskState::Pending) {
      ready(f, i);
    }
  }
}

std::size_t RunState::add_record(NodeExec& n, const GraphNode& g) {
  Record& r = records_.emplace_back();
  r.node = n.display;
  r.task = g.kind == GraphNode::Kind::Task ? std::string_view(g.task->use) : control_kind(g);
  return records_.size() - 1;
}

// A task or control node starts: one clock read for its duration and its
// record, or none for the first start that follows from a node's end just
// read (node_ended): a chain reads the clock once per task. Only the
// first: a drain may start thousands, each at its own time.
void RunState::start_clock(NodeExec& n) {
  RunClock::Reading now;
  if (ended_at_) {
    now = *ended_at_;
    ended_at_.reset();
  } else {
    now = clock_.now();
  }
  n.started = now.steady;
  Record& r = record(n);
  r.state = TaskState::Running;
  r.started = now.wall;
}

void RunState::stop_clock(const NodeExec& n, Record& r) {
  const RunClock::Reading now = clock_.now();
  last_end_ = now;
  // An end inside a drain (a loop ending after its last iteration's task)
  // is the latest: what starts next follows it, never an earlier end.
  if (draining_) ended_at_ = now;
  r.ended = now.wall;
  r.duration_ms = ms_between(n.started, now.steady);
}

// How often a node RunOptions::may_start holds is asked about again.
constexpr std::chrono::milliseconds kStartHeld{50};

// RunOptions::may_start says not now: the node waits, asked again every
// kStartHeld, until it says yes or the run stops (a cancel ends it with the
// other pending or retrying nodes).
bool RunState::start_held(Frame& f, std::uint32_t i) {
  if (stopping_ || !options_.may_start || options_.may_start()) return false;
  NodeExec& n = f.nodes[i];
  if (!n.timer) n.timer = std::make_unique<asio::steady_timer>(control());
  n.timer->expires_after(kStartHeld);
  n.timer->async_wait([self = shared_from_this(), fp = &f, i](boost::system::error_code ec) {
    if (ec) return;
    self->on_strand_here([self, fp, i] {
      if (fp->nodes[i].waiting_retry) {
        self->retry_due(*fp, i);
      } else if (fp->nodes[i].state == TaskState::Pending) {
        self->ready(*fp, i);
      }
    });
  });
  return true;
}

void RunState::ready(Frame& f, std::uint32_t i) {
  // Asked only of a run that has the hook (a cluster worker's): a node's
  // start pays a test of it, not a call.
  if (options_.may_start && start_held(f, i)) return;
  if (stopping_) {
    end_without_running(f, i, TaskState::Cancelled, stop_reason());
    return;
  }
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  switch (g.kind) {
    case GraphNode::Kind::Join:
      n.state = TaskState::Succeeded;
      node_ended(f, i);
      return;
    case GraphNode::Kind::Task:
      // Under way; it starts (its clock, RUNNING, node_start) once its body
      // goes to a worker (launch), which may wait for room.
      n.state = TaskState::Running;
      launch(f, i);
      return;
    case GraphNode::Kind::Switch:
    case GraphNode::Kind::Loop:
      n.state = TaskState::Running;
      start_clock(n);
      // One attempt, as a task that starts: its trace and its record say
      // attempt 1 (they said 0).
      n.attempts = 1;
      record(n).attempts = 1;
      emit(EventKind::NodeStart, &n, {}, &g);
      if (g.kind == GraphNode::Kind::Switch) {
        start_switch(f, i);
      } else {
        start_loop(f, i);
      }
      return;
  }
}

void RunState::launch(Frame& f, std::uint32_t i) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  // A retry counts its try now; a first one once it starts (begin_task): a
  // task cancelled while it waited for room never had an attempt.
  const bool begun = has_begun(n);
  if (begun) record(n).attempts = ++n.attempts;

  std::string error;
  const plugins::TaskDefinition& definition = *(*f.definitions)[i];
  Value inputs = build_inputs(*this, f, i, definition, error);
  if (!error.empty()) {
    if (!begun) begin_task(f, i);
    fail(f, i, error);  // a wiring problem: retrying cannot help
    return;
  }
  // Without a deadline to start, a body that must wait for room is made
  // only when it gets it: a fan of 10,000 keeps a few attempts alive, not
  // 10,000. Its inputs are read now, as any task's are when it is ready;
  // it starts when it gets room (post_waiting_bodies), not while it waits
  // behind bodies that hold every worker. A deadline counts from when the
  // task was ready, so a task that has one starts now.
  if (g.task->timeout_sec <= 0 && !room_for_body()) {
    waiting_bodies_.push_back({nullptr, &f, i, std::move(inputs), params_});
    bodies_waiting_.store(true);
    if (queued_bodies_.load() < launch_window_) post_waiting_bodies();
    return;
  }
  if (!begun) begin_task(f, i);
  queue_body(make_attempt(f, i, std::move(inputs), params_));
}

// A task's first attempt goes to a worker (or fails before it could): the
// task starts. Its retries continue that start.
void RunState::begin_task(Frame& f, std::uint32_t i) {
  NodeExec& n = f.nodes[i];
  start_clock(n);
  n.attempts = 1;
  record(n).attempts = 1;
  emit(EventKind::NodeStart, &n, {}, &f.graph->nodes[i]);
}

std::shared_ptr<Attempt> RunState::make_attempt(Frame& f, std::uint32_t i, Value inputs,
                                                Value params) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  const plugins::TaskDefinition& definition = *(*f.definitions)[i];
  auto a = std::allocate_shared<Attempt>(AttemptPool::Allocator<Attempt>(attempt_pool_.get()));
  a->run = this;
  a->frame = &f;
  a->node = i;
  a->definition = &definition;
  a->inputs = std::move(inputs);
  // Views into storage that lives as long as the run: never into records_,
  // which grows (and moves) while tasks run as loop iterations start.
  a->ctx.info = plugins::CallInfo{id_, flow_name(), n.display, g.task->use, n.attempts};
  a->ctx.params = std::move(params);
  a->ctx.cancelled = &a->cancelled;
  a->ctx.services = a.get();
  a->record = n.record;
  if (!n.instance) {
    // Its own: the node keeps it for a retry only once this attempt failed
    // (apply_result), so a task that succeeds at once pays no count for it.
    a->own_instance.emplace(definition);
    a->instance = &*a->own_instance;
  } else {
    a->instance_keep = n.instance;
    a->instance = a->instance_keep.get();
  }
  n.running = a;

  if (g.task->timeout_sec > 0) {
    if (!n.timer) n.timer = std::make_unique<asio::steady_timer>(control());
    n.timer->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(
            std::min(g.task->timeout_sec * 1000, kMaxWaitMs))));
    a->deadline =
        std::chrono::duration_cast<std::chrono::nanoseconds>(n.timer->expiry().time_since_epoch())
            .count();
    n.timer->async_wait([self = shared_from_this(), a](boost::system::error_code ec) {
      if (!ec) self->on_strand_here([run = self.get(), a] { run->on_timeout(a); });
    });
  }
  return a;
}

// A fan of 10,000 would otherwise queue 10,000 bodies at once: a long pool
// queue that every thread contends for. Bounded, a finished body's result
// launches the next one on the same worker (Executors::post_work). The
// bound counts bodies not yet begun, never calls in flight: an async task
// that waits holds no place.
void RunState::queue_body(std::shared_ptr<Attempt> a) {
  if (room_for_body()) {
    post_body(std::move(a));
    return;
  }
  Frame* f = a->frame;
  const std::uint32_t node = a->node;
  waiting_bodies_.push_back({std::move(a), f, node, {}, {}});
  bodies_waiting_.store(true);
  // A worker that made room just before the store above did not see it.
  if (queued_bodies_.load() < launch_window_) post_waiting_bodies();
}

void RunState::post_waiting_bodies() {
  while (!waiting_bodies_.empty() && queued_bodies_.load() < launch_window_) {
    if (const WaitingBody& front = waiting_bodies_.front(); !front.attempt) {
      const NodeExec& n = front.frame->nodes[front.node];
      // Its node may have moved on while it waited (the run cancelled or stopped).
      if (n.state != TaskState::Running || n.running || n.waiting_retry) {
        waiting_bodies_.pop_front();
        continue;
      }
      // It starts now: RunOptions::may_start is asked again (a cluster
      // worker's lease may have lapsed while it waited); not now, the
      // queue waits, in order, and is looked at again in kStartHeld.
      if (!has_begun(n) && options_.may_start && !stopping_ && !options_.may_start()) {
        hold_waiting_bodies();
        break;
      }
    }
    WaitingBody w = std::move(waiting_bodies_.front());
    waiting_bodies_.pop_front();
    if (!w.attempt) {
      if (!has_begun(w.frame->nodes[w.node])) begin_task(*w.frame, w.node);
      w.attempt = make_attempt(*w.frame, w.node, std::move(w.inputs), std::move(w.params));
    }
    if (!w.attempt->cancelled.load(std::memory_order_acquire)) post_body(std::move(w.attempt));
  }
  if (waiting_bodies_.empty()) bodies_waiting_.store(false);
}

void RunState::hold_waiting_bodies() {
  if (waiting_held_) return;
  waiting_held_ = true;
  if (!waiting_timer_) waiting_timer_ = std::make_unique<asio::steady_timer>(control());
  waiting_timer_->expires_after(kStartHeld);
  // Also when cancelled (stop()): the queue is looked at, and what moved on
  // is let go.
  waiting_timer_->async_wait([self = shared_from_this()](boost::system::error_code) {
    self->on_strand_here([self] {
      self->waiting_held_ = false;
      self->post_waiting_bodies();
    });
  });
}

void RunState::made_room() {
  if (bodies_waiting_.load()) on_strand_here([this] { post_waiting_bodies(); });
}

void RunState::post_body(std::shared_ptr<Attempt> a) {
  queued_bodies_.fetch_add(1);
  const bool has_deadline = a->deadline != 0;
  // Each callback below captures two pointers at most: they fit
  // core::SmallFunction's inline room, so a task's hand-offs allocate nothing.
  executors_->post_work(
      [self = shared_from_this(), a = std::move(a)]() mutable {
        self->queued_bodies_.fetch_sub(1);
        // Past its deadline on the way here (a deadline shorter than the
        // hand-off): it never starts, as flows.md promises of an attempt
        // still waiting at its deadline. The deadline's handler, due now,
        // fails it as one that never started.
        if (a->deadline != 0 && std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now().time_since_epoch())
                                        .count() >= a->deadline) {
          a->body.store(Attempt::Body::late);
          self->made_room();
          return;
        }
        // Before `cancelled` is looked at (seq_cst): paired with abandon()'s
        // store of `cancelled` then compare-and-set of `body`.
        a->body.store(Attempt::Body::running);
        // Abandoned while queued (cancelled, stopped, timed out): it never
        // starts, and its node has already moved on.
        if (a->cancelled.load()) {
          self->left_body(*a);
          self->made_room();
          return;
        }
        // A `run` task completes before begin() returns (an async one may too):
        // its result then waits here until the plugin has returned, and this
        // worker takes it to the strand itself — no hand-off, no plugin code on
        // the stack while the run decides what comes next. A completion from
        // any other thread goes through the strand's queue.
        a->worker = std::this_thread::get_id();
        a->on_worker.store(true, std::memory_order_release);
        if (a->definition->start == nullptr) {
          // A `run` task completes inside begin(), on this thread, while this
          // body holds the run and the attempt: its completion needs no
          // reference of its own.
          a->instance->begin(a->ctx, a->inputs, [attempt = a.get()](plugins::CallResult&& result) {
            attempt->result = std::move(result);
            attempt->completed_on_worker = true;
          });
        } else {
          // An async one may complete later, from any thread: it keeps the run.
          a->starting();
          struct Started {  // also when begin() throws: no callback waits for ever
            Attempt& attempt;
            ~Started() { attempt.started(); }
          } started{*a};
          a->instance->begin(a->ctx, a->inputs, [self, a](plugins::CallResult&& result) {
            completed(a, std::move(result));
          });
        }
        a->on_worker.store(false, std::memory_order_release);
        self->left_body(*a);
        if (a->completed_on_worker) {
          // The attempt's last use here: handed on, not counted again.
          self->on_strand_here([run = self.get(), a = std::move(a)] { run->on_result(a); });
        } else {
          self->made_room();
        }
      },
      has_deadline);
}

// The worker, once a body has returned (or was found cancelled before it
// began): a thread the run had given up on is free again.
void RunState::left_body(Attempt& a) {
  if (a.body.exchange(Attempt::Body::returned) == Attempt::Body::held) {
    executors_->abandoned_body_returned();
  }
}

// Strand: the run no longer waits for this attempt (cancel, stop,
// deadline). Its body, if a worker is inside it, is counted as holding that
// worker (seq_cst, paired with post_body's store of `running` then load of
// `cancelled`: either the body sees the cancel and never starts, or this
// sees it running).
void RunState::abandon(Attempt& a) {
  end_heartbeats(a);
  if (a.hold_end_if_starting()) ++ends_held_;
  a.end(true);
  Attempt::Body running = Attempt::Body::running;
  if (a.body.compare_exchange_strong(running, Attempt::Body::held)) {
    executors_->abandoned_body_held();
  }
}

void RunState::completed(const std::shared_ptr<Attempt>& a, plugins::CallResult&& result) {
  a->result = std::move(result);
  if (a->on_worker.load(std::memory_order_acquire) && a->worker == std::this_thread::get_id()) {
    a->completed_on_worker = true;
    return;
  }
  a->run->on_strand([run = a->run, a] { run->on_result(a); });
}

// The result first (a failure that stops the run cancels what waits), then
// the next waiting body: the worker here may keep it for itself.
void RunState::on_result(const std::shared_ptr<Attempt>& a) {
  apply_result(a);
  if (!waiting_bodies_.empty()) post_waiting_bodies();
}

void RunState::apply_result(const std::shared_ptr<Attempt>& a) {
  end_heartbeats(*a);  // none published when it was abandoned: its node moved on
  a->end(false);
  Frame* f = a->frame;
  const std::uint32_t i = a->node;
  NodeExec& n = f->nodes[i];
  if (n.running != a) return;  // abandoned (deadline, cancel, stop); its node has moved on
  n.running.reset();
  if (n.timer) n.timer->cancel();
  if (!a->artifacts.empty()) {
    auto& artifacts = record(n).more().artifacts;
    artifacts.insert(artifacts.end(), a->artifacts.begin(), a->artifacts.end());
    for (const core::ArtifactRecord& saved : a->artifacts) latest_artifacts_[saved.name] = saved;
  }
  plugins::CallResult& result = *a->result;
  if (result.ok) {
    // Past the limits every reader and writer of a value keeps (the
    // history, the cluster's events, `-p`), or a number JSON cannot hold:
    // nothing downstream could keep it, and every walk of it would take as
    // long (or go as deep) as it is big. The task that returned it is blamed.
    // Only a list, a mapping or a float can be unfit (too big, too deep,
    // not finite): most tasks return none of them, and pay no walk.
    const core::ValueKind kind = result.output.kind();
    const bool may_be_unfit = kind == core::ValueKind::Array || kind == core::ValueKind::Object ||
                              kind == core::ValueKind::Double;
    if (may_be_unfit) {
      if (const std::string why = core::unfit_value(result.output, "output"); !why.empty()) {
        attempt_failed(
            *f, i, a->definition->qualified_name() + " returned " + why + " (a bug of the task)",
            true);
        return;
      }
    }
    // Most tasks declare no outputs: they pay no check (and no string).
    if (const std::string wrong = a->definition->outputs.empty()
                                      ? std::string()
                                      : output_mismatch(*a->definition, result.output);
        !wrong.empty()) {
      // The task that returned it is blamed, not the next one that reads it.
      attempt_failed(*f, i, wrong, true);
      return;
    }
    succeed(*f, i, std::move(result.output));
  } else if (result.cancelled) {
    // The task stopped itself (PYOCO_ERR_CANCELLED): no retry; what depends
    // on it does not run, and the run ends CANCELLED unless something failed.
    task_cancelled_ = true;
    n.instance.reset();
    const bool stop_run =
        f->graph->nodes[i].task->fail_policy != core::FailPolicy::Isolate && !stopping_;
    if (stop_run) stopping_ = true;  // what it releases is cancelled, not skipped
    end_without_running(*f, i, TaskState::Cancelled, result.error);
    if (stop_run) stop(false);  // the rest, once this node has ended (once)
  } else {
    // Shares the attempt's count: the node's handle keeps the attempt (and
    // so its instance) alive for a retry; the attempt never holds itself.
    if (!n.instance && a->own_instance) {
      n.instance = std::shared_ptr<plugins::TaskInstance>(a, &*a->own_instance);
    }
    attempt_failed(*f, i, result.error, result.permanent);
  }
}

// The cure for a deadline that passed while a free worker was handed the body.
constexpr const char* kShorterThanHandOver =
    "a deadline shorter than handing a body to a worker; raise timeout_sec";

void RunState::on_timeout(const std::shared_ptr<Attempt>& a) {
  Frame* f = a->frame;
  const std::uint32_t i = a->node;
  NodeExec& n = f->nodes[i];
  if (n.running != a) return;
  // FAILED at the deadline: the body is told to stop (its cancel flag and
  // callbacks), and its late result is ignored. Its instance may still be
  // busy, so a retry gets a new one.
  abandon(*a);
  n.running.reset();
  n.instance.reset();
  // Kept until a later attempt's body goes on past its deadline too: a
  // third attempt held back by the first is told so as the second was.
  const std::shared_ptr<Attempt> earlier = n.abandoned;
  if (a->body_taken()) n.abandoned = a;
  const double t = f->graph->nodes[i].task->timeout_sec;
  char buf[288];
  const unsigned jobs = executors_->jobs();
  const unsigned busy = executors_->busy_workers();  // now: a snapshot, for the message
  if (a->body_taken()) {
    std::snprintf(buf, sizeof buf, "timed out after %g s", t);
  } else if (a->body.load() == Attempt::Body::late) {
    std::snprintf(buf, sizeof buf,
                  "timed out after %g s, before its body started (a free worker thread took it "
                  "past its deadline): %s",
                  t, kShorterThanHandOver);
  } else if (busy >= jobs && earlier && earlier->on_worker.load(std::memory_order_acquire)) {
    // The worker it waited for is held by this node's own earlier attempt,
    // whose body went on after its deadline: more threads would only be
    // taken the same way.
    std::snprintf(buf, sizeof buf,
                  "timed out after %g s waiting for a free worker thread (all %u busy, one "
                  "still running attempt %u of this node, which did not stop at its deadline); "
                  "its body never started: make the task return when it is cancelled",
                  t, jobs, static_cast<unsigned>(earlier->ctx.info.attempt));
  } else if (busy >= jobs) {
    // Queued all along: the deadline counts from the node's start, and
    // every worker thread was held by other bodies (see --jobs).
    std::snprintf(buf, sizeof buf,
                  "timed out after %g s waiting for a free worker thread (all %u busy); its body "
                  "never started: raise --jobs, or run fewer blocking tasks at once",
                  t, jobs);
  } else {
    // A worker was free: the deadline passed while the body was handed to
    // it (a very short one, or a host short of CPU), not for want of --jobs.
    std::snprintf(buf, sizeof buf,
                  "timed out after %g s, before its body started (no worker thread had taken it "
                  "yet; %u of %u were free): %s",
                  t, jobs - busy, jobs, kShorterThanHandOver);
  }
  attempt_failed(*f, i, buf, false);
}

void RunState::attempt_failed(Frame& f, std::uint32_t i, const std::string& error, bool permanent) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  if (n.attempts <= g.task->retries && !stopping_ && !permanent) {
    const double delay = backoff_ms(g.task->backoff, n.attempts);
    ++n.attempts;  // the event names the attempt about to run
    n.retry_delay_ms = delay;
    emit(EventKind::NodeRetry, &n, error, &g);
    --n.attempts;
    // Shown while it waits, and kept if the run stops before the retry.
    record(n).error = error;
    if (!n.timer) n.timer = std::make_unique<asio::steady_timer>(control());
    n.waiting_retry = true;
    n.timer->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(delay)));
    n.timer->async_wait([self = shared_from_this(), fp = &f, i](boost::system::error_code ec) {
      if (ec) return;
      self->on_strand_here([self, fp, i] { self->retry_due(*fp, i); });
    });
    return;
  }
  fail(f, i, error);
}

// A node's retry delay is over.
void RunState::retry_due(Frame& f, std::uint32_t i) {
  NodeExec& node = f.nodes[i];
  if (!node.waiting_retry || node.state != TaskState::Running) return;
  if (start_held(f, i)) return;  // still waiting to retry
  node.waiting_retry = false;
  if (stopping_) {
    end_without_running(f, i, TaskState::Cancelled, stop_reason());
  } else {
    launch(f, i);
  }
}

void RunState::succeed(Frame& f, std::uint32_t i, Value output) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  n.state = TaskState::Succeeded;
  n.output = std::move(output);
  Record& r = record(n);
  r.state = TaskState::Succeeded;
  r.error.clear();  // an earlier attempt's, if it was retried
  stop_clock(n, r);
  r.output_summary = core::output_summary(n.output);
  if (g.kind == GraphNode::Kind::Task) apply_outputs(*g.task, n.output);
  // Seen after its loop or switch too, as pyoco's results.<node> is.
  if (g.visible()) {
    for (Frame* p = f.parent; p != nullptr; p = p->parent) p->inner_results[g.name] = &n;
  }
  emit(EventKind::NodeDone, &n, {}, &g);
  n.instance.reset();
  n.abandoned.reset();
  node_ended(f, i);
}

void RunState::fail(Frame& f, std::uint32_t i, const std::string& error) {
  const GraphNode& g = f.graph->nodes[i];
  NodeExec& n = f.nodes[i];
  n.state = TaskState::Failed;
  Record& r = record(n);
  r.state = TaskState::Failed;
  r.error = error;
  stop_clock(n, r);
  failed_nodes_.emplace_back(n.display);
  emit(EventKind::NodeError, &n, error, &g);
  n.instance.reset();
  n.abandoned.reset();
  const bool isolate =
      g.kind == GraphNode::Kind::Task ? g.task->fail_policy == core::FailPolicy::Isolate : false;
  if (!isolate && !stopping_) {
    failed_ = true;
    stop(false);
  }
  node_ended(f, i);
}

void RunState::end_without_running(Frame& f, std::uint32_t i, TaskState state,
                                   const std::string& why) {
  NodeExec& n = f.nodes[i];
  n.state = state;
  n.running.reset();
  n.instance.reset();  // an abandoned call keeps its own attempt (and instance)
  n.abandoned.reset();
  n.waiting_retry = false;
  if (n.record != SIZE_MAX) {
    Record& r = record(n);
    r.state = state;
    if (state == TaskState::Skipped || !why.empty()) r.error = why;
    if (r.started != std::chrono::system_clock::time_point{}) stop_clock(n, r);
    emit(state == TaskState::Skipped ? EventKind::NodeSkipped : EventKind::NodeCancelled, &n, why);
  }
  node_ended(f, i);
}

// Ends are processed from a queue, not by recursion: a failure at the head
// of a 100,000-node chain skips the rest without 100,000 stack frames.
void RunState::node_ended(Frame& f, std::uint32_t i) {
  ended_queue_.emplace_back(&f, i);
  if (draining_) return;
  draining_ = true;
  // The first node this end starts does so at the time it ended (if its
  // end read the clock). Taken, not copied: a reading never outlives the
  // drain that follows it, even if something threw before.
  ended_at_ = std::exchange(last_end_, std::nullopt);
  // A vector read from the front and cleared at the end keeps its storage
  // from one end to the next: a deque gave a block back, and took it again,
  // for every task of a chain.
  for (std::size_t k = 0; k < ended_queue_.size(); ++k) {
    const auto [frame, node] = ended_queue_[k];
    release_successors(*frame, node);
  }
  ended_queue_.clear();
  draining_ = false;
  ended_at_.reset();
  last_end_.reset();
}

void RunState::release_successors(Frame& f, std::uint32_t i) {
  const GraphNode& g = f.graph->nodes[i];
  const bool ok = f.nodes[i].state == TaskState::Succeeded;
  // Releases come grouped by successor: count this node in each requirement
  // it is part of, then judge the successor once.
  const auto& releases = g.releases;
  for (std::size_t k = 0; k < releases.size();) {
    const std::uint32_t s = releases[k].node;
    NodeExec& sn = f.nodes[s];
    const bool pending = sn.state == TaskState::Pending;
    const GraphNode& sg = f.graph->nodes[s];
    for (; k < releases.size() && releases[k].node == s; ++k) {
      if (!pending) continue;
      // Counters only grow, so a requirement starts to hold (or can no
      // longer hold) exactly once: O(1) per finished predecessor.
      const std::uint32_t r = releases[k].requirement;
      const core::Requirement& req = sg.requirements[r];
      std::uint32_t& satisfied = f.counts[sn.counts_at + 2 * r];
      std::uint32_t& ended = f.counts[sn.counts_at + 2 * r + 1];
      auto holds = [&] { return req.any ? satisfied > 0 : satisfied == req.nodes.size(); };
      auto lost = [&] {
        return req.any ? (ended == req.nodes.size() && satisfied == 0) : ended > satisfied;
      };
      const bool held = holds(), was_lost = lost();
      ++ended;
      if (ok) ++satisfied;
      if (!held && holds()) --sn.unmet;
      if (!was_lost && lost()) sn.broken = true;
    }
    if (!pending) continue;
    const bool broken = sn.broken;
    const bool all_hold = sn.unmet == 0;
    if (broken) {
      end_without_running(
          f, s, stopping_ ? TaskState::Cancelled : TaskState::Skipped,
          // Said as cancel_pending says it: after a cancel, its dependents
          // were cancelled too, not "stopped".
          stopping_ ? stop_reason()
                    : "upstream " + std::string(f.nodes[i].display) + " " +
                          (f.nodes[i].state == TaskState::Failed ? "failed" : "did not run"));
    } else if (all_hold) {
      ready(f, s);
    }
  }
  if (--f.remaining == 0) frame_done(f);
}

void RunState::stop(bool cancelled) {
  stopping_ = true;
  if (cancelled) cancelled_ = true;
  if (waiting_timer_) waiting_timer_->cancel();  // held by may_start: see hold_waiting_bodies
  if (top_) cancel_pending(*top_);
}

// Pending and running nodes become CANCELLED at once: nothing more starts,
// and the run does not wait for bodies. A running body is told to stop (its
// cancel flag); whatever it returns later is ignored.
void RunState::cancel_pending(Frame& f) {
  for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
    NodeExec& n = f.nodes[i];
    if (!n.control) continue;
    for (auto& c : n.control->children) {
      if (!c->done) cancel_pending(*c);
    }
  }
  // Separate pass: ending a node may end others.
  const char* why = stop_reason();
  for (std::uint32_t i = 0; i < f.nodes.size(); ++i) {
    NodeExec& n = f.nodes[i];
    if (f.done) return;
    if (n.state == TaskState::Pending) {
      // A node RunOptions::may_start held has its timer armed: its handler
      // holds the run, and a timer still pending when the engine shuts down
      // is never run, so the run and the engine's executors would be kept
      // for ever. Cancelled, it runs at once and finds the node ended.
      if (n.timer) n.timer->cancel();
      end_without_running(f, i, TaskState::Cancelled, why);
    } else if (n.state == TaskState::Running && f.graph->nodes[i].kind == GraphNode::Kind::Task) {
      if (n.timer) n.timer->cancel();
      if (n.running) abandon(*n.running);
      if (n.waiting_retry && n.record != SIZE_MAX && !record(n).error.empty()) {
        // Why it was waiting is worth more than that it was stopped.
        end_without_running(f, i, TaskState::Cancelled,
                            std::string(why) + " while it waited to retry (attempt " +
                                std::to_string(n.attempts) + ": " + record(n).error + ")");
      } else {
        end_without_running(f, i, TaskState::Cancelled, why);
      }
    }
  }
}

void RunState::cancel() {
  if (core::is_terminal(status())) return;  // also keeps a handle that outlived its engine safe
  on_strand([this] {
    if (core::is_terminal(status()) || status() == core::RunStatus::Cancelling) return;
    // Over, its end waiting for a start() (finish): it ended as it ended.
    if (top_ && top_->done) return;
    status_.store(core::RunStatus::Cancelling, std::memory_order_release);
    emit(EventKind::RunCancelling);
    stop(true);
  });
}

void RunState::frame_done(Frame& f) {
  if (f.done) return;
  f.done = true;
  if (&f == top_.get()) {
    finish();
    return;
  }
  child_done(f);
}

void RunState::finish() {
  if (done_ || !top_ || !top_->done) return;
  if (ends_held_ > 0) {
    // An async task's start() still runs on an attempt given up (cancel,
    // stop): its on-cancel callback waits for it (abi.h, Threads), and the
    // lines they log (std/shell's last lines) would come after the end.
    // Not waited for past kStartGrace.
    if (!end_grace_) {
      end_grace_ = std::make_unique<asio::steady_timer>(control());
      end_grace_->expires_after(kStartGrace);
      // Weak: a timer still pending when the engine shuts down must not
      // keep the run (and through it the engine's executors) alive.
      end_grace_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        const auto self = weak.lock();
        if (ec || !self) return;
        self->on_strand_here([run = self.get()] {
          run->ends_held_ = 0;
          run->finish();
        });
      });
    }
    return;
  }
  if (end_grace_) end_grace_->cancel();
  core::RunStatus final = core::RunStatus::Completed;
  if (cancelled_) {
    final = core::RunStatus::Cancelled;
  } else if (failed_ || !failed_nodes_.empty()) {
    final = core::RunStatus::Failed;
  } else if (task_cancelled_) {
    final = core::RunStatus::Cancelled;
  }
  status_.store(final, std::memory_order_release);
  std::string failed;
  for (const auto& n : failed_nodes_) failed += (failed.empty() ? "" : ",") + n;
  emit(EventKind::RunEnd, nullptr, final == core::RunStatus::Failed ? failed : "");
  {
    std::lock_guard<std::mutex> lock(done_mutex_);
    done_ = true;
  }
  done_cv_.notify_all();
}

void RunState::release_end() {
  if (ends_held_ == 0 || --ends_held_ > 0) return;
  if (top_ && top_->done) finish();
}

}  // namespace pyoco
