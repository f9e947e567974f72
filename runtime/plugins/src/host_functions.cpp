// The host side of abi.h: the function table plugins call, and the calls
// the host makes into a task. Handles are the runtime's own objects behind
// opaque C names:
//   pyoco_value*    -> core::ValueNode*
//   pyoco_arena*    -> core::Arena*
//   pyoco_context*  -> Call*
//   pyoco_registry* -> RegistryState*
#include "registry_state.hpp"

#include <pyoco/core/text.hpp>
#include <pyoco/plugins/loader.hpp>
#include <pyoco/plugins/manifest.hpp>

#include <cstddef>
#include <cstring>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <utility>

namespace pyoco::plugins {

using core::Arena;
using core::ValueKind;
using core::ValueNode;

namespace {

const ValueNode* node(const pyoco_value* v) { return reinterpret_cast<const ValueNode*>(v); }
ValueNode* node(pyoco_value* v) { return reinterpret_cast<ValueNode*>(v); }
const pyoco_value* handle(const ValueNode* n) { return reinterpret_cast<const pyoco_value*>(n); }
pyoco_value* handle(ValueNode* n) { return reinterpret_cast<pyoco_value*>(n); }
Arena* arena(pyoco_arena* a) { return reinterpret_cast<Arena*>(a); }
Call* call(pyoco_context* c) { return reinterpret_cast<Call*>(c); }
RegistryState* registry(pyoco_registry* r) { return reinterpret_cast<RegistryState*>(r); }
pyoco_str str(std::string_view s) { return pyoco_str{s.data(), s.size()}; }

// A nonsense handle from a plugin would be undefined behaviour anyway; the
// null checks keep the common mistake (passing NULL) a clean error:
// PYOCO_ERR_INVALID, as abi.h says of a null handle.
bool is(const pyoco_value* v, ValueKind k) { return v != nullptr && node(v)->kind == k; }

// Copies the fields of a plugin-filled struct it knows about; a plugin built
// against an older minor has a smaller struct and the rest stays zero.
template <class T>
T sized_copy(const T* in) {
  T out{};
  const std::size_t n = in->struct_size < sizeof(T) ? in->struct_size : sizeof(T);
  std::memcpy(static_cast<void*>(&out), in, n);
  out.struct_size = n;
  return out;
}

const char* or_empty(const char* s) { return s == nullptr ? "" : s; }

// The call whose create, run or start, or a callback the host makes for it
// (timer, on-cancel, its completion), this thread is in: that code may use
// the context until it returns, even after the call ended (abi.h, Threads).
thread_local const Call* t_inside = nullptr;

class Inside {
 public:
  explicit Inside(const Call* c) : saved_(t_inside) { t_inside = c; }
  ~Inside() { t_inside = saved_; }
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;

