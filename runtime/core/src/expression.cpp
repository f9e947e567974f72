#include <pyoco/core/expression.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>
#include <variant>

namespace pyoco::core {

struct ExprNode {
  enum class Op {
    Literal,
    Path,
    List,
    Not,
    Neg,
    Pos,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow
  } op;
  Value literal;
  PathRoot root = PathRoot::Params;
  std::vector<std::string> path;
  std::string source;  // Path: as written, for messages
  std::vector<std::shared_ptr<const ExprNode>> args;
  std::uint32_t column = 0;  // within the expression text, 1-based
  std::uint32_t depth = 1;   // levels below and including this node
};

namespace {

using NodePtr = std::shared_ptr<const ExprNode>;

// How deep an expression's tree may be. Parsing, evaluating and freeing it
// recurse once per level: without a bound, 100,000 `not`s or `1+1+...`
// overflow the stack. Python itself stops nesting parentheses at 200.
constexpr std::uint32_t kMaxExpressionDepth = 200;

// At most this much of an expression is quoted in a message.
// An error quotes its expression, cut: a generated one may be kilobytes.
constexpr std::size_t kQuotedExpression = 60;
std::string in_expression(std::string_view text) {
  return "in expression '" +
         (text.size() <= kQuotedExpression
              ? std::string(text)
              : std::string(text.substr(0, kQuotedExpression)) + "...") +
         "': ";
}

struct Token {
  enum class Kind { Name, Number, String, Op, End } kind;
  std::string text;
  std::uint32_t column;
};

Value make_string(std::string_view s) {
  ValueBuilder b;
  const ValueNode* n = b.arena().make_string(s);
  b.arena().seal();
  return b.wrap(n);
}

class Parser {
 public:
  Parser(std::string_view text, const SourceLocation& origin) : text_(text), origin_(origin) {
    lex();
  }

  NodePtr parse() {
    NodePtr e = parse_or();
    if (peek().kind != Token::Kind::End) fail(peek(), "unexpected '" + peek().text + "'");
    return e;
  }

 private:
  [[noreturn]] void fail(const Token& at, const std::string& problem) const {
    SourceLocation w = origin_;
    if (w.column > 0) w.column += at.column - 1;
    throw FlowError(w, in_expression(text_) + problem);
  }

  // One level of recursion in the parser, for as long as it lives.
  class Nest {
   public:
    explicit Nest(Parser& p) : p_(p) {
      // A level of parentheses is eight calls down the grammar.
      if (++p_.depth_ > 8 * kMaxExpressionDepth) p_.too_deep(p_.peek());
    }
    ~Nest() { --p_.depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser& p_;
  };
  [[noreturn]] void too_deep(const Token& at) const {
    fail(at, "nested more than " + std::to_string(kMaxExpressionDepth) +
                 " levels deep (parentheses, lists, operators); split it up");
  }

