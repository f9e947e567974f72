#include <pyoco/core/base64.hpp>
#include <pyoco/core/output_summary.hpp>
#include <pyoco/core/value.hpp>

#include <pyoco/core/text.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

namespace pyoco::core {

const char* to_string(ValueKind kind) {
  switch (kind) {
    case ValueKind::Null:
      return "null";
    case ValueKind::Bool:
      return "bool";
    case ValueKind::Int:
      return "int";
    case ValueKind::Double:
      return "double";
    case ValueKind::String:
      return "string";
    case ValueKind::Bytes:
      return "bytes";
    case ValueKind::Array:
      return "array";
    case ValueKind::Object:
      return "object";
  }
  return "unknown";
}

// ---- Arena ----------------------------------------------------------------

ArenaPtr Arena::create() { return ArenaPtr(new Arena()); }

Arena::~Arena() {
  for (char* c : chunks_) ::operator delete(c);
}

void* Arena::allocate(std::size_t size, std::size_t align) {
  if (cursor_ == nullptr) {
    cursor_ = inline_;
    end_ = inline_ + sizeof inline_;
  }
  auto aligned = [&](char* p) {
    return reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(p) + align - 1) &
                                   ~(std::uintptr_t(align) - 1));
  };
  char* p = aligned(cursor_);
  if (p + size > end_) {
    // Chunks double from twice the inline room, and a big request gets a
    // chunk of its own size.
    const std::size_t last = chunks_.empty() ? sizeof inline_ : std::size_t(end_ - chunks_.back());
    const std::size_t chunk = std::max(last * 2, size + align);
    char* c = static_cast<char*>(::operator new(chunk));
    chunks_.push_back(c);
    cursor_ = c;
    end_ = c + chunk;
    p = aligned(cursor_);
  }
  cursor_ = p + size;
  used_total_ += size;
  return p;
}

const char* Arena::copy_bytes(const void* data, std::size_t size, bool nul) {
  char* p = static_cast<char*>(allocate(size + (nul ? 1 : 0), 1));
  if (size > 0) std::memcpy(p, data, size);
  if (nul) p[size] = '\0';
  return p;
}

namespace {
ValueNode* new_node(Arena* a, void* mem, ValueKind kind) {
  auto* n = new (mem) ValueNode();
  n->kind = kind;
  n->owner = a;
  return n;
}
}  // namespace

#define PYOCO_NEW_NODE(kind) new_node(this, allocate(sizeof(ValueNode), alignof(ValueNode)), kind)

ValueNode* Arena::make_null() { return PYOCO_NEW_NODE(ValueKind::Null); }
ValueNode* Arena::make_bool(bool v) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::Bool);
  n->b = v;
  return n;
}
ValueNode* Arena::make_int(std::int64_t v) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::Int);
  n->i = v;
  return n;
}
ValueNode* Arena::make_double(double v) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::Double);
  n->d = v;
  return n;
}
ValueNode* Arena::make_string(std::string_view s) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::String);
  n->str.data = copy_bytes(s.data(), s.size(), true);
  n->str.size = s.size();
  return n;
}
ValueNode* Arena::make_bytes(const void* data, std::size_t size) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::Bytes);
  n->str.data = copy_bytes(data, size, false);
  n->str.size = size;
  return n;
}
ValueNode* Arena::make_array(std::size_t reserve) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::Array);
  n->arr.items = reserve == 0 ? nullptr
                              : static_cast<const ValueNode**>(
                                    allocate(reserve * sizeof(ValueNode*), alignof(ValueNode*)));
  n->arr.size = 0;
  n->arr.capacity = reserve;
  return n;
}
ValueNode* Arena::make_object(std::size_t reserve) {
  ValueNode* n = PYOCO_NEW_NODE(ValueKind::Object);
  n->obj.members = reserve == 0
                       ? nullptr
                       : static_cast<Member*>(allocate(reserve * sizeof(Member), alignof(Member)));
  n->obj.size = 0;
  n->obj.capacity = reserve;
  return n;
}
#undef PYOCO_NEW_NODE