 private:
  const Call* saved_;
};

std::atomic<std::uint64_t> g_calls_after_end{0};
std::atomic<bool> g_warned_after_end{false};

// Whether a context function must drop this use of `c`: its call has ended
// and this thread is none the host lets finish (most often a plugin's own
// thread with a copy of pyoco::Context). While the run goes on the Call is
// alive, so this catches it; once the run is over the Call may be freed and
// nothing can. One relaxed load while the call runs.
bool after_end(pyoco_context* c, const char* function) {
  const Call& ctx = *call(c);
  if (!ctx.ended.load(std::memory_order_relaxed) || t_inside == &ctx) return false;
  ++g_calls_after_end;
  if (!g_warned_after_end.exchange(true)) {
    std::cerr << "pyoco: warning: task " << core::printable(ctx.info.task_name) << " (node "
              << core::printable(ctx.info.node_name) << ") called " << function
              << " after its call had ended; ignored (this warning is printed once). A "
                 "context is valid only until the call ends (abi.h): a thread that keeps a "
                 "copy of pyoco::Context must stop using it before it completes the call, "
                 "or pyoco may crash once the run is over\n";
  }
  return true;
}

// A callback the host makes for a call: its code may use the context even
// when the call ended meanwhile (abi.h), so it runs Inside the call.
struct Hop {
  pyoco_callback_fn fn;
  void* user;
  const Call* ctx;
};
void hop(void* user, pyoco_status status) {
  const std::unique_ptr<Hop> h(static_cast<Hop*>(user));
  const Inside inside(h->ctx);
  h->fn(h->user, status);
}

// The specs of a task's inputs or outputs, or why they are refused: names
// are [a-z][a-z0-9_]* (a flow writes `inputs: {name: ...}`), each once.
std::vector<IoSpec> copy_specs(const pyoco_io_spec* specs, std::size_t count, const char* what,
                               std::string& refused) {
  std::vector<IoSpec> out;
  if (count == 0) return out;
  if (specs == nullptr) {
    refused = std::string(what) + "s is NULL but " + what + "_count is " + std::to_string(count);
    return out;
  }
  const std::size_t stride = specs->struct_size;
  if (stride < offsetof(pyoco_io_spec, name) + sizeof specs->name) {
    refused = "its first " + std::string(what) + "'s struct_size is " + std::to_string(stride);
    return out;
  }
  const char* base = reinterpret_cast<const char*>(specs);
  for (std::size_t i = 0; i < count; ++i) {
    const pyoco_io_spec s = sized_copy(reinterpret_cast<const pyoco_io_spec*>(base + i * stride));
    IoSpec io;
    io.name = or_empty(s.name);
    io.type = s.type == nullptr ? "any" : s.type;
    io.required = s.required != 0;
    io.description = or_empty(s.description);
    if (!is_valid_name(io.name)) {
      refused = std::string(what) + " '" + core::printable(io.name) + "' is not [a-z][a-z0-9_]*";
      return out;
    }
    for (const IoSpec& before : out) {
      if (before.name == io.name) {
        refused = std::string(what) + " '" + io.name + "' is declared twice";
        return out;
      }
    }
    out.push_back(std::move(io));
  }
  return out;
}

// ---- registry ----

pyoco_status registry_add_task(pyoco_registry* r, const pyoco_task_def* def_in) {
  if (r == nullptr || def_in == nullptr || def_in->struct_size < sizeof(size_t)) {
    return PYOCO_ERR_INVALID;
  }
  RegistryState& state = *registry(r);
  // The task is not added; the loader reports why even when register_tasks
  // ignores the status and returns OK.
  auto refuse = [&](std::string why) {
    if (state.refused.empty()) state.refused = why;
    state.error = std::move(why);
    return PYOCO_ERR_INVALID;
  };
  const pyoco_task_def def = sized_copy(def_in);
  const pyoco_task_start_fn start =
      PYOCO_HAS_FIELD(&def, pyoco_task_def, start) ? def.start : nullptr;
  if (def.name == nullptr || (def.run == nullptr && start == nullptr)) {
    return refuse(
        "a task was registered without a name, or with neither a run nor a start callback");
  }
  TaskDefinition t;
  t.plugin = state.plugin_name;
  t.abi_minor = state.abi_minor;
  t.name = def.name;
  const std::string label = "task '" + core::printable(t.name) + "'";
  if (!is_valid_name(t.name)) return refuse(label + ": its name is not [a-z][a-z0-9_]*");
  t.summary = or_empty(def.summary);
  t.usage = or_empty(def.usage);
  if (def.tags == nullptr && def.tag_count > 0) {
    return refuse(label + ": tags is NULL but tag_count is " + std::to_string(def.tag_count));
  }
  for (std::size_t i = 0; i < def.tag_count; ++i) t.tags.emplace_back(or_empty(def.tags[i]));
  std::string why;
  t.inputs = copy_specs(def.inputs, def.input_count, "input", why);
  if (why.empty()) t.outputs = copy_specs(def.outputs, def.output_count, "output", why);
  if (!why.empty()) return refuse(label + ": " + why);
  t.user_data = def.user_data;
  t.create = def.create;
  t.run = def.run;
  t.destroy = def.destroy;
  t.release = def.release;
  t.start = start;
  if (!state.names.insert(t.name).second) {
    return refuse(label + ": registered twice (each task name once per plugin)");
  }
  state.tasks.push_back(std::move(t));
  return PYOCO_OK;
}

void registry_set_error(pyoco_registry* r, const char* message, std::size_t size) {
  if (r != nullptr && message != nullptr) registry(r)->error.assign(message, size);
}

// ---- values: reading ----

pyoco_value_kind value_kind(const pyoco_value* v) {
  return v == nullptr ? PYOCO_VALUE_NULL : static_cast<pyoco_value_kind>(node(v)->kind);
}

pyoco_status value_get_bool(const pyoco_value* v, int32_t* out) {
  if (v == nullptr || out == nullptr) return PYOCO_ERR_INVALID;
  if (!is(v, ValueKind::Bool)) return PYOCO_ERR_TYPE;
  *out = node(v)->b ? 1 : 0;
  return PYOCO_OK;
}

pyoco_status value_get_int(const pyoco_value* v, int64_t* out) {
  if (v == nullptr || out == nullptr) return PYOCO_ERR_INVALID;
  if (!is(v, ValueKind::Int)) return PYOCO_ERR_TYPE;
  *out = node(v)->i;
  return PYOCO_OK;
}

pyoco_status value_get_double(const pyoco_value* v, double* out) {
  if (v == nullptr || out == nullptr) return PYOCO_ERR_INVALID;
  if (is(v, ValueKind::Int)) {
    *out = static_cast<double>(node(v)->i);
  } else if (is(v, ValueKind::Double)) {
    *out = node(v)->d;
  } else {
    return PYOCO_ERR_TYPE;
  }
  return PYOCO_OK;
}

pyoco_status value_get_string(const pyoco_value* v, pyoco_str* out) {
  if (v == nullptr || out == nullptr) return PYOCO_ERR_INVALID;
  if (!is(v, ValueKind::String)) return PYOCO_ERR_TYPE;
  *out = pyoco_str{node(v)->str.data, node(v)->str.size};
  return PYOCO_OK;
}

pyoco_status value_get_bytes(const pyoco_value* v, const void** data, size_t* size) {
  if (v == nullptr || data == nullptr || size == nullptr) return PYOCO_ERR_INVALID;
  if (!is(v, ValueKind::Bytes)) return PYOCO_ERR_TYPE;
  *data = node(v)->str.data;
  *size = node(v)->str.size;
  return PYOCO_OK;
}

size_t value_size(const pyoco_value* v) {
  if (is(v, ValueKind::Array)) return node(v)->arr.size;
  if (is(v, ValueKind::Object)) return node(v)->obj.size;
  return 0;
}

const pyoco_value* value_array_at(const pyoco_value* v, size_t index) {
  if (!is(v, ValueKind::Array) || index >= node(v)->arr.size) return nullptr;
  return handle(node(v)->arr.items[index]);
}

const pyoco_value* value_object_find(const pyoco_value* v, const char* key, size_t key_size) {
  if (!is(v, ValueKind::Object) || key == nullptr) return nullptr;
  const std::string_view k(key, key_size);
  const ValueNode* n = node(v);
  for (std::size_t i = 0; i < n->obj.size; ++i) {
    if (n->obj.members[i].key == k) return handle(n->obj.members[i].value);
  }
  return nullptr;
}

const pyoco_value* value_object_at(const pyoco_value* v, size_t index, pyoco_str* key_out) {
  if (!is(v, ValueKind::Object) || index >= node(v)->obj.size) return nullptr;
  const core::Member& m = node(v)->obj.members[index];
  if (key_out != nullptr) *key_out = str(m.key);
  return handle(m.value);
}

// ---- values: building ----

bool open(pyoco_arena* a) { return a != nullptr && !arena(a)->sealed(); }

pyoco_value* value_new_null(pyoco_arena* a) {
  return open(a) ? handle(arena(a)->make_null()) : nullptr;
}
pyoco_value* value_new_bool(pyoco_arena* a, int32_t v) {
  return open(a) ? handle(arena(a)->make_bool(v != 0)) : nullptr;
}
pyoco_value* value_new_int(pyoco_arena* a, int64_t v) {
  return open(a) ? handle(arena(a)->make_int(v)) : nullptr;
}
pyoco_value* value_new_double(pyoco_arena* a, double v) {
  return open(a) ? handle(arena(a)->make_double(v)) : nullptr;
}
pyoco_value* value_new_string(pyoco_arena* a, const char* data, size_t size) {
  if (!open(a) || (data == nullptr && size > 0)) return nullptr;
  return handle(arena(a)->make_string(std::string_view(data == nullptr ? "" : data, size)));
}
pyoco_value* value_new_bytes(pyoco_arena* a, const void* data, size_t size) {
  if (!open(a) || (data == nullptr && size > 0)) return nullptr;
  return handle(arena(a)->make_bytes(data, size));
}
pyoco_value* value_new_array(pyoco_arena* a) {
  return open(a) ? handle(arena(a)->make_array()) : nullptr;
}
pyoco_value* value_new_object(pyoco_arena* a) {
  return open(a) ? handle(arena(a)->make_object()) : nullptr;
}

pyoco_status value_array_push(pyoco_value* array, const pyoco_value* item) {
  // A container inside itself is a cycle no reader ends; one further down
  // (a inside b inside a) is caught by the engine's depth check on outputs.
  if (array == nullptr || item == nullptr || handle(node(array)) == item) return PYOCO_ERR_INVALID;
  if (node(array)->kind != ValueKind::Array) return PYOCO_ERR_TYPE;
  return Arena::push(node(array), node(item)) ? PYOCO_OK : PYOCO_ERR_INVALID;
}

pyoco_status value_object_set(pyoco_value* object, const char* key, size_t key_size,
                              const pyoco_value* item) {
  if (object == nullptr || item == nullptr || handle(node(object)) == item ||
      (key == nullptr && key_size > 0)) {
    return PYOCO_ERR_INVALID;
  }
  if (node(object)->kind != ValueKind::Object) return PYOCO_ERR_TYPE;
  return Arena::set(node(object), std::string_view(key == nullptr ? "" : key, key_size), node(item))
             ? PYOCO_OK
             : PYOCO_ERR_INVALID;
}

// ---- context ----

pyoco_arena* context_arena(pyoco_context* c) {
  if (c == nullptr || after_end(c, "context_arena")) return nullptr;
  return reinterpret_cast<pyoco_arena*>(&call(c)->values());
}

const pyoco_value* context_params(pyoco_context* c) {
  if (c == nullptr || after_end(c, "context_params")) return nullptr;
  return handle(call(c)->params.node());
}

pyoco_status context_info(pyoco_context* c, pyoco_call_info* out) {
  if (c == nullptr || out == nullptr || out->struct_size < sizeof(size_t) ||
      after_end(c, "context_info")) {
    return PYOCO_ERR_INVALID;
  }
  const CallInfo& info = call(c)->info;
  pyoco_call_info full{};
  full.struct_size = sizeof full;
  full.run_id = str(info.run_id);
  full.flow_name = str(info.flow_name);
  full.node_name = str(info.node_name);
  full.task_name = str(info.task_name);
  full.attempt = info.attempt;
  // Fill what the caller's struct has room for; keep its own struct_size.
  const std::size_t n = out->struct_size < sizeof full ? out->struct_size : sizeof full;
  const std::size_t caller_size = out->struct_size;
  std::memcpy(static_cast<void*>(out), &full, n);
  out->struct_size = caller_size;
  return PYOCO_OK;
}

void context_log(pyoco_context* c, pyoco_log_level level, const char* message, size_t size) {
  if (c == nullptr || message == nullptr || after_end(c, "context_log")) return;
  Call& ctx = *call(c);
  LogLevel l = LogLevel::Info;
  if (level <= PYOCO_LOG_DEBUG) {
    l = LogLevel::Debug;
  } else if (level >= PYOCO_LOG_ERROR) {
    l = LogLevel::Error;
  } else if (level >= PYOCO_LOG_WARN) {
    l = LogLevel::Warn;
  }
  if (ctx.services != nullptr) ctx.services->log(ctx.info, l, std::string_view(message, size));
}

int32_t context_is_cancelled(pyoco_context* c) {
  if (c == nullptr) return 0;
  if (after_end(c, "context_is_cancelled")) return 1;  // over: a loop polling it should stop
  if (call(c)->cancelled == nullptr) return 0;
  return call(c)->cancelled->load(std::memory_order_relaxed) ? 1 : 0;
}

pyoco_status context_save_artifact(pyoco_context* c, const pyoco_artifact* in,
                                   pyoco_str* path_out) {
  if (c == nullptr || in == nullptr || in->struct_size < sizeof(size_t)) return PYOCO_ERR_INVALID;
  if (after_end(c, "context_save_artifact")) return PYOCO_ERR_INVALID;
  Call& ctx = *call(c);
  if (ctx.services == nullptr) return PYOCO_ERR_UNSUPPORTED;
  const pyoco_artifact a = sized_copy(in);
  // The reason goes back through path_out, so the SDK can say it.
  auto refuse = [&](std::string why, pyoco_status status) {
    ctx.last_artifact_path = std::move(why);
    if (path_out != nullptr) *path_out = str(ctx.last_artifact_path);
    return status;
  };
  if (a.name.data == nullptr || a.name.size == 0) {
    return refuse("an artifact needs a name", PYOCO_ERR_INVALID);
  }
  std::string json;
  std::string_view bytes;
  std::string_view media = a.media_type == nullptr ? "" : a.media_type;
  if (a.value != nullptr) {
    const core::Value v(core::ArenaPtr(node(a.value)->owner), node(a.value));
    // Checked before it is written: a few shared lists can stand for more
    // items than memory holds, and JSON has no NaN (it would become null).
    if (std::string why = core::unfit_value(v, "value"); !why.empty()) {
      return refuse(std::move(why), PYOCO_ERR_INVALID);
    }
    json = core::to_json_text(v);
    bytes = json;
    if (media.empty()) media = "application/json";
  } else {
    if (a.data == nullptr && a.size > 0) {
      return refuse("artifact data is null but its size is not 0", PYOCO_ERR_INVALID);
    }
    bytes = std::string_view(static_cast<const char*>(a.data), a.size);
  }
  core::ArtifactRecord saved;
  try {
    saved = ctx.services->save_artifact(ctx.info, std::string_view(a.name.data, a.name.size), bytes,
                                        media);
  } catch (const core::ArtifactError& e) {
    return refuse(e.what(), PYOCO_ERR_INVALID);
  } catch (const std::exception& e) {
    return refuse(e.what(), PYOCO_ERR_INTERNAL);
  }
  // A 1.1 plugin learns the artifact's name, never where the host keeps it;
  // a 1.0 plugin keeps getting the file's path it was promised.
  ctx.last_artifact_path =
      ctx.abi_minor >= 1 || saved.path.empty() ? std::move(saved.name) : std::move(saved.path);
  if (path_out != nullptr) *path_out = str(ctx.last_artifact_path);
  return PYOCO_OK;
}

pyoco_status context_load_artifact(pyoco_context* c, const char* name, size_t name_size,
                                   pyoco_str* data_out) {
  if (c == nullptr || name == nullptr || data_out == nullptr) return PYOCO_ERR_INVALID;
  if (after_end(c, "context_load_artifact")) return PYOCO_ERR_INVALID;
  Call& ctx = *call(c);
  *data_out = pyoco_str{nullptr, 0};
  if (ctx.services == nullptr) return PYOCO_ERR_UNSUPPORTED;
  auto refuse = [&](std::string why, pyoco_status status) {
    ctx.last_artifact_path = std::move(why);
    *data_out = str(ctx.last_artifact_path);
    return status;
  };
  std::optional<std::string> bytes;
  try {
    bytes = ctx.services->load_artifact(std::string_view(name, name_size));
  } catch (const core::ArtifactError& e) {
    return refuse(e.what(), PYOCO_ERR_INVALID);
  } catch (const std::exception& e) {
    return refuse(e.what(), PYOCO_ERR_INTERNAL);
  }
  if (!bytes) {
    return refuse("this run has no artifact '" + std::string(name, name_size) + "'",
                  PYOCO_ERR_NOT_FOUND);
  }
  // The bytes live in the call's arena, like any value the call builds.
  const core::ValueNode* held = ctx.values().make_bytes(bytes->data(), bytes->size());
  *data_out = pyoco_str{held->str.data, held->str.size};
  return PYOCO_OK;
}

const pyoco_value* context_scratch_get(pyoco_context* c, const char* key, size_t key_size) {
  if (c == nullptr || key == nullptr || after_end(c, "context_scratch_get")) return nullptr;
  Call& ctx = *call(c);
  if (ctx.services == nullptr) return nullptr;
  core::Value v = ctx.services->scratch_get(std::string_view(key, key_size));
  if (v.node() == nullptr) return nullptr;
  ctx.borrowed.push_back(v);  // alive until the call ends, even if replaced meanwhile
  return handle(v.node());
}

pyoco_status context_scratch_set(pyoco_context* c, const char* key, size_t key_size,
                                 const pyoco_value* value) {
  if (c == nullptr || key == nullptr || value == nullptr) return PYOCO_ERR_INVALID;
  if (after_end(c, "context_scratch_set")) return PYOCO_ERR_INVALID;
  Call& ctx = *call(c);
  if (ctx.services == nullptr) return PYOCO_ERR_UNSUPPORTED;
  core::Value v(core::ArenaPtr(node(value)->owner), node(value));
  // Read by tasks and expressions later, compared by update: bounded as an output is.
  if (!core::unfit_value(v, "value").empty()) return PYOCO_ERR_INVALID;
  ctx.services->scratch_set(std::string_view(key, key_size), std::move(v));
  return PYOCO_OK;
}

void context_set_error(pyoco_context* c, const char* message, size_t size) {
  if (c != nullptr && message != nullptr && !after_end(c, "context_set_error")) {
    call(c)->error.assign(message, size);
  }
}

// ---- 1.1: async calls --------------------------------------------------------

// A pyoco_call handle names a slot of this table and its generation, never
// a pointer: a second completion of a call (a plugin bug) finds the slot
// reused or free and is refused, instead of touching a context that is gone.
class CallTable {
 public:
  std::uint64_t open(Call* ctx) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.push_back({});
    }
    Slot& s = slots_[index];
    s.ctx = ctx;
    // Generation 0 is never handed out, so no handle is ever NULL.
    return (static_cast<std::uint64_t>(++s.generation) << 32) | index;
  }
  // The call's context, once: the slot is closed by taking it.
  Call* close(std::uint64_t handle) {
    const auto index = static_cast<std::uint32_t>(handle & 0xffffffffu);
    const auto generation = static_cast<std::uint32_t>(handle >> 32);
    std::lock_guard<std::mutex> lock(mutex_);
    if (index >= slots_.size() || slots_[index].generation != generation ||
        slots_[index].ctx == nullptr) {
      return nullptr;
    }
    Call* ctx = std::exchange(slots_[index].ctx, nullptr);
    free_.push_back(index);
    return ctx;
  }

