// Internal: one run's state machine. Everything but the members marked
// "any thread" is touched only on the run's strand (serial.hpp): no locks
// on the scheduler's path but the strand's own, held to queue a handler.
#pragma once

#include <pyoco/engine/engine.hpp>
#include <pyoco/plugins/task.hpp>

#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "attempt_pool.hpp"
#include "executors.hpp"
#include "run_clock.hpp"
#include "serial.hpp"

namespace pyoco {

// A flow with every task node bound to a callable definition.
struct BoundFlow {
  std::shared_ptr<const core::CompiledFlow> flow;
  // Per graph (the flow's, each body's), by node index: a task node's
  // definition, null for other nodes. A frame finds its graph's once.
  std::unordered_map<const core::FlowGraph*, std::vector<const plugins::TaskDefinition*>> tasks;
  // In-process tasks, wrapped as definitions (they outlive every run of this flow).
  std::vector<std::unique_ptr<plugins::TaskDefinition>> local_definitions;
  std::vector<std::unique_ptr<TaskFn>> local_functions;
  // The version of each plugin its tasks came from, by plugin name.
  std::map<std::string, std::string> plugins;
};

// Binds every task node of `flow` (loading the plugins it needs); throws
// core::FlowError or plugins::LoadError (bind.cpp).
std::shared_ptr<BoundFlow> bind_flow(std::shared_ptr<const core::CompiledFlow> flow,
                                     const plugins::Catalog& catalog,
                                     const std::map<std::string, TaskFn>& local_tasks);

// The task records a frame of `graph` adds when it starts: its nodes but
// joins (control_nodes.cpp).
std::size_t frame_tasks(const core::FlowGraph& graph);

class RunState;
struct Frame;

// One try of one task node: its context, cancel flag, what it saved, and
// the callbacks and timers it asked for (ABI 1.1).
struct Attempt : plugins::RunServices, std::enable_shared_from_this<Attempt> {
  // User-provided, so that make_shared does not first zero all of it (one
  // per task try; every member says its own start).
  Attempt() {}  // NOLINT(modernize-use-equals-default)
  RunState* run = nullptr;
  plugins::Call ctx;
  std::atomic<bool> cancelled{false};
  std::vector<ArtifactRecord> artifacts;  // written on the task thread, read after
  // The node's task instance. The first attempt of a node holds it
  // (own_instance: no allocation of its own); a retry keeps that attempt's
  // alive through instance_keep.
  plugins::TaskInstance* instance = nullptr;
  std::optional<plugins::TaskInstance> own_instance;
  std::shared_ptr<plugins::TaskInstance> instance_keep;
  std::int64_t deadline = 0;  // CLOCK_MONOTONIC ns, 0: none
  std::size_t record = 0;     // its node's place in the run's records
  Frame* frame = nullptr;     // the node it is an attempt of
  std::uint32_t node = 0;
  const plugins::TaskDefinition* definition = nullptr;
  core::Value inputs;
  // A `run` body hands its result to the worker that ran it (launch): the
  // worker, once the plugin has returned, takes it to the strand itself.
  std::thread::id worker;
  std::atomic<bool> on_worker{false};
  bool completed_on_worker = false;  // that worker only
  // Where its body is. A worker sets `running` before it looks at
  // `cancelled`: a deadline that finds `queued` says the body never started,
  // not that it was slow. `late`: a worker took it past its deadline (one
  // shorter than handing a body over), so it never starts either. `held` is
  // `running` given up by the run (cancel, stop, deadline) while its thread
  // is still inside it: counted in Executors::abandoned_bodies() until the
  // body returns.
  enum class Body : std::uint8_t { queued, late, running, held, returned };
  std::atomic<Body> body{Body::queued};
  bool body_taken() const {
    const Body b = body.load();
    return b != Body::queued && b != Body::late;
  }
  // Written once by whoever completes the call, read on the strand after.
  std::optional<plugins::CallResult> result;

