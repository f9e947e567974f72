// pyoco/sdk.hpp - the C++ SDK for writing pyoco plugins.
//
// Header-only, C++17, no dependency beyond the standard library and abi.h.
// A plugin is a few Task subclasses and one registration function:
//
//   #include <pyoco/sdk.hpp>
//
//   struct Greet : pyoco::Task {
//     static constexpr const char* name = "greet";
//     static constexpr const char* summary = "Says hello to someone";
//     static constexpr const char* usage = "inputs: {who: string}";
//     static inline const std::vector<pyoco::Io> inputs = {{"who", "string", true, "whom to
//     greet"}}; static inline const std::vector<pyoco::Io> outputs = {{"greeting", "string"}};
//     pyoco::Value run(pyoco::Context& ctx, const pyoco::Inputs& in) override {
//       return "hello " + in.require<std::string>("who");
//     }
//   };
//
//   void register_tasks(pyoco::Registry& registry) { registry.add<Greet>(); }
//   PYOCO_PLUGIN(register_tasks)
//
// Everything lives in an inline namespace (pyoco::v1), so code built against
// another SDK major fails at link time instead of misbehaving. Exceptions
// never cross into the host: every callback catches them and turns them
// into a task error carrying the exception's message.
#ifndef PYOCO_SDK_HPP
#define PYOCO_SDK_HPP

#include <pyoco/abi.h>
#include <pyoco/version.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef PYOCO_PLUGIN_NAME
#define PYOCO_PLUGIN_NAME nullptr
#endif
#ifndef PYOCO_PLUGIN_VERSION
#define PYOCO_PLUGIN_VERSION nullptr
#endif

namespace pyoco {
inline namespace v1 {

// Thrown by the SDK when a value is used as something it is not, or when
// the host refuses a request. A task may throw it (or anything) too.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown from a task: it failed and no retry can help (ABI 1.1; a 1.0 host
// treats it as a plain failure).
class PermanentError : public Error {
 public:
  using Error::Error;
};

// Thrown from a task: it stopped because it was asked to (or chose to); the
// task ends CANCELLED rather than FAILED (ABI 1.1).
class Cancelled : public Error {
 public:
  explicit Cancelled(const std::string& why = "cancelled") : Error(why) {}
};

// Bytes, read-only, borrowed from the value they came from.
struct BytesView {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

// Owned bytes to build a value from.
struct Bytes {
  std::vector<std::uint8_t> data;
};

enum class Kind : std::int32_t {
  Null = PYOCO_VALUE_NULL,
  Bool = PYOCO_VALUE_BOOL,
  Int = PYOCO_VALUE_INT,
  Double = PYOCO_VALUE_DOUBLE,
  String = PYOCO_VALUE_STRING,
  Bytes = PYOCO_VALUE_BYTES,
  Array = PYOCO_VALUE_ARRAY,
  Object = PYOCO_VALUE_OBJECT,
};

namespace detail {

// The host's table, set once when the host calls register_tasks. Each plugin
// library has its own copy (hidden visibility).
inline const pyoco_host_api*& host_slot() {
  static const pyoco_host_api* host = nullptr;
  return host;
}

inline const pyoco_host_api& host() {
  const pyoco_host_api* h = host_slot();
  if (h == nullptr) throw Error("pyoco SDK used before the host registered the plugin");
  return *h;
}

// The call a thread is running: values built without an explicit context
// go to this call's arena. Set by the SDK around every callback.
inline pyoco_context*& current_context() {
  static thread_local pyoco_context* ctx = nullptr;
  return ctx;
}

class ContextScope {
 public:
  explicit ContextScope(pyoco_context* ctx) : saved_(current_context()) { current_context() = ctx; }
  ~ContextScope() { current_context() = saved_; }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  pyoco_context* saved_;
};

inline pyoco_arena* current_arena() {
  pyoco_context* ctx = current_context();
  if (ctx == nullptr) {
    // Most often a thread of the plugin's own, which belongs to no call:
    // say how to build there (the exception ends the process if uncaught).
    throw Error(
        "pyoco::Value built outside a task call: on a thread of your own, build it inside "
        "done.ok_with([&] { return pyoco::Value(...); }), or after `auto scope = ctx.enter();`");
  }
  pyoco_arena* arena = host().context_arena(ctx);
  if (arena == nullptr) throw Error("the host gave no arena for this call");
  return arena;
}

inline pyoco_value* checked(pyoco_value* v) {
  if (v == nullptr) throw Error("the host could not allocate a value");
  return v;
}

// Whether the host has ABI 1.1's functions (async calls, timers...).
inline bool has_1_1() {
  const pyoco_host_api* h = host_slot();
  return h != nullptr && PYOCO_HAS_FIELD(h, pyoco_host_api, context_load_artifact);
}
inline void require_1_1(const char* what) {
  if (!has_1_1()) {
    throw Error(std::string(what) + " needs a pyoco host with plugin ABI 1.1 or newer");
  }
}

// How one async call ends, shared by its Completion's copies and by the
// callbacks its Context registers: the first end claims `ended`.
struct CallEnd {
  CallEnd(pyoco_context* c, pyoco_call* k) : ctx(c), call(k) {}
  pyoco_context* ctx;
  pyoco_call* call;
  std::atomic<bool> ended{false};

  // Claims the end; false when the call has ended already.
  bool claim() { return !ended.exchange(true); }
  // Ends the call (claimed first).
  void complete(pyoco_status status, const pyoco_value* out, std::string_view message) const {
    const pyoco_host_api& h = host();
    if (status != PYOCO_OK) h.context_set_error(ctx, message.data(), message.size());
    h.call_complete(call, status, out);
  }
};

// Begins an async call (defined below): it hands the call's end to the
// task's Context.
inline pyoco_status start_task(void* instance, pyoco_context* ctx, const pyoco_value* inputs,
                               pyoco_call* call);

// Runs a plugin's callback for a call (a timer, a cancel callback). It
// must not throw into the host: an exception ends the call as one from
// start() would (PermanentError for good, Cancelled cancelled, anything
// else failed, "a callback threw: ..."), as run() throwing does. With no
// async call to end (a task's run(), or the call ended already) it can
// only be printed on stderr.
template <class F, class... A>
void call_for(const std::shared_ptr<CallEnd>& call, F& f, A&&... args) noexcept {
  // `what`: the exception's message; a plain failure says where it came from.
  auto end = [&](pyoco_status status, const char* what) {
    if (call != nullptr && call->claim()) {
      call->complete(status, nullptr,
                     status == PYOCO_ERR_TASK ? std::string("a callback threw: ") + what : what);
    } else {
      std::fprintf(stderr, "pyoco plugin: a callback threw: %s\n", what);
    }
  };
  try {
    try {
      f(std::forward<A>(args)...);
    } catch (const PermanentError& e) {
      end(PYOCO_ERR_PERMANENT, e.what());
    } catch (const Cancelled& e) {
      end(PYOCO_ERR_CANCELLED, e.what());
    } catch (const std::exception& e) {
      end(PYOCO_ERR_TASK, e.what());
    } catch (...) {
      end(PYOCO_ERR_TASK, "an unknown exception (not derived from std::exception)");
    }
  } catch (...) {
    // No memory left to say it: nothing more can be done here.
  }
}

// Why the host refuses `v` as an output, a scratch value or an artifact, in
// the host's own words (runtime/core's unfit_value; the numbers are the
// limits every value in pyoco keeps), or empty when it fits. `path` names
// the value ("output", "value"). Walks through the ABI without recursion:
// the SDK says why the host refused, and the test host refuses as it does.
inline std::string unfit_value(const pyoco_value* value, const std::string& path) {
  constexpr std::size_t kMaxDepth = 64;
  constexpr std::size_t kMaxItems = std::size_t{1} << 24;  // 16,777,216
  const pyoco_host_api& h = host();
  struct Step {
    const pyoco_value* node;
    bool object;
    std::size_t size;
    std::size_t next;
  };
  std::vector<Step> stack;
  std::size_t items = 0;
  auto where = [&] {
    std::string at = path;
    for (const Step& s : stack) {
      if (s.object) {
        pyoco_str key{nullptr, 0};
        h.value_object_at(s.node, s.next - 1, &key);
        at += "." + std::string(key.data != nullptr ? key.data : "", key.size);
      } else {
        at += "." + std::to_string(s.next - 1);
      }
    }
    return at;
  };
  auto visit = [&](const pyoco_value* n) -> std::string {
    if (++items > kMaxItems) {
      return "a value of more than 16777216 items (a list or mapping held n times counts n "
             "times), past the limit every value in pyoco keeps";
    }
    const pyoco_value_kind kind = h.value_kind(n);
    double d = 0;
    if (kind == PYOCO_VALUE_DOUBLE && h.value_get_double(n, &d) == PYOCO_OK && !std::isfinite(d)) {
      return "a number that is not finite at " + where() + ", which JSON cannot hold";
    }
    if (kind == PYOCO_VALUE_ARRAY || kind == PYOCO_VALUE_OBJECT) {
      if (stack.size() == kMaxDepth) {
        return "a value nested more than 64 levels deep, past the limit every value in pyoco "
               "keeps";
      }
      stack.push_back({n, kind == PYOCO_VALUE_OBJECT, h.value_size(n), 0});
    }
    return {};
  };
  if (std::string why = visit(value); !why.empty()) return why;
  while (!stack.empty()) {
    Step& top = stack.back();
    if (top.next == top.size) {
      stack.pop_back();
      continue;
    }
    const std::size_t i = top.next++;
    const pyoco_value* item =
        top.object ? h.value_object_at(top.node, i, nullptr) : h.value_array_at(top.node, i);
    if (std::string why = visit(item); !why.empty()) return why;
  }
  return {};
}

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Null:
      return "null";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Double:
      return "double";
    case Kind::String:
      return "string";
    case Kind::Bytes:
      return "bytes";
    case Kind::Array:
      return "array";
    case Kind::Object:
      return "object";
  }
  return "unknown";
}

}  // namespace detail

// A value crossing the ABI: a borrowed handle to a host-owned value.
//
// Reading: v["key"], v[0], v.as<std::int64_t>(), v.size(), v.items(),
// v.members(). A missing key or index reads as null.
// Building: from bool, integers, double, strings, Bytes, and initializer
// lists of {key, value} pairs (an object); Value::array({...}) for arrays.
// Built values live in the current call's arena: they are cheap, and are
// freed by the host once nothing refers to them.
class Value {
 public:
  Value() = default;  // null
  explicit Value(const pyoco_value* handle) : handle_(handle) {}

