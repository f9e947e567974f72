/*
 * pyoco/abi.h - the C ABI between the pyoco runtime (the host) and plugins.
 *
 * This header is the whole contract. It is C so that any compiler, and any
 * C++ standard library, can sit on either side of it. Rules that keep it
 * stable (see docs/plugins.md, "Versioning and ABI policy"):
 *
 *  - Every struct starts with `size_t struct_size`, set by whoever fills the
 *    struct to sizeof the struct it was compiled against. A reader uses a
 *    field only when struct_size shows the writer knew it (PYOCO_HAS_FIELD).
 *  - Structs and the host function table only ever grow at the end. Nothing
 *    is reordered, retyped or removed within one major version.
 *  - A change that breaks either rule bumps PYOCO_ABI_VERSION_MAJOR; the host
 *    refuses plugins of another major with a clear message.
 *  - No C++ types, no exceptions, no ownership transfer of memory allocated
 *    by the other side. Ownership is spelled in each comment:
 *      "borrowed": valid for the stated scope, never freed by the receiver;
 *      "host-owned": allocated and freed by the host.
 *  - Strings are UTF-8 as (pointer, length) pairs; strings handed out by the
 *    host are also NUL-terminated. Strings handed in may have no NUL when a
 *    length is given.
 *
 * A plugin exports exactly one symbol, `pyoco_plugin_entry` (the SDK's
 * PYOCO_PLUGIN macro writes it). The host calls it to read the descriptor,
 * checks the ABI major, and later calls `register_tasks` with its function
 * table. Plugin code runs only through the descriptor's callbacks.
 *
 * Additions are marked with the minor version they came in, "(1.1)". A
 * plugin that uses one checks first that the host has it:
 * PYOCO_HAS_FIELD(host, pyoco_host_api, call_complete) for the 1.1 table.
 *
 * Threads (1.1). The host calls a task's create, run and start on one of
 * its worker threads, and destroy on any of its threads; calls of different instances (and of a
 * stateless task, which has one shared instance) may run at the same time,
 * calls of one instance never overlap. A task may start threads of its own.
 * From any thread, including the plugin's own:
 *   - value_* reading functions, on values that are alive;
 *   - value_* building functions, for one call from one thread at a time
 *     (they allocate in the call's arena);
 *   - context_log, context_is_cancelled, context_deadline, context_heartbeat,
 *     context_on_cancel, host_timer and call_complete: concurrently, too.
 *   - The other context_* functions (arena, params, info, save_artifact,
 *     load_artifact, scratch_*, set_error) for one call from one thread at a time.
 * A context is valid from the call's start until the call ends: run returns,
 * or, for an async call, call_complete is called; but start, and a callback
 * the host makes for the call (on-cancel, timer), may use it until they
 * return even when the call ended during them (values built after the end
 * go to a fresh arena: they can no longer be the call's output). A call
 * abandoned at its deadline or by a cancel may still be running when the
 * host starts a retry of the same node: the retry gets a new instance and a
 * new context.
 * Callbacks the host makes into a plugin run on host threads every run
 * shares: a timer's on the control thread, an on-cancel callback on the
 * thread that decides the call's fate (the control thread, a worker thread,
 * or the thread that called call_complete). They must return quickly and
 * must not block; post longer work to a thread of the plugin's. A call's
 * callbacks may run at the same time as each other and as the plugin's own
 * threads (the one-thread-at-a-time rules above are the plugin's to keep),
 * never beside the call's start(): one the host has due while start() runs
 * waits until it returns (then runs on a host thread of the run; a timer
 * whose call ended meanwhile hears PYOCO_ERR_CANCELLED). One the plugin
 * causes itself (on_cancel of a call already cancelled) runs at once on the
 * asking thread. A run that gives a call up (cancel, stop, deadline) while
 * its start() runs waits up to half a second, at its end, for start() and
 * those callbacks,
 * so what they log is recorded before the run's end.
 */
#ifndef PYOCO_ABI_H
#define PYOCO_ABI_H

#include <stddef.h>
#include <stdint.h>

#define PYOCO_ABI_VERSION_MAJOR 1
#define PYOCO_ABI_VERSION_MINOR 1