  // Heartbeats on their way to the strand (RunState::emit_heartbeat): only
  // the latest waits, so a task that beats in a tight loop has one handler
  // queued at a time, not millions.
  struct Beats {
    std::mutex mutex;
    double progress = -1;  // mutex
    std::string message;   // mutex
    bool queued = false;   // mutex: a handler is on its way to the strand
    std::chrono::steady_clock::time_point published{};  // strand: the last one published
    bool unpublished = false;  // strand: the record holds one newer than that
    // strand: publishes that one once kBeatEvery has passed (a task that
    // beats twice, then works for minutes, is shown at its second beat).
    std::unique_ptr<asio::steady_timer> trailing;
    bool trailing_armed = false;
  };
  Beats& beats();         // made on the first heartbeat
  Beats* beats_if_any();  // null: the task never beat
  // Strand: the run is done with this attempt (its result applied, or
  // abandoned): its heartbeats no longer touch the node's record, which a
  // retry may be using.
  bool over = false;

  void log(const plugins::CallInfo& call, plugins::LogLevel level,
           std::string_view message) override;
  ArtifactRecord save_artifact(const plugins::CallInfo& call, std::string_view name,
                               std::string_view bytes, std::string_view media_type) override;
  std::optional<std::string> load_artifact(std::string_view name) override;
  core::Value scratch_get(std::string_view key) override;
  void scratch_set(std::string_view key, core::Value value) override;
  pyoco_status scratch_update(std::string_view key, const core::Value& expected,
                              const core::Value& desired, core::Value& current) override;
  std::int64_t deadline_ns() override { return deadline; }
  bool on_cancel(pyoco_callback_fn fn, void* user) override;
  bool start_timer(std::uint64_t delay_ns, pyoco_callback_fn fn, void* user) override;
  void heartbeat(const plugins::CallInfo& call, double progress, std::string_view message) override;

  // Strand: the attempt is over. Callbacks still waiting are called (with
  // PYOCO_ERR_CANCELLED when it was cancelled or timed out, else PYOCO_OK)
  // and its timers are cancelled. Idempotent.
  void end(bool was_cancelled);
  void call_finished() override;

  // The worker, around an async task's start(). A callback the host makes
  // for the call (a timer's, an on-cancel) that falls due on another thread
  // meanwhile waits until start() returns, then runs on the strand: a
  // plugin never has its start() and such a callback running at once
  // (abi.h, Threads), so both may build the call's values.
  void starting();
  void started();
  // Strand, as the run gives the attempt up (abandon): true when start()
  // is running now. started() then tells the run (release_end) once the
  // callbacks it held back have run, and the run's end waits for that.
  bool hold_end_if_starting();