  void lex() {
    std::size_t i = 0;
    auto col = [&](std::size_t at) { return static_cast<std::uint32_t>(at + 1); };
    while (i < text_.size()) {
      const char c = text_[i];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++i;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == '$') {
        const std::size_t start = i++;
        while (i < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[i])) ||
                                    text_[i] == '_' || text_[i] == '.')) {
          ++i;
        }
        tokens_.push_back(
            {Token::Kind::Name, std::string(text_.substr(start, i - start)), col(start)});
      } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                 (c == '.' && i + 1 < text_.size() &&
                  std::isdigit(static_cast<unsigned char>(text_[i + 1])))) {
        // Python's forms: 1_000, 0x1f, 0o17, 0b101, .5, 1e-3; read whole here
        // and judged in parse_number.
        const std::size_t start = i;
        const bool prefixed =
            c == '0' && i + 1 < text_.size() &&
            std::string_view("xXoObB").find(text_[i + 1]) != std::string_view::npos;
        while (i < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[i])) ||
                                    text_[i] == '.' || text_[i] == '_')) {
          const char e = text_[i++];
          if (!prefixed && (e == 'e' || e == 'E') && i < text_.size() &&
              (text_[i] == '+' || text_[i] == '-')) {
            ++i;
          }
        }
        tokens_.push_back(
            {Token::Kind::Number, std::string(text_.substr(start, i - start)), col(start)});
      } else if (c == '"' || c == '\'') {
        const std::size_t start = i++;
        std::string s;
        while (i < text_.size() && text_[i] != c) {
          if (text_[i] == '\\') {
            i = escape(i, s);
          } else {
            s += text_[i++];
          }
        }
        if (i >= text_.size()) fail({Token::Kind::String, "", col(start)}, "unterminated string");
        ++i;
        tokens_.push_back({Token::Kind::String, s, col(start)});
      } else {
        static const char* two[] = {"==", "!=", "<=", ">=", "**", "//"};
        std::string op(1, c);
        for (const char* t : two) {
          if (text_.substr(i, 2) == t) op = t;
        }
        if (op == "=") fail({Token::Kind::Op, op, col(i)}, "'=' is not a comparison: use '=='");
        if (op == "//") {
          fail({Token::Kind::Op, op, col(i)},
               "'//' is not supported (nor is it in pyoco): divide with '/', or take the "
               "remainder with '%'");
        }
        if (std::string("!<>+-*/%()[],").find(c) == std::string::npos && op.size() == 1) {
          fail({Token::Kind::Op, op, col(i)}, "unexpected character '" + op + "'");
        }
        if (op == "!") fail({Token::Kind::Op, op, col(i)}, "use 'not', not '!'");
        tokens_.push_back({Token::Kind::Op, op, col(i)});
        i += op.size();
      }
    }
    tokens_.push_back({Token::Kind::End, "end of expression", col(text_.size())});
  }

  // The escape sequence whose backslash is at text_[at], as Python reads it
  // in a str literal, appended to `out` (code points as UTF-8); returns the
  // index after it. A backslash before any other character stays, as in
  // Python ('\q' is two characters); one at the very end is left for the
  // caller to report as an unterminated string.
  std::size_t escape(std::size_t at, std::string& out) const {
    auto col = [](std::size_t i) { return static_cast<std::uint32_t>(i + 1); };
    std::size_t i = at + 1;
    if (i >= text_.size()) {
      out += '\\';
      return i;
    }
    const char e = text_[i++];
    auto hex = [&](std::size_t digits, char letter) {
      std::uint32_t cp = 0;
      for (std::size_t k = 0; k < digits; ++k, ++i) {
        const char h = i < text_.size() ? text_[i] : '\0';
        if (!std::isxdigit(static_cast<unsigned char>(h))) {
          fail({Token::Kind::String, "", col(at)},
               std::string("'\\") + letter + "' needs exactly " + std::to_string(digits) +
                   " hex digits (as in '\\" + letter + std::string(digits, 'X') + "')");
        }
        cp = cp * 16 + static_cast<std::uint32_t>(
                           std::isdigit(static_cast<unsigned char>(h))
                               ? h - '0'
                               : std::tolower(static_cast<unsigned char>(h)) - 'a' + 10);
      }
      return cp;
    };
    std::uint32_t cp = 0;
    switch (e) {
      case '\n':  // a backslash at the end of a line joins it to the next
        return i;
      case '\\':
      case '\'':
      case '"':
        out += e;
        return i;
      case 'a':
        out += '\a';
        return i;
      case 'b':
        out += '\b';
        return i;
      case 'f':
        out += '\f';
        return i;
      case 'n':
        out += '\n';
        return i;
      case 'r':
        out += '\r';
        return i;
      case 't':
        out += '\t';
        return i;
      case 'v':
        out += '\v';
        return i;
      case 'x':
        cp = hex(2, 'x');
        break;
      case 'u':
        cp = hex(4, 'u');
        break;
      case 'U':
        cp = hex(8, 'U');
        break;
      case 'N':
        fail({Token::Kind::String, "", col(at)},
             "'\\N{...}' (a character by name) is not supported: write it as '\\uXXXX'");
      default:
        if (e >= '0' && e <= '7') {  // up to three octal digits: '\0', '\12', '\101'
          cp = static_cast<std::uint32_t>(e - '0');
          for (int k = 0; k < 2 && i < text_.size() && text_[i] >= '0' && text_[i] <= '7'; ++k) {
            cp = cp * 8 + static_cast<std::uint32_t>(text_[i++] - '0');
          }
          break;
        }
        out += '\\';  // not an escape: the backslash stays, the character is read next
        return at + 1;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      fail({Token::Kind::String, "", col(at)},
           "'" + std::string(text_.substr(at, i - at)) +
               "' is a UTF-16 surrogate, not a character: write the character's own code "
               "point (\\UXXXXXXXX)");
    }
    if (cp > 0x10FFFF) {
      fail({Token::Kind::String, "", col(at)},
           "'" + std::string(text_.substr(at, i - at)) +
               "' is past U+10FFFF, the last Unicode character");
    }
    append_utf8(cp, out);
    return i;
  }

  static void append_utf8(std::uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  const Token& peek() const { return tokens_[pos_]; }
  const Token& next() { return tokens_[pos_++]; }
  bool accept_op(const char* op) {
    if (peek().kind == Token::Kind::Op && peek().text == op) return ++pos_, true;
    return false;
  }

  NodePtr node(ExprNode::Op op, std::vector<NodePtr> args, std::uint32_t column) const {
    auto n = std::make_shared<ExprNode>();
    n->op = op;
    n->args = std::move(args);
    n->column = column;
    for (const NodePtr& a : n->args) n->depth = std::max(n->depth, a->depth + 1);
    if (n->depth > kMaxExpressionDepth) too_deep(Token{Token::Kind::Op, "", column});
    return n;
  }

  // Binary operators by precedence, loosest first. `not` sits between
  // `and` and the comparisons, so `not a == b` is `not (a == b)`.
  struct BinaryOp {
    const char* text;
    bool word;
    ExprNode::Op op;
  };
  static const std::vector<std::vector<BinaryOp>>& levels() {
    using Op = ExprNode::Op;
    static const std::vector<std::vector<BinaryOp>> table = {
        {{"or", true, Op::Or}},
        {{"and", true, Op::And}},
        {{"==", false, Op::Eq},
         {"!=", false, Op::Ne},
         {"<=", false, Op::Le},
         {">=", false, Op::Ge},
         {"<", false, Op::Lt},
         {">", false, Op::Gt},
         {"in", true, Op::In}},
        {{"+", false, Op::Add}, {"-", false, Op::Sub}},
        {{"*", false, Op::Mul}, {"/", false, Op::Div}, {"%", false, Op::Mod}},
    };
    return table;
  }

  NodePtr parse_or() { return binary(0); }

  // The comparison operator at the cursor, consumed: `not in` is two words.
  std::optional<std::pair<ExprNode::Op, std::uint32_t>> comparison() {
    const Token& t = peek();
    if (t.kind == Token::Kind::Name && t.text == "not" && pos_ + 1 < tokens_.size() &&
        tokens_[pos_ + 1].kind == Token::Kind::Name && tokens_[pos_ + 1].text == "in") {
      pos_ += 2;
      return std::pair{ExprNode::Op::Not, t.column};  // Not(In(...))
    }
    for (const BinaryOp& op : levels()[2]) {
      const auto kind = op.word ? Token::Kind::Name : Token::Kind::Op;
      if (t.kind == kind && t.text == op.text) return std::pair{op.op, next().column};
    }
    return std::nullopt;
  }

  // As Python: `a < b < c` is `a < b and b < c` (b read once per test; paths
  // have no side effects), `a not in b` is `not (a in b)`.
  NodePtr comparisons() {
    const Nest nest(*this);
    NodePtr left = binary(3);
    NodePtr chain;
    while (const auto op = comparison()) {
      NodePtr right = binary(3);
      NodePtr test = op->first == ExprNode::Op::Not
                         ? node(ExprNode::Op::Not,
                                {node(ExprNode::Op::In, {left, right}, op->second)}, op->second)
                         : node(op->first, {left, right}, op->second);
      chain = chain ? node(ExprNode::Op::And, {chain, test}, op->second) : test;
      left = right;
    }
    return chain ? chain : left;
  }

  NodePtr binary(std::size_t level) {
    const Nest nest(*this);
    if (level == 2) return comparisons();
    auto operand = [&] {
      if (level == 1) return parse_not();
      return level + 1 < levels().size() ? binary(level + 1) : parse_unary();
    };
    NodePtr l = operand();
    for (;;) {
      const BinaryOp* match = nullptr;
      for (const BinaryOp& op : levels()[level]) {
        const auto kind = op.word ? Token::Kind::Name : Token::Kind::Op;
        if (peek().kind == kind && peek().text == op.text) {
          match = &op;
          break;
        }
      }
      if (match == nullptr) return l;
      const auto c = next().column;
      l = node(match->op, {l, operand()}, c);
    }
  }

  NodePtr parse_not() {
    const Nest nest(*this);
    if (peek().kind == Token::Kind::Name && peek().text == "not") {
      const auto c = next().column;
      return node(ExprNode::Op::Not, {parse_not()}, c);
    }
    return binary(2);
  }
  // Unary signs bind looser than `**`, whose right side may carry one:
  // `-2 ** 2` is -4, `2 ** -1` is 0.5, `2 ** 3 ** 2` is 2 ** 9 (Python's).
  NodePtr parse_unary() {
    const Nest nest(*this);
    const auto c = peek().column;
    if (accept_op("-")) return node(ExprNode::Op::Neg, {parse_unary()}, c);
    if (accept_op("+")) return node(ExprNode::Op::Pos, {parse_unary()}, c);
    NodePtr base = parse_primary();
    const auto p = peek().column;
    if (accept_op("**")) return node(ExprNode::Op::Pow, {base, parse_unary()}, p);
    return base;
  }
  NodePtr parse_primary() {
    const Token& t = next();
    auto n = std::make_shared<ExprNode>();
    n->column = t.column;
    switch (t.kind) {
      case Token::Kind::Number:
        n->op = ExprNode::Op::Literal;
        n->literal = parse_number(t);
        return n;
      case Token::Kind::String:
        n->op = ExprNode::Op::Literal;
        n->literal = make_string(t.text);
        return n;
      case Token::Kind::Name:
        return name(t, n);
      case Token::Kind::Op:
        if (t.text == "(") {
          NodePtr inner = parse_or();
          if (!accept_op(")")) fail(peek(), "expected ')'");
          return inner;
        }
        if (t.text == "[") {
          n->op = ExprNode::Op::List;
          if (!accept_op("]")) {
            do {
              n->args.push_back(parse_or());
              n->depth = std::max(n->depth, n->args.back()->depth + 1);
            } while (accept_op(","));
            if (!accept_op("]")) fail(peek(), "expected ']' or ','");
          }
          if (n->depth > kMaxExpressionDepth) too_deep(t);
          return n;
        }
        fail(t, "unexpected '" + t.text + "'");
      case Token::Kind::End:
        fail(t, "the expression ends too soon");
    }
    fail(t, "unexpected token");
  }

  // An int (decimal, 0x, 0o, 0b) or a float, with `_` between digits, as
  // Python writes them.
  Value parse_number(const Token& t) const {
    std::string digits;
    for (std::size_t i = 0; i < t.text.size(); ++i) {
      if (t.text[i] != '_') {
        digits += t.text[i];
      } else if (i == 0 || i + 1 == t.text.size() || t.text[i + 1] == '_' ||
                 !std::isalnum(static_cast<unsigned char>(t.text[i - 1]))) {
        fail(t, "'" + t.text + "': '_' goes between digits");
      }
    }
    if (!digits.empty() && (digits.back() == 'j' || digits.back() == 'J')) {
      fail(t, "'" + t.text + "': complex numbers are not supported");
    }
    int base = 10;
    std::size_t skip = 0;
    if (digits.size() > 1 && digits[0] == '0') {
      const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(digits[1])));
      base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
      skip = base == 10 ? 0 : 2;
    }
    ValueBuilder b;
    const char* begin = digits.c_str() + skip;
    char* end = nullptr;
    const ValueNode* v = nullptr;
    if (base != 10 || digits.find_first_of(".eE") == std::string::npos) {
      errno = 0;
      const long long i = *begin == '\0' || *begin == '-' || *begin == '+'
                              ? (end = nullptr, 0LL)
                              : std::strtoll(begin, &end, base);
      if (errno == ERANGE) {
        fail(t, "'" + t.text + "' does not fit in a 64-bit integer" +
                    (base == 10 ? " (write " + t.text + ".0 for a floating-point number)" : ""));
      }
      v = b.arena().make_int(i);
    } else {
      const double d = std::strtod(begin, &end);
      // Python reads 1e400 as inf; JSON, and so a run, has no infinity.
      if (!std::isfinite(d))
        fail(t, "'" + t.text + "' is out of range for a floating-point number");
      v = b.arena().make_double(d);
    }
    if (end == nullptr || *end != '\0') fail(t, "'" + t.text + "' is not a number");
    b.arena().seal();
    return b.wrap(v);
  }

  NodePtr name(const Token& t, std::shared_ptr<ExprNode> n) {
    if (peek().kind == Token::Kind::Op && peek().text == "(") {
      fail(t, "'" + t.text + "(...)': expressions cannot call functions");
    }
    if (t.text == "true" || t.text == "false" || t.text == "null" || t.text == "none" ||
        t.text == "True" || t.text == "False" || t.text == "None") {
      n->op = ExprNode::Op::Literal;
      ValueBuilder b;
      const ValueNode* v = t.text == "null" || t.text == "none" || t.text == "None"
                               ? b.arena().make_null()
                               : b.arena().make_bool(t.text == "true" || t.text == "True");
      b.arena().seal();
      n->literal = b.wrap(v);
      return n;
    }
    n->op = ExprNode::Op::Path;
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
      const std::size_t dot = t.text.find('.', start);
      parts.push_back(t.text.substr(start, dot - start));
      if (parts.back().empty()) fail(t, "'" + t.text + "' has an empty path segment");
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    std::size_t first = 0;
    if (parts[0] == "$ctx") {
      // pyoco's run context: $ctx.params.x, $ctx.results.node, $ctx.scratch.k,
      // $ctx.loop.<field>, $ctx.loops, $ctx.artifacts.name, and $ctx.<var>
      // for a loop variable.
      if (parts.size() < 2) {
        fail(t,
             "'$ctx' alone is not a value: write $ctx.params.<name>, $ctx.results.<node>, "
             "$ctx.scratch.<key>, $ctx.loop.<field> or $ctx.<loop variable>");
      }
      static const std::pair<const char*, PathRoot> roots[] = {
          {"params", PathRoot::Params},   {"results", PathRoot::Results},
          {"scratch", PathRoot::Scratch}, {"loop", PathRoot::LoopFrame},
          {"loops", PathRoot::Loops},     {"artifacts", PathRoot::Artifacts}};
      const auto* root = std::find_if(std::begin(roots), std::end(roots),
                                      [&](const auto& r) { return parts[1] == r.first; });
      if (root == std::end(roots)) {
        n->root = PathRoot::Vars, first = 1;
      } else {
        n->root = root->second, first = 2;
        if (n->root == PathRoot::Results && parts.size() < 3) {
          fail(t, "'" + t.text + "': write $ctx.results.<node>");
        }
      }
    } else if (parts[0] == "$env" || parts[0] == "env") {
      if (parts.size() != 2) fail(t, "'" + t.text + "': write env.NAME");
      n->root = PathRoot::Env;
      first = 1;
    } else if (parts[0][0] == '$') {
      fail(t, "'" + t.text +
                  "': in expressions use params.x, results.x, scratch.x, loop.x, env.X or "
                  "$ctx.<path>");
    } else if (parts.size() > 1 && parts[0] == "params") {
      n->root = PathRoot::Params, first = 1;
    } else if (parts.size() > 1 && parts[0] == "results") {
      n->root = PathRoot::Results, first = 1;
    } else if (parts.size() > 1 && parts[0] == "scratch") {
      n->root = PathRoot::Scratch, first = 1;
    } else if (parts.size() > 1 && parts[0] == "loop") {
      n->root = PathRoot::Loop, first = 1;
    } else {
      n->root = PathRoot::Params;  // a bare name is a param
    }
    n->source = t.text;
    n->path.assign(parts.begin() + static_cast<std::ptrdiff_t>(first), parts.end());
    return n;
  }

  std::string_view text_;
  SourceLocation origin_;
  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  std::uint32_t depth_ = 0;
};

