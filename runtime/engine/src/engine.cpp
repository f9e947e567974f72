#include <pyoco/engine/engine.hpp>
#include <pyoco/plugins/search_path.hpp>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <pyoco/engine/local_artifact_store.hpp>

#include "object_value.hpp"
#include "run_state.hpp"

extern char** environ;

namespace pyoco {

std::map<std::string, std::string, std::less<>> process_environment() {
  std::map<std::string, std::string, std::less<>> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string_view::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

// ---- the handle --------------------------------------------------------------

void RunState::wait() const {
  std::unique_lock<std::mutex> lock(done_mutex_);
  done_cv_.wait(lock, [this] { return done_; });
}

bool RunState::wait_for(std::chrono::milliseconds t) const {
  // A limit past what the clock can add (milliseconds::max(): "for ever")
  // would overflow to a time already past.
  const auto now = std::chrono::steady_clock::now();
  if (t >= std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::time_point::max() - now)) {
    wait();
    return true;
  }
  std::unique_lock<std::mutex> lock(done_mutex_);
  return done_cv_.wait_until(lock, now + t, [this] { return done_; });
}

bool RunState::wait_until(std::chrono::steady_clock::time_point t) const {
  std::unique_lock<std::mutex> lock(done_mutex_);
  return done_cv_.wait_until(lock, t, [this] { return done_; });
}

// Inside a run's control (a listener given directly is called there), a
// call that waits for a run's control or its end could wait for this very
// thread: every run of the engine would stall. Refused instead.
void refuse_waiting_in_control(const RunState& s, const char* call) {
  if (!Serial::inside_any() || core::is_terminal(s.status())) return;
  throw std::logic_error(
      std::string("pyoco::Run::") + call + " of run " + s.id() +
      " was called inside the engine's control (from a listener given directly as "
      "RunOptions::listener): it would wait for a run's control, which may need this very "
      "thread. Call it from a thread of your own, or put the listener behind a "
      "trace::EventQueue");
}

// Reads go through the strand unless the run is over (then nothing changes).
template <class T, class F>
T read_state(const RunState& s, F f, const char* call) {
  if (core::is_terminal(s.status()) || s.serial().running_in_this_thread()) return f();
  refuse_waiting_in_control(s, call);
  std::promise<T> p;
  s.post_to_strand([&] { p.set_value(f()); });
  return p.get_future().get();
}

TaskRecord RunState::Record::named() const {
  TaskRecord r;
  r.node = node;
  r.task = task;
  r.state = state;
  r.started = started;
  r.ended = ended;
  r.duration_ms = duration_ms;
  r.attempts = attempts;
  r.error = error;
  r.output_summary = output_summary;
  if (extra) {
    r.artifacts = extra->artifacts;
    r.progress = extra->progress;
    r.heartbeat = extra->heartbeat;
    r.heartbeat_at = extra->heartbeat_at;
  }
  return r;
}

std::vector<TaskRecord> RunState::records() const {
  return read_state<std::vector<TaskRecord>>(
      *this,
      [this] {
        std::vector<TaskRecord> out;
        out.reserve(records_.size());
        for (const Record& r : records_) out.push_back(r.named());
        return out;
      },
      "tasks()");
}

core::Value RunState::output(std::string_view node) const {
  return read_state<core::Value>(
      *this,
      [this, node] {
        const NodeExec* n = top_ ? find_node(*top_, node) : nullptr;
        return n != nullptr ? n->output : core::Value();
      },
      "output()");
}

core::Value RunState::params() const {
  return read_state<core::Value>(
      *this, [this] { return params_; }, "params()");
}

const std::string& Run::id() const { return state_->id(); }
const std::string& Run::flow_name() const { return state_->flow_name(); }
core::RunStatus Run::status() const { return state_->status(); }
std::vector<TaskRecord> Run::tasks() const { return state_->records(); }
void Run::cancel() { state_->cancel(); }
void Run::wait() const {
  refuse_waiting_in_control(*state_, "wait()");
  state_->wait();
}
bool Run::wait_for(std::chrono::milliseconds t) const {
  if (t > std::chrono::milliseconds::zero()) refuse_waiting_in_control(*state_, "wait_for()");
  return state_->wait_for(t);
}
core::Value Run::output(std::string_view node) const { return state_->output(node); }
core::Value Run::params() const { return state_->params(); }
const std::map<std::string, std::string>& Run::plugins() const { return state_->plugins(); }

// ---- the engine --------------------------------------------------------------

struct Engine::Impl {
  explicit Impl(EngineOptions o)
      : executors(Executors::start(
            o.jobs != 0 ? o.jobs : std::max(1u, std::thread::hardware_concurrency()))),
        catalog(std::make_shared<const plugins::Catalog>(plugins::Catalog::discover(
            !o.plugin_search_path.empty()
                ? o.plugin_search_path
                : plugins::plugin_search_path({}, "", plugins::install_plugin_dir())))) {}
  std::shared_ptr<Executors> executors;
  mutable std::mutex catalog_mutex;
  std::shared_ptr<const plugins::Catalog> catalog;  // replaced whole, never changed in place
  std::mutex runs_mutex;
  std::vector<std::weak_ptr<RunState>> runs;  // to end them in ~Engine

