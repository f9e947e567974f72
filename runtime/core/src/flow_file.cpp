#include <pyoco/core/flow_file.hpp>
#include <pyoco/core/regular_file.hpp>
#include <pyoco/core/semver.hpp>
#include <pyoco/core/text.hpp>
#include <pyoco/core/toml_depth.hpp>

#include <toml++/toml.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace pyoco::core {

std::string SourceLocation::to_string() const {
  std::string s = file.empty() ? "<flow>" : file;
  if (line > 0) s += ":" + std::to_string(line);
  if (line > 0 && column > 0) s += ":" + std::to_string(column);
  return s;
}

FlowError::FlowError(SourceLocation where, const std::string& problem)
    : std::runtime_error(where.to_string() + ": " + problem),
      where_(std::move(where)),
      problem_(problem) {}

std::string output_path_problem(std::string_view path) {
  static constexpr std::size_t kMaxOutputDepth = 32;
  const std::string quoted = "\"" + std::string(path) + "\"";
  const std::string_view root = path.substr(0, path.find('.'));
  if (root != "params" && root != "scratch" && root != "results") {
    return quoted + " must start with params., scratch. or results. (e.g. \"params.saved\")";
  }
  std::size_t segments = 0;
  for (std::size_t start = 0;; ++segments) {
    const auto next = path.find('.', start);
    if (next == start || (next == std::string_view::npos && start == path.size())) {
      return quoted + " has an empty key";
    }
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  if (segments + 1 < 2) return quoted + " names no key: write " + std::string(root) + ".<key>";
  if (segments + 1 > kMaxOutputDepth) {
    return quoted + " is deeper than " + std::to_string(kMaxOutputDepth) + " keys";
  }
  return {};
}

const TaskSpec* FlowSpec::find_task(std::string_view n) const {
  for (const TaskSpec& t : tasks) {
    if (t.name == n) return &t;
  }
  return nullptr;
}

const PipeSpec* FlowSpec::find_pipe(std::string_view n) const {
  for (const PipeSpec& p : pipes) {
    if (p.name == n) return &p;
  }
  return nullptr;
}

namespace {

// What one flow file may hold, so that a hostile or broken file is an
// error, not a crash or an exhausted machine: nesting (a YAML alias inside
// its own anchor nests forever), values, and values that YAML aliases add
// (a "billion laughs" file of a few hundred bytes expands to billions).
constexpr std::size_t kMaxDocDepth = 64;
constexpr std::size_t kMaxDocValues = 1'000'000;
constexpr std::size_t kMaxAliasedValues = 100'000;
constexpr std::uint64_t kMaxFlowFileBytes = 16u << 20;
// Text that aliases copy: one 1 MB string aliased 3,000 times is 3 GB
// (the value count above does not see it); the file's own limit.
constexpr std::size_t kMaxAliasedBytes = 16u << 20;

// One file's reading: its scalars share one arena (a value each would cost
// an arena each), and what it has read so far is counted.
struct DocReading {
  ValueBuilder scalars;
  std::size_t values = 0;
  std::size_t aliased = 0;  // values read again through a YAML alias
  std::size_t bytes = 0;    // text of scalars and keys
  std::size_t aliased_bytes = 0;
  std::size_t anchored = 0;  // values anchors keep a copy of (nested anchors: each its own)
};

// Both formats are read into this located tree first, so that the schema
// is checked once, by one reader, with the same messages.
struct Doc {
  // Declared here, defaulted below: clang (with libstdc++) cannot tell
  // whether pair<string, Doc> is default-constructible while Doc is not
  // yet complete, which an implicit constructor would ask.
  Doc();
  enum class Kind { Null, Scalar, List, Map } kind = Kind::Null;
  Value scalar;
  bool quoted = false;  // a string the author quoted: never a number or bool
  std::vector<std::pair<std::string, Doc>> map;
  std::vector<SourceLocation> key_where;
  std::vector<Doc> list;
  SourceLocation where;
  SourceLocation text_where;  // for multi-line strings: where the text itself starts
};
Doc::Doc() = default;

// .nan, .inf, -.inf (any of YAML's spellings) as the number they name; the
// flow file keeps them as text.
std::optional<double> yaml_float_word(const Doc& d) {
  if (d.kind != Doc::Kind::Scalar || !d.scalar.is_string()) return std::nullopt;
  std::string_view t = d.scalar.as_string();
  if (t == ".nan" || t == ".NaN" || t == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  const bool negative = !t.empty() && t.front() == '-';
  if (!t.empty() && (t.front() == '-' || t.front() == '+')) t.remove_prefix(1);
  if (t == ".inf" || t == ".Inf" || t == ".INF") {
    return negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
  }
  return std::nullopt;
}

const char* kind_name(const Doc& d) {
  switch (d.kind) {
    case Doc::Kind::Null:
      return "nothing";
    case Doc::Kind::List:
      return "a list";
    case Doc::Kind::Map:
      return "a mapping";
    case Doc::Kind::Scalar:
      return to_string(d.scalar.kind());
  }
  return "?";
}

Value scalar_value(ValueBuilder& b, ValueKind kind, std::string_view text) {
  ValueNode* n = nullptr;
  switch (kind) {
    case ValueKind::Null:
      n = b.arena().make_null();
      break;
    case ValueKind::Bool:
      n = b.arena().make_bool(text == "true");
      break;
    case ValueKind::Int: {
      std::int64_t i = 0;
      std::from_chars(text.data(), text.data() + text.size(), i);
      n = b.arena().make_int(i);
      break;
    }
    case ValueKind::Double: {
      // from_chars, as the caller checked it: std::stod throws on what it
      // accepts, e.g. 1e-320 (subnormal, ERANGE), and killed `pyoco check`.
      double d = 0;
      std::from_chars(text.data(), text.data() + text.size(), d);
      n = b.arena().make_double(d);
      break;
    }
    default:
      n = b.arena().make_string(text);
  }
  return b.wrap(n);
}

// YAML 1.2 core schema for plain scalars. An integer that a 64-bit one
// cannot hold is refused (`where`), not read as a float that then fails as
// "not an integer" far from the line, nor turned into text.
Value yaml_plain_scalar(ValueBuilder& b, const std::string& s, const SourceLocation& where) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return scalar_value(b, ValueKind::Null, s);
  }
  if (s == "true" || s == "True" || s == "TRUE") return scalar_value(b, ValueKind::Bool, "true");
  if (s == "false" || s == "False" || s == "FALSE") {
    return scalar_value(b, ValueKind::Bool, "false");
  }
  const std::string_view digits = std::string_view(s).substr(s[0] == '+' || s[0] == '-' ? 1 : 0);
  const bool integer =
      !digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos;
  std::int64_t i = 0;
  auto [p, ec] = std::from_chars(s.data() + (s[0] == '+' ? 1 : 0), s.data() + s.size(), i);
  if (integer && ec == std::errc() && p == s.data() + s.size()) {
    return b.wrap(b.arena().make_int(i));
  }
  // 0x1F and 0o17, as YAML 1.2 (and PyYAML) read them.
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    const int base = s[1] == 'x' ? 16 : 8;
    std::uint64_t u = 0;
    auto [pu, ecu] = std::from_chars(s.data() + 2, s.data() + s.size(), u, base);
    if (pu == s.data() + s.size()) {
      if (ecu != std::errc() || u > static_cast<std::uint64_t>(INT64_MAX)) {
        throw FlowError(where, s + ": too large for a 64-bit integer; quote it to keep it as text");
      }
      return b.wrap(b.arena().make_int(static_cast<std::int64_t>(u)));
    }
  }
  if (integer) {  // all digits, yet from_chars said no: out of range
    throw FlowError(where, s + ": too large for a 64-bit integer; quote it to keep it as text");
  }
  // Digits, a point and an exponent only: from_chars also takes "nan",
  // "inf" and "infinity" in any case, which YAML 1.2 reads as strings
  // (`who: Nan` is a name), and JSON could not hold as numbers.
  if (s.find_first_not_of("0123456789+-.eE") == std::string::npos &&
      s.find_first_of("0123456789") != std::string::npos) {
    // from_chars takes no '+', which YAML 1.2 allows before a float (+1.5).
    const std::string_view num =
        std::string_view(s).substr(s[0] == '+' && s.size() > 1 && s[1] != '-' && s[1] != '+');
    double d = 0;
    auto [p2, ec2] = std::from_chars(num.data(), num.data() + num.size(), d);
    if (ec2 == std::errc() && p2 == s.data() + s.size()) {
      return scalar_value(b, ValueKind::Double, num);
    }
    // A float by YAML 1.2's core schema that a double cannot hold: 1e400
    // is no string (it was read as "1e400"), nor a run's infinity (null in
    // JSON). 1e-400 underflows to 0, as in Python.
    if (ec2 == std::errc::result_out_of_range && p2 == s.data() + s.size()) {
      const double near = std::strtod(s.c_str(), nullptr);
      if (!std::isfinite(near) || std::abs(near) >= 1) {
        throw FlowError(where,
                        s + ": number out of range for a double; quote it to keep it as text");
      }
      return b.wrap(b.arena().make_double(near));
    }
  }
  return scalar_value(b, ValueKind::String, s);
}