void Arena::retain(Arena* other) {
  if (other == nullptr || other == this) return;
  // Most arenas keep a few others: a scan of those is cheaper than a hash.
  constexpr std::size_t kScanned = 8;
  if (retained_.size() < kScanned) {
    for (const auto& r : retained_) {
      if (r.get() == other) return;
    }
  } else {
    if (retained_index_.empty()) {
      for (const auto& r : retained_) retained_index_.insert(r.get());
    }
    if (retained_index_.contains(other)) return;
    // Kept first, then indexed: an index naming an arena not kept (an
    // allocation failing between the two) would let it be freed under
    // values that point into it.
    retained_.emplace_back(other);
    try {
      retained_index_.insert(other);
    } catch (...) {
      retained_.pop_back();
      throw;
    }
    return;
  }
  retained_.emplace_back(other);
}

bool Arena::push(ValueNode* array, const ValueNode* item) {
  if (array == nullptr || item == nullptr || array->kind != ValueKind::Array) return false;
  Arena* a = array->owner;
  if (a->sealed_) return false;
  if (array->arr.size == array->arr.capacity) {
    const std::size_t cap = array->arr.capacity == 0 ? 4 : array->arr.capacity * 2;
    auto** items =
        static_cast<const ValueNode**>(a->allocate(cap * sizeof(ValueNode*), alignof(ValueNode*)));
    if (array->arr.size > 0) {
      std::memcpy(items, array->arr.items, array->arr.size * sizeof(ValueNode*));
    }
    array->arr.items = items;
    array->arr.capacity = cap;
  }
  array->arr.items[array->arr.size++] = item;
  a->retain(item->owner);
  return true;
}

bool Arena::set(ValueNode* object, std::string_view key, const ValueNode* item) {
  if (object == nullptr || item == nullptr || object->kind != ValueKind::Object) return false;
  if (object->owner->sealed_) return false;
  for (std::size_t i = 0; i < object->obj.size; ++i) {
    if (object->obj.members[i].key == key) {
      object->owner->retain(item->owner);
      object->obj.members[i].value = item;
      return true;
    }
  }
  return add(object, key, item);
}

bool Arena::add(ValueNode* object, std::string_view key, const ValueNode* item) {
  if (object == nullptr || item == nullptr || object->kind != ValueKind::Object) return false;
  Arena* a = object->owner;
  if (a->sealed_) return false;
  a->retain(item->owner);
  if (object->obj.size == object->obj.capacity) {
    const std::size_t cap = object->obj.capacity == 0 ? 4 : object->obj.capacity * 2;
    auto* members = static_cast<Member*>(a->allocate(cap * sizeof(Member), alignof(Member)));
    if (object->obj.size > 0) {
      std::memcpy(static_cast<void*>(members), object->obj.members,
                  object->obj.size * sizeof(Member));
    }
    object->obj.members = members;
    object->obj.capacity = cap;
  }
  const char* k = a->copy_bytes(key.data(), key.size(), true);
  object->obj.members[object->obj.size++] = Member{std::string_view(k, key.size()), item};
  return true;
}

boost::json::parse_options json_parse_options(std::size_t envelope) {
  boost::json::parse_options options;
  options.max_depth = kMaxValueDepth + envelope;
  return options;
}

boost::json::value parse_json(std::string_view text, boost::system::error_code& ec,
                              std::size_t envelope) {
  return boost::json::parse(text, ec, {}, json_parse_options(envelope));
}

bool is_too_deep(const boost::system::error_code& ec) { return ec == boost::json::error::too_deep; }

bool deeper_than(const Value& value, std::size_t max_depth) {
  const ValueNode* n = value.node();
  if (n == nullptr || (n->kind != ValueKind::Array && n->kind != ValueKind::Object)) return false;
  if (max_depth == 0) return true;
  // Recursion no deeper than max_depth + 1 frames.
  const std::size_t size = value.size();
  for (std::size_t i = 0; i < size; ++i) {
    const ValueNode* item = n->kind == ValueKind::Array ? n->arr.items[i] : n->obj.members[i].value;
    if (deeper_than(Value(nullptr, item), max_depth - 1)) return true;
  }
  return false;
}