Value boolean(bool b) {
  ValueBuilder vb;
  const ValueNode* n = vb.arena().make_bool(b);
  vb.arena().seal();
  return vb.wrap(n);
}

// Python's == (see python_equal), item by item, spending one of `steps` per
// pair of items compared; nullopt when they run out.
std::optional<bool> equal_within(const Value& a, const Value& b, std::size_t& steps) {
  if (steps == 0) return std::nullopt;
  --steps;
  const auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
  const auto integral = [](const Value& v) { return v.is_int() || v.is_bool(); };
  const auto as_int = [](const Value& v) -> std::int64_t {
    return v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_int();
  };
  if (numeric(a) && numeric(b)) {
    if (integral(a) && integral(b)) return as_int(a) == as_int(b);
    const double x = a.is_bool() ? double(as_int(a)) : a.as_double();
    const double y = b.is_bool() ? double(as_int(b)) : b.as_double();
    return x == y;
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::optional<bool> same = equal_within(a.at(i), b.at(i), steps);
      if (!same || !*same) return same;
    }
    return true;
  }
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size()) return false;
    // A lookup by key is a scan: a big object's keys are sorted once, so
    // comparing two of m keys is m log m, not m squared.
    constexpr std::size_t kScanned = 16;
    std::vector<std::pair<std::string_view, std::size_t>> keys;
    if (b.size() > kScanned) {
      if (steps < b.size()) return std::nullopt;
      steps -= b.size();
      keys.reserve(b.size());
      for (std::size_t i = 0; i < b.size(); ++i) keys.emplace_back(b.member(i).first, i);
      std::sort(keys.begin(), keys.end());
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      const auto [key, item] = a.member(i);
      Value other;
      if (keys.empty()) {
        if (!b.contains(key)) return false;
        other = b.find(key);
      } else {
        const auto at = std::lower_bound(keys.begin(), keys.end(),
                                         std::pair<std::string_view, std::size_t>(key, 0));
        if (at == keys.end() || at->first != key) return false;
        other = b.member(at->second).second;
      }
      const std::optional<bool> same = equal_within(item, other, steps);
      if (!same || !*same) return same;
    }
    return true;
  }
  return a == b;
}