  Value(std::nullptr_t) {}
  Value(bool b) : handle_(build(&pyoco_host_api::value_new_bool, static_cast<std::int32_t>(b))) {}
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  Value(I i)
      : handle_(build(&pyoco_host_api::value_new_int, static_cast<std::int64_t>(checked_int(i)))) {}
  Value(double d) : handle_(build(&pyoco_host_api::value_new_double, d)) {}
  Value(float d) : Value(static_cast<double>(d)) {}
  Value(std::string_view s)
      : handle_(detail::checked(
            detail::host().value_new_string(detail::current_arena(), s.data(), s.size()))) {}
  Value(const char* s) : Value(std::string_view(s)) {}
  Value(const std::string& s) : Value(std::string_view(s)) {}
  Value(const Bytes& b)
      : handle_(detail::checked(detail::host().value_new_bytes(detail::current_arena(),
                                                               b.data.data(), b.data.size()))) {}
  // An object: {{"id", 1}, {"value", "carrot"}}.
  Value(std::initializer_list<std::pair<std::string_view, Value>> members)
      : handle_(make_object(members)) {}

  static Value array(std::initializer_list<Value> items = {}) {
    pyoco_value* a = detail::checked(detail::host().value_new_array(detail::current_arena()));
    for (const Value& item : items) push_into(a, item);
    return Value(a);
  }
  static Value object() {
    return Value(std::initializer_list<std::pair<std::string_view, Value>>{});
  }

  // Appends to an array this call built. Returns *this for chaining.
  Value& push(const Value& item) {
    if (item.handle_ != nullptr && item.handle_ == handle_) throw Error(contains_itself("push"));
    push_into(mutable_handle("push"), item);
    return *this;
  }
  // Sets a member of an object this call built. Returns *this for chaining.
  Value& set(std::string_view key, const Value& item) {
    if (item.handle_ != nullptr && item.handle_ == handle_) throw Error(contains_itself("set"));
    check(detail::host().value_object_set(mutable_handle("set"), key.data(), key.size(),
                                          item.null_as_value()),
          "set");
    return *this;
  }

  const pyoco_value* handle() const { return handle_; }