/* The one symbol a plugin exports. */
#define PYOCO_PLUGIN_ENTRY_SYMBOL "pyoco_plugin_entry"

#if defined(_WIN32)
#define PYOCO_PLUGIN_EXPORT __declspec(dllexport)
#else
#define PYOCO_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* True when a struct filled by the other side carries `field`. */
#define PYOCO_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */

typedef int32_t pyoco_status;
#define PYOCO_OK 0
#define PYOCO_ERR_TASK 1        /* the task failed; message via context_set_error */
#define PYOCO_ERR_INVALID 2     /* bad argument (null handle, wrong struct, bad name) */
#define PYOCO_ERR_TYPE 3        /* value is not of the requested kind */
#define PYOCO_ERR_NOT_FOUND 4   /* key, index or name does not exist */
#define PYOCO_ERR_CANCELLED 5   /* the task stopped because its context was cancelled */
#define PYOCO_ERR_UNSUPPORTED 6 /* the host lacks what the caller needs */
#define PYOCO_ERR_INTERNAL 7    /* a bug or resource failure on the reporting side */
/* (1.1) from a task: it failed and a retry cannot help (no retries follow) */
#define PYOCO_ERR_PERMANENT 8
/* (1.1) context_scratch_update: the value was not the expected one */
#define PYOCO_ERR_CONFLICT 9

/* ---- opaque handles (host-owned) --------------------------------------- */

/* A value: null, bool, int, double, string, bytes, array or object. */
typedef struct pyoco_value pyoco_value;
/* Where values built during one call live; freed by the host when nothing
   refers to them any more (a returned value keeps its arena alive). */
typedef struct pyoco_arena pyoco_arena;
/* The context of one task call: params, log, cancellation, artifacts... */
typedef struct pyoco_context pyoco_context;
/* The registry a plugin adds its tasks to; valid during register_tasks only. */
typedef struct pyoco_registry pyoco_registry;
/* (1.1) One async call in flight, from start until call_complete. */
typedef struct pyoco_call pyoco_call;

typedef struct pyoco_str {
  const char* data;
  size_t size;
} pyoco_str;

typedef int32_t pyoco_value_kind;
#define PYOCO_VALUE_NULL 0
#define PYOCO_VALUE_BOOL 1
#define PYOCO_VALUE_INT 2
#define PYOCO_VALUE_DOUBLE 3
#define PYOCO_VALUE_STRING 4
#define PYOCO_VALUE_BYTES 5
#define PYOCO_VALUE_ARRAY 6
#define PYOCO_VALUE_OBJECT 7

typedef int32_t pyoco_log_level;
#define PYOCO_LOG_DEBUG 10
#define PYOCO_LOG_INFO 20
#define PYOCO_LOG_WARN 30
#define PYOCO_LOG_ERROR 40

/* ---- task definitions (plugin-filled, copied by the host) -------------- */

/* One input or output of a task. `type` is one of: "any", "null", "bool",
   "int", "number", "string", "bytes", "array", "object". Arrays of specs are
   laid out with a stride of the first element's struct_size. */
typedef struct pyoco_io_spec {
  size_t struct_size;
  const char* name;        /* [a-z][a-z0-9_]* */
  const char* type;        /* see above; NULL means "any" */
  int32_t required;        /* inputs only: nonzero when the task cannot run without it */
  const char* description; /* may be NULL */
} pyoco_io_spec;

/* Creates the per-node state of a task, once per node per run (each loop
   iteration is a node of its own; a retry after a timeout gets a new one), before its
   first call. On failure, set an error with context_set_error and return
   non-OK. `instance_out` receives plugin-owned state later passed to run
   and destroy. */
typedef pyoco_status (*pyoco_task_create_fn)(void* user_data, pyoco_context* ctx,
                                             void** instance_out);
/* Runs the task once. `inputs` is an object (borrowed for the call).
   `*output` receives the result: any live value handle (one built in this
   call's arena, or an input passed through), or NULL for null. On failure
   return non-OK after context_set_error. May run on any host thread;
   never concurrently for one instance. */