 private:
  enum class Phase { Live, Cancelled, Ended };
  void settle(Phase phase);
  bool live() const { return phase_.load() == Phase::Live; }
  // The phase changes once, by compare-and-set; the mutex guards callbacks_
  // and is taken only once a plugin registered one (most tasks never do).
  std::atomic<Phase> phase_{Phase::Live};
  std::atomic<bool> has_callbacks_{false};
  std::mutex mutex_;
  std::vector<std::pair<pyoco_callback_fn, void*>> callbacks_;
  std::vector<std::unique_ptr<asio::steady_timer>> timers_;  // strand only
  // Calls fn(user, why) now, or once start() has returned (see starting()).
  // A timer's (`timer`) OK turns CANCELLED if the call ended meanwhile, as
  // abi.h promises a timer of a call that ends first.
  void callback(pyoco_callback_fn fn, void* user, pyoco_status why, bool timer = false);
  struct Deferred {
    pyoco_callback_fn fn;
    void* user;
    pyoco_status why;
    bool timer;
  };
  bool in_start_ = false;           // mutex_
  std::thread::id start_thread_;    // mutex_: the worker running start()
  std::vector<Deferred> deferred_;  // mutex_
  bool holds_end_ = false;          // mutex_: hold_end_if_starting() said so
  std::unique_ptr<Beats> beats_;    // mutex_ (made once, then kept)
};

// An iteration's loop as pyoco shows it (`$ctx.loop.<field>`): apart from
// the loop variables, so that a task input named `count` or `name` is never
// filled from it.
// Its name and path are made only when an expression reads them.
struct LoopFrameInfo {
  std::shared_ptr<const LoopFrameInfo> outer;  // the enclosing loop's, or null
  const core::dsl::LoopTerm* loop = nullptr;
  std::size_t index = 0;  // 0-based
  std::size_t count = 0;  // repeat's count, the list's length, max_iter
  core::Value item;       // foreach: this iteration's element
  core::Value condition;  // until: the condition after the previous iteration
  const char* type() const;
  std::string name() const;  // "repeat", "foreach:<item>", "until"
  std::string path() const;  // "repeat[0].foreach:x[1]"
  core::Value as_object() const;
};

// A switch's or a loop's state while it runs.
struct ControlExec {
  std::vector<std::unique_ptr<Frame>> children;
  std::vector<core::Value> iteration_outputs;  // collect list or flatten
  core::Value kept_output;                     // collect last or first
  std::size_t kept_iteration = 0;              // last: the kept one's index + 1
  bool over_limit = false;                     // an iteration could not start: the run's task limit
  core::Value loop_items;                      // foreach: the array
  std::size_t loop_count = 0;                  // repeat: its count, evaluated
  core::Value until_condition;                 // until: the condition's last value
  std::size_t next_iteration = 0;
  std::size_t active_children = 0;
  bool child_failed = false;
  // Loops: the iterations that did not succeed, for the loop's error. How
  // many, the lowest indexes (ascending, at most kNamed of them) and the
  // error of the lowest one; kept as they end, in any order.
  static constexpr std::size_t kNamed = 6;
  std::size_t failed_iterations = 0;
  std::array<std::size_t, kNamed> failed_first{};
  std::string first_failure;  // "boom[4]: broke"
};

struct NodeExec {
  // User-provided: a frame's nodes are made by resize(), which would zero
  // each first (every member says its own start).
  NodeExec() {}  // NOLINT(modernize-use-equals-default)
  core::TaskState state = core::TaskState::Pending;
  // Its requirements' counters in Frame::counts, from here: per
  // requirement, the predecessors that succeeded, then those that ended.
  std::uint32_t counts_at = 0;
  std::size_t unmet = 0;  // requirements that do not hold yet
  bool broken = false;    // a requirement can no longer hold
  std::uint32_t attempts = 0;
  core::Value output;
  // Its name in traces and records: the graph node's name, or for a node
  // of a loop's or switch's body that name and the frame's suffix, kept in
  // display_owned ("step[2]"). A node is never moved once its frame has
  // started, so the view stays valid as long as the run.
  std::string_view display;
  std::string display_owned;
  std::size_t record = SIZE_MAX;
  std::chrono::steady_clock::time_point started;
  std::shared_ptr<Attempt> running;
  // The last attempt abandoned at its deadline while its body ran: the
  // next one's timeout can tell when that body still holds a worker.
  std::shared_ptr<Attempt> abandoned;
  std::shared_ptr<plugins::TaskInstance> instance;  // kept across retries
  std::unique_ptr<asio::steady_timer> timer;        // timeout or retry delay
  bool waiting_retry = false;
  double retry_delay_ms = 0;  // the backoff before the next attempt

  // Switch and loops only: made when one starts (most nodes are tasks).
  std::unique_ptr<ControlExec> control;
  ControlExec& ctl() {
    if (!control) control = std::make_unique<ControlExec>();
    return *control;
  }
  const ControlExec& ctl() const;
};

struct Frame {
  const core::FlowGraph* graph = nullptr;
  Frame* parent = nullptr;
  std::uint32_t parent_node = 0;  // the control node in `parent` this frame belongs to
  std::size_t iteration = 0;
  std::string suffix;                               // "[2]" for iteration 2, nested: "[2][0]"
  core::Value loop;                                 // object: loop variables visible here
  std::shared_ptr<const LoopFrameInfo> loop_frame;  // the innermost loop, or null
  // The last run of each node that succeeded in a body inside this frame (a
  // loop's or a switch's, at any depth): what its later nodes read by name.
  std::unordered_map<std::string_view, const NodeExec*> inner_results;
  std::vector<NodeExec> nodes;
  const std::vector<const plugins::TaskDefinition*>* definitions = nullptr;  // BoundFlow::tasks
  std::vector<std::uint32_t> counts;  // every node's requirement counters (NodeExec::counts_at)
  std::size_t remaining = 0;
  bool done = false;
};

class RunState : public std::enable_shared_from_this<RunState> {
 public:
  RunState(std::shared_ptr<Executors> executors, std::shared_ptr<BoundFlow> flow,
           RunOptions options, std::string id);

  // `cancelled`: as if cancel() came first, nothing runs.
  void start(bool cancelled = false);
  void cancel();
  void wait() const;
  bool wait_for(std::chrono::milliseconds t) const;
  bool wait_until(std::chrono::steady_clock::time_point t) const;
  core::RunStatus status() const { return status_.load(std::memory_order_acquire); }
  std::vector<TaskRecord> records() const;
  core::Value output(std::string_view node) const;
  core::Value params() const;