 private:
  struct Slot {
    Call* ctx = nullptr;
    std::uint32_t generation = 0;
  };
  std::mutex mutex_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
};

CallTable& calls() {
  static CallTable* table = new CallTable();  // never destroyed: calls may end at exit
  return *table;
}

std::atomic<std::uint64_t> g_refused_completions{0};

// Seals what the call built and hands its result on.
void finish_call(Call& ctx, pyoco_status status, const pyoco_value* out, const char* what) {
  // Ended first: a thread that kept the context is dropped from here on,
  // never racing the seal and the clear below. Its on-cancel callbacks
  // (told PYOCO_OK, on this thread, by call_finished) may still use it.
  const Inside inside(&ctx);
  ctx.ended.store(true, std::memory_order_release);
  CallResult result;
  result.ok = status == PYOCO_OK;
  if (result.ok) {
    if (out != nullptr) result.output = core::Value(core::ArenaPtr(node(out)->owner), node(out));
  } else {
    if (!ctx.error.empty()) {
      result.error = ctx.error;
    } else if (status == PYOCO_ERR_CANCELLED) {
      result.error = "the task cancelled itself and gave no reason";  // not a failure
    } else {
      result.error =
          std::string(what) + " failed with status " + std::to_string(status) + " and no message";
    }
    result.permanent = status == PYOCO_ERR_PERMANENT;
    result.cancelled = status == PYOCO_ERR_CANCELLED;
  }
  if (ctx.arena) ctx.arena->seal();
  ctx.borrowed.clear();
  if (ctx.services != nullptr) ctx.services->call_finished();
  CallDone done = std::move(ctx.done);
  done(std::move(result));  // may free ctx
}