typedef pyoco_status (*pyoco_task_run_fn)(void* instance, pyoco_context* ctx,
                                          const pyoco_value* inputs, const pyoco_value** output);
/* (1.1) Begins an async call and returns at once; the task finishes it
   later with host->call_complete(call, ...), exactly once, from any thread.
   `ctx`, `inputs` and the call's arena stay valid until then. Returning
   non-OK (after context_set_error) ends the call at once as failed; the
   task must then not complete it. Waiting (timers, sockets, child
   processes) holds no host thread: use host_timer, context_on_cancel and
   threads of the plugin's own. */
typedef pyoco_status (*pyoco_task_start_fn)(void* instance, pyoco_context* ctx,
                                            const pyoco_value* inputs, pyoco_call* call);
/* Frees what create made. */
typedef void (*pyoco_task_destroy_fn)(void* instance);
/* Frees user_data when the host drops the definition. A host that keeps
   plugins loaded for its whole life may never call it. */
typedef void (*pyoco_task_release_fn)(void* user_data);

typedef struct pyoco_task_def {
  size_t struct_size;
  const char* name;    /* the task's name within its plugin: [a-z][a-z0-9_]* */
  const char* summary; /* one line */
  const char* usage;   /* how to use it; may span lines */
  const char* const* tags;
  size_t tag_count;
  const pyoco_io_spec* inputs;
  size_t input_count;
  const pyoco_io_spec* outputs;
  size_t output_count;
  void* user_data;               /* plugin-owned; handed to create and release */
  pyoco_task_create_fn create;   /* NULL: stateless, run receives user_data */
  pyoco_task_run_fn run;         /* required in 1.0; from 1.1, run or start */
  pyoco_task_destroy_fn destroy; /* may be NULL */
  pyoco_task_release_fn release; /* may be NULL */
  /* (1.1) an async call; a host that has it prefers it to `run` */
  pyoco_task_start_fn start;
} pyoco_task_def;

/* (1.1) A callback the host makes once: `status` says why (see each use). */
typedef void (*pyoco_callback_fn)(void* user, pyoco_status status);

/* Run-time facts about the current call (host-filled, borrowed for the call). */
typedef struct pyoco_call_info {
  size_t struct_size; /* set by the caller to sizeof its struct */
  pyoco_str run_id;
  pyoco_str flow_name;
  pyoco_str node_name; /* the node in the flow */
  pyoco_str task_name; /* "<plugin>/<task>" */
  uint32_t attempt;    /* 1 for the first try */
} pyoco_call_info;

/* An artifact to save. Either `value` (written as JSON) or `data`/`size`. */
typedef struct pyoco_artifact {
  size_t struct_size;
  pyoco_str name;   /* file name relative to the run's artifact dir */
  const void* data; /* borrowed for the call */
  size_t size;
  const pyoco_value* value; /* when non-NULL, saved as JSON and data is ignored */
  const char* media_type;   /* NULL: guessed ("application/json" for values) */
} pyoco_artifact;

/* ---- the host function table (host-owned, valid for the process) ------- */