  Kind kind() const {
    return handle_ == nullptr ? Kind::Null : static_cast<Kind>(detail::host().value_kind(handle_));
  }
  bool is_null() const { return kind() == Kind::Null; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_int() const { return kind() == Kind::Int; }
  bool is_number() const { return kind() == Kind::Int || kind() == Kind::Double; }
  bool is_string() const { return kind() == Kind::String; }
  bool is_bytes() const { return kind() == Kind::Bytes; }
  bool is_array() const { return kind() == Kind::Array; }
  bool is_object() const { return kind() == Kind::Object; }

  // Converts to T: bool, any integer type, double, float, std::string,
  // std::string_view (borrowed), BytesView (borrowed), Value. Throws Error
  // naming both kinds when the value is something else, and for a value
  // read from the inputs its path: "input 'env.N': expected string, got int".
  template <class T>
  T as() const {
    const pyoco_host_api& h = detail::host();
    if constexpr (std::is_same_v<T, Value>) {
      return *this;
    } else if constexpr (std::is_same_v<T, bool>) {
      std::int32_t b = 0;
      expect(h.value_get_bool(handle_, &b), "bool");
      return b != 0;
    } else if constexpr (std::is_integral_v<T>) {
      std::int64_t i = 0;
      expect(h.value_get_int(handle_, &i), "int");
      if constexpr (!std::is_same_v<T, std::int64_t>) {
        if (i < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
            (i > 0 && static_cast<std::uint64_t>(i) > std::numeric_limits<T>::max())) {
          throw Error(input_prefix() + "int value " + std::to_string(i) +
                      " does not fit the requested type");
        }
      }
      return static_cast<T>(i);
    } else if constexpr (std::is_floating_point_v<T>) {
      double d = 0;
      expect(h.value_get_double(handle_, &d), "number");
      return static_cast<T>(d);
    } else if constexpr (std::is_same_v<T, std::string_view> || std::is_same_v<T, std::string>) {
      pyoco_str s{nullptr, 0};
      expect(h.value_get_string(handle_, &s), "string");
      return T(s.data, s.size);
    } else if constexpr (std::is_same_v<T, BytesView>) {
      const void* data = nullptr;
      std::size_t size = 0;
      expect(h.value_get_bytes(handle_, &data, &size), "bytes");
      return BytesView{static_cast<const std::uint8_t*>(data), size};
    } else {
      static_assert(sizeof(T) == 0, "pyoco::Value::as<T>: unsupported T");
    }
  }

  // as<T>() when the value is present and of the right kind, else `fallback`.
  template <class T>
  T get_or(T fallback) const {
    if (is_null()) return fallback;
    try {
      return as<T>();
    } catch (const Error&) {
      return fallback;
    }
  }

  std::size_t size() const { return handle_ == nullptr ? 0 : detail::host().value_size(handle_); }
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  Value operator[](std::string_view key) const { return member(key); }
  Value operator[](const char* key) const { return member(key); }
  Value operator[](const std::string& key) const { return member(key); }
  template <class I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  Value operator[](I index) const {
    if (handle_ == nullptr || index < 0) return Value(nullptr, root_, input_);
    return Value(detail::host().value_array_at(handle_, static_cast<std::size_t>(index)), root_,
                 input_);
  }

  // Iteration over an array's elements: for (Value item : v.items()).
  class ItemRange {
   public:
    class iterator {
     public:
      iterator(const pyoco_value* a, std::size_t i, const pyoco_value* root, std::size_t input)
          : a_(a), i_(i), root_(root), input_(input) {}
      Value operator*() const {
        return Value(detail::host().value_array_at(a_, i_), root_, input_);
      }
      iterator& operator++() {
        ++i_;
        return *this;
      }
      bool operator!=(const iterator& o) const { return i_ != o.i_; }

     private:
      const pyoco_value* a_;
      std::size_t i_;
      const pyoco_value* root_;
      std::size_t input_;
    };
    explicit ItemRange(const Value& v)
        : a_(v.is_array() ? v.handle() : nullptr), n_(v.size()), root_(v.root_), input_(v.input_) {}
    iterator begin() const { return iterator(a_, 0, root_, input_); }
    iterator end() const { return iterator(a_, a_ == nullptr ? 0 : n_, root_, input_); }

   private:
    const pyoco_value* a_;
    std::size_t n_;
    const pyoco_value* root_;
    std::size_t input_;
  };
  ItemRange items() const { return ItemRange(*this); }

  // Iteration over an object's members in order:
  // for (auto [key, value] : v.members()).
  class MemberRange {
   public:
    class iterator {
     public:
      iterator(const pyoco_value* o, std::size_t i, const pyoco_value* root, std::size_t input)
          : o_(o), i_(i), root_(root), input_(input) {}
      std::pair<std::string_view, Value> operator*() const {
        pyoco_str key{nullptr, 0};
        const pyoco_value* v = detail::host().value_object_at(o_, i_, &key);
        // The members of the inputs are the inputs: the one read is i_.
        return {std::string_view(key.data, key.size), Value(v, root_, o_ == root_ ? i_ : input_)};
      }
      iterator& operator++() {
        ++i_;
        return *this;
      }
      bool operator!=(const iterator& o) const { return i_ != o.i_; }

     private:
      const pyoco_value* o_;
      std::size_t i_;
      const pyoco_value* root_;
      std::size_t input_;
    };
    explicit MemberRange(const Value& v)
        : o_(v.is_object() ? v.handle() : nullptr),
          n_(v.size()),
          root_(v.root_),
          input_(v.input_) {}
    iterator begin() const { return iterator(o_, 0, root_, input_); }
    iterator end() const { return iterator(o_, o_ == nullptr ? 0 : n_, root_, input_); }

   private:
    const pyoco_value* o_;
    std::size_t n_;
    const pyoco_value* root_;
    std::size_t input_;
  };
  MemberRange members() const { return MemberRange(*this); }

 protected:
  // Marks this value as the inputs of a call: what is read from it can be
  // named by its path in messages.
  void be_inputs() { root_ = handle_; }

 private:
  static constexpr std::size_t no_input = static_cast<std::size_t>(-1);

  Value(const pyoco_value* handle, const pyoco_value* root, std::size_t input = no_input)
      : handle_(handle), root_(root), input_(input) {}

  // v[key]. Read from the inputs themselves, it keeps which input it is
  // (its index: no allocation), so that an error names the input read even
  // when two inputs hold one shared value (`value: $ctx.params.x` and
  // `message: $ctx.params.x` are one handle): searching the inputs for the
  // handle would name the first of them.
  Value member(std::string_view key) const {
    if (handle_ == nullptr || handle_ != root_) return Value(find(key), root_, input_);
    const pyoco_host_api& h = detail::host();
    const std::size_t n = h.value_size(handle_);
    for (std::size_t i = 0; i < n; ++i) {
      pyoco_str k{nullptr, 0};
      const pyoco_value* item = h.value_object_at(handle_, i, &k);
      if (std::string_view(k.data, k.size) == key) return Value(item, root_, i);
    }
    return Value(nullptr, root_);
  }

  // The path of this value among the inputs it was read from ("env.N",
  // "argv.1"), or "" for the inputs themselves, for a value not read from
  // them and for one not found there (a missing member reads as null).
  // The input it was read from is carried (an index); the rest of the path
  // is found on error: carrying it cost an allocation per read (in["x"],
  // v[i], every step of items()/members()); the inputs live in the call's
  // arena as long as this value is valid, so searching the input reads only
  // live values, once, when as<T>() throws. Depth-first in member order,
  // with an explicit stack (values can be deep): the first place in that
  // input holding this handle (a value repeated within one input is named
  // by its first place).
  std::string path() const {
    if (root_ == nullptr || handle_ == nullptr || handle_ == root_) return {};
    const pyoco_host_api& h = detail::host();
    struct Frame {
      const pyoco_value* container;
      std::size_t next, size, path_size;  // path_size: of the container's path
    };
    std::string path;
    const pyoco_value* start = root_;
    if (input_ != no_input) {
      pyoco_str key{nullptr, 0};
      start = h.value_object_at(root_, input_, &key);
      path.assign(key.data, key.size);
      if (start == handle_) return path;
      if (start == nullptr) return {};
    }
    std::vector<Frame> stack{{start, 0, h.value_size(start), path.size()}};
    // Values can be shared (a node's output bound to two inputs, a list
    // repeating one list): a tree of such is walked once per place, so the
    // walk is bounded; past it the message names no path.
    for (std::size_t visits = 0; !stack.empty() && visits < 1'000'000; ++visits) {
      Frame& f = stack.back();
      if (f.next == f.size) {
        stack.pop_back();
        continue;
      }
      const std::size_t i = f.next++;
      path.resize(f.path_size);
      if (!path.empty()) path += '.';
      const pyoco_value* item = nullptr;
      if (h.value_kind(f.container) == PYOCO_VALUE_OBJECT) {
        pyoco_str key{nullptr, 0};
        item = h.value_object_at(f.container, i, &key);
        path.append(key.data, key.size);
      } else {
        item = h.value_array_at(f.container, i);
        path += std::to_string(i);
      }
      if (item == handle_) return path;
      const pyoco_value_kind kind = h.value_kind(item);
      if (kind == PYOCO_VALUE_ARRAY || kind == PYOCO_VALUE_OBJECT) {
        stack.push_back(Frame{item, 0, h.value_size(item), path.size()});
      }
    }
    return {};
  }
  std::string input_prefix() const {
    const std::string p = path();
    return p.empty() ? std::string() : "input '" + p + "': ";
  }

  template <class Fn, class Arg>
  static const pyoco_value* build(Fn fn, Arg arg) {
    return detail::checked((detail::host().*fn)(detail::current_arena(), arg));
  }

  template <class I>
  static std::int64_t checked_int(I i) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
      if (i > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw Error("integer " + std::to_string(i) + " does not fit a pyoco int (int64)");
      }
    }
    return static_cast<std::int64_t>(i);
  }