pyoco_status call_complete(pyoco_call* call, pyoco_status status, const pyoco_value* output) {
  Call* ctx = calls().close(reinterpret_cast<std::uintptr_t>(call));
  if (ctx == nullptr) {
    ++g_refused_completions;
    // The handle names no call any more; the thread may still be in one.
    std::string who = "a plugin";
    if (t_inside != nullptr) {
      who = "task " + core::printable(t_inside->info.task_name) + " (node " +
            core::printable(t_inside->info.node_name) + ")";
    }
    std::cerr << "pyoco: warning: " << who
              << (call == nullptr ? " called call_complete with a NULL call handle (pass the "
                                    "pyoco_call* its start() was given); ignored\n"
                                  : " completed a call that had already ended (call_complete "
                                    "called twice, or with a handle that is not its call's); "
                                    "ignored\n");
    return PYOCO_ERR_INVALID;
  }
  finish_call(*ctx, status, output, "the task");
  return PYOCO_OK;
}

int64_t context_deadline(pyoco_context* c) {
  if (c == nullptr || after_end(c, "context_deadline") || call(c)->services == nullptr) return 0;
  return call(c)->services->deadline_ns();
}

pyoco_status context_on_cancel(pyoco_context* c, pyoco_callback_fn fn, void* user) {
  if (c == nullptr || fn == nullptr) return PYOCO_ERR_INVALID;
  if (after_end(c, "context_on_cancel")) {
    fn(user, PYOCO_OK);  // the call ended first, as promised: `user` can be freed
    return PYOCO_OK;
  }
  Call& ctx = *call(c);
  if (ctx.services == nullptr) return PYOCO_ERR_UNSUPPORTED;
  auto* h = new Hop{fn, user, &ctx};
  if (!ctx.services->on_cancel(hop, h)) {
    delete h;
    return PYOCO_ERR_UNSUPPORTED;
  }
  return PYOCO_OK;
}

