// The runtime's value: what params, task inputs and task outputs are.
//
// Values live in arenas. A task call builds its output in its own arena; the
// output keeps that arena alive for as long as anything refers to it, so a
// value passes from task to task as a pointer, never as a copy or as JSON
// text. A container may refer to values of other arenas: it then keeps
// those arenas alive too. A node may be changed only while its arena is
// open (during the call that owns it); sealing the arena freezes it.
#pragma once

#include <boost/intrusive_ptr.hpp>
#include <boost/json/fwd.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace pyoco::core {

enum class ValueKind : std::uint8_t { Null, Bool, Int, Double, String, Bytes, Array, Object };

const char* to_string(ValueKind kind);

class Arena;
struct ValueNode;

struct Member {
  std::string_view key;
  const ValueNode* value;
};

struct ValueNode {
  ValueKind kind = ValueKind::Null;
  Arena* owner = nullptr;
  union {
    bool b;
    std::int64_t i;
    double d;
    struct {
      const char* data;  // strings are NUL-terminated
      std::size_t size;
    } str;
    struct {
      const ValueNode** items;
      std::size_t size, capacity;
    } arr;
    struct {
      Member* members;
      std::size_t size, capacity;
    } obj;
  };
  ValueNode() : i(0) {}
};

// A monotonic arena of value nodes, reference-counted.
class Arena {
 public:
  static boost::intrusive_ptr<Arena> create();
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  ValueNode* make_null();
  ValueNode* make_bool(bool v);
  ValueNode* make_int(std::int64_t v);
  ValueNode* make_double(double v);
  ValueNode* make_string(std::string_view s);
  ValueNode* make_bytes(const void* data, std::size_t size);
  ValueNode* make_array(std::size_t reserve = 0);
  ValueNode* make_object(std::size_t reserve = 0);

  // Container edits; false when `container` is sealed or of another kind.
  // `item` may live in any arena: this arena then keeps that one alive.
  static bool push(ValueNode* array, const ValueNode* item);
  static bool set(ValueNode* object, std::string_view key, const ValueNode* item);
  // set() for a key the object does not hold yet (the caller knows: its
  // keys come from a map): no look for it, so building an object of n keys
  // is O(n), not O(n^2).
  static bool add(ValueNode* object, std::string_view key, const ValueNode* item);

  // Freezes every node of this arena.
  void seal() { sealed_ = true; }
  bool sealed() const { return sealed_; }

  // Keeps `other` alive as long as this arena.
  void retain(Arena* other);

  std::size_t bytes_used() const { return used_total_; }

  friend void intrusive_ptr_add_ref(Arena* a) { a->refs_.fetch_add(1, std::memory_order_relaxed); }
  friend void intrusive_ptr_release(Arena* a) {
    if (a->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete a;
  }

 private:
  Arena() = default;
  void* allocate(std::size_t size, std::size_t align);
  const char* copy_bytes(const void* data, std::size_t size, bool nul);

  std::atomic<std::uint32_t> refs_{0};
  bool sealed_ = false;
  char* cursor_ = nullptr;
  char* end_ = nullptr;
  std::size_t used_total_ = 0;
  std::vector<char*> chunks_;
  std::vector<boost::intrusive_ptr<Arena>> retained_;
  // retained_ by address once it is long: a loop collecting N outputs, each
  // from its own arena, made retain() scan a growing list, O(N^2).
  std::unordered_set<const Arena*> retained_index_;
  // Most values a task builds or a run keeps (an output, an iteration's
  // loop variables) fit here; many live as long as their run, so it is
  // small: 256 bytes less an arena is 100 MB less in a run of 200,000
  // iterations (two arenas each: the loop's variables, the output).
  alignas(std::max_align_t) char inline_[256];
};

using ArenaPtr = boost::intrusive_ptr<Arena>;

// A read handle on a value: the node plus a reference that keeps its arena
// alive. Cheap to copy (one atomic increment). A default Value is null.
class Value {
 public:
  Value() = default;
  Value(ArenaPtr arena, const ValueNode* node) : arena_(std::move(arena)), node_(node) {}

  ValueKind kind() const { return node_ == nullptr ? ValueKind::Null : node_->kind; }
  bool is_null() const { return kind() == ValueKind::Null; }
  bool is_bool() const { return kind() == ValueKind::Bool; }
  bool is_int() const { return kind() == ValueKind::Int; }
  bool is_number() const { return kind() == ValueKind::Int || kind() == ValueKind::Double; }
  bool is_string() const { return kind() == ValueKind::String; }
  bool is_array() const { return kind() == ValueKind::Array; }
  bool is_object() const { return kind() == ValueKind::Object; }

  // Accessors assume the kind was checked.
  bool as_bool() const { return node_->b; }
  std::int64_t as_int() const { return node_->i; }
  double as_double() const { return kind() == ValueKind::Int ? double(node_->i) : node_->d; }
  std::string_view as_string() const { return {node_->str.data, node_->str.size}; }