  static const pyoco_value* make_object(
      std::initializer_list<std::pair<std::string_view, Value>> members) {
    pyoco_value* o = detail::checked(detail::host().value_new_object(detail::current_arena()));
    for (const auto& [key, item] : members) {
      check(detail::host().value_object_set(o, key.data(), key.size(), item.null_as_value()),
            "set");
    }
    return o;
  }

  static void push_into(pyoco_value* array, const Value& item) {
    check(detail::host().value_array_push(array, item.null_as_value()), "push");
  }

  // Containers need a real handle for null.
  const pyoco_value* null_as_value() const {
    return handle_ != nullptr
               ? handle_
               : detail::checked(detail::host().value_new_null(detail::current_arena()));
  }

  pyoco_value* mutable_handle(const char* op) const {
    if (handle_ == nullptr) throw Error(std::string("cannot ") + op + " on a null value");
    // The host checks that the value belongs to the current call's arena.
    return const_cast<pyoco_value*>(handle_);
  }

  const pyoco_value* find(std::string_view key) const {
    if (handle_ == nullptr) return nullptr;
    return detail::host().value_object_find(handle_, key.data(), key.size());
  }

  // The host refuses it too, with PYOCO_ERR_INVALID: no reader of such a
  // value would ever reach its end.
  static std::string contains_itself(const char* op) {
    return std::string("cannot ") + op +
           " a value into itself: it would contain itself, and no reader could reach its end "
           "(build a new list or object and put the value in that)";
  }

  static void check(pyoco_status s, const char* op) {
    if (s == PYOCO_OK) return;
    if (s == PYOCO_ERR_TYPE) throw Error(std::string("cannot ") + op + ": wrong kind of value");
    throw Error(std::string("cannot ") + op + ": the host refused (status " + std::to_string(s) +
                ")");
  }

  void expect(pyoco_status s, const char* wanted) const {
    if (s == PYOCO_OK) return;
    throw Error(input_prefix() + "expected " + wanted + ", got " + detail::kind_name(kind()));
  }

  const pyoco_value* handle_ = nullptr;
  const pyoco_value* root_ = nullptr;  // the inputs this was read from, if any
  std::size_t input_ = no_input;       // which of them (an index in root_), if known
};

// The inputs of one call: an object keyed by input name.
class Inputs : public Value {
 public:
  explicit Inputs(const pyoco_value* handle) : Value(handle) { be_inputs(); }

  // The input converted to T; throws an Error naming the input when it is
  // missing or of another kind. What is read from an input names its path
  // too: in["env"]["N"].as<std::string>() throws "input 'env.N': expected
  // string, got int".
  template <class T>
  T require(std::string_view name) const {
    Value v = (*this)[name];
    if (v.is_null()) throw Error("input '" + std::string(name) + "' is required");
    return v.as<T>();
  }
  // The input converted to T, or `fallback` when it is missing.
  template <class T>
  T get(std::string_view name, T fallback) const {
    Value v = (*this)[name];
    if (v.is_null()) return fallback;
    return v.as<T>();
  }
};

// What a task sees of its run: params, log, cancellation, artifacts and the
// run's scratch space. Valid during the call only.
class Context {
 public:
  explicit Context(pyoco_context* ctx) : ctx_(ctx) {}
  // An async call's context (the SDK makes it for start()): an exception
  // escaping a callback it registers ends that call.
  Context(pyoco_context* ctx, std::shared_ptr<detail::CallEnd> call)
      : ctx_(ctx), call_(std::move(call)) {}

  Value params() const { return Value(detail::host().context_params(ctx_)); }
  Value param(std::string_view key) const { return params()[key]; }

  void log(pyoco_log_level level, std::string_view message) const {
    detail::host().context_log(ctx_, level, message.data(), message.size());
  }
  void debug(std::string_view m) const { log(PYOCO_LOG_DEBUG, m); }
  void info(std::string_view m) const { log(PYOCO_LOG_INFO, m); }
  void warn(std::string_view m) const { log(PYOCO_LOG_WARN, m); }
  void error(std::string_view m) const { log(PYOCO_LOG_ERROR, m); }

  // True once the run is cancelled or this task's deadline has passed: a
  // long task should check it and return (or throw) promptly.
  bool is_cancelled() const { return detail::host().context_is_cancelled(ctx_) != 0; }

  // ---- ABI 1.1 (a host without it: see each) ----