// Items a value stands for, a list held n times counted n times, counted no
// further than `cap` (then cap + 1): without recursion.
std::size_t items_within(const Value& v, std::size_t cap) {
  if (!v.is_array() && !v.is_object()) return 1;
  // The containers on the way down, each with the next item to visit: as
  // deep as the value, never as wide.
  std::vector<std::pair<const ValueNode*, std::size_t>> stack{{v.node(), 0}};
  std::size_t items = 1;
  while (!stack.empty() && items <= cap) {
    auto& [n, next] = stack.back();
    const std::size_t size = n->kind == ValueKind::Array ? n->arr.size : n->obj.size;
    if (next == size) {
      stack.pop_back();
      continue;
    }
    const ValueNode* item =
        n->kind == ValueKind::Array ? n->arr.items[next] : n->obj.members[next].value;
    ++next;
    ++items;
    if (item != nullptr && (item->kind == ValueKind::Array || item->kind == ValueKind::Object)) {
      stack.emplace_back(item, 0);
    }
  }
  return std::min(items, cap + 1);
}

class Evaluator {
 public:
  Evaluator(const Expression& e, const Expression::Scope& scope) : e_(e), scope_(scope) {}
  Evaluator(const Evaluator&) = delete;

  Value eval(const ExprNode& n) const {
    using Op = ExprNode::Op;
    switch (n.op) {
      case Op::Literal:
        return n.literal;
      case Op::Path:
        return path(n);
      case Op::List: {
        ValueBuilder b;
        ValueNode* arr = b.arena().make_array(n.args.size());
        std::vector<Value> keep;
        std::size_t items = 1;
        for (const auto& a : n.args) {
          keep.push_back(eval(*a));
          items += items_within(keep.back(), kMaxValueItems);
          if (items > kMaxValueItems) too_many_items(n, "list");
          Arena::push(arr,
                      keep.back().node() != nullptr ? keep.back().node() : b.arena().make_null());
        }
        b.arena().seal();
        return b.wrap(arr);
      }
      case Op::Not:
        return boolean(!truthy(eval(*n.args[0])));
      case Op::Neg: {
        const Value v = eval(*n.args[0]);
        if (v.is_int() || v.is_bool()) {
          const std::int64_t i = as_int(v);
          if (i == INT64_MIN) overflow(n, "-");
          return number(-i);
        }
        if (v.is_number()) return finite(n, -v.as_double(), "-");
        fail(n, "cannot negate " + std::string(to_string(v.kind())));
      }
      case Op::Pos: {
        const Value v = eval(*n.args[0]);
        if (v.is_bool()) return number(as_int(v));
        if (v.is_number()) return v;
        fail(n, "unary '+' needs a number, not " + std::string(to_string(v.kind())));
      }
      case Op::And: {
        const Value l = eval(*n.args[0]);
        return truthy(l) ? eval(*n.args[1]) : l;
      }
      case Op::Or: {
        const Value l = eval(*n.args[0]);
        return truthy(l) ? l : eval(*n.args[1]);
      }
      case Op::Eq:
        return boolean(equal(n, eval(*n.args[0]), eval(*n.args[1])));
      case Op::Ne:
        return boolean(!equal(n, eval(*n.args[0]), eval(*n.args[1])));
      case Op::Lt:
      case Op::Le:
      case Op::Gt:
      case Op::Ge:
        return compare(n, eval(*n.args[0]), eval(*n.args[1]));
      case Op::In:
        return contains(n, eval(*n.args[1]), eval(*n.args[0]));
      default:
        return arithmetic(n, eval(*n.args[0]), eval(*n.args[1]));
    }
  }