// Counts one more value of the file at `where`, `depth` levels down.
void count_value(const SourceLocation& where, std::size_t depth, DocReading& r) {
  if (depth > kMaxDocDepth) {
    throw FlowError(where, "nested more than " + std::to_string(kMaxDocDepth) +
                               " levels deep; flatten the file");
  }
  if (++r.values > kMaxDocValues) {
    throw FlowError(where, "the file holds more than " + std::to_string(kMaxDocValues) +
                               " values; split it up");
  }
}

// ---- YAML -> Doc ----

// Builds the Doc from yaml-cpp's parse events rather than from a
// YAML::Node: an alias is met where it is written, so what it would repeat
// is measured (and refused, at its line) before it is copied, and the file
// is not held twice (a YAML::Node costs hundreds of bytes a value).
class YamlReader : public YAML::EventHandler {
 public:
  YamlReader(std::string file, std::string_view text)
      : file_(std::move(file)),
        text_(text),
        // yaml-cpp skips a byte-order mark without counting it in a mark's pos.
        bom_(text.starts_with("\xEF\xBB\xBF") ? 3 : 0) {
    std::istringstream in{std::string(text)};
    for (std::string line; std::getline(in, line);) lines_.push_back(line);
    root_.where = SourceLocation{file_};
  }

  // The file's one document; an empty file is a Null Doc.
  Doc read(std::string_view text) {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    parser.HandleNextDocument(*this);
    // A second document would be the next call's: OnDocumentStart refuses it.
    parser.HandleNextDocument(*this);
    return std::move(root_);
  }

