#include <pyoco/engine/engine.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/plugins/search_path.hpp>

#include <openssl/evp.h>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "run_state.hpp"

extern char** environ;

namespace pyoco {

// ---- in-process tasks behind the same callbacks as plugin tasks ----------

namespace {

pyoco_status run_local(void* fn, pyoco_context* c, const pyoco_value* in, const pyoco_value** out) {
  auto& ctx = *reinterpret_cast<plugins::CallContext*>(c);
  try {
    TaskCall call(ctx);
    const auto* node = reinterpret_cast<const core::ValueNode*>(in);
    const core::Value inputs(core::ArenaPtr(node != nullptr ? node->owner : nullptr), node);
    const core::Value result = (*static_cast<TaskFn*>(fn))(call, inputs);
    // The result may live in an arena only `result` holds: the call's arena
    // keeps it alive until the host has taken its own reference.
    if (result.node() != nullptr) ctx.arena->retain(result.node()->owner);
    *out = reinterpret_cast<const pyoco_value*>(result.node());
    return PYOCO_OK;
  } catch (const std::exception& e) {
    ctx.error = e.what();
  } catch (...) {
    ctx.error = "unknown exception";
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
    bound.local_functions.push_back(std::move(fn));
    bound.local_definitions.push_back(std::move(def));
    return bound.local_definitions.back().get();
  }
  const auto ref = catalog.find_task(spec.use);
  if (!ref) {
    throw core::FlowError(spec.where, "task '" + spec.name + "' uses \"" + spec.use +
                                          "\", which no plugin on the search path provides "
                                          "(see `pyoco tasks`)");
  }
  const plugins::LoadedPlugin& plugin = plugins::load_plugin(ref->plugin->manifest);
  const plugins::TaskDefinition* def = plugin.find_task(ref->task->name);
  if (def == nullptr) {
    throw core::FlowError(spec.where, "plugin '" + plugin.manifest.name +
                                          "' did not register task '" + ref->task->name + "'");
  }
  return def;
}

void bind_graph(const core::FlowGraph& g, BoundFlow& bound, const plugins::Catalog& catalog,
                const std::map<std::string, TaskFn>& local, BoundByUse& by_use) {
  for (const core::GraphNode& n : g.nodes) {
    for (const auto& child : n.children) bind_graph(*child, bound, catalog, local, by_use);
    if (n.kind != core::GraphNode::Kind::Task) continue;
    const core::TaskSpec& spec = *n.task;
    auto [it, fresh] = by_use.try_emplace(spec.use, nullptr);
    if (fresh) it->second = bind_task(spec, bound, catalog, local);
    bound.tasks[&n] = it->second;
  }
}

std::string hex(const unsigned char* d, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[d[i] >> 4];
    s += digits[d[i] & 15];
  }
  return s;
}

std::string guess_media_type(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".json")) return "application/json";
  if (ends(".txt") || ends(".log")) return "text/plain";
  if (ends(".csv")) return "text/csv";
  if (ends(".html")) return "text/html";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

void check_run_id(const std::string& id) {
  const bool ok =
      !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-';
      });
  if (!ok) {
    throw std::invalid_argument("run id '" + id +
                                "' is not allowed: use 1-128 characters of A-Z a-z 0-9 . _ -");
  }
}

}  // namespace