 private:
  // A path's value: its first segment from the scope, then key by key (a
  // list by index); a step that does not exist is an error, as in pyoco.
  Value path(const ExprNode& n) const {
    std::string why;
    const std::optional<Value> root =
        scope_.lookup(n.root, n.path.empty() ? std::string_view() : n.path[0], why);
    if (!root) fail(n, not_found(n) + (why.empty() ? "" : ": " + why));
    Value v = *root;
    std::string walked = n.source.substr(0, n.source.size() - path_tail(n, 1));
    for (std::size_t i = 1; i < n.path.size(); ++i) {
      const std::string& step = n.path[i];
      std::optional<Value> next = path_step(v, step);
      if (!next) {
        fail(n, not_found(n) + ": " + walked +
                    (v.is_object()  ? " has no key '" + step + "'"
                     : v.is_array() ? " is a list of " + std::to_string(v.size()) + " items"
                                    : " is " + std::string(to_string(v.kind())) +
                                          ", not an object or a list"));
      }
      v = *next;
      walked += "." + step;
    }
    return v;
  }

  // "'x.y' not found", or "not found" when the expression is that path.
  std::string not_found(const ExprNode& n) const {
    return n.source == e_.text() ? "not found" : "'" + n.source + "' not found";
  }

  // The length of the text of path segments [from, end) with their dots.
  static std::size_t path_tail(const ExprNode& n, std::size_t from) {
    std::size_t len = 0;
    for (std::size_t i = from; i < n.path.size(); ++i) len += 1 + n.path[i].size();
    return len;
  }