  SourceLocation at(const YAML::Mark& m) const {
    if (m.is_null()) return SourceLocation{file_, 0, 0};
    return SourceLocation{file_, std::uint32_t(m.line + 1), std::uint32_t(m.column + 1)};
  }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_++ == 0) return;
    // YAML::Load read the first and dropped the rest: that flow never ran.
    throw FlowError(at(mark),
                    "a second YAML document (after ---): one flow per file; put the other flow "
                    "in a file of its own");
  }
  void OnDocumentEnd() override {}

  void OnAnchor(const YAML::Mark&, const std::string& name) override {
    anchor_names_.push_back(name);  // yaml-cpp numbers anchors 1, 2, ... in this order
  }

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (key_next()) return key("null", mark, anchor);
    Doc d;
    d.where = at(mark);
    count_value(d.where, stack_.size(), reading_);
    place(std::move(d), anchor, 0, "null");
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    reading_.bytes += value.size();
    if (tag == "!") refuse_unclosed_quote(mark);
    if (key_next()) return key(value, mark, anchor, tag == "!");
    Doc d;
    d.where = at(mark);
    count_value(d.where, stack_.size(), reading_);
    d.kind = Doc::Kind::Scalar;
    d.quoted = tag == "!";
    d.scalar = d.quoted ? scalar_value(reading_.scalars, ValueKind::String, value)
                        : yaml_plain_scalar(reading_.scalars, value, d.where);
    d.text_where = text_start(d.where);
    place(std::move(d), anchor, 0, value);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const SourceLocation where = at(mark);
    const Anchored* a = anchor < anchors_.size() ? anchors_[anchor].get() : nullptr;
    if (a == nullptr) {
      throw FlowError(where, "a YAML alias inside its own anchor" + anchor_name(anchor) +
                                 " would repeat it for ever; write the value out");
    }
    if (key_next()) {
      if (a->doc.kind == Doc::Kind::List || a->doc.kind == Doc::Kind::Map) {
        throw FlowError(where, "a key must be text, not " + std::string(kind_name(a->doc)));
      }
      return key(a->text, mark, 0);
    }
    // What the alias adds is known before it is copied: refused here, at
    // the alias, in time and memory that the file's size bounds.
    if (stack_.size() + a->height > kMaxDocDepth) {
      throw FlowError(where, "nested more than " + std::to_string(kMaxDocDepth) +
                                 " levels deep; flatten the file");
    }
    if (reading_.values + a->values > kMaxDocValues) {
      throw FlowError(where, "the file holds more than " + std::to_string(kMaxDocValues) +
                                 " values; split it up");
    }
    if ((reading_.aliased += a->values) > kMaxAliasedValues) {
      throw FlowError(where, "YAML aliases repeat more than " + std::to_string(kMaxAliasedValues) +
                                 " values (nested aliases multiply); write the values out or "
                                 "use fewer aliases");
    }
    if ((reading_.aliased_bytes += a->bytes) > kMaxAliasedBytes) {
      throw FlowError(where,
                      "YAML aliases repeat more than " + std::to_string(kMaxAliasedBytes >> 20) +
                          " MiB of text (each alias copies its anchor" + anchor_name(anchor) +
                          "); write the values out or use fewer "
                          "aliases");
    }
    reading_.values += a->values;
    reading_.bytes += a->bytes;
    place(Doc(a->doc), 0, a->height, a->text);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor, Doc::Kind::List);
  }
  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor, Doc::Kind::Map);
  }
  void OnMapEnd() override { close(); }

 private:
  // A node read once, for the aliases that repeat it.
  struct Anchored {
    Doc doc;
    std::string text;        // a scalar's text, for an alias used as a key
    std::size_t values = 0;  // what repeating it costs
    std::size_t bytes = 0;
    std::size_t height = 0;  // levels below it
  };

  // A list or mapping being read.
  struct Open {
    Doc doc;
    std::string path;  // names it in messages ("tasks.a"); empty for the root
    YAML::anchor_t anchor = 0;
    std::size_t values = 0, bytes = 0;  // reading_'s counts before it
    std::size_t height = 0;
    // a mapping's: the key whose value comes next, and the keys seen
    bool has_key = false;
    bool merging = false;     // the key is YAML 1.1's merge key, <<
    std::vector<Doc> merges;  // the mappings merged in, first one first
    std::string key;
    std::unordered_map<std::string, std::size_t> seen;
  };

  bool key_next() const {
    return !stack_.empty() && stack_.back().doc.kind == Doc::Kind::Map && !stack_.back().has_key;
  }

  void key(const std::string& text, const YAML::Mark& mark, YAML::anchor_t anchor,
           bool quoted = false) {
    Open& m = stack_.back();
    const SourceLocation where = at(mark);
    const std::string key_path = m.path.empty() ? text : m.path + "." + text;
    // `<<: *base` (YAML 1.1, which PyYAML reads and pyoco 0.7 flows use):
    // base's entries, merged in when the mapping ends.
    if (text == "<<" && !quoted && anchor == 0) {
      m.has_key = m.merging = true;
      m.key = key_path;
      return;
    }
    // yaml-cpp keeps both entries of a repeated key; TOML rejects it, and
    // so do we. A map, not a scan: `tasks:` may hold 100,000 keys.
    if (auto [first, fresh] = m.seen.try_emplace(text, m.doc.map.size()); !fresh) {
      throw FlowError(where, key_path + ": duplicate key (first at line " +
                                 std::to_string(m.doc.key_where[first->second].line) + ")");
    }
    m.doc.map.emplace_back(text, Doc());
    m.doc.key_where.push_back(where);
    m.has_key = true;
    m.key = key_path;
    if (anchor != 0) {
      Doc d;
      d.kind = Doc::Kind::Scalar;
      d.quoted = true;
      d.scalar = scalar_value(reading_.scalars, ValueKind::String, text);
      d.where = where;
      remember(anchor, d, text, 1, text.size(), 0);
    }
  }

  void open(const YAML::Mark& mark, YAML::anchor_t anchor, Doc::Kind kind) {
    const SourceLocation where = at(mark);
    if (key_next()) {
      throw FlowError(where, "a key must be text, not " +
                                 std::string(kind == Doc::Kind::List ? "a list" : "a mapping"));
    }
    count_value(where, stack_.size(), reading_);
    Open o;
    o.doc.kind = kind;
    o.doc.where = where;
    o.path = child_path();
    o.anchor = anchor;
    o.values = reading_.values - 1;
    o.bytes = reading_.bytes;
    stack_.push_back(std::move(o));
  }

  void close() {
    Open o = std::move(stack_.back());
    stack_.pop_back();
    if (!o.merges.empty()) merge(o);
    place(std::move(o.doc), o.anchor, o.height, {}, reading_.values - o.values,
          reading_.bytes - o.bytes);
  }

  // The path of the value read next: "tasks.a", "tasks.a.outputs[]".
  std::string child_path() const {
    if (stack_.empty()) return {};
    const Open& o = stack_.back();
    return o.doc.kind == Doc::Kind::List ? o.path + "[]" : o.key;
  }

  // Puts a value read whole (`height` levels below it) in its list or
  // mapping, or at the root.
  void place(Doc&& d, YAML::anchor_t anchor, std::size_t height, const std::string& text,
             std::size_t values = 1, std::size_t bytes = 0) {
    if (anchor != 0) remember(anchor, d, text, values, text.empty() ? bytes : text.size(), height);
    if (stack_.empty()) {
      root_ = std::move(d);
      return;
    }
    Open& o = stack_.back();
    o.height = std::max(o.height, height + 1);
    if (o.doc.kind == Doc::Kind::List) {
      o.doc.list.push_back(std::move(d));
    } else if (o.merging) {
      const char* what =
          "a merge key takes a mapping or a list of mappings (<<: *base, "
          "<<: [*a, *b])";
      if (d.kind == Doc::Kind::Map) {
        o.merges.push_back(std::move(d));
      } else if (d.kind == Doc::Kind::List) {
        for (Doc& item : d.list) {
          if (item.kind != Doc::Kind::Map) {
            throw FlowError(item.where, o.key + ": " + what + ", found " + kind_name(item));
          }
          o.merges.push_back(std::move(item));
        }
      } else {
        throw FlowError(d.where, o.key + ": " + what + ", found " + kind_name(d));
      }
      o.has_key = o.merging = false;
    } else {
      o.doc.map.back().second = std::move(d);
      o.has_key = false;
    }
  }

  // The merged mappings' entries go first, each key once: a key the mapping
  // gives itself wins, and among merged ones the first mapping's (as PyYAML).
  void merge(Open& o) {
    Doc merged;
    merged.kind = Doc::Kind::Map;
    merged.where = o.doc.where;
    std::unordered_set<std::string> taken;
    for (Doc& from : o.merges) {
      for (std::size_t i = 0; i < from.map.size(); ++i) {
        auto& [key, value] = from.map[i];
        if (o.seen.count(key) != 0 || !taken.insert(key).second) continue;
        merged.map.emplace_back(key, std::move(value));
        merged.key_where.push_back(from.key_where[i]);
      }
    }
    for (std::size_t i = 0; i < o.doc.map.size(); ++i) {
      merged.map.push_back(std::move(o.doc.map[i]));
      merged.key_where.push_back(o.doc.key_where[i]);
    }
    o.doc = std::move(merged);
  }

  void remember(YAML::anchor_t anchor, const Doc& d, const std::string& text, std::size_t values,
                std::size_t bytes, std::size_t height) {
    // Each anchor keeps a copy of what it names, so anchors nested 60 deep
    // around a large list copy it 60 times with no alias at all.
    if ((reading_.anchored += values) > kMaxDocValues) {
      throw FlowError(d.where, "YAML anchors keep more than " + std::to_string(kMaxDocValues) +
                                   " values (each anchor inside another copies it again); use "
                                   "fewer nested anchors");
    }
    if (anchors_.size() <= anchor) anchors_.resize(anchor + 1);
    anchors_[anchor] = std::make_unique<Anchored>(Anchored{d, text, values, bytes, height});
  }

  std::string anchor_name(YAML::anchor_t anchor) const {
    return anchor >= 1 && anchor <= anchor_names_.size() ? " &" + anchor_names_[anchor - 1] : "";
  }

  // Where the characters of a scalar's text begin: after the quote of a
  // quoted scalar; on the next line, past the indentation, for a block
  // scalar (| or >).
  SourceLocation text_start(SourceLocation w) const {
    if (w.line == 0 || w.line > lines_.size()) return w;
    const std::string& line = lines_[w.line - 1];
    const char first = w.column - 1 < line.size() ? line[w.column - 1] : '\0';
    if (first == '"' || first == '\'') {
      ++w.column;
    } else if (first == '|' || first == '>') {
      for (std::uint32_t l = w.line; l < lines_.size(); ++l) {
        const std::string& next = lines_[l];
        const auto indent = next.find_first_not_of(' ');
        if (indent == std::string::npos) continue;
        return SourceLocation{file_, l + 1, std::uint32_t(indent + 1)};
      }
    }
    return w;
  }

  std::string file_;
  std::vector<std::string> lines_;
  std::string_view text_;  // the file's, alive while it is read
  std::size_t bom_ = 0;    // bytes of a byte-order mark before what marks count

  // yaml-cpp takes a quoted string that is never closed to the end of the
  // file without a word: `name: "hello` swallowed the rest, and the error
  // named something else ("flow.graph: is missing"). Its closing quote is
  // looked for as YAML reads one: `\"` inside "...", `''` inside '...'.
  void refuse_unclosed_quote(const YAML::Mark& mark) const {
    if (mark.pos < 0 || static_cast<std::size_t>(mark.pos) + bom_ >= text_.size()) return;
    const std::size_t start = static_cast<std::size_t>(mark.pos) + bom_;
    const char quote = text_[start];
    if (quote != '"' && quote != '\'') return;  // a tag's "!", not a quote
    for (std::size_t i = start + 1; i < text_.size(); ++i) {
      if (quote == '"' && text_[i] == '\\') {
        ++i;
      } else if (text_[i] == quote) {
        if (quote == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {
          ++i;
        } else {
          return;
        }
      }
    }
    throw FlowError(at(mark), std::string("not valid YAML: the string that opens with ") + quote +
                                  " here is never closed, so it takes in the rest of the file: "
                                  "end it with " +
                                  quote);
  }
  DocReading reading_;
  Doc root_;
  std::vector<Open> stack_;
  std::vector<std::unique_ptr<Anchored>> anchors_;  // by yaml-cpp's anchor number
  std::vector<std::string> anchor_names_;
  std::size_t documents_ = 0;
};