  const std::string& id() const { return id_; }
  const std::string& flow_name() const { return flow_->flow->spec->name; }
  const std::map<std::string, std::string>& plugins() const { return flow_->plugins; }

  // any thread
  void emit_log(const plugins::CallInfo& call, plugins::LogLevel level, std::string_view message);
  core::ArtifactStore& artifacts() const { return *options_.artifacts; }
  core::Value scratch_get(std::string_view key);
  void scratch_set(std::string_view key, core::Value value);
  pyoco_status scratch_update(std::string_view key, const core::Value& expected,
                              const core::Value& desired, core::Value& current);
  void emit_heartbeat(Attempt& a, const plugins::CallInfo& call, double progress,
                      std::string_view message);
  // Strand: an attempt ends; the heartbeat its record holds and no event
  // said yet (emit_heartbeat publishes one a kBeatEvery) is published now,
  // before the node's end.
  void flush_heartbeat(Attempt& a);
  // Strand: the run is done with the attempt: flush_heartbeat, then its
  // heartbeats are ignored and its trailing timer cancelled.
  void end_heartbeats(Attempt& a);
  // Strand: an attempt given up while its start() ran has returned from it
  // and run what it held back (Attempt::hold_end_if_starting).
  void release_end();
  // Where the run's timers wait (their handlers then enter the strand).
  Executors::Executor control() const { return executors_->control(); }
  const Serial& serial() const { return serial_; }

  // Lookups for inputs and expressions (strand).
  // A node by name as `f` sees it: in its frame, else the last run of a
  // node of that name in a body inside it (pyoco's results.<node> after a
  // loop), else the same in the enclosing frames, innermost first.
  const NodeExec* find_node(const Frame& f, std::string_view name) const;
  // A node's output as `f` sees it (find_node), else what an
  // `outputs: ["results.<name>"]` wrote; nullopt, and why, when neither.
  std::optional<core::Value> result_of(const Frame& f, std::string_view name,
                                       std::string& why) const;
  core::Value loop_var(const Frame& f, std::string_view name) const;
  // What an `outputs: ["results.<name>"]` wrote, or null.
  const core::Value* results_alias(std::string_view name) const;
  // A scratch key's value, or nullopt when it was never set.
  std::optional<core::Value> scratch_find(std::string_view key);
  // Sets scratch `key` to what `change` makes of its value (null when
  // unset), under one lock: no task's scratch_set between read and write is lost.
  void scratch_modify(std::string_view key, const std::function<core::Value(core::Value)>& change);
  // The latest artifact of each name the run's tasks saved (strand).
  const std::map<std::string, core::ArtifactRecord, std::less<>>& latest_artifacts() const {
    return latest_artifacts_;
  }
  // The whole scratch as an object.
  core::Value scratch_object();
  const core::Value& current_params() const { return params_; }
  // What `$env.NAME` reads (RunOptions::env); null when unset.
  const std::string* env(std::string_view name) const {
    auto it = options_.env.find(name);
    return it == options_.env.end() ? nullptr : &it->second;
  }

 public:
  // Any thread: runs `f` on the run's strand. Dropped once the engine has
  // shut down (a plugin thread may complete a call, log or set a timer after
  // ~Engine; the run is over by then).
  template <class F>
  bool on_strand(F&& f) {
    if (!executors_->accepting()) return false;
    serial_.post([self = shared_from_this(), f = std::forward<F>(f)]() mutable { f(); },
                 shared_from_this());
    return true;
  }
  // Only on an engine thread with no plugin code on its stack (a timer's
  // handler, a worker after a body): runs `f` on the strand here and now
  // when the strand is free, else queues it (serial.hpp). The caller must
  // hold a reference on the run: a handler run here takes none.
  // Dropped, like on_strand, once the engine has shut down.
  template <class F>
  void on_strand_here(F&& f) {
    if (!executors_->accepting()) return;
    serial_.dispatch(std::forward<F>(f), [this] { return shared_from_this(); });
  }
  // Any thread, even after the engine shut down: queues `f` on the strand.
  void post_to_strand(Serial::Handler f) const { serial_.post(std::move(f), shared_from_this()); }

 private:
  friend struct FrameScope;