  [[noreturn]] void fail(const ExprNode& n, const std::string& problem) const {
    SourceLocation w = e_.where();
    if (w.column > 0) w.column += n.column - 1;
    throw FlowError(w, in_expression(e_.text()) + problem);
  }

  // Integers are 64-bit; a result past that is an error, never a wrap.
  [[noreturn]] void overflow(const ExprNode& n, const char* op) const {
    fail(n, std::string("integer overflow: the result of '") + op +
                "' does not fit in 64 bits (write a number with a '.' to compute with "
                "floating point)");
  }

  static Value number(std::int64_t i) {
    ValueBuilder b;
    const ValueNode* n = b.arena().make_int(i);
    b.arena().seal();
    return b.wrap(n);
  }
  // A floating-point result that JSON, and so a run, can carry: Python's
  // 1e308 * 10 is inf, which would be recorded as null.
  Value finite(const ExprNode& n, double d, const char* op) const {
    if (!std::isfinite(d)) {
      fail(n, std::string("the result is not a finite number: '") + op + "' gives " +
                  (std::isnan(d) ? "nan"
                   : d > 0       ? "inf"
                                 : "-inf") +
                  ", which JSON cannot hold");
    }
    return number(d);
  }
  static Value number(double d) {
    ValueBuilder b;
    const ValueNode* n = b.arena().make_double(d);
    b.arena().seal();
    return b.wrap(n);
  }

  // Python's numbers: a bool is the int 0 or 1 wherever numbers meet.
  static bool numeric(const Value& v) { return v.is_number() || v.is_bool(); }
  static std::int64_t as_int(const Value& v) {
    return v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_int();
  }
  static bool integral(const Value& v) { return v.is_int() || v.is_bool(); }
  static double as_double(const Value& v) {
    return v.is_bool() ? double(as_int(v)) : v.as_double();
  }

  // Python's ==, bounded: lists that share their items may stand for a
  // billion, and comparing them would hold the run's control for ever.
  static constexpr std::size_t kMaxCompared = kMaxValueItems;
  bool equal(const ExprNode& n, const Value& a, const Value& b) const {
    const std::optional<bool> same = equal_within(a, b, compare_steps_);
    if (!same) {
      fail(n, "the expression compares more than " + std::to_string(kMaxCompared) +
                  " items (a list held n times counts n times); compare smaller values");
    }
    return *same;
  }

