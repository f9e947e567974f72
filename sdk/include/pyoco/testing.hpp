// pyoco/testing.hpp - an in-process test host for plugin unit tests.
//
// Runs a plugin's tasks without the runtime: it implements the host side
// of abi.h in this header (values, context, artifacts, scratch, logs) so a
// task can be called from any test framework:
//
//   #include <pyoco/testing.hpp>
//   void register_tasks(pyoco::Registry&);        // the plugin's function
//
//   pyoco::testing::TestHost host(register_tasks);
//   auto result = host.run("greet", {{"who", "world"}});
//   assert(result.ok());
//   assert(result.output().as<std::string>() == "hello world");
//   assert(host.logs().size() == 1);
//
// Async tasks (ABI 1.1) run too: run() starts the call and waits, on the
// calling thread, until the task completes it, firing its timers (ctx.after)
// in real time. cancel_after() and set_timeout() cancel a call while it runs,
// as Ctrl+C or a deadline would.
//
// One TestHost at a time per process. Values built while a TestHost lives
// (inputs, params) live as long as it; a call abandoned at its deadline
// keeps its context and values until the task ends it, even past the host.
// Header-only, C++17, standard library only, like sdk.hpp.
#ifndef PYOCO_TESTING_HPP
#define PYOCO_TESTING_HPP

#include <pyoco/sdk.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pyoco {
inline namespace v1 {
namespace testing {

struct LogLine {
  std::string task;
  pyoco_log_level level;
  std::string message;
};

struct Heartbeat {
  std::string task;
  double progress = -1;
  std::string message;
};

struct Artifact {
  std::string name;
  std::string path;
  std::string media_type;
  std::size_t size = 0;
};

class TestHost;

// What one call returned.
class CallResult {
 public:
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  Value output() const { return Value(output_); }
  // The status the task ended with: PYOCO_OK, PYOCO_ERR_TASK,
  // PYOCO_ERR_PERMANENT (no retry), PYOCO_ERR_CANCELLED...
  pyoco_status status() const { return status_; }
  bool cancelled() const { return status_ == PYOCO_ERR_CANCELLED; }
  bool permanent() const { return status_ == PYOCO_ERR_PERMANENT; }

 private:
  friend class TestHost;
  bool ok_ = false;
  pyoco_status status_ = PYOCO_ERR_TASK;
  std::string error_;
  const pyoco_value* output_ = nullptr;
};

namespace detail {

// The test host's value: a plain tree; every node lives in the host's deque.
struct Node {
  pyoco_value_kind kind = PYOCO_VALUE_NULL;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string s;  // string and bytes
  std::vector<const Node*> items;
  std::vector<std::pair<std::string, const Node*>> members;
};

// What a call touches, shared by the host and every call's context: a
// thread of the plugin's may still end a call, log or beat after the
// TestHost is gone (an abandoned call), and must find this alive, as the
// engine keeps an abandoned call's context alive until the call ends.
struct Shared {
  std::mutex mutex;  // what plugin threads may touch: logs, calls, scratch
  std::condition_variable wake;
  bool host_alive = true;  // false once ~TestHost ran: calls still open are over
  std::vector<LogLine> logs;
  std::vector<Heartbeat> heartbeats;
  std::map<std::string, const Node*> scratch;
  std::vector<Artifact> artifacts;
  std::filesystem::path artifact_dir;
  int refused_completions = 0;
  int calls_after_end = 0;  // context functions called after their call ended (dropped)
  std::mutex nodes_mutex;   // calls may build on threads of their own
  std::deque<Node> nodes;

  Node* new_node(pyoco_value_kind kind) {
    std::lock_guard<std::mutex> lock(nodes_mutex);
    nodes.emplace_back();
    nodes.back().kind = kind;
    return &nodes.back();
  }
};

// One call's context, and for an async call how it ended and what it
// still waits on (those under shared->mutex).
struct Context {
  std::shared_ptr<Shared> shared;
  std::string task;
  std::string node;
  std::uint32_t attempt = 1;
  std::string error;
  std::string last_path;
  std::deque<std::string> loaded;  // artifacts loaded, alive for the call
  std::int64_t deadline_ns = 0;
  const Node* params = nullptr;        // the host's params when the call started
  bool host_cancelled = false;         // host.cancel() when the call started
  std::atomic<bool> cancelled{false};  // this call was cancelled (cancel_after, timeout)
  std::uint64_t call_id = 0;           // the async call's handle; 0: none
  // The call has ended (run returned, start failed, or call_complete was
  // accepted): as in pyoco, only start() and the host's callbacks for the
  // call may go on using the context, until they return.
  std::atomic<bool> ended{false};
  std::chrono::steady_clock::time_point ended_at;  // under shared->mutex
  bool completed = false;
  pyoco_status status = PYOCO_OK;
  const pyoco_value* output = nullptr;
  struct Timer {
    std::chrono::steady_clock::time_point due;
    pyoco_callback_fn fn;
    void* user;
  };
  std::vector<Timer> timers;
  std::vector<std::pair<pyoco_callback_fn, void*>> on_cancel;

  // An async call not ended yet: what on_cancel and timers wait on.
  bool open_call() const { return call_id != 0 && !completed; }
};

// The call whose run, start or host callback this thread is in (see
// Context::ended).
inline const Context*& inside_call() {
  static thread_local const Context* c = nullptr;
  return c;
}
class Inside {
 public:
  explicit Inside(const Context* c) : saved_(inside_call()) { inside_call() = c; }
  ~Inside() { inside_call() = saved_; }
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;

 private:
  const Context* saved_;
};

// Whether this use of `c` comes after its call ended, from a thread that
// kept the context (pyoco drops it with a warning while the run goes on,
// and may crash once it is over): counted (TestHost::calls_after_end) and
// dropped.
inline bool after_end(Context& c, const char* function) {
  if (!c.ended.load() || inside_call() == &c) return false;
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(c.shared->mutex);
    first = c.shared->calls_after_end++ == 0;
  }
  if (first) {
    std::fprintf(stderr,
                 "pyoco test host: warning: task %s called %s after its call had ended; "
                 "ignored. A context is valid only until the call ends: a thread that keeps a "
                 "copy of pyoco::Context must stop using it before it completes the call, or "
                 "pyoco may crash once the run is over\n",
                 c.task.c_str(), function);
  }
  return true;
}

// The open async calls of every TestHost, by handle. A handle is a number
// never reused, not a pointer, so a completion that comes twice, or after
// its TestHost is gone, finds its call (kept alive here until it ends) or
// nothing, and is refused, instead of touching freed memory.
class CallTable {
 public:
  std::uint64_t add(std::shared_ptr<Context> c) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t id = ++next_;
    calls_.emplace(id, std::move(c));
    return id;
  }
  std::shared_ptr<Context> find(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = calls_.find(id);
    return it == calls_.end() ? nullptr : it->second;
  }
  void erase(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.erase(id);
  }

 private:
  std::mutex mutex_;
  std::uint64_t next_ = 0;
  std::map<std::uint64_t, std::shared_ptr<Context>> calls_;
};

inline CallTable& call_table() {
  static CallTable* table = new CallTable();  // never destroyed: a call may end at exit
  return *table;
}

}  // namespace detail