bool deeper_than(const boost::json::value& value, std::size_t max_depth) {
  if (!value.is_array() && !value.is_object()) return false;
  if (max_depth == 0) return true;
  if (value.is_array()) {
    for (const auto& item : value.get_array()) {
      if (deeper_than(item, max_depth - 1)) return true;
    }
  } else {
    for (const auto& kv : value.get_object()) {
      if (deeper_than(kv.value(), max_depth - 1)) return true;
    }
  }
  return false;
}

namespace {

enum class Unfit { None, TooMany, TooDeep, NotFinite };

// One walk of `v`, without recursion or allocation, to its first problem;
// `at` receives the path (from `path`) of a number that is not finite.
Unfit find_unfit(const Value& v, const std::string& path, std::string& at) {
  struct Step {
    const ValueNode* node;
    std::size_t next;
  };
  // The containers on the way to the item visited: never more than the
  // depth allowed, so in place (every task's output is walked).
  std::array<Step, kMaxValueDepth> stack;
  std::size_t depth = 0, items = 0;
  auto visit = [&](const ValueNode* n) {
    if (++items > kMaxValueItems) return Unfit::TooMany;
    if (n == nullptr) return Unfit::None;
    if (n->kind == ValueKind::Double && !std::isfinite(n->d)) {
      at = path;
      for (std::size_t d = 0; d < depth; ++d) {
        const std::size_t i = stack[d].next - 1;
        at += stack[d].node->kind == ValueKind::Array
                  ? "." + std::to_string(i)
                  : "." + std::string(stack[d].node->obj.members[i].key);
      }
      return Unfit::NotFinite;
    }
    if (n->kind == ValueKind::Array || n->kind == ValueKind::Object) {
      if (depth == kMaxValueDepth) return Unfit::TooDeep;
      stack[depth++] = {n, 0};
    }
    return Unfit::None;
  };
  if (const Unfit u = visit(v.node()); u != Unfit::None) return u;
  while (depth > 0) {
    Step& top = stack[depth - 1];
    const std::size_t size =
        top.node->kind == ValueKind::Array ? top.node->arr.size : top.node->obj.size;
    if (top.next == size) {
      --depth;
      continue;
    }
    const std::size_t i = top.next++;
    const ValueNode* item = top.node->kind == ValueKind::Array ? top.node->arr.items[i]
                                                               : top.node->obj.members[i].value;
    if (const Unfit u = visit(item); u != Unfit::None) return u;
  }
  return Unfit::None;
}

}  // namespace

std::string non_finite_number_at(const Value& v, const std::string& path) {
  std::string at;
  return find_unfit(v, path, at) == Unfit::NotFinite ? at : std::string();
}

std::string unfit_value(const Value& v, const std::string& path) {
  std::string at;
  switch (find_unfit(v, path, at)) {
    case Unfit::None:
      return {};
    case Unfit::TooMany:
      return "a value of more than " + std::to_string(kMaxValueItems) +
             " items (a list or mapping held n times counts n times), past the limit every "
             "value in pyoco keeps";
    case Unfit::TooDeep:
      return "a value " + std::string(kTooDeepText) + ", past the limit every value in pyoco keeps";
    case Unfit::NotFinite:
      return "a number that is not finite at " + at + ", which JSON cannot hold";
  }
  return {};
}

std::string non_finite_number_at(const boost::json::value& v, const std::string& path) {
  if (v.is_double()) return std::isfinite(v.get_double()) ? std::string() : path;
  if (v.is_array()) {
    const boost::json::array& a = v.get_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (std::string at = non_finite_number_at(a[i], path + "." + std::to_string(i));
          !at.empty()) {
        return at;
      }
    }
  }
  if (v.is_object()) {
    for (const auto& kv : v.get_object()) {
      if (std::string at = non_finite_number_at(kv.value(), path + "." + std::string(kv.key()));
          !at.empty()) {
        return at;
      }
    }
  }
  return {};
}

std::string_view oversized_json_integer(std::string_view json) {
  for (std::size_t at = 0; at < json.size();) {
    if (json[at] == '"') {  // a string: to its closing quote, past escapes
      for (++at; at < json.size() && json[at] != '"'; ++at) at += json[at] == '\\';
      ++at;
      continue;
    }
    // Outside strings, only numbers hold digits, '-', '.' and exponents.
    const std::size_t end = json.find_first_not_of("+-0123456789.eE", at);
    const std::string_view token = json.substr(at, end == std::string_view::npos ? end : end - at);
    if (token.empty()) {
      ++at;
      continue;
    }
    at += token.size();
    if (token.find_first_of(".eE") != std::string_view::npos) continue;  // a double as written
    std::int64_t i = 0;
    if (std::from_chars(token.data(), token.data() + token.size(), i).ec ==
        std::errc::result_out_of_range) {
      return token;
    }
  }
  return {};
}