  // A task record as the run keeps it, in half a TaskRecord's room (a run
  // writes one for every node, and a big run's records outgrow the cache):
  // its names are views (the node's display name, the task's `use`), and
  // what few tasks have, artifacts and a heartbeat, is made when one has
  // it. records() makes TaskRecords of them.
  struct Record {
    // User-provided: emplace_back() would zero it first (every member says
    // its own start).
    Record() {}  // NOLINT(modernize-use-equals-default)
    std::string_view node, task;
    std::chrono::system_clock::time_point started, ended;  // zero when it never ran
    double duration_ms = 0;
    std::uint32_t attempts = 0;
    core::TaskState state = core::TaskState::Pending;
    std::string error;
    std::string output_summary;
    struct Extra {
      std::vector<ArtifactRecord> artifacts;
      double progress = -1;
      std::string heartbeat;
      std::chrono::system_clock::time_point heartbeat_at;
    };
    std::unique_ptr<Extra> extra;
    Extra& more() {
      if (!extra) extra = std::make_unique<Extra>();
      return *extra;
    }
    TaskRecord named() const;
  };

  void take_heartbeat(Attempt& a, const plugins::CallInfo& call);
  void publish_heartbeat(const plugins::CallInfo& call, std::size_t record);
  // Log lines queued for the strand by other threads, and those dropped
  // since the strand last said so (emit_log): a task logging faster than
  // the run records never holds more than kLogBytesWaiting.
  std::atomic<std::size_t> log_bytes_waiting_{0};
  std::atomic<std::uint64_t> log_lines_dropped_{0};
  std::atomic<std::uint64_t> log_bytes_dropped_{0};
  std::atomic<bool> log_drop_said_{false};  // a note of them is on its way to the strand
  std::atomic<bool> log_stuck_{false};      // a wait for room saw nothing move: drop at once
  std::atomic<std::uint64_t> log_lines_given_room_{0};  // ever (reserve_log_bytes)
  bool reserve_log_bytes(std::size_t bytes);            // any thread
  void emit(trace::EventKind kind, const NodeExec* n = nullptr, std::string_view message = {},
            const core::GraphNode* g = nullptr);
  void emit_planned(std::span<const trace::PlannedNode> planned);
  void start_event();
  // Strand: numbers the event in the run's one order and hands it on.
  void publish(trace::RunEvent& e) {
    e.seq = ++event_seq_;
    trace::notify(*listener_, e);
  }

  // The scheduler.
  void start_frame(Frame& f);
  // `marks` (one per node of the frame) and `todo`: scratch kept across
  // the frame's nodes.
  std::string visible_predecessors(const Frame& f, std::uint32_t i,
                                   std::vector<std::uint32_t>& marks,
                                   std::vector<std::uint32_t>& todo) const;
  void ready(Frame& f, std::uint32_t i);
  bool start_held(Frame& f, std::uint32_t i);  // RunOptions::may_start: not now
  void retry_due(Frame& f, std::uint32_t i);
  void launch(Frame& f, std::uint32_t i);
  void begin_task(Frame& f, std::uint32_t i);
  // Whether a task node has started (begin_task), or a control node.
  static bool has_begun(const NodeExec& n) {
    return n.started != std::chrono::steady_clock::time_point{};
  }
  // Bodies go to the pool a few at a time (launch_window_ queued at most);
  // the rest wait here, their attempts made and deadlines running.
  std::shared_ptr<Attempt> make_attempt(Frame& f, std::uint32_t i, core::Value inputs,
                                        core::Value params);
  bool room_for_body() const {
    return queued_bodies_.load() < launch_window_ && waiting_bodies_.empty();
  }
  void queue_body(std::shared_ptr<Attempt> a);
  void post_body(std::shared_ptr<Attempt> a);
  void left_body(Attempt& a);
  void abandon(Attempt& a);
  void post_waiting_bodies();
  // A worker, after a body left the queue without a result for the strand.
  void made_room();
  // Where a call's result goes (its CallDone), on whatever thread ends it.
  static void completed(const std::shared_ptr<Attempt>& a, plugins::CallResult&& result);
  void on_result(const std::shared_ptr<Attempt>& a);
  void apply_result(const std::shared_ptr<Attempt>& a);
  void on_timeout(const std::shared_ptr<Attempt>& a);
  void attempt_failed(Frame& f, std::uint32_t i, const std::string& error, bool permanent);
  void succeed(Frame& f, std::uint32_t i, core::Value output);
  void fail(Frame& f, std::uint32_t i, const std::string& error);
  void end_without_running(Frame& f, std::uint32_t i, core::TaskState state,
                           const std::string& why);
  void node_ended(Frame& f, std::uint32_t i);
  void release_successors(Frame& f, std::uint32_t i);
  void frame_done(Frame& f);
  void stop(bool cancelled);
  void cancel_pending(Frame& f);