void context_heartbeat(pyoco_context* c, double progress, const char* message, size_t size) {
  if (c == nullptr || after_end(c, "context_heartbeat") || call(c)->services == nullptr) return;
  Call& ctx = *call(c);
  ctx.services->heartbeat(
      ctx.info, progress,
      message == nullptr ? std::string_view() : std::string_view(message, size));
}

pyoco_status host_timer(pyoco_context* c, uint64_t delay_ns, pyoco_callback_fn fn, void* user) {
  if (c == nullptr || fn == nullptr) return PYOCO_ERR_INVALID;
  if (after_end(c, "host_timer")) {
    fn(user, PYOCO_ERR_CANCELLED);  // as for a timer whose call ended first
    return PYOCO_OK;
  }
  Call& ctx = *call(c);
  if (ctx.services == nullptr) return PYOCO_ERR_UNSUPPORTED;
  auto* h = new Hop{fn, user, &ctx};
  if (!ctx.services->start_timer(delay_ns, hop, h)) {
    delete h;
    return PYOCO_ERR_UNSUPPORTED;
  }
  return PYOCO_OK;
}

pyoco_status context_scratch_update(pyoco_context* c, const char* key, size_t key_size,
                                    const pyoco_value* expected, const pyoco_value* desired,
                                    const pyoco_value** current_out) {
  if (c == nullptr || key == nullptr || desired == nullptr) return PYOCO_ERR_INVALID;
  if (after_end(c, "context_scratch_update")) return PYOCO_ERR_INVALID;
  Call& ctx = *call(c);
  if (ctx.services == nullptr) return PYOCO_ERR_UNSUPPORTED;
  const core::Value want = expected == nullptr
                               ? core::Value()
                               : core::Value(core::ArenaPtr(node(expected)->owner), node(expected));
  const core::Value put(core::ArenaPtr(node(desired)->owner), node(desired));
  if (!core::unfit_value(want, "expected").empty() || !core::unfit_value(put, "desired").empty()) {
    return PYOCO_ERR_INVALID;
  }
  core::Value current;
  const pyoco_status s =
      ctx.services->scratch_update(std::string_view(key, key_size), want, put, current);
  if (current_out != nullptr) {
    *current_out = current.node() == nullptr ? nullptr : handle(current.node());
    if (current.node() != nullptr) ctx.borrowed.push_back(current);  // alive for the call
  }
  return s;
}