// ---- Value ----------------------------------------------------------------

std::size_t Value::size() const {
  switch (kind()) {
    case ValueKind::Array:
      return node_->arr.size;
    case ValueKind::Object:
      return node_->obj.size;
    default:
      return 0;
  }
}

Value Value::at(std::size_t index) const {
  if (kind() != ValueKind::Array || index >= node_->arr.size) return Value();
  return Value(arena_, node_->arr.items[index]);
}

Value Value::find(std::string_view key) const {
  if (kind() != ValueKind::Object) return Value();
  for (std::size_t i = 0; i < node_->obj.size; ++i) {
    if (node_->obj.members[i].key == key) return Value(arena_, node_->obj.members[i].value);
  }
  return Value();
}

bool Value::contains(std::string_view key) const {
  if (kind() != ValueKind::Object) return false;
  for (std::size_t i = 0; i < node_->obj.size; ++i) {
    if (node_->obj.members[i].key == key) return true;
  }
  return false;
}

std::pair<std::string_view, Value> Value::member(std::size_t index) const {
  const Member& m = node_->obj.members[index];
  return {m.key, Value(arena_, m.value)};
}

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::Null:
      return true;
    case ValueKind::Bool:
      return a.as_bool() == b.as_bool();
    case ValueKind::String:
    case ValueKind::Bytes:
      return a.as_string() == b.as_string();
    case ValueKind::Array:
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (!(a.at(i) == b.at(i))) return false;
      }
      return true;
    case ValueKind::Object:
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i) {
        auto [key, v] = a.member(i);
        if (!b.contains(key) || !(v == b.find(key))) return false;
      }
      return true;
    default:
      return false;
  }
}

// ---- JSON -------------------------------------------------------------------

namespace {

const ValueNode* node_from_json(Arena& a, const boost::json::value& j) {
  switch (j.kind()) {
    case boost::json::kind::null:
      return a.make_null();
    case boost::json::kind::bool_:
      return a.make_bool(j.get_bool());
    case boost::json::kind::int64:
      return a.make_int(j.get_int64());
    case boost::json::kind::uint64: {
      const std::uint64_t u = j.get_uint64();
      if (u > std::uint64_t(INT64_MAX)) return a.make_double(double(u));
      return a.make_int(std::int64_t(u));
    }
    case boost::json::kind::double_:
      return a.make_double(j.get_double());
    case boost::json::kind::string: {
      const auto& s = j.get_string();
      return a.make_string(std::string_view(s.data(), s.size()));
    }
    case boost::json::kind::array: {
      const auto& arr = j.get_array();
      ValueNode* n = a.make_array(arr.size());
      for (const auto& item : arr) Arena::push(n, node_from_json(a, item));
      return n;
    }
    case boost::json::kind::object: {
      const auto& obj = j.get_object();
      ValueNode* n = a.make_object(obj.size());
      for (const auto& kv : obj) {  // a boost::json::object's keys are unique
        Arena::add(n, std::string_view(kv.key().data(), kv.key().size()),
                   node_from_json(a, kv.value()));
      }
      return n;
    }
  }
  return a.make_null();
}

}  // namespace

Value from_json(const boost::json::value& json) {
  ArenaPtr arena = Arena::create();
  const ValueNode* node = node_from_json(*arena, json);
  arena->seal();
  return Value(std::move(arena), node);
}

boost::json::value to_json(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Null:
      return nullptr;
    case ValueKind::Bool:
      return v.as_bool();
    case ValueKind::Int:
      return v.as_int();
    case ValueKind::Double:
      return v.as_double();
    case ValueKind::String:
      return boost::json::string(v.as_string());
    case ValueKind::Bytes:
      return boost::json::string(base64(v.as_string()));
    case ValueKind::Array: {
      boost::json::array arr;
      arr.reserve(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) arr.push_back(to_json(v.at(i)));
      return arr;
    }
    case ValueKind::Object: {
      boost::json::object obj;
      obj.reserve(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) {
        auto [key, item] = v.member(i);
        obj[key] = to_json(item);
      }
      return obj;
    }
  }
  return nullptr;
}

