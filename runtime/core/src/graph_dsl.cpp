#include <pyoco/core/graph_dsl.hpp>
#include <pyoco/core/text.hpp>

#include <cctype>
#include <charconv>
#include <map>
#include <string>
#include <unordered_set>

namespace pyoco::core::dsl {

const char* to_string(Collect c) {
  switch (c) {
    case Collect::List:
      return "list";
    case Collect::Last:
      return "last";
    case Collect::First:
      return "first";
    case Collect::Flatten:
      return "flatten";
  }
  return "list";
}

const char* to_string(LoopTerm::Kind k) {
  switch (k) {
    case LoopTerm::Kind::Repeat:
      return "repeat";
    case LoopTerm::Kind::Foreach:
      return "foreach";
    case LoopTerm::Kind::Until:
      return "until";
  }
  return "loop";
}

namespace {

struct Token {
  enum class Kind {
    Ident,
    String,
    Number,
    Template,
    Shift,
    Amp,
    Bar,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Colon,
    Semi,
    Comma,
    Eq,
    Newline,
    End
  } kind;
  std::string text;
  SourceLocation where;
};

const char* describe(Token::Kind k) {
  switch (k) {
    case Token::Kind::Ident:
      return "a name";
    case Token::Kind::String:
      return "a string";
    case Token::Kind::Number:
      return "a number";
    case Token::Kind::Template:
      return "{{...}}";
    case Token::Kind::Shift:
      return "'>>'";
    case Token::Kind::Amp:
      return "'&'";
    case Token::Kind::Bar:
      return "'|'";
    case Token::Kind::LParen:
      return "'('";
    case Token::Kind::RParen:
      return "')'";
    case Token::Kind::LBrace:
      return "'{'";
    case Token::Kind::RBrace:
      return "'}'";
    case Token::Kind::Colon:
      return "':'";
    case Token::Kind::Semi:
      return "';'";
    case Token::Kind::Comma:
      return "','";
    case Token::Kind::Eq:
      return "'='";
    case Token::Kind::Newline:
      return "end of line";
    case Token::Kind::End:
      return "end of graph";
  }
  return "?";
}

class Lexer {
 public:
  Lexer(std::string_view text, const SourceLocation& origin) : text_(text), origin_(origin) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    int depth = 0;  // newlines inside () and {} are spaces
    while (i_ < text_.size()) {
      const char c = text_[i_];
      if (c == '#') {
        while (i_ < text_.size() && text_[i_] != '\n') advance();
      } else if (c == '\n') {
        if (depth == 0) out.push_back({Token::Kind::Newline, "\\n", here()});
        advance();
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        advance();
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        const SourceLocation w = here();
        std::string s;
        while (i_ < text_.size() &&
               (std::isalnum(static_cast<unsigned char>(text_[i_])) || text_[i_] == '_')) {
          s += text_[i_];
          advance();
        }
        out.push_back({Token::Kind::Ident, s, w});
      } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && next_is_digit())) {
        const SourceLocation w = here();
        std::string s(1, c);
        advance();
        while (i_ < text_.size() &&
               (std::isdigit(static_cast<unsigned char>(text_[i_])) || text_[i_] == '.')) {
          s += text_[i_];
          advance();
        }
        out.push_back({Token::Kind::Number, s, w});
      } else if (c == '"' || c == '\'') {
        const SourceLocation w = here();
        advance();
        std::string s;
        while (i_ < text_.size() && text_[i_] != c && text_[i_] != '\n') {
          s += text_[i_];
          advance();
        }
        if (i_ >= text_.size() || text_[i_] != c) throw FlowError(w, "unterminated string");
        advance();
        out.push_back({Token::Kind::String, s, w});
      } else if (c == '{' && peek(1) == '{') {
        const SourceLocation w = here();
        advance();
        advance();
        const SourceLocation inner = here();
        const std::size_t start = i_;
        while (i_ + 1 < text_.size() && !(text_[i_] == '}' && text_[i_ + 1] == '}')) advance();
        if (i_ + 1 >= text_.size()) throw FlowError(w, "'{{' without a closing '}}'");
        Token t{Token::Kind::Template, std::string(text_.substr(start, i_ - start)), inner};
        advance();
        advance();
        out.push_back(std::move(t));
      } else if (c == '>') {
        if (peek(1) != '>') throw FlowError(here(), "a lone '>': use '>>' to chain steps");
        out.push_back({Token::Kind::Shift, ">>", here()});
        advance();
        advance();
      } else {
        Token::Kind k;
        switch (c) {
          case '&':
            k = Token::Kind::Amp;
            break;
          case '|':
            k = Token::Kind::Bar;
            break;
          case '(':
            k = Token::Kind::LParen, ++depth;
            break;
          case ')':
            k = Token::Kind::RParen, --depth;
            break;
          case '{':
            k = Token::Kind::LBrace, ++depth;
            break;
          case '}':
            k = Token::Kind::RBrace, --depth;
            break;
          case ':':
            k = Token::Kind::Colon;
            break;
          case ';':
            k = Token::Kind::Semi;
            break;
          case ',':
            k = Token::Kind::Comma;
            break;
          case '=':
            k = Token::Kind::Eq;
            break;
          default: {
            // The whole character, as the file shows it: not its first byte.
            const auto lead = static_cast<unsigned char>(c);
            const std::size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            throw FlowError(here(), "unexpected character '" + printable(text_.substr(i_, n)) +
                                        "'" + expression_hint());
          }
        }
        out.push_back({k, std::string(1, c), here()});
        advance();
      }
    }
    out.push_back({Token::Kind::End, "", here()});
    return out;
  }

 private:
  // At a '.' or '$' in an argument (`over=params.items`,
  // `over=$ctx.params.items`): the value was meant as
  // an expression, which the graph takes in {{ }} only.
  std::string expression_hint() const {
    if (text_[i_] != '.' && text_[i_] != '$') return "";
    auto word = [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '_' || ch == '.' ||
             ch == '$';
    };
    std::size_t from = i_, to = i_;
    while (from > 0 && word(text_[from - 1])) --from;
    while (to < text_.size() && word(text_[to])) ++to;
    if (from == 0 || text_[from - 1] != '=') return "";
    std::size_t key = from - 1;
    while (key > 0 && word(text_[key - 1])) --key;
    return "; an expression is written in {{ }}: " + printable(text_.substr(key, from - 1 - key)) +
           "={{" + printable(text_.substr(from, to - from)) + "}}";
  }
  SourceLocation here() const {
    SourceLocation w = origin_;
    if (w.line > 0) w.line += line_ - 1;
    if (w.column > 0) w.column += column_ - 1;
    return w;
  }
  void advance() {
    if (text_[i_] == '\n') {
      ++line_;
      column_ = 1;
    } else if ((static_cast<unsigned char>(text_[i_]) & 0xC0) != 0x80) {
      ++column_;
    }
    ++i_;
  }
  char peek(std::size_t k) const { return i_ + k < text_.size() ? text_[i_ + k] : '\0'; }
  bool next_is_digit() const { return std::isdigit(static_cast<unsigned char>(peek(1))) != 0; }

  std::string_view text_;
  SourceLocation origin_;
  std::size_t i_ = 0;
  std::uint32_t line_ = 1, column_ = 1;
};