  // -1, 0, 1 as Python orders them: numbers (bools too), strings, and lists
  // element by element; anything else is a type error, as in Python.
  int order(const ExprNode& n, const Value& l, const Value& r) const {
    if (numeric(l) && numeric(r)) {
      if (integral(l) && integral(r)) return as_int(l) < as_int(r) ? -1 : as_int(l) > as_int(r);
      const double a = as_double(l), b = as_double(r);
      if (std::isnan(a) || std::isnan(b)) return 2;  // unordered: every test is false
      return a < b ? -1 : (a > b ? 1 : 0);
    }
    if (l.is_string() && r.is_string()) {
      const int c = l.as_string().compare(r.as_string());
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    if (l.is_array() && r.is_array()) {
      for (std::size_t i = 0; i < l.size() && i < r.size(); ++i) {
        if (!equal(n, l.at(i), r.at(i))) return order(n, l.at(i), r.at(i));
      }
      return l.size() < r.size() ? -1 : (l.size() > r.size() ? 1 : 0);
    }
    fail(n, std::string("cannot order ") + to_string(l.kind()) + " and " + to_string(r.kind()));
  }

  Value compare(const ExprNode& n, const Value& l, const Value& r) const {
    const int c = order(n, l, r);
    if (c == 2) return boolean(false);
    switch (n.op) {
      case ExprNode::Op::Lt:
        return boolean(c < 0);
      case ExprNode::Op::Le:
        return boolean(c <= 0);
      case ExprNode::Op::Gt:
        return boolean(c > 0);
      default:
        return boolean(c >= 0);
    }
  }

  Value contains(const ExprNode& n, const Value& haystack, const Value& needle) const {
    if (haystack.is_array()) {
      for (std::size_t i = 0; i < haystack.size(); ++i) {
        if (equal(n, haystack.at(i), needle)) return boolean(true);
      }
      return boolean(false);
    }
    if (haystack.is_object()) {
      return boolean(needle.is_string() && haystack.contains(needle.as_string()));
    }
    if (haystack.is_string() && needle.is_string()) {
      // memmem is linear (glibc's two-way search); string_view::find is not.
      const std::string_view h = haystack.as_string(), x = needle.as_string();
      return boolean(x.empty() || ::memmem(h.data(), h.size(), x.data(), x.size()) != nullptr);
    }
    fail(n, std::string("'in' needs a list, object or string on its right, not ") +
                to_string(haystack.kind()));
  }

  // A string or list times an int, as Python repeats them; the result is
  // bounded, so `'a' * 1e12` is an error, not a memory bomb.
  static constexpr std::size_t kMaxRepeatedBytes = 16u << 20;
  // And so is what one evaluation makes in all: a list of a thousand
  // 16 MiB strings would otherwise be 16 GB.
  static constexpr std::size_t kMaxMadeBytes = 64u << 20;
  void charge(const ExprNode& n, std::size_t bytes) const {
    made_ += bytes;
    if (made_ > kMaxMadeBytes) {
      fail(n, "the expression would make more than 64 MiB of strings and lists; make them smaller");
    }
  }

  [[noreturn]] void too_many_items(const ExprNode& n, const char* what) const {
    fail(n, std::string("the ") + what + " would stand for more than " +
                std::to_string(kMaxValueItems) +
                " items (a list held n times counts n times, its items too); make it smaller");
  }

  Value repeat(const ExprNode& n, const Value& seq, std::int64_t times) const {
    // An empty one stays empty however often it is repeated: no loop.
    const bool empty = seq.is_string() ? seq.as_string().empty() : seq.size() == 0;
    const std::size_t count = times > 0 && !empty ? static_cast<std::size_t>(times) : 0;
    if (seq.is_string()) {
      const std::string_view s = seq.as_string();
      if (!s.empty() && count > kMaxRepeatedBytes / s.size()) {
        fail(n, "the repeated string would be larger than 16 MiB");
      }
      charge(n, s.size() * count);
      std::string out;
      out.reserve(s.size() * count);
      for (std::size_t i = 0; i < count; ++i) out += s;
      return make_string(out);
    }
    if (seq.size() > 0 && count > kMaxRepeatedBytes / 8 / seq.size()) {
      fail(n, "the repeated list would have more than " + std::to_string(kMaxRepeatedBytes / 8) +
                  " items");
    }
    // Its items are shared, not copied: what it stands for is bounded too.
    if (count > 0) {
      const std::size_t each = items_within(seq, kMaxValueItems) - 1;  // seq itself not
      if (each > 0 && count >= kMaxValueItems / each) too_many_items(n, "repeated list");
    }
    charge(n, 8 * seq.size() * count);
    ValueBuilder b;
    ValueNode* arr = b.arena().make_array(seq.size() * count);
    for (std::size_t i = 0; i < count; ++i) {
      for (std::size_t j = 0; j < seq.size(); ++j) {
        const Value item = seq.at(j);
        Arena::push(arr, item.node() != nullptr ? item.node() : b.arena().make_null());
      }
    }
    b.arena().seal();
    return b.wrap(arr);
  }

  Value power(const ExprNode& n, const Value& l, const Value& r) const {
    if (integral(l) && integral(r) && as_int(r) >= 0) {
      std::int64_t result = 1, base = as_int(l);
      for (std::int64_t e = as_int(r); e > 0; e >>= 1) {
        if ((e & 1) && __builtin_mul_overflow(result, base, &result)) overflow(n, "**");
        if (e > 1 && __builtin_mul_overflow(base, base, &base)) overflow(n, "**");
      }
      return number(result);
    }
    const double a = as_double(l), b = as_double(r);
    if (a == 0 && b < 0) fail(n, "zero cannot be raised to a negative power");
    if (a < 0 && b != std::floor(b)) {
      fail(n, "a negative number to a fractional power is a complex number");
    }
    const double result = std::pow(a, b);
    // Python: OverflowError (34, 'Numerical result out of range').
    if (!std::isfinite(result) && std::isfinite(a) && std::isfinite(b)) {
      fail(n, "overflow: the result of '**' is out of range for a floating-point number");
    }
    return finite(n, result, "**");
  }

  Value arithmetic(const ExprNode& n, const Value& l, const Value& r) const {
    using Op = ExprNode::Op;
    if (n.op == Op::Add && l.is_string() && r.is_string()) {
      // Bounded as repeat's results are: `s*8000000 + s*8000000 + ...`
      // would otherwise grow without limit.
      if (l.as_string().size() + r.as_string().size() > kMaxRepeatedBytes) {
        fail(n, "the joined string would be larger than 16 MiB");
      }
      charge(n, l.as_string().size() + r.as_string().size());
      return make_string(std::string(l.as_string()) + std::string(r.as_string()));
    }
    if (n.op == Op::Mul) {
      if ((l.is_string() || l.is_array()) && integral(r)) return repeat(n, l, as_int(r));
      if (integral(l) && (r.is_string() || r.is_array())) return repeat(n, r, as_int(l));
    }
    if (!numeric(l) || !numeric(r)) {
      fail(n, std::string("arithmetic on ") + to_string(l.kind()) + " and " + to_string(r.kind()));
    }
    if (n.op == Op::Pow) return power(n, l, r);
    if (integral(l) && integral(r) && n.op != Op::Div) {
      const std::int64_t a = as_int(l), b = as_int(r);
      std::int64_t result = 0;
      switch (n.op) {
        case Op::Add:
          if (__builtin_add_overflow(a, b, &result)) overflow(n, "+");
          return number(result);
        case Op::Sub:
          if (__builtin_sub_overflow(a, b, &result)) overflow(n, "-");
          return number(result);
        case Op::Mul:
          if (__builtin_mul_overflow(a, b, &result)) overflow(n, "*");
          return number(result);
        default: {
          if (b == 0) fail(n, "modulo by zero");
          // INT64_MIN % -1 is 0, but the division inside it overflows (SIGFPE).
          std::int64_t m = b == -1 ? 0 : a % b;
          // Python's %: the result takes the divisor's sign (-7 % 3 == 2).
          if (m != 0 && ((m < 0) != (b < 0))) m += b;
          return number(m);
        }
      }
    }
    const double a = as_double(l), b = as_double(r);
    switch (n.op) {
      case Op::Add:
        return finite(n, a + b, "+");
      case Op::Sub:
        return finite(n, a - b, "-");
      case Op::Mul:
        return finite(n, a * b, "*");
      case Op::Div:
        if (b == 0) fail(n, "division by zero");
        return finite(n, a / b, "/");
      default: {
        if (b == 0) fail(n, "modulo by zero");
        double m = std::fmod(a, b);
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        return finite(n, m, "%");
      }
    }
  }

  const Expression& e_;
  const Expression::Scope& scope_;
  mutable std::size_t made_ = 0;  // bytes of strings and lists this evaluation made
  mutable std::size_t compare_steps_ = kMaxCompared;  // items this evaluation may still compare
};

void collect_paths(const ExprNode& n, std::vector<Expression::PathUse>& out) {
  if (n.op == ExprNode::Op::Path) out.push_back({n.root, n.path});
  for (const auto& a : n.args) collect_paths(*a, out);
}

}  // namespace

Expression Expression::parse(std::string_view text, const SourceLocation& origin) {
  Expression e;
  e.text_ = std::string(text);
  e.where_ = origin;
  e.root_ = Parser(text, origin).parse();
  return e;
}

Value Expression::evaluate(const Scope& scope) const {
  if (root_ == nullptr) return Value();
  return Evaluator(*this, scope).eval(*root_);
}

std::vector<Expression::PathUse> Expression::paths() const {
  std::vector<PathUse> out;
  if (root_ != nullptr) collect_paths(*root_, out);
  return out;
}

// Python's ==: True == 1, 1 == 1.0, [True] == [1]; no other kinds mix.
bool python_equal(const Value& a, const Value& b) {
  std::size_t unbounded = SIZE_MAX;
  return *equal_within(a, b, unbounded);
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Null:
      return false;
    case ValueKind::Bool:
      return v.as_bool();
    case ValueKind::Int:
      return v.as_int() != 0;
    case ValueKind::Double:
      return v.as_double() != 0;
    case ValueKind::String:
    case ValueKind::Bytes:
      return !v.as_string().empty();
    case ValueKind::Array:
    case ValueKind::Object:
      return v.size() > 0;
  }
  return false;
}

}  // namespace pyoco::core