const pyoco_host_api kHostApi = {
    sizeof(pyoco_host_api),
    PYOCO_ABI_VERSION_MAJOR,
    PYOCO_ABI_VERSION_MINOR,
    registry_add_task,
    registry_set_error,
    value_kind,
    value_get_bool,
    value_get_int,
    value_get_double,
    value_get_string,
    value_get_bytes,
    value_size,
    value_array_at,
    value_object_find,
    value_object_at,
    value_new_null,
    value_new_bool,
    value_new_int,
    value_new_double,
    value_new_string,
    value_new_bytes,
    value_new_array,
    value_new_object,
    value_array_push,
    value_object_set,
    context_arena,
    context_params,
    context_info,
    context_log,
    context_is_cancelled,
    context_save_artifact,
    context_scratch_get,
    context_scratch_set,
    context_set_error,
    call_complete,
    context_deadline,
    context_on_cancel,
    context_heartbeat,
    host_timer,
    context_scratch_update,
    context_load_artifact,
};

}  // namespace

const pyoco_host_api& host_api() { return kHostApi; }

// ---- calls into a task ----

TaskInstance::~TaskInstance() {
  if (created_ && def_->destroy != nullptr && state_ != nullptr) def_->destroy(state_);
}

void TaskInstance::begin(Call& ctx, const core::Value& inputs, CallDone done) {
  ctx.arena.reset();
  ctx.late.reset();
  ctx.error.clear();
  ctx.abi_minor = def_->abi_minor;
  ctx.done = std::move(done);
  ctx.ended.store(false, std::memory_order_relaxed);
  auto* c = reinterpret_cast<pyoco_context*>(&ctx);
  const Inside inside(&ctx);  // create, start and run may use it to their end

  if (!created_) {
    if (def_->create != nullptr) {
      void* state = nullptr;
      const pyoco_status s = def_->create(def_->user_data, c, &state);
      if (s != PYOCO_OK) return finish_call(ctx, s, nullptr, "creating the task");
      state_ = state;
    } else {
      state_ = def_->user_data;
    }
    created_ = true;
  }

  if (def_->start != nullptr) {
    const std::uint64_t slot = calls().open(&ctx);
    ctx.call_slot = slot;
    const pyoco_status s =
        def_->start(state_, c, handle(inputs.node()), reinterpret_cast<pyoco_call*>(slot));
    // A start that fails has not begun anything: the call ends here, unless
    // the plugin (wrongly) completed it already.
    if (s != PYOCO_OK && calls().close(slot) != nullptr) finish_call(ctx, s, nullptr, "the task");
    return;
  }
  const pyoco_value* out = nullptr;
  const pyoco_status s = def_->run(state_, c, handle(inputs.node()), &out);
  finish_call(ctx, s, out, "the task");
}

CallResult TaskInstance::call(Call& ctx, const core::Value& inputs) {
  std::promise<CallResult> result;
  auto future = result.get_future();
  begin(ctx, inputs, [&result](CallResult&& r) { result.set_value(std::move(r)); });
  return future.get();
}

std::uint64_t refused_completions() { return g_refused_completions.load(); }
std::uint64_t calls_after_end() { return g_calls_after_end.load(); }
const CallInfo* call_on_this_thread() noexcept {
  return t_inside != nullptr ? &t_inside->info : nullptr;
}

}  // namespace pyoco::plugins