class TestHost {
 public:
  using RegisterFn = void (*)(Registry&);

  // Registers the plugin's tasks; the host is the SDK's host for this
  // process from now on. One TestHost at a time: a second one while the
  // first lives throws std::logic_error.
  explicit TestHost(RegisterFn register_tasks) : shared_(std::make_shared<detail::Shared>()) {
    // The SDK's host table and current call are process-wide: a second
    // host would take them from the first while its tasks still run.
    const TestHost* none = nullptr;
    if (!live_host().compare_exchange_strong(none, this)) {
      throw std::logic_error(
          "pyoco::testing::TestHost: another TestHost is alive in this process, and only one "
          "may be (the SDK has one host per process): destroy the first before making the "
          "next, e.g. one TestHost per test case, not one per fixture and one per test");
    }
    try {
      shared_->artifact_dir =
          std::filesystem::temp_directory_path() / ("pyoco-test-host-" + std::to_string(next_id()));
      ::pyoco::detail::host_slot() = &api();
      params_ = new_node(PYOCO_VALUE_OBJECT);
      setup_.shared = shared_;
      setup_.params = params_;
      scope_.emplace(as_context(&setup_));
      registry_error_.clear();
      Registry registry(reinterpret_cast<pyoco_registry*>(this));
      register_tasks(registry);
    } catch (...) {
      live_host() = nullptr;  // no destructor runs: let the next host be made
      throw;
    }
  }