std::map<std::string, std::string, std::less<>> process_environment() {
  std::map<std::string, std::string, std::less<>> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string_view::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

std::string new_run_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  unsigned char b[16];
  for (int i = 0; i < 16; i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(b + i, &r, 8);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  const std::string h = hex(b, 16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

// ---- what a call reaches through its context ------------------------------

void Attempt::log(const plugins::CallInfo& call, plugins::LogLevel level,
                  std::string_view message) {
  run->emit_log(call, level, message);
}

std::string Attempt::save_artifact(const plugins::CallInfo&, std::string_view name,
                                   std::string_view bytes, std::string_view media_type) {
  ArtifactRecord r;
  const std::string path = run->write_artifact(name, bytes, media_type, r);
  artifacts.push_back(std::move(r));
  return path;
}

core::Value Attempt::scratch_get(std::string_view key) { return run->scratch_get(key); }
void Attempt::scratch_set(std::string_view key, core::Value value) {
  run->scratch_set(key, std::move(value));
}
pyoco_status Attempt::scratch_update(std::string_view key, const core::Value& expected,
                                     const core::Value& desired, core::Value& current) {
  return run->scratch_update(key, expected, desired, current);
}

void Attempt::heartbeat(const plugins::CallInfo& call, double progress, std::string_view message) {
  run->emit_heartbeat(call, record, progress, message);
}

bool Attempt::on_cancel(pyoco_callback_fn fn, void* user) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (phase_ == Phase::Live) {
    callbacks_.emplace_back(fn, user);
    return true;
  }
  const pyoco_status why = phase_ == Phase::Cancelled ? PYOCO_ERR_CANCELLED : PYOCO_OK;
  lock.unlock();
  fn(user, why);  // already decided: at once, on the caller's thread
  return true;
}

// Timers live on the run's strand: a plugin thread only posts there.
bool Attempt::start_timer(std::uint64_t delay_ns, pyoco_callback_fn fn, void* user) {
  const bool posted = run->on_strand([self = shared_from_this(), delay_ns, fn, user] {
    bool live;
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      live = self->phase_ == Phase::Live;
    }
    if (!live) {
      fn(user, PYOCO_ERR_CANCELLED);  // outside the lock: it may call back into us
      return;
    }
    auto timer = std::make_unique<asio::steady_timer>(self->run->strand());
    timer->expires_after(std::chrono::nanoseconds(
        std::min<std::uint64_t>(delay_ns, std::numeric_limits<std::int64_t>::max())));
    timer->async_wait([self, fn, user](boost::system::error_code ec) {
      bool live;
      {
        std::lock_guard<std::mutex> lock(self->mutex_);
        live = self->phase_ == Phase::Live;
      }
      fn(user, !ec && live ? PYOCO_OK : PYOCO_ERR_CANCELLED);
    });
    self->timers_.push_back(std::move(timer));
  });
  if (!posted) fn(user, PYOCO_ERR_CANCELLED);  // the engine is gone: the call is over
  return true;
}

void Attempt::end(bool was_cancelled) {
  if (was_cancelled) cancelled.store(true, std::memory_order_release);
  settle(was_cancelled ? Phase::Cancelled : Phase::Ended);
  for (auto& t : timers_) t->cancel();  // each handler says PYOCO_ERR_CANCELLED
}

// Any thread: the call completed. Its callbacks hear PYOCO_OK now, before a
// deadline or cancel handled later on the strand could tell them otherwise.
void Attempt::call_finished() { settle(Phase::Ended); }

void Attempt::settle(Phase phase) {
  std::vector<std::pair<pyoco_callback_fn, void*>> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (phase_ != Phase::Live) return;
    phase_ = phase;
    waiting.swap(callbacks_);
  }
  const pyoco_status why = phase == Phase::Cancelled ? PYOCO_ERR_CANCELLED : PYOCO_OK;
  for (auto [fn, user] : waiting) fn(user, why);
}

// Log lines come from task threads; they join the run's other events on its
// strand, so every view sees one order. A line written after its task was
// abandoned (deadline, cancel) is still recorded while the run lasts; one
// written after the run's end is dropped.
void RunState::emit_log(const plugins::CallInfo& call, plugins::LogLevel level,
                        std::string_view message) {
  if (listener_ == nullptr) return;
  auto emit_now = [this, call, level](std::string_view text) {
    if (core::is_terminal(status())) return;
    trace::RunEvent e{};
    e.kind = trace::EventKind::Log;
    e.time = std::chrono::system_clock::now();
    e.run_id = id_;
    e.flow = flow_name();
    e.node = call.node_name;
    e.task = call.task_name;
    e.attempt = call.attempt;
    e.status = status();
    e.level = static_cast<trace::LogLevel>(static_cast<int>(level));
    e.message = text;
    publish(e);
  };
  if (strand_.running_in_this_thread()) {
    emit_now(message);
  } else {
    on_strand([emit_now, text = std::string(message)] { emit_now(text); });
  }
}

std::string RunState::write_artifact(std::string_view name, std::string_view bytes,
                                     std::string_view media_type, ArtifactRecord& record) {
  const std::filesystem::path rel(name);
  for (const auto& part : rel) {
    if (part == ".." || rel.is_absolute()) {
      throw std::runtime_error("artifact name '" + std::string(name) +
                               "' must stay inside the run's artifact directory");
    }
  }
  const std::filesystem::path path = options_.artifact_dir / id_ / rel;
  {
    std::lock_guard<std::mutex> lock(artifact_mutex_);
    std::filesystem::create_directories(path.parent_path());
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write artifact " + path.string());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  record.name = std::string(name);
  record.path = path.string();
  record.size = bytes.size();
  record.sha256 = hex(digest, len);
  record.media_type = media_type.empty() ? guess_media_type(name) : std::string(media_type);
  return record.path;
}

core::Value RunState::scratch_get(std::string_view key) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  return it == scratch_.end() ? core::Value() : it->second;
}

void RunState::scratch_set(std::string_view key, core::Value value) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  scratch_[std::string(key)] = std::move(value);
}

pyoco_status RunState::scratch_update(std::string_view key, const core::Value& expected,
                                      const core::Value& desired, core::Value& current) {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  auto it = scratch_.find(key);
  const bool unset = it == scratch_.end() || it->second.node() == nullptr;
  const bool matches = expected.node() == nullptr ? unset : !unset && it->second == expected;
  if (!matches) {
    current = unset ? core::Value() : it->second;
    return PYOCO_ERR_CONFLICT;
  }
  if (it == scratch_.end()) {
    it = scratch_.emplace(std::string(key), desired).first;
  } else {
    it->second = desired;
  }
  current = desired;
  return PYOCO_OK;
}