// ---- TOML -> Doc ----

SourceLocation toml_at(const std::string& file, const toml::node& n) {
  return SourceLocation{file, n.source().begin.line, n.source().begin.column};
}

Doc read_toml(const std::string& file, const toml::node& n, DocReading& r, std::size_t depth = 0) {
  Doc d;
  d.where = toml_at(file, n);
  count_value(d.where, depth, r);
  if (const toml::table* t = n.as_table()) {
    d.kind = Doc::Kind::Map;
    // toml++ keeps a table's keys sorted; a flow keeps them in file order,
    // as YAML does (defaults, inputs and tasks come out as written).
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (auto&& [k, v] : *t) entries.emplace_back(&k, &v);
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const auto& pa = a.first->source().begin;
      const auto& pb = b.first->source().begin;
      return pa.line < pb.line || (pa.line == pb.line && pa.column < pb.column);
    });
    for (const auto& [k, v] : entries) {
      d.map.emplace_back(std::string(k->str()), read_toml(file, *v, r, depth + 1));
      d.key_where.push_back(SourceLocation{file, k->source().begin.line, k->source().begin.column});
    }
  } else if (const toml::array* a = n.as_array()) {
    d.kind = Doc::Kind::List;
    for (const toml::node& item : *a) d.list.push_back(read_toml(file, item, r, depth + 1));
  } else {
    d.kind = Doc::Kind::Scalar;
    if (const auto* s = n.as_string()) {
      d.quoted = true;
      d.scalar = scalar_value(r.scalars, ValueKind::String, s->get());
      d.text_where = d.where;
      // A multi-line string starts on the line after its opening quotes.
      if (s->get().find('\n') != std::string::npos) {
        d.text_where.line += 1;
        d.text_where.column = 1;
      } else {
        d.text_where.column += 1;
      }
    } else if (const auto* i = n.as_integer()) {
      d.scalar = scalar_value(r.scalars, ValueKind::Int, std::to_string(i->get()));
    } else if (const auto* f = n.as_floating_point()) {
      d.scalar = r.scalars.wrap(r.scalars.arena().make_double(f->get()));
    } else if (const auto* b = n.as_boolean()) {
      d.scalar = scalar_value(r.scalars, ValueKind::Bool, b->get() ? "true" : "false");
    } else {
      // dates and times: as their TOML text
      std::ostringstream os;
      if (const auto* dt = n.as_date_time()) os << *dt;
      if (const auto* date = n.as_date()) os << *date;
      if (const auto* time = n.as_time()) os << *time;
      d.scalar = scalar_value(r.scalars, ValueKind::String, os.str());
    }
  }
  return d;
}