// How deep groups, switches and loops may nest. The parser and every walker
// of the graph recurse once per level: without a bound, a graph of 10,000
// nested '(' overflows the stack.
constexpr std::size_t kMaxNesting = 64;

// How many iterations of a foreach may run at once.
constexpr std::int64_t kMaxParallel = 10'000;
const std::map<std::string, std::string> kLimitHints = {
    {"count", " iterations: split the work into several runs"},
    {"max_iter", " iterations: split the work into several runs"},
    {"parallel", " iterations at a time (each holds a frame of the run's state)"},
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens, std::size_t depth = 0)
      : t_(std::move(tokens)), depth_(depth) {}

  Graph graph() {
    Graph g;
    for (;;) {
      while (at(Token::Kind::Newline) || at(Token::Kind::Semi)) ++pos_;
      if (at(Token::Kind::End)) break;
      g.statements.push_back(pipeline());
      if (at(Token::Kind::Amp) || at(Token::Kind::Bar)) {
        // `a & b` on its own: a group runs together only inside parentheses.
        const std::string op = at(Token::Kind::Amp) ? "&" : "|";
        fail("steps that run together are a group in parentheses: write (a " + op + " b), or (a " +
             op + " b) >> c");
      }
      if (!at(Token::Kind::Newline) && !at(Token::Kind::Semi) && !at(Token::Kind::End)) {
        fail("expected '>>' or the end of the line, found " + found());
      }
    }
    if (g.statements.empty()) fail("the graph is empty: write steps like \"a >> b\"");
    return g;
  }

 private:
  bool at(Token::Kind k) const { return t_[pos_].kind == k; }
  const Token& cur() const { return t_[pos_]; }
  std::string found() const {
    const Token& t = cur();
    if (t.kind == Token::Kind::Ident || t.kind == Token::Kind::Number) return "'" + t.text + "'";
    if (t.kind == Token::Kind::String) return "\"" + t.text + "\"";
    return describe(t.kind);
  }
  [[noreturn]] void fail(const std::string& problem) const {
    throw FlowError(cur().where, problem);
  }
  const Token& expect(Token::Kind k, const char* context) {
    if (!at(k)) fail(std::string("expected ") + describe(k) + " " + context + ", found " + found());
    return t_[pos_++];
  }
  void skip_newlines() {
    while (at(Token::Kind::Newline)) ++pos_;
  }

  // One level of nesting, for as long as it lives.
  class Nest {
   public:
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting) {
        p_.fail("groups, switches and loops nest more than " + std::to_string(kMaxNesting) +
                " levels deep here; flatten the graph");
      }
    }
    ~Nest() { --p_.depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser& p_;
  };

  // A line that starts with '>>' goes on with the line before it, as in
  // pyoco, where the graph is one chain and newlines are spaces:
  //   fetch
  //     >> process
  bool shift_ahead() {
    std::size_t i = pos_;
    while (t_[i].kind == Token::Kind::Newline) ++i;
    if (t_[i].kind != Token::Kind::Shift) return false;
    pos_ = i;
    return true;
  }

  Pipeline pipeline() {
    Pipeline p;
    p.terms.push_back(term());
    while (shift_ahead()) {
      ++pos_;
      skip_newlines();
      p.terms.push_back(term());
    }
    return p;
  }

  Term term() {
    const Token& t = cur();
    if (t.kind == Token::Kind::LParen) return group();
    if (t.kind != Token::Kind::Ident) {
      fail("expected a step (a task name, '(' or switch/repeat/foreach/until/pipe), found " +
           found());
    }
    const bool call = t_[pos_ + 1].kind == Token::Kind::LParen;
    if (call && t.text == "pipe") return pipe();
    if (call && t.text == "switch") return switch_term();
    if (call && (t.text == "repeat" || t.text == "foreach" || t.text == "until")) return loop();
    if (call) {
      fail("'" + t.text +
           "(' is not a step: the DSL knows pipe(), switch(), repeat(), foreach() "
           "and until()");
    }
    ++pos_;
    NodeTerm n{t.text, t.text, t.where};
    if (at(Token::Kind::Colon)) {
      ++pos_;
      // `name: switch(...)` or `name: foreach(...)` names a control node, so
      // that references to it do not shift when another loop is added.
      const Token& next = cur();
      if (next.kind == Token::Kind::Ident && t_[pos_ + 1].kind == Token::Kind::LParen &&
          (next.text == "switch" || next.text == "repeat" || next.text == "foreach" ||
           next.text == "until")) {
        Term control = next.text == "switch" ? switch_term() : loop();
        if (auto* sw = std::get_if<SwitchTerm>(&control)) sw->name = n.name;
        if (auto* lp = std::get_if<LoopTerm>(&control)) lp->name = n.name;
        return control;
      }
      n.task = expect(Token::Kind::Ident, "after ':' (name: task, or name: switch/loop(...))").text;
    }
    return n;
  }

  Term group() {
    const Nest nest(*this);
    GroupTerm g;
    g.where = cur().where;
    ++pos_;  // (
    g.branches.push_back(pipeline());
    if (at(Token::Kind::Amp) || at(Token::Kind::Bar)) {
      const Token::Kind op = cur().kind;
      g.any = op == Token::Kind::Bar;
      while (at(Token::Kind::Amp) || at(Token::Kind::Bar)) {
        if (cur().kind != op) fail("mixing '&' and '|' in one group: add parentheses");
        ++pos_;
        g.branches.push_back(pipeline());
      }
    }
    expect(Token::Kind::RParen, "to close the group");
    return g;
  }

  Term pipe() {
    PipeTerm p;
    p.where = cur().where;
    pos_ += 2;  // pipe (
    p.name = expect(Token::Kind::Ident, "in pipe(NAME)").text;
    expect(Token::Kind::RParen, "after the pipe's name");
    return p;
  }

  // key=value arguments of switch/repeat/foreach/until.
  struct Arg {
    std::string key;
    SourceLocation key_where;
    Token value;
  };
  std::vector<Arg> args(const char* what) {
    std::vector<Arg> out;
    expect(Token::Kind::LParen, what);
    while (!at(Token::Kind::RParen)) {
      Arg a;
      const Token& key = expect(Token::Kind::Ident, "(an argument name)");
      a.key = key.text;
      a.key_where = key.where;
      expect(Token::Kind::Eq, ("after '" + a.key + "'").c_str());
      if (!(at(Token::Kind::Ident) || at(Token::Kind::Number) || at(Token::Kind::String) ||
            at(Token::Kind::Template))) {
        fail("expected a value for '" + a.key + "', found " + found());
      }
      a.value = t_[pos_++];
      out.push_back(std::move(a));
      if (!at(Token::Kind::Comma)) break;
      ++pos_;
    }
    expect(Token::Kind::RParen, "to close the arguments");
    return out;
  }

  static Expression expression(const Token& v) {
    if (v.kind == Token::Kind::Template) return Expression::parse(v.text, v.where);
    if (v.kind == Token::Kind::String) {
      return Expression::parse("\"" + v.text + "\"", v.where);
    }
    return Expression::parse(v.text, v.where);  // a bare name or number
  }

  std::int64_t integer(const Arg& a, std::int64_t min, std::int64_t max) const {
    std::int64_t v = 0;
    const auto& s = a.value.text;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    const bool whole = a.value.kind == Token::Kind::Number && p == s.data() + s.size();
    if (whole && ec == std::errc::result_out_of_range) v = s[0] == '-' ? min - 1 : max + 1;
    if (!whole || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
      throw FlowError(a.value.where, a.key + " must be an integer");
    }
    if (v < min) throw FlowError(a.value.where, a.key + " must be at least " + std::to_string(min));
    if (v > max) {
      throw FlowError(a.value.where, a.key + "=" + s + " is over the limit of " +
                                         std::to_string(max) + kLimitHints.at(a.key));
    }
    return v;
  }

  static Collect collect(const Arg& a) {
    const std::string& s = a.value.text;
    if (s == "list") return Collect::List;
    if (s == "last") return Collect::Last;
    if (s == "first") return Collect::First;
    if (s == "flatten") return Collect::Flatten;
    throw FlowError(a.value.where, "collect must be list, last, first or flatten, not '" + s + "'");
  }

  static std::string identifier(const Arg& a) {
    if (a.value.kind != Token::Kind::Ident) {
      throw FlowError(a.value.where, a.key + " must be a name");
    }
    return a.value.text;
  }

  [[noreturn]] static void unknown(const Arg& a, const char* what, const char* known) {
    throw FlowError(a.key_where, std::string(what) + " has no argument '" + a.key + "' (it takes " +
                                     known + ")");
  }

  std::vector<Pipeline> body(const char* what) {
    expect(Token::Kind::LBrace, what);
    std::vector<Pipeline> b;
    b.push_back(pipeline());
    if (at(Token::Kind::Semi)) ++pos_;
    expect(Token::Kind::RBrace, "to close the body");
    return b;
  }

  // A case label as pyoco compiles it (graph.py _compile_case_value): the
  // text true or false is a bool, digits are an int, anything else is the
  // string as written, whether quoted or not ("3" is the int 3, 2.5 and
  // True are strings). The subject is then compared with Python's ==.
  static Value case_label(ValueBuilder& b, const Token& label) {
    const std::string& text = label.text;
    if (text == "true" || text == "false") return b.wrap(b.arena().make_bool(text == "true"));
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
      std::int64_t i = 0;
      const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (ec != std::errc() || p != text.data() + text.size()) {
        throw FlowError(label.where, "case label " + text + " is out of range for an integer");
      }
      return b.wrap(b.arena().make_int(i));
    }
    return b.wrap(b.arena().make_string(text));
  }

  // A case's branch: a pipeline, or (as pyoco allows) one quoted string
  // holding a pipeline, `b: "x >> y";`.
  Pipeline branch() {
    if (!at(Token::Kind::String) ||
        !(t_[pos_ + 1].kind == Token::Kind::Semi || t_[pos_ + 1].kind == Token::Kind::RBrace)) {
      return pipeline();
    }
    const Token& quoted = cur();
    SourceLocation origin = quoted.where;
    if (origin.column > 0) ++origin.column;  // after the opening quote
    Parser inner(Lexer(quoted.text, origin).run(), depth_);
    Graph g = inner.graph();
    if (g.statements.size() != 1) {
      throw FlowError(quoted.where, "a quoted branch holds one pipeline, not " +
                                        std::to_string(g.statements.size()) + " statements");
    }
    ++pos_;
    return std::move(g.statements.front());
  }

  Term switch_term() {
    const Nest nest(*this);
    SwitchTerm s;
    s.where = cur().where;
    ++pos_;
    bool has_on = false;
    for (const Arg& a : args("after switch")) {
      if (a.key != "on") unknown(a, "switch", "on=");
      s.on = expression(a.value);
      has_on = true;
    }
    if (!has_on) throw FlowError(s.where, "switch needs on=, e.g. switch(on={{mode}})");
    expect(Token::Kind::LBrace, "to open the switch's cases");
    std::unordered_set<std::string> labels;
    while (!at(Token::Kind::RBrace)) {
      SwitchCase c;
      c.where = cur().where;
      const Token& label = cur();
      ValueBuilder b;
      if (label.kind == Token::Kind::Ident && label.text == "default") {
        c.is_default = true;
      } else if (label.kind == Token::Kind::Ident || label.kind == Token::Kind::String ||
                 label.kind == Token::Kind::Number) {
        c.match = case_label(b, label);
      } else {
        fail("expected a case label (a name, string, number or default), found " + found());
      }
      b.arena().seal();
      ++pos_;
      // Labels are bools, ints and strings: keyed so that the labels
      // python_equal calls equal (true and 1) share a key, and a switch of
      // 100,000 cases is not checked pair by pair.
      std::string key = "default";
      if (!c.is_default) {
        key = c.match.is_string() ? "s" + std::string(c.match.as_string())
              : c.match.is_bool() ? std::string(c.match.as_bool() ? "n1" : "n0")
                                  : "n" + std::to_string(c.match.as_int());
      }
      if (!labels.insert(std::move(key)).second) {
        throw FlowError(c.where, "this switch already has a case '" + label.text + "'");
      }
      expect(Token::Kind::Colon, "after the case label");
      c.body.push_back(branch());
      s.cases.push_back(std::move(c));
      if (!at(Token::Kind::Semi)) break;
      ++pos_;
    }
    expect(Token::Kind::RBrace, "to close the switch (separate cases with ';')");
    if (s.cases.empty()) throw FlowError(s.where, "switch has no cases");
    return s;
  }

  Term loop() {
    const Nest nest(*this);
    LoopTerm l;
    l.where = cur().where;
    const std::string kind = cur().text;
    ++pos_;
    l.kind = kind == "repeat"    ? LoopTerm::Kind::Repeat
             : kind == "foreach" ? LoopTerm::Kind::Foreach
                                 : LoopTerm::Kind::Until;
    bool required = false;
    for (const Arg& a : args(("after " + kind).c_str())) {
      if (a.key == "collect") {
        l.collect = collect(a);
      } else if (l.kind == LoopTerm::Kind::Repeat && a.key == "count") {
        // A number, or (as pyoco) an expression counted when the loop starts.
        if (a.value.kind == Token::Kind::Number) {
          l.count = integer(a, 0, kMaxIterations);
        } else {
          l.count_expr = expression(a.value);
        }
        required = true;
      } else if (l.kind == LoopTerm::Kind::Foreach && a.key == "over") {
        l.over = expression(a.value);
        required = true;
      } else if (l.kind == LoopTerm::Kind::Foreach && a.key == "item") {
        l.item = identifier(a);
      } else if (l.kind == LoopTerm::Kind::Foreach && a.key == "index") {
        l.index = identifier(a);
      } else if (l.kind == LoopTerm::Kind::Foreach && a.key == "parallel") {
        l.parallel = integer(a, 1, kMaxParallel);
      } else if (l.kind == LoopTerm::Kind::Until && a.key == "cond") {
        l.cond = expression(a.value);
        required = true;
      } else if (l.kind == LoopTerm::Kind::Until && a.key == "max_iter") {
        l.max_iter = integer(a, 1, kMaxIterations);
      } else {
        unknown(a, kind.c_str(),
                l.kind == LoopTerm::Kind::Repeat    ? "count=, collect="
                : l.kind == LoopTerm::Kind::Foreach ? "over=, item=, index=, parallel=, collect="
                                                    : "cond=, max_iter=, collect=");
      }
    }
    if (!required) {
      throw FlowError(l.where, kind + (l.kind == LoopTerm::Kind::Repeat    ? " needs count="
                                       : l.kind == LoopTerm::Kind::Foreach ? " needs over="
                                                                           : " needs cond="));
    }
    l.body = body(("to open " + kind + "'s body").c_str());
    return l;
  }

  std::vector<Token> t_;
  std::size_t pos_ = 0;
  std::size_t depth_ = 0;
};

}  // namespace

Graph parse_graph(std::string_view text, const SourceLocation& origin) {
  return Parser(Lexer(text, origin).run()).graph();
}

}  // namespace pyoco::core::dsl