  // The attempt's deadline (`timeout_sec`), or none. Always none on a 1.0 host.
  std::optional<std::chrono::steady_clock::time_point> deadline() const {
    if (!detail::has_1_1()) return std::nullopt;
    const std::int64_t ns = detail::host().context_deadline(ctx_);
    if (ns == 0) return std::nullopt;
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::nanoseconds(ns)));
  }

  // Says the task is alive and how far it is (0..1; negative: unknown). It
  // shows in the JSON trace and the run history. A no-op on a 1.0 host.
  void heartbeat(double progress = -1, std::string_view message = {}) const {
    if (detail::has_1_1()) {
      detail::host().context_heartbeat(ctx_, progress, message.data(), message.size());
    }
  }

  // Calls `fn` once, as soon as the run is cancelled or the deadline passes
  // (at once if it already has), on the host's control thread: keep it short
  // (kill a process, close a socket, complete the call). Not called when the
  // call ends first.
  void on_cancel(std::function<void()> fn) const {
    detail::require_1_1("Context::on_cancel");
    struct Pending {
      pyoco_context* ctx;
      std::shared_ptr<detail::CallEnd> call;
      std::function<void()> fn;
    };
    auto* p = new Pending{ctx_, call_, std::move(fn)};
    const pyoco_status s = detail::host().context_on_cancel(
        ctx_,
        [](void* user, pyoco_status status) {
          std::unique_ptr<Pending> p(static_cast<Pending*>(user));
          if (status != PYOCO_ERR_CANCELLED) return;  // the call ended first
          detail::ContextScope scope(p->ctx);         // Values built here go to the call
          detail::call_for(p->call, p->fn);
        },
        p);
    if (s != PYOCO_OK) {
      delete p;
      throw Error("the host refused an on_cancel callback");
    }
  }

  // Calls `fn(true)` after `delay`, or `fn(false)` if the call is cancelled,
  // passes its deadline or ends first; once, on the host's control thread,
  // without a thread of the plugin's waiting: keep it short.
  template <class Rep, class Period>
  void after(std::chrono::duration<Rep, Period> delay, std::function<void(bool fired)> fn) const {
    detail::require_1_1("Context::after");
    // In double first: a delay of 1e10 s must saturate, not wrap around.
    const double ns = std::chrono::duration<double, std::nano>(delay).count();
    const std::uint64_t delay_ns = !(ns > 0)      ? 0
                                   : ns >= 9.2e18 ? std::uint64_t{9200000000000000000u}
                                                  : static_cast<std::uint64_t>(ns);
    struct Pending {
      pyoco_context* ctx;
      std::shared_ptr<detail::CallEnd> call;
      std::function<void(bool)> fn;
    };
    auto* p = new Pending{ctx_, call_, std::move(fn)};
    const pyoco_status s = detail::host().host_timer(
        ctx_, delay_ns,
        [](void* user, pyoco_status status) {
          std::unique_ptr<Pending> p(static_cast<Pending*>(user));
          detail::ContextScope scope(p->ctx);  // Values built here go to the call
          detail::call_for(p->call, p->fn, status == PYOCO_OK);
        },
        p);
    if (s != PYOCO_OK) {
      delete p;
      throw Error("the host refused a timer");
    }
  }

  // Saves an artifact of the run and returns its name, which load_artifact
  // (in this or a later task of the run) takes; saving a name again
  // replaces it. Values are written as JSON. A name is a relative path such
  // as "report.json" or "plots/a.png" (no "..", no leading '/'). On a 1.0
  // host the result is the file's path instead.
  std::string save_artifact(std::string_view name, std::string_view text,
                            const char* media_type = "text/plain") const {
    return save(name, text.data(), text.size(), nullptr, media_type);
  }
  // Text, not a JSON string: without these a std::string or a literal
  // could be taken as either text or a Value, and would not compile.
  std::string save_artifact(std::string_view name, const std::string& text,
                            const char* media_type = "text/plain") const {
    return save_artifact(name, std::string_view(text), media_type);
  }
  std::string save_artifact(std::string_view name, const char* text,
                            const char* media_type = "text/plain") const {
    return save_artifact(name, std::string_view(text), media_type);
  }
  std::string save_artifact(std::string_view name, const Bytes& bytes,
                            const char* media_type = "application/octet-stream") const {
    return save(name, bytes.data.data(), bytes.data.size(), nullptr, media_type);
  }
  std::string save_artifact(std::string_view name, const Value& value) const {
    return save(name, nullptr, 0, non_null_handle(value), "application/json");
  }

  // The bytes of an artifact this run saved (save_artifact, or std/write_file
  // in an earlier task). Throws Error when the run has none by that name.
  // Needs a 1.1 host.
  std::string load_artifact(std::string_view name) const {
    detail::require_1_1("Context::load_artifact");
    pyoco_str data{nullptr, 0};
    const pyoco_status s =
        detail::host().context_load_artifact(ctx_, name.data(), name.size(), &data);
    const std::string text = data.data != nullptr ? std::string(data.data, data.size) : "";
    if (s != PYOCO_OK) {
      throw Error(text.empty() ? "cannot load artifact '" + std::string(name) + "'" : text);
    }
    return text;
  }

  // Per-run shared state. A missing key reads as null.
  Value scratch(std::string_view key) const {
    return Value(detail::host().context_scratch_get(ctx_, key.data(), key.size()));
  }
  void set_scratch(std::string_view key, const Value& value) const {
    const pyoco_status s =
        detail::host().context_scratch_set(ctx_, key.data(), key.size(), non_null_handle(value));
    if (s == PYOCO_ERR_INVALID) {
      // The host says only that it refused; the walk finds which limit.
      const std::string why = detail::unfit_value(non_null_handle(value), "value");
      throw Error("cannot set scratch '" + std::string(key) +
                  "': " + (why.empty() ? std::string("the host refused the value") : why));
    }
    if (s != PYOCO_OK) throw Error("cannot set scratch '" + std::string(key) + "'");
  }
  // Atomic (ABI 1.1): sets `key` to `desired` only if it still holds
  // `expected` (a null Value: unset). Returns whether it did; `current`
  // (optional) receives what the key holds now.
  bool scratch_compare_set(std::string_view key, const Value& expected, const Value& desired,
                           Value* current = nullptr) const {
    detail::require_1_1("Context::scratch_compare_set");
    const pyoco_value* now = nullptr;
    const pyoco_status s = detail::host().context_scratch_update(
        ctx_, key.data(), key.size(), expected.handle(), non_null_handle(desired), &now);
    if (current != nullptr) *current = Value(now);
    if (s == PYOCO_OK) return true;
    if (s == PYOCO_ERR_CONFLICT) return false;
    std::string why = detail::unfit_value(non_null_handle(desired), "value");
    if (why.empty()) why = detail::unfit_value(expected.handle(), "expected");
    throw Error("cannot update scratch '" + std::string(key) + "'" +
                (why.empty() ? std::string() : ": " + why));
  }
  // Atomic (ABI 1.1): adds `delta` to the integer at `key` (unset counts as
  // 0) and returns the new value. Exact however many tasks add at once.
  // It builds the Values it compares in this call's arena itself, so a
  // thread of the plugin's may call it without enter().
  std::int64_t scratch_add(std::string_view key, std::int64_t delta) const {
    const detail::ContextScope scope(ctx_);
    Value seen = scratch(key);
    for (;;) {
      const std::int64_t now = seen.is_null() ? 0 : seen.as<std::int64_t>();
      // An exact counter: past the int64 range it would wrap to the other end.
      if ((delta > 0 && now > std::numeric_limits<std::int64_t>::max() - delta) ||
          (delta < 0 && now < std::numeric_limits<std::int64_t>::min() - delta)) {
        throw Error("cannot add " + std::to_string(delta) + " to scratch '" + std::string(key) +
                    "': it holds " + std::to_string(now) +
                    ", and the sum is past the range of a 64-bit integer");
      }
      const std::int64_t next = now + delta;
      if (scratch_compare_set(key, seen, Value(next), &seen)) return next;
    }
  }

  // Makes this call's arena the one new Values go to, on a thread of the
  // plugin's own (callbacks and Completion do it themselves):
  //   auto scope = ctx.enter();
  [[nodiscard]] detail::ContextScope enter() const { return detail::ContextScope(ctx_); }

  std::string_view run_id() const { return info().run_id; }
  std::string_view node_name() const { return info().node_name; }
  std::string_view task_name() const { return info().task_name; }
  std::string_view flow_name() const { return info().flow_name; }
  unsigned attempt() const { return info().attempt; }

  pyoco_context* handle() const { return ctx_; }

 private:
  // The ABI wants a real handle where the SDK lets a default Value mean null.
  const pyoco_value* non_null_handle(const Value& v) const {
    if (v.handle() != nullptr) return v.handle();
    return detail::checked(detail::host().value_new_null(detail::host().context_arena(ctx_)));
  }

  struct Info {
    std::string_view run_id, flow_name, node_name, task_name;
    unsigned attempt = 0;
  };
  Info info() const {
    pyoco_call_info ci{};
    ci.struct_size = sizeof ci;
    if (detail::host().context_info(ctx_, &ci) != PYOCO_OK) throw Error("no call info");
    auto sv = [](pyoco_str s) { return std::string_view(s.data, s.size); };
    return Info{sv(ci.run_id), sv(ci.flow_name), sv(ci.node_name), sv(ci.task_name), ci.attempt};
  }

  std::string save(std::string_view name, const void* data, std::size_t size,
                   const pyoco_value* value, const char* media_type) const {
    pyoco_artifact a{};
    a.struct_size = sizeof a;
    a.name = pyoco_str{name.data(), name.size()};
    a.data = data;
    a.size = size;
    a.value = value;
    a.media_type = media_type;
    pyoco_str path{nullptr, 0};
    if (detail::host().context_save_artifact(ctx_, &a, &path) != PYOCO_OK) {
      // Older hosts leave path empty on failure; newer ones say why.
      const std::string why = path.data != nullptr && path.size > 0
                                  ? ": " + std::string(path.data, path.size)
                                  : std::string();
      // The name as the host would print it: a NUL or a newline in it must
      // not cut or forge the message.
      std::string shown;
      for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          shown += "\\x";
          shown += kHex[u >> 4];
          shown += kHex[u & 15];
        } else {
          shown += c;
        }
      }
      throw Error("cannot save artifact '" + shown + "'" + why);
    }
    return std::string(path.data, path.size);
  }

  pyoco_context* ctx_;
  std::shared_ptr<detail::CallEnd> call_;  // an async call's end; null for run()
};