  ~TestHost() {
    scope_.reset();
    instances_.clear();  // task objects first, then their factories
    for (auto& t : tasks_) {
      if (t.release != nullptr) t.release(t.user_data);
    }
    // A call still open (abandoned at its deadline) stays in the call table,
    // with what it touches, until the task ends it; that end is refused.
    std::vector<std::uint64_t> ended;
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      shared_->host_alive = false;
      for (const auto& c : contexts_) {
        if (c->call_id != 0 && c->completed) ended.push_back(c->call_id);
      }
    }
    for (const std::uint64_t id : ended) detail::call_table().erase(id);
    std::error_code ec;
    std::filesystem::remove_all(shared_->artifact_dir, ec);
    live_host() = nullptr;
  }

  TestHost(const TestHost&) = delete;
  TestHost& operator=(const TestHost&) = delete;

  // The names of the tasks the plugin registered, in order.
  std::vector<std::string> task_names() const {
    std::vector<std::string> out;
    for (const auto& t : tasks_) out.push_back(t.name);
    return out;
  }

  // Run params every call sees (an object).
  void set_params(const Value& params) { params_ = node_of(params); }

  // Makes the next calls see a cancelled context (as after Ctrl+C).
  void cancel(bool cancelled = true) { cancelled_ = cancelled; }
  // Cancels each later call `after` it starts (its on_cancel callbacks and
  // timers are told at that moment, as the engine does). run() waits for
  // the task to end the call; the result is CANCELLED whatever it ends it
  // with, as the engine's node is.
  void cancel_after(std::chrono::milliseconds after) { cancel_after_ = after; }
  // Gives each later call a deadline (`timeout_sec`): the context reports
  // it, and at it the call is cancelled and the result says "timed out".
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  // How long run() waits for an async call to complete (default 30 s). With
  // cancel_after or set_timeout, a `run` task runs on a thread of its own so
  // it can be cancelled; run() still waits for it to return.
  void set_call_limit(std::chrono::milliseconds limit) { call_limit_ = limit; }

  // Calls `task` once with `inputs` (an object). Each run() is one call of
  // a fresh task instance unless `keep_instance` reuses the previous one of
  // that task (as the engine does across retries of one node).
  CallResult run(const std::string& task, const Value& inputs = Value::object(),
                 bool keep_instance = false) {
    Definition* def = find(task);
    CallResult result;
    if (def == nullptr) {
      result.error_ = "no task '" + task + "' was registered";
      const std::size_t slash = task.rfind('/');
      if (slash != std::string::npos && find(task.substr(slash + 1)) != nullptr) {
        // A flow's name for it: the test host knows the plugin's own.
        result.error_ +=
            "; the test host names a task as the plugin registers it, without "
            "the plugin's name: run(\"" +
            task.substr(slash + 1) + "\")";
      }
      return result;
    }
    // As `pyoco check` refuses a flow that passes an input the task does
    // not declare.
    if (inputs.handle() != nullptr && inputs.kind() == Kind::Object) {
      for (const auto& member : inputs.members()) {
        const std::string key(member.first);
        bool declared = false;
        for (const auto& io : def->inputs) declared = declared || io.name == key;
        if (!declared) {
          std::string known;
          for (const auto& io : def->inputs) known += (known.empty() ? "" : ", ") + io.name;
          result.error_ = "input '" + key + "' is not an input of " + task +
                          (known.empty() ? " (it declares none)" : " (its inputs: " + known + ")");
          return result;
        }
      }
    }
    // Kept for the host's life, and an open async call's past it (see
    // detail::CallTable): a thread of the plugin's may still use it.
    contexts_.push_back(std::make_shared<detail::Context>());
    detail::Context& ctx = *contexts_.back();
    ctx.shared = shared_;
    ctx.params = params_;
    ctx.host_cancelled = cancelled_;
    ctx.task = task;
    ctx.node = task;
    ctx.attempt = keep_instance ? ++attempts_[task] : (attempts_[task] = 1);
    pyoco_context* c = as_context(&ctx);
    Instance& inst = instances_[task];
    if (!keep_instance || !inst.created) {
      inst.reset();
      inst.def = def;
      if (def->create != nullptr) {
        void* state = nullptr;
        const detail::Inside inside(&ctx);
        if (def->create(def->user_data, c, &state) != PYOCO_OK) {
          result.error_ = ctx.error.empty() ? "creating the task failed" : ctx.error;
          return result;
        }
        inst.state = state;
      } else {
        inst.state = def->user_data;
      }
      inst.created = true;
    }
    const pyoco_value* in =
        inputs.handle() != nullptr ? inputs.handle() : handle(new_node(PYOCO_VALUE_OBJECT));
    const auto started = std::chrono::steady_clock::now();
    if (timeout_) {
      ctx.deadline_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            (started + *timeout_).time_since_epoch())
                            .count();
    }
    pyoco_status s = PYOCO_OK;
    const pyoco_value* out = nullptr;
    bool timed_out = false;
    if (def->start != nullptr || cancel_after_ || timeout_) {
      // Driven like the engine drives it: timers, a cancel, a deadline.
      s = run_async(*def, inst.state, contexts_.back(), in, started, out, timed_out);
    } else {
      {
        const detail::Inside inside(&ctx);
        s = def->run(inst.state, c, in, &out);
      }
      ctx.ended = true;
    }
    result.status_ = s;
    result.ok_ = s == PYOCO_OK && !timed_out;
    if (timed_out) {
      result.status_ = PYOCO_ERR_TASK;
      result.error_ = "timed out";
    } else if (!result.ok_) {
      result.error_ =
          ctx.error.empty() ? "the task failed with status " + std::to_string(s) : ctx.error;
    } else {
      // What pyoco checks of every output before anything reads it: the
      // limits every value keeps, then the declared types. Failed for good.
      std::string why = ::pyoco::detail::unfit_value(out, "output");
      if (!why.empty()) why = task + " returned " + why + " (a bug of the task)";
      if (why.empty()) why = output_mismatch(*def, out);
      if (!why.empty()) {
        result.ok_ = false;
        result.status_ = PYOCO_ERR_PERMANENT;
        result.error_ = std::move(why);
      }
    }
    result.output_ = result.ok_ ? out : nullptr;
    return result;
  }

  // How many times a task completed a call that had already ended (each
  // one refused with PYOCO_ERR_INVALID, as the engine does).
  int refused_completions() const {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    return shared_->refused_completions;
  }
  // How many times a task used a context after its call had ended (a
  // thread of its own that kept a copy of pyoco::Context): each use is
  // dropped, as pyoco drops it while the run goes on; once a run is over,
  // pyoco may crash on it. A test should expect 0.
  int calls_after_end() const {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    return shared_->calls_after_end;
  }
  std::vector<Heartbeat> heartbeats() const {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    return shared_->heartbeats;
  }

  std::vector<LogLine> logs() const {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    return shared_->logs;
  }
  const std::vector<Artifact>& artifacts() const { return shared_->artifacts; }
  Value scratch(const std::string& key) const {
    auto it = shared_->scratch.find(key);
    return Value(it == shared_->scratch.end() ? nullptr : handle(it->second));
  }
  const std::filesystem::path& artifact_dir() const { return shared_->artifact_dir; }

 private:
  struct Definition {
    std::string name;
    void* user_data = nullptr;
    pyoco_task_create_fn create = nullptr;
    pyoco_task_run_fn run = nullptr;
    pyoco_task_start_fn start = nullptr;
    pyoco_task_destroy_fn destroy = nullptr;
    pyoco_task_release_fn release = nullptr;
    struct Io {
      std::string name;
      std::string type;
      bool required = false;
    };
    std::vector<Io> inputs, outputs;  // as registered: what pyoco checks against
  };
  // Starts an async call and drives it: waits for its completion, firing
  // its timers when due, and cancels it at cancel_after or the deadline.
  pyoco_status run_async(const Definition& def, void* state,
                         const std::shared_ptr<detail::Context>& call, const pyoco_value* in,
                         std::chrono::steady_clock::time_point started, const pyoco_value*& out,
                         bool& timed_out);
  static void end_call(detail::Context& call, std::unique_lock<std::mutex>& lock, bool cancelled);

  struct Instance {
    const Definition* def = nullptr;
    void* state = nullptr;
    bool created = false;
    void reset() {
      if (created && def != nullptr && def->create != nullptr && def->destroy != nullptr) {
        def->destroy(state);
      }
      created = false;
      state = nullptr;
    }
    ~Instance() { reset(); }
  };

  static unsigned next_id() {
    static std::atomic<unsigned> id{0};
    return ++id;
  }

  Definition* find(const std::string& name) {
    for (auto& t : tasks_) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }

  detail::Node* new_node(pyoco_value_kind kind) { return shared_->new_node(kind); }
  static const detail::Node* node_of(const Value& v) {
    return reinterpret_cast<const detail::Node*>(v.handle());
  }
  static const detail::Node* node(const pyoco_value* v) {
    return reinterpret_cast<const detail::Node*>(v);
  }
  static detail::Node* mutable_node(pyoco_value* v) { return reinterpret_cast<detail::Node*>(v); }
  static pyoco_value* handle(detail::Node* n) { return reinterpret_cast<pyoco_value*>(n); }
  static const pyoco_value* handle(const detail::Node* n) {
    return reinterpret_cast<const pyoco_value*>(n);
  }
  static pyoco_context* as_context(detail::Context* c) {
    return reinterpret_cast<pyoco_context*>(c);
  }
  static detail::Context& ctx(pyoco_context* c) { return *reinterpret_cast<detail::Context*>(c); }
  // A call's arena is the host's shared state, alive as long as the call.
  static detail::Shared& host_of(pyoco_arena* a) { return *reinterpret_cast<detail::Shared*>(a); }
  static bool is(const pyoco_value* v, pyoco_value_kind k) {
    return v != nullptr && node(v)->kind == k;
  }

  // ---- the host function table ----

  static const pyoco_host_api& api() {
    static const pyoco_host_api table = make_api();
    return table;
  }

  static pyoco_host_api make_api() {
    pyoco_host_api a{};
    a.struct_size = sizeof a;
    a.abi_major = PYOCO_ABI_VERSION_MAJOR;
    a.abi_minor = PYOCO_ABI_VERSION_MINOR;
    a.registry_add_task = [](pyoco_registry* r, const pyoco_task_def* d) -> pyoco_status {
      auto& host = *reinterpret_cast<TestHost*>(r);
      const pyoco_task_start_fn start =
          d != nullptr && PYOCO_HAS_FIELD(d, pyoco_task_def, start) ? d->start : nullptr;
      if (d == nullptr || d->name == nullptr || (d->run == nullptr && start == nullptr)) {
        return PYOCO_ERR_INVALID;
      }
      if (host.find(d->name) != nullptr) return PYOCO_ERR_INVALID;
      Definition def;
      def.name = d->name;
      def.user_data = d->user_data;
      def.create = d->create;
      def.run = d->run;
      def.destroy = d->destroy;
      def.release = PYOCO_HAS_FIELD(d, pyoco_task_def, release) ? d->release : nullptr;
      def.start = start;
      def.inputs = copy_io(d->inputs, d->input_count);
      def.outputs = copy_io(d->outputs, d->output_count);
      host.tasks_.push_back(def);
      return PYOCO_OK;
    };
    a.registry_set_error = [](pyoco_registry* r, const char* m, size_t n) {
      reinterpret_cast<TestHost*>(r)->registry_error_.assign(m, n);
    };
    a.value_kind = [](const pyoco_value* v) -> pyoco_value_kind {
      return v == nullptr ? PYOCO_VALUE_NULL : node(v)->kind;
    };
    a.value_get_bool = [](const pyoco_value* v, int32_t* out) -> pyoco_status {
      if (!is(v, PYOCO_VALUE_BOOL)) return PYOCO_ERR_TYPE;
      *out = node(v)->b ? 1 : 0;
      return PYOCO_OK;
    };
    a.value_get_int = [](const pyoco_value* v, int64_t* out) -> pyoco_status {
      if (!is(v, PYOCO_VALUE_INT)) return PYOCO_ERR_TYPE;
      *out = node(v)->i;
      return PYOCO_OK;
    };
    a.value_get_double = [](const pyoco_value* v, double* out) -> pyoco_status {
      if (is(v, PYOCO_VALUE_INT)) {
        *out = static_cast<double>(node(v)->i);
      } else if (is(v, PYOCO_VALUE_DOUBLE)) {
        *out = node(v)->d;
      } else {
        return PYOCO_ERR_TYPE;
      }
      return PYOCO_OK;
    };
    a.value_get_string = [](const pyoco_value* v, pyoco_str* out) -> pyoco_status {
      if (!is(v, PYOCO_VALUE_STRING)) return PYOCO_ERR_TYPE;
      *out = pyoco_str{node(v)->s.c_str(), node(v)->s.size()};
      return PYOCO_OK;
    };
    a.value_get_bytes = [](const pyoco_value* v, const void** data, size_t* size) -> pyoco_status {
      if (!is(v, PYOCO_VALUE_BYTES)) return PYOCO_ERR_TYPE;
      *data = node(v)->s.data();
      *size = node(v)->s.size();
      return PYOCO_OK;
    };
    a.value_size = [](const pyoco_value* v) -> size_t {
      if (is(v, PYOCO_VALUE_ARRAY)) return node(v)->items.size();
      if (is(v, PYOCO_VALUE_OBJECT)) return node(v)->members.size();
      return 0;
    };
    a.value_array_at = [](const pyoco_value* v, size_t i) -> const pyoco_value* {
      if (!is(v, PYOCO_VALUE_ARRAY) || i >= node(v)->items.size()) return nullptr;
      return handle(node(v)->items[i]);
    };
    a.value_object_find = [](const pyoco_value* v, const char* k, size_t n) -> const pyoco_value* {
      if (!is(v, PYOCO_VALUE_OBJECT)) return nullptr;
      for (const auto& m : node(v)->members) {
        if (m.first == std::string_view(k, n)) return handle(m.second);
      }
      return nullptr;
    };
    a.value_object_at = [](const pyoco_value* v, size_t i, pyoco_str* key) -> const pyoco_value* {
      if (!is(v, PYOCO_VALUE_OBJECT) || i >= node(v)->members.size()) return nullptr;
      const auto& m = node(v)->members[i];
      if (key != nullptr) *key = pyoco_str{m.first.c_str(), m.first.size()};
      return handle(m.second);
    };
    a.value_new_null = [](pyoco_arena* ar) {
      return handle(host_of(ar).new_node(PYOCO_VALUE_NULL));
    };
    a.value_new_bool = [](pyoco_arena* ar, int32_t b) {
      detail::Node* n = host_of(ar).new_node(PYOCO_VALUE_BOOL);
      n->b = b != 0;
      return handle(n);
    };
    a.value_new_int = [](pyoco_arena* ar, int64_t i) {
      detail::Node* n = host_of(ar).new_node(PYOCO_VALUE_INT);
      n->i = i;
      return handle(n);
    };
    a.value_new_double = [](pyoco_arena* ar, double d) {
      detail::Node* n = host_of(ar).new_node(PYOCO_VALUE_DOUBLE);
      n->d = d;
      return handle(n);
    };
    a.value_new_string = [](pyoco_arena* ar, const char* s, size_t n) {
      detail::Node* v = host_of(ar).new_node(PYOCO_VALUE_STRING);
      v->s.assign(s, n);
      return handle(v);
    };
    a.value_new_bytes = [](pyoco_arena* ar, const void* s, size_t n) {
      detail::Node* v = host_of(ar).new_node(PYOCO_VALUE_BYTES);
      v->s.assign(static_cast<const char*>(s), n);
      return handle(v);
    };
    a.value_new_array = [](pyoco_arena* ar) {
      return handle(host_of(ar).new_node(PYOCO_VALUE_ARRAY));
    };
    a.value_new_object = [](pyoco_arena* ar) {
      return handle(host_of(ar).new_node(PYOCO_VALUE_OBJECT));
    };
    a.value_array_push = [](pyoco_value* arr, const pyoco_value* item) -> pyoco_status {
      if (item == nullptr || item == arr) return PYOCO_ERR_INVALID;  // as the host: no cycle
      if (!is(arr, PYOCO_VALUE_ARRAY)) return PYOCO_ERR_TYPE;
      mutable_node(arr)->items.push_back(node(item));
      return PYOCO_OK;
    };
    a.value_object_set = [](pyoco_value* obj, const char* k, size_t n,
                            const pyoco_value* item) -> pyoco_status {
      if (item == nullptr || item == obj) return PYOCO_ERR_INVALID;  // as the host: no cycle
      if (!is(obj, PYOCO_VALUE_OBJECT)) return PYOCO_ERR_TYPE;
      auto& members = mutable_node(obj)->members;
      for (auto& m : members) {
        if (m.first == std::string_view(k, n)) {
          m.second = node(item);
          return PYOCO_OK;
        }
      }
      members.emplace_back(std::string(k, n), node(item));
      return PYOCO_OK;
    };
    a.context_arena = [](pyoco_context* c) -> pyoco_arena* {
      if (detail::after_end(ctx(c), "context_arena")) return nullptr;
      return reinterpret_cast<pyoco_arena*>(ctx(c).shared.get());
    };
    a.context_params = [](pyoco_context* c) -> const pyoco_value* {
      if (detail::after_end(ctx(c), "context_params")) return nullptr;
      return handle(ctx(c).params);
    };
    a.context_info = [](pyoco_context* c, pyoco_call_info* out) -> pyoco_status {
      if (detail::after_end(ctx(c), "context_info")) return PYOCO_ERR_INVALID;
      const detail::Context& x = ctx(c);
      static const std::string run_id = "test-run", flow = "test-flow";
      pyoco_call_info full{};
      full.struct_size = sizeof full;
      full.run_id = pyoco_str{run_id.c_str(), run_id.size()};
      full.flow_name = pyoco_str{flow.c_str(), flow.size()};
      full.node_name = pyoco_str{x.node.c_str(), x.node.size()};
      full.task_name = pyoco_str{x.task.c_str(), x.task.size()};
      full.attempt = x.attempt;
      const std::size_t caller = out->struct_size;
      std::memcpy(static_cast<void*>(out), &full, caller < sizeof full ? caller : sizeof full);
      out->struct_size = caller;
      return PYOCO_OK;
    };
    a.context_log = [](pyoco_context* c, pyoco_log_level level, const char* m, size_t n) {
      if (detail::after_end(ctx(c), "context_log")) return;
      std::lock_guard<std::mutex> lock(ctx(c).shared->mutex);
      ctx(c).shared->logs.push_back(LogLine{ctx(c).task, level, std::string(m, n)});
    };
    a.context_is_cancelled = [](pyoco_context* c) -> int32_t {
      if (detail::after_end(ctx(c), "context_is_cancelled")) return 1;  // as pyoco: over
      return ctx(c).host_cancelled || ctx(c).cancelled.load() ? 1 : 0;
    };
    a.context_save_artifact = [](pyoco_context* c, const pyoco_artifact* art,
                                 pyoco_str* path_out) -> pyoco_status {
      if (detail::after_end(ctx(c), "context_save_artifact")) return PYOCO_ERR_INVALID;
      detail::Context& x = ctx(c);
      detail::Shared& h = *x.shared;
      const std::string name(art->name.data != nullptr ? art->name.data : "", art->name.size);
      auto refuse = [&](std::string why) {
        x.last_path = std::move(why);
        if (path_out != nullptr) *path_out = pyoco_str{x.last_path.c_str(), x.last_path.size()};
        return PYOCO_ERR_INVALID;
      };
      // The host's rules: a relative UTF-8 name of 1-255 bytes in the run.
      if (name.empty()) return refuse("an artifact needs a name");
      const std::string why = artifact_name_problem(name);
      if (!why.empty()) return refuse("artifact name '" + printable(name) + "' " + why);
      std::string bytes;
      if (art->value != nullptr) {
        // As the host: refused before it is written (JSON has no NaN, and a
        // few shared lists can stand for more than memory holds).
        if (std::string unfit = ::pyoco::detail::unfit_value(art->value, "value"); !unfit.empty()) {
          return refuse(std::move(unfit));
        }
        bytes = to_json(node(art->value));
      } else {
        bytes.assign(static_cast<const char*>(art->data), art->size);
      }
      const std::filesystem::path path = h.artifact_dir / name;
      std::lock_guard<std::mutex> lock(h.mutex);
      if (!h.host_alive) {  // its directory is removed: nothing to save to
        x.last_path = "the test host is gone";
        if (path_out != nullptr) *path_out = pyoco_str{x.last_path.c_str(), x.last_path.size()};
        return PYOCO_ERR_INVALID;
      }
      std::filesystem::create_directories(path.parent_path());
      std::ofstream(path, std::ios::binary) << bytes;
      h.artifacts.push_back(Artifact{
          name, path.string(), art->media_type != nullptr ? art->media_type : "", bytes.size()});
      // Like the host: a plugin of ABI 1.1 learns the name, not the path.
      x.last_path = name;
      if (path_out != nullptr) *path_out = pyoco_str{x.last_path.c_str(), x.last_path.size()};
      return PYOCO_OK;
    };
    a.context_load_artifact = [](pyoco_context* c, const char* k, size_t n,
                                 pyoco_str* data_out) -> pyoco_status {
      if (detail::after_end(ctx(c), "context_load_artifact")) return PYOCO_ERR_INVALID;
      detail::Context& x = ctx(c);
      detail::Shared& h = *x.shared;
      const std::string name(k, n);
      std::lock_guard<std::mutex> lock(h.mutex);
      bool saved = false;
      for (const Artifact& art : h.artifacts) saved = saved || art.name == name;
      std::ifstream in(h.artifact_dir / name, std::ios::binary);
      if (!saved || artifact_name_problem(name).size() > 0 || !in) {
        x.last_path = "this run has no artifact '" + name + "'";
        *data_out = pyoco_str{x.last_path.c_str(), x.last_path.size()};
        return PYOCO_ERR_NOT_FOUND;
      }
      std::ostringstream bytes;
      bytes << in.rdbuf();
      x.loaded.push_back(bytes.str());
      *data_out = pyoco_str{x.loaded.back().c_str(), x.loaded.back().size()};
      return PYOCO_OK;
    };
    a.context_scratch_get = [](pyoco_context* c, const char* k, size_t n) -> const pyoco_value* {
      if (detail::after_end(ctx(c), "context_scratch_get")) return nullptr;
      std::lock_guard<std::mutex> lock(ctx(c).shared->mutex);
      auto& s = ctx(c).shared->scratch;
      auto it = s.find(std::string(k, n));
      return it == s.end() ? nullptr : handle(it->second);
    };
    a.context_scratch_set = [](pyoco_context* c, const char* k, size_t n,
                               const pyoco_value* v) -> pyoco_status {
      if (v == nullptr || detail::after_end(ctx(c), "context_scratch_set")) {
        return PYOCO_ERR_INVALID;
      }
      // Bounded as an output is (the host's limits).
      if (!::pyoco::detail::unfit_value(v, "value").empty()) return PYOCO_ERR_INVALID;
      std::lock_guard<std::mutex> lock(ctx(c).shared->mutex);
      ctx(c).shared->scratch[std::string(k, n)] = node(v);
      return PYOCO_OK;
    };
    a.context_set_error = [](pyoco_context* c, const char* m, size_t n) {
      if (detail::after_end(ctx(c), "context_set_error")) return;
      ctx(c).error.assign(m, n);
    };
    // ---- 1.1 ----
    a.call_complete = [](pyoco_call* handle, pyoco_status status,
                         const pyoco_value* output) -> pyoco_status {
      const auto id = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(handle));
      const std::shared_ptr<detail::Context> call = detail::call_table().find(id);
      if (call == nullptr) return PYOCO_ERR_INVALID;  // its host is gone, and it had ended
      const std::shared_ptr<detail::Shared> shared = call->shared;
      std::lock_guard<std::mutex> lock(shared->mutex);
      if (call->completed) {
        ++shared->refused_completions;
        return PYOCO_ERR_INVALID;
      }
      call->completed = true;
      call->ended_at = std::chrono::steady_clock::now();
      call->ended = true;
      if (!shared->host_alive) {
        // Ended after its TestHost: nothing waits for it (as after ~Engine).
        detail::call_table().erase(id);
        return PYOCO_ERR_INVALID;
      }
      call->status = status;
      call->output = output;
      shared->wake.notify_all();
      return PYOCO_OK;
    };
    a.context_deadline = [](pyoco_context* c) -> int64_t {
      if (detail::after_end(ctx(c), "context_deadline")) return 0;
      return ctx(c).deadline_ns;
    };
    a.context_on_cancel = [](pyoco_context* c, pyoco_callback_fn fn, void* user) -> pyoco_status {
      detail::Context& x = ctx(c);
      if (detail::after_end(x, "context_on_cancel")) {
        fn(user, PYOCO_OK);  // the call ended first: `user` can be freed
        return PYOCO_OK;
      }
      std::unique_lock<std::mutex> lock(x.shared->mutex);
      const bool open = x.open_call();
      const bool over = x.cancelled || x.host_cancelled || !x.shared->host_alive;
      if (open && !over) {
        x.on_cancel.emplace_back(fn, user);
        return PYOCO_OK;
      }
      lock.unlock();
      // Said at once: an open call here is over (cancelled, or its host gone).
      const detail::Inside inside(&x);
      fn(user, open || x.host_cancelled ? PYOCO_ERR_CANCELLED : PYOCO_OK);
      return PYOCO_OK;
    };
    a.context_heartbeat = [](pyoco_context* c, double progress, const char* m, size_t n) {
      if (detail::after_end(ctx(c), "context_heartbeat")) return;
      // As pyoco records it: past 1 is 1; negative or NaN is unknown (-1).
      if (!(progress >= 0)) {
        progress = -1;
      } else if (progress > 1) {
        progress = 1;
      }
      std::lock_guard<std::mutex> lock(ctx(c).shared->mutex);
      ctx(c).shared->heartbeats.push_back(
          Heartbeat{ctx(c).task, progress, m == nullptr ? std::string() : std::string(m, n)});
    };
    a.host_timer = [](pyoco_context* c, uint64_t delay_ns, pyoco_callback_fn fn,
                      void* user) -> pyoco_status {
      detail::Context& x = ctx(c);
      if (detail::after_end(x, "host_timer")) {
        fn(user, PYOCO_ERR_CANCELLED);  // as for a timer whose call ended first
        return PYOCO_OK;
      }
      std::unique_lock<std::mutex> lock(x.shared->mutex);
      if (!x.open_call() || x.cancelled || x.host_cancelled || !x.shared->host_alive) {
        lock.unlock();
        const detail::Inside inside(&x);
        fn(user, PYOCO_ERR_CANCELLED);
        return PYOCO_OK;
      }
      const auto delay = std::chrono::nanoseconds(
          std::min<uint64_t>(delay_ns, std::uint64_t{1} << 62));  // far enough: never
      x.timers.push_back(
          {std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(delay),
           fn, user});
      x.shared->wake.notify_all();
      return PYOCO_OK;
    };
    a.context_scratch_update = [](pyoco_context* c, const char* k, size_t n,
                                  const pyoco_value* expected, const pyoco_value* desired,
                                  const pyoco_value** current_out) -> pyoco_status {
      if (desired == nullptr || detail::after_end(ctx(c), "context_scratch_update")) {
        return PYOCO_ERR_INVALID;
      }
      if (!::pyoco::detail::unfit_value(desired, "desired").empty() ||
          !::pyoco::detail::unfit_value(expected, "expected").empty()) {
        return PYOCO_ERR_INVALID;
      }
      detail::Shared& h = *ctx(c).shared;
      std::lock_guard<std::mutex> lock(h.mutex);
      auto it = h.scratch.find(std::string(k, n));
      const detail::Node* now = it == h.scratch.end() ? nullptr : it->second;
      const bool matches = expected == nullptr
                               ? now == nullptr
                               : now != nullptr && to_json(now) == to_json(node(expected));
      if (matches) {
        h.scratch[std::string(k, n)] = node(desired);
        now = node(desired);
      }
      if (current_out != nullptr) *current_out = now == nullptr ? nullptr : handle(now);
      return matches ? PYOCO_OK : PYOCO_ERR_CONFLICT;
    };
    return a;
  }

  static std::vector<Definition::Io> copy_io(const pyoco_io_spec* specs, std::size_t count) {
    std::vector<Definition::Io> out;
    if (specs == nullptr) return out;
    const char* base = reinterpret_cast<const char*>(specs);
    for (std::size_t i = 0; i < count; ++i) {
      const auto* io = reinterpret_cast<const pyoco_io_spec*>(base + i * specs->struct_size);
      out.push_back({io->name != nullptr ? io->name : "", io->type != nullptr ? io->type : "any",
                     io->required != 0});
    }
    return out;
  }

  // What pyoco says of an output that does not fit what the task declares
  // (the engine's output check, word for word); empty when it fits.
  static std::string output_mismatch(const Definition& def, const pyoco_value* out) {
    if (def.outputs.empty()) return {};
    auto kind = [](const pyoco_value* v) { return api().value_kind(v); };
    auto a = [&](const pyoco_value* v) -> std::string {
      if (kind(v) == PYOCO_VALUE_NULL) return "null";
      const std::string k = ::pyoco::detail::kind_name(static_cast<Kind>(kind(v)));
      return (std::string("aeiou").find(k[0]) == std::string::npos ? "a " : "an ") + k;
    };
    auto fits = [&](const pyoco_value* v, const std::string& type) {
      const pyoco_value_kind k = kind(v);
      if (type == "null") return k == PYOCO_VALUE_NULL;
      if (type == "bool") return k == PYOCO_VALUE_BOOL;
      if (type == "int") return k == PYOCO_VALUE_INT;
      if (type == "number") return k == PYOCO_VALUE_INT || k == PYOCO_VALUE_DOUBLE;
      if (type == "string") return k == PYOCO_VALUE_STRING;
      if (type == "bytes") return k == PYOCO_VALUE_BYTES || k == PYOCO_VALUE_STRING;
      if (type == "array") return k == PYOCO_VALUE_ARRAY;
      if (type == "object") return k == PYOCO_VALUE_OBJECT;
      return true;  // any
    };
    const bool one = def.outputs.size() == 1;
    auto wrong = [&](const Definition::Io& io, const pyoco_value* v) -> std::string {
      if (kind(v) == PYOCO_VALUE_NULL && !io.required) return {};
      if (fits(v, io.type)) return {};
      return def.name + " returned " + (one ? "" : "'" + io.name + "' as ") + a(v) +
             ", but the task declares " + (one ? "its output '" + io.name + "'" : "it") + " as " +
             io.type + " (a bug of the task or of its declaration)";
    };
    if (one) return wrong(def.outputs.front(), out);
    if (kind(out) != PYOCO_VALUE_OBJECT) {
      return def.name + " returned " + a(out) + ", but the task declares an object of " +
             std::to_string(def.outputs.size()) +
             " outputs (a bug of the task or of its declaration)";
    }
    for (const Definition::Io& io : def.outputs) {
      const std::string w =
          wrong(io, api().value_object_find(out, io.name.c_str(), io.name.size()));
      if (!w.empty()) return w;
    }
    return {};
  }

  // Why the host would refuse an artifact name, in its words (a copy of
  // runtime/core's check_artifact_name: this header stands alone); empty
  // when it would not.
  static std::string artifact_name_problem(const std::string& name) {
    if (name.size() > 255) return "is longer than 255 bytes";
    if (name.front() == '/') return "must be relative: it names a file within the run, not a path";
    for (const char c : name) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) return "contains a control character";
      if (c == '\\') return "contains a backslash; separate directories with '/'";
    }
    for (std::size_t i = 0; i < name.size();) {
      const std::size_t n = utf8_sequence_at(name, i);
      if (n == 0) return "is not UTF-8";
      i += n;
    }
    std::size_t start = 0;
    while (start <= name.size()) {
      const std::size_t slash = std::min(name.find('/', start), name.size());
      const std::string part = name.substr(start, slash - start);
      if (part.empty()) return "has an empty part ('//' or a trailing '/')";
      if (part == "." || part == "..") return "must stay inside the run: no '.' or '..' parts";
      start = slash + 1;
    }
    return "";
  }

  // Length of the well-formed UTF-8 sequence at text[i], or 0.
  static std::size_t utf8_sequence_at(const std::string& text, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
    const std::size_t left = text.size() - i;
    const unsigned char c = b(0);
    if (c < 0x80) return 1;
    auto cont = [&](std::size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      if (!cont(1) || !cont(2)) return 0;
      if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) >= 0xA0)) return 0;
      return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      if (!cont(1) || !cont(2) || !cont(3)) return 0;
      if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) >= 0x90)) return 0;
      return 4;
    }
    return 0;
  }

  // A name as a message shows it: control characters and bytes that are
  // not UTF-8 as \xNN, so they cannot cut or forge the line.
  static std::string printable(const std::string& text) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
      const auto c = static_cast<unsigned char>(text[i]);
      const std::size_t n = c < 0x20 || c == 0x7f ? 0 : utf8_sequence_at(text, i);
      if (n == 0) {
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 15];
        ++i;
      } else {
        out.append(text, i, n);
        i += n;
      }
    }
    return out;
  }

  static std::atomic<const TestHost*>& live_host() {
    static std::atomic<const TestHost*> host{nullptr};
    return host;
  }

  static std::string to_json(const detail::Node* n) {
    switch (n->kind) {
      case PYOCO_VALUE_NULL:
        return "null";
      case PYOCO_VALUE_BOOL:
        return n->b ? "true" : "false";
      case PYOCO_VALUE_INT:
        return std::to_string(n->i);
      case PYOCO_VALUE_DOUBLE: {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", n->d);
        return buf;
      }
      case PYOCO_VALUE_ARRAY: {
        std::string s = "[";
        for (std::size_t i = 0; i < n->items.size(); ++i)
          s += (i ? "," : "") + to_json(n->items[i]);
        return s + "]";
      }
      case PYOCO_VALUE_OBJECT: {
        std::string s = "{";
        for (std::size_t i = 0; i < n->members.size(); ++i) {
          s += (i ? "," : "") + quote(n->members[i].first) + ":" + to_json(n->members[i].second);
        }
        return s + "}";
      }
      default:
        return quote(n->s);
    }
  }

  static std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    return out + "\"";
  }

  std::shared_ptr<detail::Shared> shared_;  // what calls touch: logs, calls, scratch, values
  std::vector<std::shared_ptr<detail::Context>> contexts_;
  std::optional<std::chrono::milliseconds> cancel_after_, timeout_;
  std::chrono::milliseconds call_limit_{30000};
  std::vector<Definition> tasks_;
  std::map<std::string, Instance> instances_;
  std::map<std::string, std::uint32_t> attempts_;
  std::string registry_error_;
  const detail::Node* params_ = nullptr;
  bool cancelled_ = false;
  detail::Context setup_;
  std::optional<::pyoco::detail::ContextScope> scope_;
};