// ---- the schema ----

const ValueNode* doc_node(const Doc& d, Arena& a) {
  switch (d.kind) {
    case Doc::Kind::Null:
      return a.make_null();
    case Doc::Kind::Scalar:
      // TOML's nan and inf: a policy names them as its own mistake; a
      // value (defaults, inputs) would be recorded as null.
      if (d.scalar.kind() == ValueKind::Double && !std::isfinite(d.scalar.as_double())) {
        throw FlowError(d.where,
                        "nan and inf are not numbers a run can record (JSON has "
                        "neither); write a string, or leave the value out");
      }
      return d.scalar.node();
    case Doc::Kind::List: {
      ValueNode* n = a.make_array(d.list.size());
      for (const Doc& item : d.list) Arena::push(n, doc_node(item, a));
      return n;
    }
    case Doc::Kind::Map: {
      ValueNode* n = a.make_object(d.map.size());
      for (const auto& [k, v] : d.map) Arena::set(n, k, doc_node(v, a));
      return n;
    }
  }
  return a.make_null();
}

Value to_value(const Doc& d) {
  ValueBuilder b;
  const ValueNode* n = doc_node(d, b.arena());
  b.arena().seal();
  return b.wrap(n);
}

class Schema {
 public:
  explicit Schema(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const SourceLocation& w, const std::string& problem) const {
    throw FlowError(w, problem);
  }

  void only_keys(const Doc& map, const std::string& where, const std::set<std::string>& known,
                 const std::map<std::string, std::string>& instead = {}) const {
    for (std::size_t i = 0; i < map.map.size(); ++i) {
      const std::string& key = map.map[i].first;
      if (known.count(key) != 0) continue;
      if (auto it = instead.find(key); it != instead.end()) {
        fail(map.key_where[i], where + key + ": " + it->second);
      }
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail(map.key_where[i], where + key + ": unknown key (known here: " + list + ")");
    }
  }

  const Doc& expect(const Doc& d, Doc::Kind kind, const std::string& key) const {
    if (d.kind != kind) {
      const char* want = kind == Doc::Kind::Map    ? "a mapping"
                         : kind == Doc::Kind::List ? "a list"
                                                   : "a value";
      fail(d.where, key + ": expected " + std::string(want) + ", found " + kind_name(d));
    }
    return d;
  }

  std::string string(const Doc& d, const std::string& key) const {
    if (d.kind != Doc::Kind::Scalar || !d.scalar.is_string()) {
      fail(d.where, key + ": expected a string, found " + kind_name(d));
    }
    return std::string(d.scalar.as_string());
  }

  // A number in [min, max] (min excluded when `min_exclusive`): NaN, inf
  // and values past `max` are errors, not overflows at run time.
  double number(const Doc& d, const std::string& key, double min, bool min_exclusive, double max,
                const char* max_hint) const {
    // YAML's float words are kept as text (no value in pyoco is NaN or
    // infinite), but here they mean the number: the checks below then say
    // what TOML's nan and inf get.
    const std::optional<double> word = yaml_float_word(d);
    if (!word && (d.kind != Doc::Kind::Scalar || !d.scalar.is_number())) {
      fail(d.where, key + ": expected a number, found " + kind_name(d));
    }
    const double v = word ? *word : d.scalar.as_double();
    if (std::isnan(v)) fail(d.where, key + ": expected a number, found NaN");
    if (v < min || (min_exclusive && v == min)) {
      fail(d.where, key + ": must be " + (min_exclusive ? "greater than " : "at least ") +
                        std::to_string(static_cast<long long>(min)));
    }
    if (v > max) {
      fail(d.where, key + ": must be at most " + std::to_string(static_cast<long long>(max)) +
                        " (" + max_hint + ")");
    }
    return v;
  }

  std::int64_t integer(const Doc& d, const std::string& key, std::int64_t min, std::int64_t max,
                       const char* max_hint) const {
    // YAML's .inf and .nan, as number() reads them: said as what they are,
    // not as the text YAML keeps them in.
    if (const std::optional<double> word = yaml_float_word(d)) {
      if (std::isnan(*word)) fail(d.where, key + ": expected an integer, found NaN");
      if (*word < 0) fail(d.where, key + ": must be at least " + std::to_string(min));
      fail(d.where, key + ": must be at most " + std::to_string(max) + " (" + max_hint + ")");
    }
    if (d.kind != Doc::Kind::Scalar || !d.scalar.is_int()) {
      fail(d.where, key + ": expected an integer, found " + kind_name(d));
    }
    if (d.scalar.as_int() < min) fail(d.where, key + ": must be at least " + std::to_string(min));
    if (d.scalar.as_int() > max) {
      fail(d.where, key + ": must be at most " + std::to_string(max) + " (" + max_hint + ")");
    }
    return d.scalar.as_int();
  }

  bool boolean(const Doc& d, const std::string& key) const {
    if (d.kind != Doc::Kind::Scalar || !d.scalar.is_bool()) {
      fail(d.where, key + ": expected true or false, found " + kind_name(d));
    }
    return d.scalar.as_bool();
  }

  FlowSpec read(const Doc& root) const {
    FlowSpec spec;
    spec.file = file_;
    if (root.kind == Doc::Kind::Null)
      fail(root.where, "the file is empty: it needs flow: and tasks:");
    expect(root, Doc::Kind::Map, "the file");
    only_keys(root, "", {"version", "flow", "pipes", "tasks", "plugins"},
              {{"flows", "one flow per file: write `flow:` with name and graph"},
               {"discovery",
                "tasks come from plugins: give each task `use: \"<plugin>/<task>\"` and drop "
                "discovery"}});
    const Doc* flow = nullptr;
    for (std::size_t i = 0; i < root.map.size(); ++i) {
      const auto& [key, value] = root.map[i];
      if (key == "version") {
        if (integer(value, "version", 1, INT64_MAX, "") != 1) {
          fail(value.where, "version: this pyoco reads version 1 flow files");
        }
      } else if (key == "flow") {
        flow = &expect(value, Doc::Kind::Map, "flow");
      } else if (key == "pipes") {
        read_pipes(expect(value, Doc::Kind::Map, "pipes"), spec);
      } else if (key == "tasks") {
        read_tasks(expect(value, Doc::Kind::Map, "tasks"), spec);
      } else if (key == "plugins") {
        read_plugins(expect(value, Doc::Kind::Map, "plugins"), spec);
      }
    }
    if (flow == nullptr) fail(root.where, "flow: is missing (it holds the graph)");
    read_flow(*flow, spec);
    return spec;
  }