// One input or output of a task, as the manifest describes it.
struct Io {
  std::string name;
  std::string type = "any";  // any null bool int number string bytes array object
  bool required = false;
  std::string description;
};

// A task's metadata. Registry::add<T>() reads it from T's static members
// (name, summary, usage, tags, inputs, outputs) or from a static T::info().
struct TaskInfo {
  std::string name;
  std::string summary;
  std::string usage;
  std::vector<std::string> tags;
  std::vector<Io> inputs;
  std::vector<Io> outputs;
};

// The first choice for a task: a subclass with its metadata as static
// members. One instance is made per flow node per run (each loop iteration
// is a node of its own), so members may hold state across the retries of
// that node, not across iterations: keep such state in the run's scratch.
//
// A task that keeps nothing in its members can say so with
// `static constexpr bool stateless = true;`: then one instance, made at
// registration, serves every call of every node, and calls may run on
// several threads at once. That saves making and freeing an instance per
// node (a few hundred instructions, one allocation), which a task of a
// microsecond notices. The same holds for an AsyncTask's start().
class Task {
 public:
  virtual ~Task() = default;
  virtual Value run(Context& ctx, const Inputs& inputs) = 0;
};

// How an async call ends (ABI 1.1): once, from any thread. Copies share the
// call; only the first of ok/fail/cancelled counts (it returns true), later
// ones are ignored (false), so a timer and a cancel may race to end it.
// The context is gone once the call has ended, but for start() and a
// callback the host runs for the call (ctx.after, ctx.on_cancel): those may
// go on building values (never the output any more) until they return.
class Completion {
 public:
  Completion(pyoco_context* ctx, pyoco_call* call)
      : state_(std::make_shared<detail::CallEnd>(ctx, call)) {}

  // Ends the call with `output` (built in the call's arena: a Completion
  // enters it, so `done.ok(Value(42))` works on any thread via ok_with).
  bool ok(const Value& output = Value()) const { return end(PYOCO_OK, output.handle(), {}); }
  // Ends the call with an output built by `make()` inside the call's arena.
  template <class F>
  bool ok_with(F&& make) const {
    // Claimed before building: a racing cancel must not seal the arena
    // while `make` still builds in it.
    if (!state_->claim()) return false;
    ContextScope scope(state_->ctx);
    Value v;
    try {
      v = make();
    } catch (const std::exception& e) {
      state_->complete(PYOCO_ERR_TASK, nullptr, e.what());
      return true;
    }
    state_->complete(PYOCO_OK, v.handle(), {});
    return true;
  }
  // Fails the attempt; it may be retried (`retries`).
  bool fail(std::string_view message) const { return end(PYOCO_ERR_TASK, nullptr, message); }
  // Fails for good: no retry follows.
  bool fail_permanently(std::string_view message) const {
    return end(PYOCO_ERR_PERMANENT, nullptr, message);
  }
  // The task stopped because it was asked to (or chose to): CANCELLED.
  bool cancelled(std::string_view why = "cancelled") const {
    return end(PYOCO_ERR_CANCELLED, nullptr, why);
  }
  bool ended() const { return state_->ended.load(); }
  pyoco_context* context() const { return state_->ctx; }

 private:
  friend pyoco_status detail::start_task(void*, pyoco_context*, const pyoco_value*, pyoco_call*);
  bool end(pyoco_status status, const pyoco_value* out, std::string_view message) const {
    if (!state_->claim()) return false;
    state_->complete(status, out, message);
    return true;
  }
  using ContextScope = detail::ContextScope;
  std::shared_ptr<detail::CallEnd> state_;
};

// A task that waits without holding a host thread (ABI 1.1): `start`
// begins the work and returns; `done` ends the call later, from a timer
// (ctx.after), a cancel callback (ctx.on_cancel) or a thread of the
// plugin's. An exception thrown by start fails the call.
//
//   struct Nap : pyoco::AsyncTask {
//     static constexpr const char* name = "nap";
//     void start(pyoco::Context& ctx, const pyoco::Inputs& in, pyoco::Completion done) override {
//       ctx.after(std::chrono::seconds(1), [done](bool fired) {
//         fired ? done.ok() : done.cancelled("cancelled while napping");
//       });
//     }
//   };
class AsyncTask {
 public:
  virtual ~AsyncTask() = default;
  virtual void start(Context& ctx, const Inputs& inputs, Completion done) = 0;
};