inline pyoco_status TestHost::run_async(const Definition& def, void* state,
                                        const std::shared_ptr<detail::Context>& shared_call,
                                        const pyoco_value* in,
                                        std::chrono::steady_clock::time_point started,
                                        const pyoco_value*& out, bool& timed_out) {
  using clock = std::chrono::steady_clock;
  detail::Context& call = *shared_call;
  {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    call.call_id = detail::call_table().add(shared_call);
  }
  auto* handle = reinterpret_cast<pyoco_call*>(static_cast<std::uintptr_t>(call.call_id));
  pyoco_status s = PYOCO_OK;
  std::thread body;  // a `run` task runs here, so the host can cancel it meanwhile
  if (def.start != nullptr) {
    const detail::Inside inside(&call);
    s = def.start(state, as_context(&call), in, handle);
  } else {
    body = std::thread([&def, state, &call, in, handle] {
      ::pyoco::detail::ContextScope scope(as_context(&call));
      const detail::Inside inside(&call);
      const pyoco_value* result = nullptr;
      const pyoco_status st = def.run(state, as_context(&call), in, &result);
      api().call_complete(handle, st, result);
    });
  }
  std::unique_lock<std::mutex> lock(shared_->mutex);
  if (s != PYOCO_OK && !call.completed) {
    call.completed = true;  // a start that fails has begun nothing
    call.ended_at = clock::now();
    call.ended = true;
    call.status = s;
  }
  const auto limit = started + call_limit_;
  std::optional<clock::time_point> cancel_at;
  if (cancel_after_) cancel_at = started + *cancel_after_;
  if (timeout_ && (!cancel_at || started + *timeout_ < *cancel_at)) {
    cancel_at = started + *timeout_;
  }
  if (cancel_at && call.completed && call.ended_at >= *cancel_at && !call.cancelled) {
    // start() blocked past the cancel or the deadline and ended the call
    // late: pyoco cancels (or times out) the call at that moment on a
    // thread of its own, whatever start() does meanwhile.
    timed_out = timeout_ && *cancel_at == started + *timeout_;
    end_call(call, lock, true);
  }
  while (!call.completed) {
    const auto now = clock::now();
    if (cancel_at && now >= *cancel_at && !call.cancelled) {
      timed_out = timeout_ && *cancel_at == started + *timeout_;
      end_call(call, lock, true);
      if (timed_out) break;  // the engine does not wait for a timed-out call
      continue;
    }
    // Fire due timers, one at a time, without holding the lock.
    auto due = std::min_element(call.timers.begin(), call.timers.end(),
                                [](const auto& a, const auto& b) { return a.due < b.due; });
    if (due != call.timers.end() && due->due <= now) {
      const auto timer = *due;
      call.timers.erase(due);
      lock.unlock();
      {
        const detail::Inside inside(&call);
        timer.fn(timer.user, PYOCO_OK);
      }
      lock.lock();
      continue;
    }
    if (now >= limit) {
      // Never completed: what waits on it is told, and the result says so.
      end_call(call, lock, true);
      call.error = "the task did not complete its call within " +
                   std::to_string(call_limit_.count()) + " ms (set_call_limit)";
      lock.unlock();
      if (body.joinable()) body.join();
      return PYOCO_ERR_TASK;
    }
    auto wake_at = limit;
    if (due != call.timers.end()) wake_at = std::min(wake_at, due->due);
    if (cancel_at && !call.cancelled) wake_at = std::min(wake_at, *cancel_at);
    shared_->wake.wait_until(lock, wake_at);
  }
  end_call(call, lock, false);
  lock.unlock();
  if (body.joinable()) body.join();  // a `run` task told to stop returns on its own
  lock.lock();
  if (call.cancelled && !timed_out) {
    // Cancelled (cancel_after): in pyoco the node is CANCELLED at that
    // moment, and whatever the task ends the call with later, a late OK
    // included, is ignored. The task's own message, when it gave one, is
    // kept: it says how the task heard of the cancel.
    if (call.status == PYOCO_OK || call.error.empty()) call.error = "run cancelled";
    out = nullptr;
    return PYOCO_ERR_CANCELLED;
  }
  out = call.output;
  return call.status;
}

// What is still waiting is told once: on_cancel callbacks with
// PYOCO_ERR_CANCELLED (cancelled) or PYOCO_OK (ended), timers cancelled.
inline void TestHost::end_call(detail::Context& call, std::unique_lock<std::mutex>& lock,
                               bool cancelled) {
  if (cancelled) call.cancelled = true;
  auto callbacks = std::move(call.on_cancel);
  auto timers = std::move(call.timers);
  call.on_cancel.clear();
  call.timers.clear();
  lock.unlock();
  const detail::Inside inside(&call);  // the host's callbacks for the call
  for (auto [fn, user] : callbacks) fn(user, cancelled ? PYOCO_ERR_CANCELLED : PYOCO_OK);
  for (const auto& t : timers) t.fn(t.user, PYOCO_ERR_CANCELLED);
  lock.lock();
}

}  // namespace testing
}  // namespace v1
}  // namespace pyoco

#endif  // PYOCO_TESTING_HPP