 private:
  void read_flow(const Doc& flow, FlowSpec& spec) const {
    only_keys(flow, "flow.", {"name", "defaults", "graph"});
    bool has_graph = false;
    for (const auto& [key, value] : flow.map) {
      if (key == "name") {
        spec.name = string(value, "flow.name");
        // What a terminal would act on (a newline forges trace lines, a
        // right-to-left override shows the name as another) is refused.
        if (printable(spec.name) != spec.name || spec.name.find('\t') != std::string::npos) {
          fail(value.where,
               "flow.name: must be one line of printable text (a newline in it would forge "
               "trace lines, a bidi control would reorder them)");
        }
        if (spec.name.size() > 200) fail(value.where, "flow.name: must be at most 200 bytes");
      } else if (key == "defaults") {
        spec.defaults = to_value(expect(value, Doc::Kind::Map, "flow.defaults"));
      } else if (key == "graph") {
        spec.graph = string(value, "flow.graph");
        spec.graph_where = value.text_where;
        has_graph = true;
      }
    }
    if (!has_graph) fail(flow.where, "flow.graph: is missing (e.g. graph: \"a >> b\")");
    if (spec.defaults.is_null()) {
      Doc empty;
      empty.kind = Doc::Kind::Map;
      spec.defaults = to_value(empty);
    }
    if (spec.name.empty()) {
      const auto slash = file_.find_last_of('/');
      std::string stem = file_.substr(slash == std::string::npos ? 0 : slash + 1);
      stem = stem.substr(0, stem.find('.'));
      spec.name = stem;
    }
  }