namespace detail {

template <class T, class = void>
struct has_info : std::false_type {};
template <class T>
struct has_info<T, std::void_t<decltype(T::info())>> : std::true_type {};

#define PYOCO_DETAIL_MEMBER_TRAIT(member)   \
  template <class T, class = void>          \
  struct has_##member : std::false_type {}; \
  template <class T>                        \
  struct has_##member<T, std::void_t<decltype(T::member)>> : std::true_type {};
PYOCO_DETAIL_MEMBER_TRAIT(name)
PYOCO_DETAIL_MEMBER_TRAIT(summary)
PYOCO_DETAIL_MEMBER_TRAIT(usage)
PYOCO_DETAIL_MEMBER_TRAIT(tags)
PYOCO_DETAIL_MEMBER_TRAIT(inputs)
PYOCO_DETAIL_MEMBER_TRAIT(outputs)
#undef PYOCO_DETAIL_MEMBER_TRAIT

template <class T>
TaskInfo info_of() {
  if constexpr (has_info<T>::value) {
    return T::info();
  } else {
    static_assert(has_name<T>::value,
                  "a pyoco::Task subclass needs `static constexpr const char* name` or a "
                  "static `TaskInfo info()`");
    TaskInfo info;
    info.name = T::name;
    if constexpr (has_summary<T>::value) info.summary = T::summary;
    if constexpr (has_usage<T>::value) info.usage = T::usage;
    if constexpr (has_tags<T>::value) info.tags.assign(std::begin(T::tags), std::end(T::tags));
    if constexpr (has_inputs<T>::value)
      info.inputs.assign(std::begin(T::inputs), std::end(T::inputs));
    if constexpr (has_outputs<T>::value)
      info.outputs.assign(std::begin(T::outputs), std::end(T::outputs));
    return info;
  }
}

// Runs `body` and turns any exception into a task error on `ctx`.
template <class F>
pyoco_status guarded(pyoco_context* ctx, F&& body) noexcept {
  auto fail = [ctx](const char* message) {
    if (ctx != nullptr && host_slot() != nullptr) {
      host_slot()->context_set_error(ctx, message, std::strlen(message));
    }
    return PYOCO_ERR_TASK;
  };
  try {
    return body();
  } catch (const PermanentError& e) {
    fail(e.what());
    return has_1_1() ? PYOCO_ERR_PERMANENT : PYOCO_ERR_TASK;
  } catch (const Cancelled& e) {
    fail(e.what());
    return has_1_1() ? PYOCO_ERR_CANCELLED : PYOCO_ERR_TASK;
  } catch (const std::exception& e) {
    return fail(e.what());
  } catch (...) {
    return fail("unknown exception (not derived from std::exception)");
  }
}

// How a task definition calls back into C++: makes instances (of a Task,
// or of an AsyncTask), runs them, frees them.
template <class Base>
class Factory {
 public:
  virtual ~Factory() = default;
  virtual std::unique_ptr<Base> make() = 0;
};

template <class Base, class T>
class SubclassFactory final : public Factory<Base> {
 public:
  std::unique_ptr<Base> make() override { return std::make_unique<T>(); }
};

template <class F>
class CallableTask final : public Task {
 public:
  explicit CallableTask(F fn) : fn_(std::move(fn)) {}
  Value run(Context& ctx, const Inputs& inputs) override { return fn_(ctx, inputs); }

 private:
  F fn_;
};

template <class F>
class CallableAsyncTask final : public AsyncTask {
 public:
  explicit CallableAsyncTask(F fn) : fn_(std::move(fn)) {}
  void start(Context& ctx, const Inputs& inputs, Completion done) override {
    fn_(ctx, inputs, std::move(done));
  }

 private:
  F fn_;
};

// Makes a `Made` (CallableTask<F> or CallableAsyncTask<F>) around a copy of `fn`.
template <class Base, class Made, class F>
class CallableFactory final : public Factory<Base> {
 public:
  explicit CallableFactory(F fn) : fn_(std::move(fn)) {}
  std::unique_ptr<Base> make() override { return std::make_unique<Made>(fn_); }

 private:
  F fn_;
};

template <class Base>
pyoco_status create_task(void* user_data, pyoco_context* ctx, void** instance_out) {
  ContextScope scope(ctx);
  return guarded(ctx, [&] {
    *instance_out = static_cast<Factory<Base>*>(user_data)->make().release();
    return PYOCO_OK;
  });
}

template <class Base>
void destroy_task(void* instance) {
  delete static_cast<Base*>(instance);
}

template <class Base>
void release_factory(void* user_data) {
  delete static_cast<Factory<Base>*>(user_data);
}

template <class T, class = void>
struct has_stateless : std::false_type {};
template <class T>
struct has_stateless<T, std::void_t<decltype(T::stateless)>> : std::true_type {};
template <class T>
constexpr bool is_stateless() {
  if constexpr (has_stateless<T>::value) {
    static_assert(std::is_same_v<decltype(T::stateless), const bool>,
                  "a task's `stateless` must be declared `static constexpr bool stateless = "
                  "true;` (or false)");
    return T::stateless;
  } else {
    return false;
  }
}

inline pyoco_status run_task(void* instance, pyoco_context* ctx, const pyoco_value* inputs,
                             const pyoco_value** output) {
  ContextScope scope(ctx);
  return guarded(ctx, [&] {
    Context context(ctx);
    Inputs in(inputs);
    *output = static_cast<Task*>(instance)->run(context, in).handle();
    return PYOCO_OK;
  });
}

// An exception from start ends the call as failed (once: not if the task
// had ended it already), through the same completion its callbacks hold.
// One thrown after the call ended is said on stderr, as a callback's is.
inline pyoco_status start_task(void* instance, pyoco_context* ctx, const pyoco_value* inputs,
                               pyoco_call* call) {
  ContextScope scope(ctx);
  Completion done(ctx, call);
  auto ended_before = [](bool ended_now, const char* what) {
    if (!ended_now) {
      std::fprintf(stderr, "pyoco plugin: start() threw after its call had ended: %s\n", what);
    }
  };
  try {
    Context context(ctx, done.state_);  // its callbacks' exceptions end this call
    Inputs in(inputs);
    static_cast<AsyncTask*>(instance)->start(context, in, done);
  } catch (const PermanentError& e) {
    ended_before(done.fail_permanently(e.what()), e.what());
  } catch (const Cancelled& e) {
    ended_before(done.cancelled(e.what()), e.what());
  } catch (const std::exception& e) {
    ended_before(done.fail(e.what()), e.what());
  } catch (...) {
    const char* what = "unknown exception (not derived from std::exception)";
    ended_before(done.fail(what), what);
  }
  return PYOCO_OK;
}

}  // namespace detail

// Where a plugin adds its tasks; handed to the plugin's register_tasks.
class Registry {
 public:
  explicit Registry(pyoco_registry* registry) : registry_(registry) {}