  // Control nodes.
  void start_switch(Frame& f, std::uint32_t i);
  void start_loop(Frame& f, std::uint32_t i);
  bool start_iteration(Frame& f, std::uint32_t i);
  void child_done(Frame& child);
  core::Value frame_output(const Frame& f) const;
  core::Value collect(const Frame& f, std::uint32_t i) const;
  bool room_for(const core::FlowGraph& graph) const;
  std::string over_task_limit() const;

  void apply_outputs(const core::TaskSpec& spec, const core::Value& output);
  std::size_t add_record(NodeExec& n, const core::GraphNode& g);
  void start_clock(NodeExec& n);
  void stop_clock(const NodeExec& n, Record& r);
  Record& record(const NodeExec& n) { return records_[n.record]; }

  void finish();

  // Shared: a Run handle may outlive its Engine, and the strand below must
  // not outlive the io_context it belongs to.
  std::shared_ptr<Executors> executors_;
  // Before anything that may hold an attempt: made first, let go last.
  AttemptPool::Handle attempt_pool_ = AttemptPool::create();
  mutable Serial serial_;  // the run's strand
  std::shared_ptr<BoundFlow> flow_;
  RunOptions options_;
  std::string id_;
  trace::EventListener* listener_ = nullptr;
  std::uint64_t event_seq_ = 0;  // strand
  RunClock clock_;               // strand

  std::atomic<core::RunStatus> status_{core::RunStatus::Pending};
  core::Value params_;
  std::map<std::string, core::Value, std::less<>> results_alias_;
  std::map<std::string, core::ArtifactRecord, std::less<>> latest_artifacts_;
  std::unique_ptr<Frame> top_;
  std::vector<Record> records_;
  bool stopping_ = false;   // no new tasks start
  bool cancelled_ = false;  // stopping because of cancel()
  // Why a node ends CANCELLED while the run stops: as the trace says it.
  const char* stop_reason() const { return cancelled_ ? "run cancelled" : "run stopped"; }
  bool failed_ = false;          // stopping because a task failed under `stop`
  bool task_cancelled_ = false;  // a task ended itself CANCELLED (PYOCO_ERR_CANCELLED)
  std::vector<std::string> failed_nodes_;
  std::vector<std::pair<Frame*, std::uint32_t>> ended_queue_;  // node_ended
  // The clock as a node's end read it (stop_clock), and that reading held
  // while node_ended drains: the starts and ends it causes reuse it.
  std::optional<RunClock::Reading> last_end_;
  std::optional<RunClock::Reading> ended_at_;
  bool draining_ = false;
  // Attempts given up while their start() ran, not returned from it yet:
  // the run's end waits for them, at most kStartGrace (finish).
  std::size_t ends_held_ = 0;                      // strand
  std::unique_ptr<asio::steady_timer> end_grace_;  // strand
  struct WaitingBody {
    std::shared_ptr<Attempt> attempt;  // null: made when it gets room (no deadline runs)
    Frame* frame = nullptr;
    std::uint32_t node = 0;
    core::Value inputs;
    core::Value params;  // as the task saw them when it became ready
  };
  std::deque<WaitingBody> waiting_bodies_;  // strand
  // RunOptions::may_start said not now to the queue's first (strand).
  void hold_waiting_bodies();
  std::unique_ptr<asio::steady_timer> waiting_timer_;
  bool waiting_held_ = false;
  const std::uint32_t launch_window_;
  // Both sequentially consistent, on purpose: the strand sets the flag then
  // reads the count, a worker lowers the count then reads the flag, so one
  // of them always sees the other (queue_body, made_room). Do not relax.
  std::atomic<std::uint32_t> queued_bodies_{0};  // posted to the pool, not begun
  std::atomic<bool> bodies_waiting_{false};      // waiting_bodies_ is not empty

  // any thread
  mutable std::mutex done_mutex_;
  mutable std::condition_variable done_cv_;
  bool done_ = false;
  std::mutex scratch_mutex_;
  std::map<std::string, core::Value, std::less<>> scratch_;
};

}  // namespace pyoco