  // Task and pipe names are names in the graph: letters, digits and _.
  void check_name(const std::string& name, const SourceLocation& where, const char* what) const {
    const bool ok =
        !name.empty() && (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
        std::all_of(name.begin(), name.end(),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
    if (!ok) {
      fail(where, std::string(what) + "." + printable(name) + ": a " +
                      (what[0] == 't' ? "task" : "pipe") +
                      " name is ASCII letters, digits and _, not starting with a digit (it "
                      "names a step in graph)");
    }
  }

  void read_pipes(const Doc& pipes, FlowSpec& spec) const {
    for (std::size_t i = 0; i < pipes.map.size(); ++i)
      check_name(pipes.map[i].first, pipes.key_where[i], "pipes");
    for (const auto& [name, value] : pipes.map) {
      spec.pipes.push_back(PipeSpec{name, string(value, "pipes." + name), value.text_where});
    }
  }

  // `plugins: {acme: "1.2.0"}`: acme 1.2.0 or newer, else the run fails
  // before any task starts.
  void read_plugins(const Doc& plugins, FlowSpec& spec) const {
    for (std::size_t i = 0; i < plugins.map.size(); ++i) {
      const auto& [name, value] = plugins.map[i];
      const std::string at = "plugins." + printable(name);
      const std::string version = string(value, at);
      if (!is_semver(version)) {
        fail(value.where, at + ": \"" + printable(version) +
                              "\" is not a version: write the least version the flow needs, as "
                              "MAJOR.MINOR.PATCH (e.g. \"1.2.0\")");
      }
      spec.plugins.push_back(PluginRequirement{name, version, plugins.key_where[i]});
    }
  }

  void read_tasks(const Doc& tasks, FlowSpec& spec) const {
    std::vector<Alias> aliases;
    for (std::size_t i = 0; i < tasks.map.size(); ++i) {
      const auto& [name, value] = tasks.map[i];
      check_name(name, tasks.key_where[i], "tasks");
      const std::string at = "tasks." + name + ".";
      expect(value, Doc::Kind::Map, "tasks." + name);
      only_keys(value, at,
                {"use", "callable", "inputs", "outputs", "retries", "retry_backoff", "timeout_sec",
                 "fail_policy"});
      TaskSpec t;
      t.name = name;
      t.where = tasks.key_where[i];
      const Doc* callable = nullptr;
      const Doc* use = nullptr;
      for (const auto& [key, v] : value.map) {
        if (key == "use") {
          use = &v;
          t.use = string(v, at + "use");
        } else if (key == "callable") {
          callable = &v;
          // pyoco files say "<plugin>:<task>"
          std::string c = string(v, at + "callable");
          const auto colon = c.find(':');
          if (colon == std::string::npos) {
            fail(v.where, at + "callable: expected \"<plugin>:<task>\", found \"" + c + "\"");
          }
          t.use = c.substr(0, colon) + "/" + c.substr(colon + 1);
        } else if (key == "inputs") {
          for (std::size_t j = 0; j < expect(v, Doc::Kind::Map, at + "inputs").map.size(); ++j) {
            const auto& [input, iv] = v.map[j];
            t.inputs.push_back(InputBinding{input, to_value(iv), v.key_where[j]});
          }
        } else if (key == "outputs") {
          for (const Doc& o : expect(v, Doc::Kind::List, at + "outputs").list) {
            t.outputs.push_back(output_path(o, at + "outputs[]"));
          }
        } else if (key == "retries") {
          t.retries = static_cast<std::uint32_t>(
              integer(v, at + "retries", 0, kMaxRetries, "for more, write a loop"));
        } else if (key == "retry_backoff") {
          read_backoff(expect(v, Doc::Kind::Map, at + "retry_backoff"), at + "retry_backoff.",
                       t.backoff);
        } else if (key == "timeout_sec") {
          t.timeout_sec = number(v, at + "timeout_sec", 0, true, kMaxTimeoutSec,
                                 "30 days; leave it out for no timeout");
        } else if (key == "fail_policy") {
          const std::string p = string(v, at + "fail_policy");
          if (p == "stop") {
            t.fail_policy = FailPolicy::Stop;
          } else if (p == "isolate") {
            t.fail_policy = FailPolicy::Isolate;
          } else {
            fail(v.where, at + "fail_policy: expected stop or isolate, found \"" + p + "\"");
          }
        }
      }
      if (use != nullptr && callable != nullptr) {
        fail(callable->where, at + "callable: give use or callable, not both");
      }
      if (use == nullptr && callable == nullptr) {
        fail(t.where, at + "use: is missing (e.g. use: \"std/echo\")");
      }
      if (use != nullptr && t.use.find('/') == std::string::npos && !t.use.empty()) {
        // pyoco's alias: `use: base` names another entry of tasks:, resolved below.
        Alias a{spec.tasks.size(), use->where, {}};
        for (const auto& [key, v] : value.map) a.keys.insert(key);
        aliases.push_back(std::move(a));
      } else if (t.use.find('/') == std::string::npos || t.use.front() == '/' ||
                 t.use.back() == '/') {
        fail((use != nullptr ? use : callable)->where,
             at + "use: expected \"<plugin>/<task>\", found \"" + t.use + "\"");
      }
      spec.tasks.push_back(std::move(t));
    }
    resolve_aliases(aliases, spec);
  }

  // A task whose `use:` names another entry of tasks: (pyoco's local alias).
  struct Alias {
    std::size_t task;  // its index in spec.tasks
    SourceLocation where;
    std::set<std::string> keys;  // the keys it gives itself
  };

  // An alias runs its target's task with the target's inputs, its own on top
  // (by name), the target's outputs and then its own, and the target's
  // retries, timeout and fail_policy unless it gives its own. Aliases of
  // aliases resolve in turn; a loop of them is an error.
  void resolve_aliases(const std::vector<Alias>& aliases, FlowSpec& spec) const {
    std::unordered_map<std::string, std::size_t> index;  // task name -> spec.tasks index
    for (std::size_t i = 0; i < spec.tasks.size(); ++i) index.emplace(spec.tasks[i].name, i);
    std::unordered_map<std::size_t, const Alias*> pending;  // unresolved aliases by task
    for (const Alias& a : aliases) pending.emplace(a.task, &a);
    for (const Alias& first : aliases) {
      // Follow the chain to a task that is not a pending alias (iteratively:
      // a file may chain thousands), then resolve it from its far end back.
      std::vector<const Alias*> chain;
      std::set<std::size_t> seen;
      for (auto it = pending.find(first.task); it != pending.end();) {
        const Alias& a = *it->second;
        const TaskSpec& t = spec.tasks[a.task];
        if (!seen.insert(a.task).second) {
          std::string loop;
          for (const Alias* c : chain) loop += spec.tasks[c->task].name + " -> ";
          fail(first.where,
               "tasks." + spec.tasks[first.task].name + ".use: aliases go round: " + loop + t.name);
        }
        const auto target = index.find(t.use);
        if (target == index.end()) {
          fail(a.where, "tasks." + t.name + ".use: \"" + t.use +
                            "\" is not \"<plugin>/<task>\" and no entry of tasks: is named so");
        }
        chain.push_back(&a);
        it = pending.find(target->second);
      }
      for (auto c = chain.rbegin(); c != chain.rend(); ++c) {
        inherit(spec.tasks[(*c)->task], spec.tasks[index.at(spec.tasks[(*c)->task].use)],
                (*c)->keys);
        pending.erase((*c)->task);
      }
    }
  }

  static void inherit(TaskSpec& t, const TaskSpec& base, const std::set<std::string>& keys) {
    t.alias_of = base.name;
    t.use = base.use;
    std::vector<InputBinding> inputs = base.inputs;
    for (const InputBinding& own : t.inputs) {
      auto same = std::find_if(inputs.begin(), inputs.end(),
                               [&](const InputBinding& b) { return b.name == own.name; });
      if (same != inputs.end()) {
        *same = own;
      } else {
        inputs.push_back(own);
      }
    }
    t.inputs = std::move(inputs);
    std::vector<std::string> outputs = base.outputs;
    outputs.insert(outputs.end(), t.outputs.begin(), t.outputs.end());
    t.outputs = std::move(outputs);
    if (keys.count("retries") == 0) t.retries = base.retries;
    if (keys.count("retry_backoff") == 0) t.backoff = base.backoff;
    if (keys.count("timeout_sec") == 0) t.timeout_sec = base.timeout_sec;
    if (keys.count("fail_policy") == 0) t.fail_policy = base.fail_policy;
  }

  std::string output_path(const Doc& o, const std::string& at) const {
    const std::string path = string(o, at);
    if (const std::string problem = output_path_problem(path); !problem.empty()) {
      fail(o.where, at + ": " + problem);
    }
    return path;
  }

  void read_backoff(const Doc& d, const std::string& at, RetryBackoff& b) const {
    only_keys(d, at, {"initial_ms", "factor", "max_ms", "jitter"});
    for (const auto& [key, v] : d.map) {
      if (key == "initial_ms") b.initial_ms = number(v, at + key, 0, false, kMaxDelayMs, "a day");
      if (key == "factor")
        b.factor = number(v, at + key, 1, false, 1000, "max_ms caps the wait anyway");
      if (key == "max_ms") b.max_ms = number(v, at + key, 0, false, kMaxDelayMs, "a day");
      if (key == "jitter") b.jitter = boolean(v, at + key);
    }
  }

  std::string file_;
};

bool is_toml(const std::string& file) {
  return file.size() >= 5 && file.compare(file.size() - 5, 5, ".toml") == 0;
}

}  // namespace

namespace {

SourceLocation location_of(const std::string& file, std::string_view text, std::size_t offset) {
  const std::string_view before = text.substr(0, offset);
  const auto line = 1 + std::count(before.begin(), before.end(), '\n');
  const std::size_t start = before.rfind('\n');
  const std::size_t column = offset - (start == std::string_view::npos ? 0 : start + 1) + 1;
  return SourceLocation{file, static_cast<std::uint32_t>(line), static_cast<std::uint32_t>(column)};
}

// YAML and TOML are UTF-8 text; a parser that meets a NUL or a stray byte
// may change it silently (yaml-cpp turns "a\0b" into "a\b").
void check_text(std::string_view text, const std::string& file) {
  // UTF-16 (what some Windows editors save) is ASCII with a NUL every other
  // byte, with or without a byte-order mark: named as such.
  const bool utf16_bom = text.starts_with("\xff\xfe") || text.starts_with("\xfe\xff");
  const bool utf16_nuls = text.size() >= 2 && (text[0] == '\0') != (text[1] == '\0');
  if (utf16_bom || utf16_nuls) {
    throw FlowError(SourceLocation{file}, "the file is UTF-16 text; save it as UTF-8");
  }
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
    throw FlowError(location_of(file, text, nul),
                    "the file holds a NUL byte; it must be UTF-8 text");
  }
  if (const std::size_t bad = invalid_utf8_at(text); bad != std::string_view::npos) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(text[bad]));
    throw FlowError(location_of(file, text, bad),
                    std::string("the file is not UTF-8 here (byte ") + hex + "); save it as UTF-8");
  }
}