typedef struct pyoco_host_api {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;

  /* registry: valid during register_tasks only. registry_add_task copies
     `def`; it returns PYOCO_ERR_INVALID and adds nothing for a name that is
     not [a-z][a-z0-9_]* or is taken, an input or output name that is not, or
     that the task's inputs (or outputs) give twice, a NULL inputs, outputs
     or tags with a nonzero count, or neither run nor start. The host then
     refuses the plugin, naming the reason, even if register_tasks goes on
     and returns PYOCO_OK. */
  pyoco_status (*registry_add_task)(pyoco_registry* registry, const pyoco_task_def* def);
  void (*registry_set_error)(pyoco_registry* registry, const char* message, size_t size);

  /* values: reading. Handles passed in are borrowed; handles returned are
     borrowed from the same owner as the handle they came from. */
  pyoco_value_kind (*value_kind)(const pyoco_value* value);
  pyoco_status (*value_get_bool)(const pyoco_value* value, int32_t* out);
  pyoco_status (*value_get_int)(const pyoco_value* value, int64_t* out);
  /* ints convert to double; other kinds are PYOCO_ERR_TYPE */
  pyoco_status (*value_get_double)(const pyoco_value* value, double* out);
  pyoco_status (*value_get_string)(const pyoco_value* value, pyoco_str* out);
  pyoco_status (*value_get_bytes)(const pyoco_value* value, const void** data, size_t* size);
  /* element count of an array, member count of an object, 0 otherwise */
  size_t (*value_size)(const pyoco_value* value);
  /* NULL when out of range or not an array */
  const pyoco_value* (*value_array_at)(const pyoco_value* array, size_t index);
  /* NULL when absent or not an object */
  const pyoco_value* (*value_object_find)(const pyoco_value* object, const char* key,
                                          size_t key_size);
  /* members in insertion order; NULL when out of range */
  const pyoco_value* (*value_object_at)(const pyoco_value* object, size_t index,
                                        pyoco_str* key_out);

  /* values: building. New values are host-owned and live in `arena`; they may
     be changed only during the call that owns the arena. NULL on failure. */
  pyoco_value* (*value_new_null)(pyoco_arena* arena);
  pyoco_value* (*value_new_bool)(pyoco_arena* arena, int32_t v);
  pyoco_value* (*value_new_int)(pyoco_arena* arena, int64_t v);
  pyoco_value* (*value_new_double)(pyoco_arena* arena, double v);
  pyoco_value* (*value_new_string)(pyoco_arena* arena, const char* data, size_t size);
  pyoco_value* (*value_new_bytes)(pyoco_arena* arena, const void* data, size_t size);
  pyoco_value* (*value_new_array)(pyoco_arena* arena);
  pyoco_value* (*value_new_object)(pyoco_arena* arena);
  /* `item` may be any live handle; the container refers to it (no deep copy)
     and keeps what it lives in alive. The container itself is refused
     (PYOCO_ERR_INVALID): a value may not contain itself. A deeper cycle is
     not looked for here; a task output containing one fails its task (the
     host's depth limit). */
  pyoco_status (*value_array_push)(pyoco_value* array, const pyoco_value* item);
  /* replaces an existing member of the same key */
  pyoco_status (*value_object_set)(pyoco_value* object, const char* key, size_t key_size,
                                   const pyoco_value* item);

  /* context of one task call: borrowed for the call */
  pyoco_arena* (*context_arena)(pyoco_context* ctx);
  /* the run's params, an object */
  const pyoco_value* (*context_params)(pyoco_context* ctx);
  pyoco_status (*context_info)(pyoco_context* ctx, pyoco_call_info* out);
  void (*context_log)(pyoco_context* ctx, pyoco_log_level level, const char* message, size_t size);
  /* nonzero once the run is cancelled or the task's deadline passed */
  int32_t (*context_is_cancelled)(pyoco_context* ctx);
  /* `path_out` (may be NULL) receives, valid for the call: for a plugin
     built against 1.1 or later, the artifact's name as stored (what
     context_load_artifact takes); for a 1.0 plugin, the saved file's path.
     On failure it receives the host's reason instead (why the name was
     refused, the disk error), or is left empty by a host that gives none.
     A name is a relative path of '/'-separated parts, none empty, "." or
     "..", 1-255 bytes without control characters or backslashes. */
  pyoco_status (*context_save_artifact)(pyoco_context* ctx, const pyoco_artifact* artifact,
                                        pyoco_str* path_out);
  /* per-run shared state; the returned handle is valid for the call, NULL if unset.
     A value past the limits every value keeps (nested more than 64 levels,
     more than 16,777,216 items counting a shared list each time, a number
     that is not finite) is refused with PYOCO_ERR_INVALID by set and update. */
  const pyoco_value* (*context_scratch_get)(pyoco_context* ctx, const char* key, size_t key_size);
  pyoco_status (*context_scratch_set)(pyoco_context* ctx, const char* key, size_t key_size,
                                      const pyoco_value* value);
  /* the message of the failure the callback is about to return */
  void (*context_set_error)(pyoco_context* ctx, const char* message, size_t size);

  /* ---- (1.1) async calls, cancellation, time, progress, atomic scratch -- */

  /* Ends an async call (see pyoco_task_start_fn), from any thread. `status`
     is PYOCO_OK with `output` (any live handle, or NULL for null), or an
     error after context_set_error: PYOCO_ERR_TASK fails the attempt (it may
     be retried), PYOCO_ERR_PERMANENT fails it for good, PYOCO_ERR_CANCELLED
     ends it CANCELLED. The context is invalid once this returns (for
     start and the host's callbacks, once they return: see Threads). A second
     completion of the same call is refused with PYOCO_ERR_INVALID and
     reported; it is a bug in the plugin, never a crash. */
  pyoco_status (*call_complete)(pyoco_call* call, pyoco_status status, const pyoco_value* output);
  /* The attempt's deadline on CLOCK_MONOTONIC, in nanoseconds; 0 for none. */
  int64_t (*context_deadline)(pyoco_context* ctx);
  /* Calls fn(user, status) exactly once: PYOCO_ERR_CANCELLED as soon as the
     run is cancelled or the attempt's deadline passes (at once if that has
     happened already), or PYOCO_OK when the call ends first, so `user` can
     always be freed there. Runs on a host thread (see Threads; when already
     cancelled, on the calling thread): it must not block. */
  pyoco_status (*context_on_cancel)(pyoco_context* ctx, pyoco_callback_fn fn, void* user);
  /* Says the task is alive and how far it is: `progress` from 0 to 1, or
     negative when unknown; `message` may be NULL. Shown in the JSON trace
     and the run history. Cheap; call it as often as is useful. */
  void (*context_heartbeat)(pyoco_context* ctx, double progress, const char* message, size_t size);
  /* A one-shot timer that needs no thread of the plugin's: calls fn(user,
     PYOCO_OK) after `delay_ns`, or fn(user, PYOCO_ERR_CANCELLED) when the
     call is cancelled, passes its deadline or ends first. Exactly once, on
     the host's control thread (or, when it fell due while start() ran, on
     a host thread of the run once start() returned): it must not block. */
  pyoco_status (*host_timer)(pyoco_context* ctx, uint64_t delay_ns, pyoco_callback_fn fn,
                             void* user);
  /* Compare-and-set on the run's scratch: when the key's value equals
     `expected` (NULL: the key is unset), sets it to `desired` and returns
     PYOCO_OK; otherwise returns PYOCO_ERR_CONFLICT and changes nothing.
     Either way `*current_out` (may be NULL) receives the value now stored
     (NULL when unset), valid for the call. Equality is by value (JSON). */
  pyoco_status (*context_scratch_update)(pyoco_context* ctx, const char* key, size_t key_size,
                                         const pyoco_value* expected, const pyoco_value* desired,
                                         const pyoco_value** current_out);
  /* The bytes of an artifact this run saved (context_save_artifact), by
     name, into `*data_out`, valid for the call. PYOCO_ERR_NOT_FOUND when the
     run has none by that name; on any failure `*data_out` receives the
     host's reason. */
  pyoco_status (*context_load_artifact)(pyoco_context* ctx, const char* name, size_t name_size,
                                        pyoco_str* data_out);
} pyoco_host_api;

/* ---- the plugin descriptor (plugin-owned, static) ---------------------- */

/* Called once per process with the host's table. Add tasks with
   host->registry_add_task. On failure call registry_set_error and return
   non-OK; the host then refuses the plugin. */
typedef pyoco_status (*pyoco_register_tasks_fn)(const pyoco_host_api* host,
                                                pyoco_registry* registry);

typedef struct pyoco_plugin_descriptor {
  size_t struct_size;
  /* These two fields never move, in any major version: the host reads them
     to refuse a plugin it cannot talk to. */
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* sdk_version;    /* the SDK the plugin was built with, "1.2.3" */
  const char* plugin_name;    /* as in plugin.toml; may be NULL */
  const char* plugin_version; /* as in plugin.toml; may be NULL */
  pyoco_register_tasks_fn register_tasks;
} pyoco_plugin_descriptor;

typedef const pyoco_plugin_descriptor* (*pyoco_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PYOCO_ABI_H */
