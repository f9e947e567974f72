#include <pyoco/core/json_text.hpp>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse_options.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <unordered_set>
#include <vector>

namespace pyoco::core {

namespace {

namespace json = boost::json;

// A basic_parser handler that builds nothing: it keeps the keys of each
// open object and the digits of each number, and notes the first problem.
class Check {
 public:
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  explicit Check(std::string_view root) : root_(root) {}
  JsonTextProblem problem;

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_array_begin(boost::system::error_code&) { return begin(false); }
  bool on_array_end(std::size_t, boost::system::error_code&) { return end(); }
  bool on_object_begin(boost::system::error_code&) { return begin(true); }
  bool on_object_end(std::size_t, boost::system::error_code&) { return end(); }
  bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return done(); }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    part_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code&) {
    part_.append(s.data(), s.size());
    Frame& f = frames_.back();
    f.key = std::move(part_);
    part_.clear();
    if (!f.keys.insert(f.key).second) found(JsonTextProblem::Kind::DuplicateKey, {});
    return true;
  }
  bool on_number_part(json::string_view s, boost::system::error_code&) {
    part_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t, json::string_view, boost::system::error_code&) {
    part_.clear();
    return done();
  }
  bool on_uint64(std::uint64_t u, json::string_view s, boost::system::error_code&) {
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) oversized(s);
    part_.clear();
    return done();
  }
  bool on_double(double, json::string_view s, boost::system::error_code&) {
    part_.append(s.data(), s.size());
    if (part_.find_first_of(".eE") == std::string::npos) oversized({});  // an integer as written
    part_.clear();
    return done();
  }
  bool on_bool(bool, boost::system::error_code&) { return done(); }
  bool on_null(boost::system::error_code&) { return done(); }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

 private:
  struct Frame {
    bool object = false;
    std::size_t index = 0;  // of an array: the element being read
    std::string key;        // of an object: the member being read
    std::unordered_set<std::string> keys;
  };
  std::string_view root_;
  std::vector<Frame> frames_;
  std::string part_;  // a key's or a number's text so far

  bool begin(bool object) {
    frames_.push_back(Frame{object, 0, {}, {}});
    return true;
  }
  bool end() {
    frames_.pop_back();
    return done();
  }
  bool done() {  // a value read: the next element of its array
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
    return true;
  }
  void found(JsonTextProblem::Kind kind, std::string integer) {
    if (problem) return;
    problem.kind = kind;
    problem.path = path();
    problem.integer = std::move(integer);
  }
  void oversized(json::string_view rest) {
    part_.append(rest.data(), rest.size());
    found(JsonTextProblem::Kind::OversizedInteger, part_);
  }
  std::string path() const {
    std::string out(root_);
    for (const Frame& f : frames_) {
      if (!out.empty()) out += '.';
      out += f.object ? f.key : std::to_string(f.index);
    }
    return out;
  }
};

json::parse_options options_for(std::size_t max_depth) {
  json::parse_options options;
  options.max_depth = max_depth;
  return options;
}

}  // namespace

JsonTextProblem json_text_problem(std::string_view text, std::size_t max_depth,
                                  std::string_view root) {
  json::basic_parser<Check> parser(options_for(max_depth), root);
  boost::system::error_code ec;
  parser.write_some(false, text.data(), text.size(), ec);
  return std::move(parser.handler().problem);
}

std::string json_error_position(std::string_view text, std::size_t max_depth) {
  json::basic_parser<Check> parser(options_for(max_depth), std::string_view{});
  boost::system::error_code ec;
  return line_column(text, parser.write_some(false, text.data(), text.size(), ec));
}

std::string line_column(std::string_view text, std::size_t offset) {
  const std::string_view before = text.substr(0, std::min(offset, text.size()));
  const auto line = 1 + std::count(before.begin(), before.end(), '\n');
  const auto column = before.size() - (before.rfind('\n') + 1) + 1;  // npos + 1 is 0
  return std::to_string(line) + ":" + std::to_string(column);
}

std::string problem_text(const JsonTextProblem& problem) {
  if (problem.kind == JsonTextProblem::Kind::DuplicateKey) return std::string(kDuplicateKeyText);
  return problem.integer + ": too large for a 64-bit integer; quote it to keep it as text";
}

}  // namespace pyoco::core