// yaml-cpp names a tab in an indentation only as "illegal map value" or
// the like: the first line indented with one, said plainly.
std::string tab_indent_hint(std::string_view text) {
  std::size_t line = 1;
  for (std::size_t at = 0; at < text.size(); ++line) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view l = text.substr(at, end - at);
    const std::size_t body = l.find_first_not_of(" \t");
    if (body != std::string_view::npos && l.substr(0, body).find('\t') != std::string_view::npos) {
      return " (line " + std::to_string(line) +
             " is indented with a tab, which YAML does not allow: indent with spaces)";
    }
    at = end + 1;
  }
  return {};
}

// yaml-cpp says a \u escape that is no character as "invalid unicode:
// 55296": the code point in decimal. Said as U+XXXX, with why.
std::string yaml_message(const std::string& msg) {
  constexpr std::string_view kInvalid = "invalid unicode: ";
  if (!msg.starts_with(kInvalid)) return msg;
  unsigned long code = 0;
  const char* from = msg.data() + kInvalid.size();
  const auto [end, ec] = std::from_chars(from, msg.data() + msg.size(), code);
  if (ec != std::errc() || end != msg.data() + msg.size()) return msg;
  char hex[16];
  std::snprintf(hex, sizeof hex, "U+%04lX", code);
  const bool surrogate = code >= 0xD800 && code <= 0xDFFF;
  return std::string("an escape of ") + hex + ", which is no character" +
         (surrogate ? " (half of a UTF-16 surrogate pair: write the character itself, or "
                      "\\UXXXXXXXX with its code point)"
                    : "");
}

// yaml-cpp refuses a key of more than 1024 characters (YAML's limit for a
// key written without `? `) as an "illegal map value" at the ':' after it:
// said as the name's length, which is what to change.
std::string long_key_hint(const std::string& msg, std::string_view text, std::size_t at) {
  constexpr std::size_t kMaxKey = 1024;
  if (msg != "illegal map value" || at > text.size()) return "";
  const std::size_t line = text.rfind('\n', at == 0 ? 0 : at - 1);
  std::size_t key = line == std::string_view::npos ? 0 : line + 1;
  while (key < at && (text[key] == ' ' || text[key] == '-')) ++key;
  if (at - key <= kMaxKey) return "";
  return " (the key before it is " + std::to_string(at - key) +
         " characters long, past the 1024 YAML allows a key: shorten the name)";
}

// yaml-cpp says an unclosed '{' or '[' as "end of map flow not found"
// where it gave up, often the next line: the bracket it means, found by
// pairing brackets outside quotes and comments up to there.
std::string unclosed_hint(const std::string& msg, std::string_view text, std::size_t upto) {
  char open = 0, close = 0;
  if (msg.starts_with("end of map flow not found")) {
    open = '{';
    close = '}';
  } else if (msg.starts_with("end of sequence flow not found")) {
    open = '[';
    close = ']';
  } else {
    return {};
  }
  std::vector<std::size_t> opened;  // offsets of brackets not closed yet
  char quote = 0;
  for (std::size_t i = 0; i < std::min(upto, text.size()); ++i) {
    const char c = text[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote || c == '\n') {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\n')) {
      i = std::min(text.find('\n', i), text.size()) - 1;
    } else if (c == '{' || c == '[') {
      opened.push_back(i);
    } else if ((c == '}' || c == ']') && !opened.empty()) {
      opened.pop_back();
    }
  }
  for (auto it = opened.rbegin(); it != opened.rend(); ++it) {
    if (text[*it] != open) continue;
    const auto line =
        std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(*it), '\n') + 1;
    const std::size_t line_start =
        text.rfind('\n', *it) == std::string_view::npos ? 0 : text.rfind('\n', *it) + 1;
    return std::string(" (the '") + open + "' at line " + std::to_string(line) + ", column " +
           std::to_string(*it - line_start + 1) + " is not closed: end it with '" + close + "')";
  }
  return std::string(" (a '") + open + "' before here is not closed: end it with '" + close + "')";
}

}  // namespace

FlowSpec parse_flow_text(std::string_view text, const std::string& file) {
  check_text(text, file);
  // A parser's own tree costs hundreds of bytes a value: a file of tiny
  // values ("[1,1,1,...]") is turned away before it is parsed. Nearly every
  // value is set off by one of these characters.
  const auto marks = std::count_if(text.begin(), text.end(),
                                   [](char c) { return c == ',' || c == ':' || c == '\n'; });
  if (static_cast<std::size_t>(marks) > kMaxDocValues + 1) {
    throw FlowError(
        SourceLocation{file},
        "the file holds more than " + std::to_string(kMaxDocValues) + " values; split it up");
  }
  Doc root;
  if (is_toml(file)) {
    if (const TextPosition at = find_overlong_toml_key(text); at.line != 0) {
      throw FlowError(SourceLocation{file, static_cast<std::uint32_t>(at.line),
                                     static_cast<std::uint32_t>(at.column)},
                      "a dotted key of more than " + std::to_string(kMaxTomlKeyParts) +
                          " parts: nested too deep");
    }
    try {
      DocReading reading;
      root = read_toml(file, toml::parse(text, file), reading);
    } catch (const toml::parse_error& e) {
      throw FlowError(SourceLocation{file, e.source().begin.line, e.source().begin.column},
                      "not valid TOML: " + toml_error_text(e.description()));
    }
  } else {
    YamlReader reader(file, text);
    try {
      root = reader.read(text);
    } catch (const YAML::DeepRecursion& e) {
      // yaml-cpp's own guard, deeper than ours, says only "bad file".
      throw FlowError(reader.at(e.mark), "nested more than " + std::to_string(kMaxDocDepth) +
                                             " levels deep; flatten the file");
    } catch (const YAML::Exception& e) {
      throw FlowError(
          reader.at(e.mark),
          "not valid YAML: " + yaml_message(e.msg) +
              unclosed_hint(e.msg, text,
                            e.mark.pos < 0 ? text.size() : static_cast<std::size_t>(e.mark.pos)) +
              long_key_hint(e.msg, text,
                            e.mark.pos < 0 ? text.size() : static_cast<std::size_t>(e.mark.pos)) +
              tab_indent_hint(text));
    }
  }
  return Schema(file).read(root);
}

FlowSpec load_flow_file(const std::filesystem::path& file) {
  std::string text;
  try {
    text = read_regular_file(file, kMaxFlowFileBytes);
  } catch (const FileReadError& e) {
    const std::string why = e.what();
    if (why.starts_with("is a directory")) {
      throw FlowError(SourceLocation{file.string()},
                      "is a directory, not a flow file (give a flow.yaml or flow.toml)");
    }
    throw FlowError(SourceLocation{file.string()}, why);
  }
  return parse_flow_text(text, file.string());
}

}  // namespace pyoco::core