namespace {

// Appends `v` as JSON, but stops once `out` is longer than `limit`: what
// it wrote is then a prefix of the whole text, longer than `limit` (a
// string's last few bytes past the limit may differ: a cut sequence).
void append_json(std::string& out, const Value& v, std::size_t limit) {
  // A long string or bytes is escaped only as far as the limit needs (and
  // a margin, so a sequence cut at its end stays past the limit).
  auto cut = [&](std::string_view s) {
    const std::size_t room = limit > out.size() ? limit - out.size() : 0;
    if (s.size() <= room || s.size() - room <= 8) return s;
    return s.substr(0, room + 8);
  };
  switch (v.kind()) {
    case ValueKind::Null:
      out += "null";
      return;
    case ValueKind::Bool:
      out += v.as_bool() ? "true" : "false";
      return;
    case ValueKind::Int:
      out += std::to_string(v.as_int());
      return;
    case ValueKind::Double: {
      const double d = v.as_double();
      if (!std::isfinite(d)) {
        out += "null";  // JSON has no NaN or infinity
        return;
      }
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, d);
      const std::string_view text(buf, static_cast<std::size_t>(r.ptr - buf));
      out += text;
      // Stay a double when read back: 2 -> 2.0
      if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
      return;
    }
    case ValueKind::String: {
      const std::string_view s = cut(v.as_string());
      append_json_string(out, s);
      if (s.size() < v.as_string().size()) out.pop_back();  // not closed: it goes on
      return;
    }
    case ValueKind::Bytes: {
      // base64 of a prefix of 3k bytes is a prefix of the whole's
      const std::string_view all = v.as_string();
      const std::size_t n = cut(all).size();
      const std::string_view head = all.substr(0, n + (3 - n % 3) % 3);
      append_json_string(out, base64(head));
      if (head.size() < all.size()) out.pop_back();
      return;
    }
    case ValueKind::Array:
      out += '[';
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (out.size() > limit) return;
        if (i > 0) out += ',';
        append_json(out, v.at(i), limit);
      }
      out += ']';
      return;
    case ValueKind::Object:
      out += '{';
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (out.size() > limit) return;
        if (i > 0) out += ',';
        auto [key, item] = v.member(i);
        append_json_string(out, cut(key));
        out += ':';
        append_json(out, item, limit);
      }
      out += '}';
      return;
  }
}

}  // namespace

std::optional<Value> path_step(const Value& v, std::string_view step) {
  if (v.is_object()) {
    if (v.contains(step)) return v.find(step);
    return std::nullopt;
  }
  if (!v.is_array() || step.empty() || step.size() > 18 ||
      step.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  std::size_t index = 0;
  for (const char c : step) index = index * 10 + static_cast<std::size_t>(c - '0');
  if (index >= v.size()) return std::nullopt;
  return v.at(index);
}

bool fits_type(const Value& v, std::string_view type) {
  if (type == "null") return v.is_null();
  if (type == "bool") return v.is_bool();
  if (type == "int") return v.is_int();
  if (type == "number") return v.is_number();
  if (type == "string") return v.is_string();
  if (type == "bytes") return v.kind() == ValueKind::Bytes || v.is_string();
  if (type == "array") return v.is_array();
  if (type == "object") return v.is_object();
  return true;  // any, or a type lint reports
}

// Written directly rather than through boost::json: shorter doubles
// ("2.5", not "2.5E0") and no intermediate tree.
std::string to_json_text(const Value& value) {
  std::string out;
  append_json(out, value, SIZE_MAX);
  return out;
}

std::string to_json_text(const Value& value, std::size_t max_bytes) {
  std::string out;
  append_json(out, value, max_bytes);
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

std::string output_summary(const Value& value) {
  if (value.is_null()) return {};
  // One byte past the cut says whether there was more.
  std::string s = to_json_text(value, 201);
  if (s.size() > 200) s = s.substr(0, 197) + "...";
  return s;
}

}  // namespace pyoco::core