  // Elements of an array, members of an object, 0 otherwise.
  std::size_t size() const;
  // Null when out of range or not an array.
  Value at(std::size_t index) const;
  // Null when absent or not an object.
  Value find(std::string_view key) const;
  bool contains(std::string_view key) const;
  // The i-th member of an object (assumes i < size()).
  std::pair<std::string_view, Value> member(std::size_t index) const;

  const ValueNode* node() const { return node_; }
  const ArenaPtr& arena() const { return arena_; }

  // Deep equality (ints and doubles compare by number).
  friend bool operator==(const Value& a, const Value& b);

 private:
  ArenaPtr arena_;
  const ValueNode* node_ = nullptr;
};

// Builds values in a fresh arena; the runtime's way to make params, literals
// and test data. The arena is sealed when the builder is done with it.
class ValueBuilder {
 public:
  ValueBuilder() : arena_(Arena::create()) {}
  Arena& arena() { return *arena_; }
  // A handle on `node`, keeping the arena it lives in alive (this builder's,
  // or another one a node was borrowed from).
  Value wrap(const ValueNode* node) const {
    return node == nullptr || node->owner == arena_.get() ? Value(arena_, node)
                                                          : Value(ArenaPtr(node->owner), node);
  }

 private:
  ArenaPtr arena_;
};

// How deep lists and mappings may nest in a value (params, task inputs and
// outputs), as in a flow file: the one limit every reader and writer of a
// value keeps. A value deeper than this is an error that says so
// (kTooDeepText), never a null or a string.
inline constexpr std::size_t kMaxValueDepth = 64;
// A record wraps a value in a few levels of its own (a run's params object,
// a trace line's event object): what a reader of records allows on top.
inline constexpr std::size_t kMaxRecordEnvelopeDepth = 8;
inline constexpr std::string_view kTooDeepText = "nested more than 64 levels deep";
static_assert(kMaxValueDepth == 64, "kTooDeepText names the limit");

// Options for boost::json::parse of text holding values: its default
// max_depth (32) silently lost values 33 to 64 levels deep. `envelope`
// levels are allowed on top of kMaxValueDepth (0 for a bare value).
boost::json::parse_options json_parse_options(std::size_t envelope = kMaxRecordEnvelopeDepth);
// boost::json::parse with json_parse_options(envelope).
boost::json::value parse_json(std::string_view text, boost::system::error_code& ec,
                              std::size_t envelope = kMaxRecordEnvelopeDepth);
// Whether `ec` (of a parse) says the text nests deeper than the limit.
bool is_too_deep(const boost::system::error_code& ec);
// Whether `value` nests lists and mappings more than `max_depth` levels.
bool deeper_than(const Value& value, std::size_t max_depth = kMaxValueDepth);
bool deeper_than(const boost::json::value& value, std::size_t max_depth = kMaxValueDepth);

// JSON conversions. Bytes become a base64 string in JSON.
// Whether `v` is of `type`, a type name of plugin.toml's inputs and
// outputs: any, null, bool, int, number (an int or a double), string, bytes
// (bytes, or a string), array or object. An unknown name fits anything.
bool fits_type(const Value& v, std::string_view type);

// One step of a path into a value, the one rule every path of a flow uses
// ($node.x.output.items.0, results.x.items.0): a key of an object, or an
// index of a list written in decimal digits. Nullopt when there is none.
std::optional<Value> path_step(const Value& v, std::string_view step);

Value from_json(const boost::json::value& json);
// Where the first number in `json` that is not finite lies ("params.x.2",
// from `path`), or empty when there is none. JSON has no infinity, but a
// parser turns `1e999999` into one: a record holding it can be written,
// never read back.
std::string non_finite_number_at(const boost::json::value& json, const std::string& path);
// Of a Value: walked no further than unfit_value walks (64 levels,
// kMaxValueItems items).
std::string non_finite_number_at(const Value& value, const std::string& path);

// How many items (lists, mappings and scalars, one counted each time it is
// reached: a list held twice counts twice) a value may hold in all. A few
// lists that share their items would otherwise stand for a billion, and
// every walk of them (a comparison, JSON, a check) would take for ever.
inline constexpr std::size_t kMaxValueItems = std::size_t{1} << 24;  // 16,777,216

// Why a value from outside (a task's output) cannot be kept, or empty: in one
// walk without recursion, stopped at the first problem and after
// kMaxValueItems items at most. Said as "a value nested more than 64 levels
// deep, ...", "a value of more than 16777216 items ...", or "a number that
// is not finite at <path>.x.2, ..." (from `path`). A value that holds
// itself is too deep.
std::string unfit_value(const Value& value, const std::string& path);
// The first integer written in JSON text `json` that a 64-bit integer
// cannot hold ("12345678901234567890"), or empty. A JSON parser reads it as
// a double and silently rounds it (to 12345678901234567168); the flow
// reader refuses it, and so should every reader of params.
std::string_view oversized_json_integer(std::string_view json);
boost::json::value to_json(const Value& value);
// Compact JSON text, for display and files (never between tasks).
std::string to_json_text(const Value& value);
// Its first `max_bytes` bytes (all of it when shorter), without writing the
// rest: a summary of a large value costs what the summary does.
std::string to_json_text(const Value& value, std::size_t max_bytes);

}  // namespace pyoco::core