  // Registers the Task (or AsyncTask) subclass T (the first choice).
  template <class T>
  Registry& add() {
    static_assert(std::is_base_of_v<Task, T> || std::is_base_of_v<AsyncTask, T>,
                  "Registry::add<T>: T must derive from pyoco::Task or pyoco::AsyncTask");
    static_assert(std::is_default_constructible_v<T>,
                  "Registry::add<T>: T must be default-constructible");
    using Base = std::conditional_t<std::is_base_of_v<AsyncTask, T>, AsyncTask, Task>;
    if constexpr (detail::is_stateless<T>()) {
      return add_shared<Base>(detail::info_of<T>(), std::make_unique<T>());
    } else {
      return add_factory<Base>(detail::info_of<T>(),
                               std::make_unique<detail::SubclassFactory<Base, T>>());
    }
  }

  // Registers a callable `void(Context&, const Inputs&, Completion)` as an
  // async task (ABI 1.1).
  template <class F>
  Registry& async_task(std::string_view name, F fn, TaskInfo info = {}) {
    static_assert(std::is_invocable_v<F&, Context&, const Inputs&, Completion>,
                  "Registry::async_task: the callable must be void(Context&, const Inputs&, "
                  "Completion)");
    info.name = std::string(name);
    return add_factory<AsyncTask>(
        std::move(info),
        std::make_unique<detail::CallableFactory<AsyncTask, detail::CallableAsyncTask<F>, F>>(
            std::move(fn)));
  }

  // Registers a callable `Value(Context&, const Inputs&)` as a task (the
  // second choice: fine for small tasks; a subclass documents itself better).
  template <class F>
  Registry& task(std::string_view name, F fn, TaskInfo info = {}) {
    static_assert(std::is_invocable_r_v<Value, F&, Context&, const Inputs&>,
                  "Registry::task: the callable must be Value(Context&, const Inputs&)");
    info.name = std::string(name);
    return add_factory<Task>(
        std::move(info),
        std::make_unique<detail::CallableFactory<Task, detail::CallableTask<F>, F>>(std::move(fn)));
  }

 private:
  static std::vector<pyoco_io_spec> specs(const std::vector<Io>& ios) {
    std::vector<pyoco_io_spec> out;
    out.reserve(ios.size());
    for (const Io& io : ios) {
      pyoco_io_spec s{};
      s.struct_size = sizeof s;
      s.name = io.name.c_str();
      s.type = io.type.c_str();
      s.required = io.required ? 1 : 0;
      s.description = io.description.c_str();
      out.push_back(s);
    }
    return out;
  }

  // A Task runs through `run`; an AsyncTask through `start` (ABI 1.1).
  template <class Base>
  static void set_entry(pyoco_task_def& def, const TaskInfo& info) {
    if constexpr (std::is_same_v<Base, AsyncTask>) {
      if (!detail::has_1_1()) {
        throw Error("task '" + info.name +
                    "' is async and needs a pyoco host with plugin ABI 1.1 or newer");
      }
      def.start = &detail::start_task;
    } else {
      def.run = &detail::run_task;
    }
  }

  template <class Base>
  Registry& add_factory(TaskInfo info, std::unique_ptr<detail::Factory<Base>> factory) {
    pyoco_task_def def{};
    def.create = &detail::create_task<Base>;
    def.destroy = &detail::destroy_task<Base>;
    def.release = &detail::release_factory<Base>;
    set_entry<Base>(def, info);
    return submit(std::move(info), def, factory.get(), [&] { factory.release(); });
  }

  // A stateless task (T::stateless): one instance, made here, that every
  // call of every node shares (the ABI's create == NULL). No instance is
  // made or freed per node, and calls may run at once on several threads.
  template <class Base>
  Registry& add_shared(TaskInfo info, std::unique_ptr<Base> instance) {
    pyoco_task_def def{};
    def.release = &detail::destroy_task<Base>;  // the one instance, once the host lets it go
    set_entry<Base>(def, info);
    return submit(std::move(info), def, instance.get(), [&] { instance.release(); });
  }

  // Fills in the metadata and hands `def` to the host; `owned` is called
  // once the host owns user_data (it frees it through `release`).
  template <class Owned>
  Registry& submit(const TaskInfo& info, pyoco_task_def def, void* user_data, Owned owned) {
    std::vector<const char*> tags;
    for (const std::string& t : info.tags) tags.push_back(t.c_str());
    std::vector<pyoco_io_spec> inputs = specs(info.inputs);
    std::vector<pyoco_io_spec> outputs = specs(info.outputs);

    def.struct_size = sizeof def;
    def.name = info.name.c_str();
    def.summary = info.summary.c_str();
    def.usage = info.usage.c_str();
    def.tags = tags.data();
    def.tag_count = tags.size();
    def.inputs = inputs.data();
    def.input_count = inputs.size();
    def.outputs = outputs.data();
    def.output_count = outputs.size();
    def.user_data = user_data;
    if (detail::host().registry_add_task(registry_, &def) != PYOCO_OK) {
      throw Error("the host refused task '" + info.name + "'");
    }
    owned();
    return *this;
  }

  pyoco_registry* registry_;
};

namespace detail {

template <void (*Register)(Registry&)>
pyoco_status register_trampoline(const pyoco_host_api* host, pyoco_registry* registry) noexcept {
  if (host == nullptr || host->abi_major != PYOCO_ABI_VERSION_MAJOR ||
      !PYOCO_HAS_FIELD(host, pyoco_host_api, context_set_error)) {
    return PYOCO_ERR_UNSUPPORTED;
  }
  host_slot() = host;
  try {
    Registry r(registry);
    Register(r);
    return PYOCO_OK;
  } catch (const std::exception& e) {
    host->registry_set_error(registry, e.what(), std::strlen(e.what()));
  } catch (...) {
    const char* m = "unknown exception in register_tasks";
    host->registry_set_error(registry, m, std::strlen(m));
  }
  return PYOCO_ERR_TASK;
}

}  // namespace detail
}  // namespace v1
}  // namespace pyoco

// Writes the plugin's entry point. Use once per plugin, at namespace scope:
//   void register_tasks(pyoco::Registry&);
//   PYOCO_PLUGIN(register_tasks)
#define PYOCO_PLUGIN(register_fn)                                                          \
  extern "C" PYOCO_PLUGIN_EXPORT const pyoco_plugin_descriptor* pyoco_plugin_entry(void) { \
    static const pyoco_plugin_descriptor descriptor = {                                    \
        sizeof(pyoco_plugin_descriptor),                                                   \
        PYOCO_ABI_VERSION_MAJOR,                                                           \
        PYOCO_ABI_VERSION_MINOR,                                                           \
        PYOCO_VERSION_STRING,                                                              \
        PYOCO_PLUGIN_NAME,                                                                 \
        PYOCO_PLUGIN_VERSION,                                                              \
        &::pyoco::detail::register_trampoline<&register_fn>,                               \
    };                                                                                     \
    return &descriptor;                                                                    \
  }

#endif  // PYOCO_SDK_HPP