void RunState::emit_heartbeat(const plugins::CallInfo& call, std::size_t record, double progress,
                              std::string_view message) {
  on_strand([this, call, record, progress, text = std::string(message)] {
    if (core::is_terminal(status())) return;
    TaskRecord& r = records_[record];
    r.progress = progress;
    r.heartbeat = text;
    r.heartbeat_at = std::chrono::system_clock::now();
    if (listener_ == nullptr) return;
    trace::RunEvent e{};
    e.kind = trace::EventKind::Heartbeat;
    e.time = r.heartbeat_at;
    e.run_id = id_;
    e.flow = flow_name();
    e.node = call.node_name;
    e.task = call.task_name;
    e.record = static_cast<std::uint32_t>(record);
    e.attempt = call.attempt;
    e.status = status();
    e.progress = progress;
    e.message = text;
    publish(e);
  });
}

// ---- the handle --------------------------------------------------------------

void RunState::wait() const {
  std::unique_lock<std::mutex> lock(done_mutex_);
  done_cv_.wait(lock, [this] { return done_; });
}

bool RunState::wait_for(std::chrono::milliseconds t) const {
  std::unique_lock<std::mutex> lock(done_mutex_);
  return done_cv_.wait_for(lock, t, [this] { return done_; });
}

bool RunState::wait_until(std::chrono::steady_clock::time_point t) const {
  std::unique_lock<std::mutex> lock(done_mutex_);
  return done_cv_.wait_until(lock, t, [this] { return done_; });
}

// Reads go through the strand unless the run is over (then nothing changes).
template <class T, class F>
T read_state(const RunState& s, const asio::strand<Executors::Executor>& strand, F f) {
  if (core::is_terminal(s.status()) || strand.running_in_this_thread()) return f();
  std::promise<T> p;
  asio::post(strand, [&] { p.set_value(f()); });
  return p.get_future().get();
}

std::vector<TaskRecord> RunState::records() const {
  return read_state<std::vector<TaskRecord>>(*this, strand_, [this] { return records_; });
}

core::Value RunState::output(std::string_view node) const {
  return read_state<core::Value>(*this, strand_, [this, node] {
    const NodeExec* n = top_ ? find_node(*top_, node) : nullptr;
    return n != nullptr ? n->output : core::Value();
  });
}

core::Value RunState::params() const {
  return read_state<core::Value>(*this, strand_, [this] { return params_; });
}

const std::string& Run::id() const { return state_->id(); }
const std::string& Run::flow_name() const { return state_->flow_name(); }
core::RunStatus Run::status() const { return state_->status(); }
std::vector<TaskRecord> Run::tasks() const { return state_->records(); }
void Run::cancel() { state_->cancel(); }
void Run::wait() const { state_->wait(); }
bool Run::wait_for(std::chrono::milliseconds t) const { return state_->wait_for(t); }
core::Value Run::output(std::string_view node) const { return state_->output(node); }
core::Value Run::params() const { return state_->params(); }

// ---- the engine --------------------------------------------------------------

struct Engine::Impl {
  explicit Impl(EngineOptions o)
      : executors(Executors::start(
            o.jobs != 0 ? o.jobs : std::max(1u, std::thread::hardware_concurrency()))),
        catalog(plugins::Catalog::discover(
            !o.plugin_search_path.empty()
                ? o.plugin_search_path
                : plugins::plugin_search_path({}, "", plugins::install_plugin_dir()))) {}
  std::shared_ptr<Executors> executors;
  plugins::Catalog catalog;
  std::mutex runs_mutex;
  std::vector<std::weak_ptr<RunState>> runs;  // to end them in ~Engine

  void track(const std::shared_ptr<RunState>& run) {
    std::lock_guard<std::mutex> lock(runs_mutex);
    std::erase_if(runs, [](const std::weak_ptr<RunState>& r) {
      auto s = r.lock();
      return !s || core::is_terminal(s->status());
    });
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

const plugins::Catalog& Engine::catalog() const { return impl_->catalog; }
unsigned Engine::jobs() const { return impl_->executors->jobs(); }

Run Engine::start(std::shared_ptr<const core::CompiledFlow> flow, RunOptions options) {
  auto bound = std::make_shared<BoundFlow>();
  bound->flow = std::move(flow);
  BoundByUse by_use;
  bound->tasks.reserve(bound->flow->graph.nodes.size());
  bind_graph(bound->flow->graph, *bound, impl_->catalog, options.local_tasks, by_use);
  if (options.params.is_null()) options.params = core::from_json(boost::json::object());
  std::string id = options.run_id.empty() ? new_run_id() : options.run_id;
  check_run_id(id);
  auto state = std::make_shared<RunState>(impl_->executors, std::move(bound), std::move(options),
                                          std::move(id));
  impl_->track(state);
  state->start();
  return Run(std::move(state));
}

Run Engine::start(const Flow& flow, core::Value params, RunOptions options) {
  options.params = std::move(params);
  for (const auto& [use, fn] : flow.local_tasks()) options.local_tasks.emplace(use, fn);
  return start(flow.compiled(), std::move(options));
}

}  // namespace pyoco