  // Tracks a run about to start. Throws std::invalid_argument for an id a
  // live run of this engine has: the two would share its artifacts (the
  // store keeps them by run id) and be told apart nowhere. Checked and
  // tracked under one lock, so of two starts with one id only one passes.
  void track(const std::shared_ptr<RunState>& run) {
    std::lock_guard<std::mutex> lock(runs_mutex);
    std::erase_if(runs, [](const std::weak_ptr<RunState>& r) {
      auto s = r.lock();
      return !s || core::is_terminal(s->status());
    });
    for (const auto& r : runs) {
      if (auto s = r.lock(); s && s->id() == run->id()) {
        throw std::invalid_argument("run id '" + run->id() +
                                    "' is not allowed: a run of this engine with that id has not "
                                    "ended; wait for it to end or use another id");
      }
    }
    runs.push_back(run);
  }
};

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

// Runs still going are cancelled; that ends them without waiting for their
// bodies. Bodies get a second to return; a worker stuck in one is detached.
Engine::~Engine() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::vector<std::shared_ptr<RunState>> live;
  {
    std::lock_guard<std::mutex> lock(impl_->runs_mutex);
    for (const auto& r : impl_->runs) {
      if (auto s = r.lock()) live.push_back(std::move(s));
    }
  }
  for (const auto& r : live) r->cancel();
  for (const auto& r : live) {
    r->wait_until(deadline);
  }
  impl_->executors->shutdown(std::chrono::duration_cast<std::chrono::milliseconds>(std::max(
      deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{})));
}

std::shared_ptr<const plugins::Catalog> Engine::catalog() const {
  std::lock_guard<std::mutex> lock(impl_->catalog_mutex);
  return impl_->catalog;
}

void Engine::set_plugin_search_path(std::vector<std::filesystem::path> search_path) {
  // Discovered outside the lock: reading manifests must not hold up a start.
  auto next =
      std::make_shared<const plugins::Catalog>(plugins::Catalog::discover(std::move(search_path)));
  std::lock_guard<std::mutex> lock(impl_->catalog_mutex);
  impl_->catalog = std::move(next);
}

unsigned Engine::jobs() const { return impl_->executors->jobs(); }
unsigned Engine::abandoned_bodies() const { return impl_->executors->abandoned_bodies(); }

// Loops and switches are held to the limit as they grow the run; the
// flow's own nodes all start as one frame, so they are held to it here.
static void check_task_limit(const core::CompiledFlow& flow, const RunLimits& limits) {
  const std::size_t tasks = frame_tasks(flow.graph);
  if (tasks <= limits.max_tasks) return;
  throw std::invalid_argument("flow '" + flow.spec->name + "' has " + std::to_string(tasks) +
                              " tasks, over the run's limit of " +
                              std::to_string(limits.max_tasks) +
                              " tasks (PYOCO_MAX_TASKS): raise the limit or split the flow");
}

Run Engine::start(std::shared_ptr<const core::CompiledFlow> flow, RunOptions options) {
  check_params_object(options.params, "pyoco::Engine::start: params");
  check_task_limit(*flow, options.limits);
  auto bound = bind_flow(std::move(flow), *catalog(), options.local_tasks);
  if (options.params.is_null()) options.params = core::from_json(boost::json::object());
  std::string id = options.run_id.empty() ? new_run_id() : options.run_id;
  check_run_id(id);
  if (options.artifacts == nullptr) {
    options.artifacts = std::make_shared<LocalArtifactStore>(".pyoco/artifacts");
  }
  const bool cancelled = options.cancelled_at_start && options.cancelled_at_start();
  auto state = std::make_shared<RunState>(impl_->executors, std::move(bound), std::move(options),
                                          std::move(id));
  impl_->track(state);
  state->start(cancelled);
  return Run(std::move(state));
}

Run Engine::start(const Flow& flow, core::Value params, RunOptions options) {
  // `params` over RunOptions::params, both over the flow's defaults.
  check_params_object(options.params, "pyoco::Engine::start: RunOptions::params");
  if (options.params.is_object() && params.is_object()) {
    options.params = merged_over(options.params, params);
  } else if (!params.is_null()) {
    options.params = std::move(params);
  }
  for (const auto& [use, fn] : flow.local_tasks()) options.local_tasks.emplace(use, fn);
  return start(flow.compiled(), std::move(options));
}

}  // namespace pyoco
