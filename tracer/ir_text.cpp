// The Graph IR's stable text form: print() and parse() (graph.h shows the format).
//
// Decisions beyond graph.h's sketch:
// - Value ids are defined in increasing order 0, 1, 2... (parameters first, then node outputs
//   in program order); the parser rejects any other numbering, so Graph::types is exactly the
//   list of definitions.
// - Floating-point numbers print as the shortest text that reads back to the same value
//   (std::to_chars), with ".0" appended when that text would look like an integer, so
//   doubles and integers are told apart in attributes: 0.5, 1.0, 1e-07, -0.0, inf, -inf, nan.
// - Strings escape \" \\ \n \t and other control bytes as \xHH; other bytes pass through.
// - A function name that is not an identifier prints quoted: func @"my fn"(...).
// - The parser takes the text as a token stream (line breaks are not significant), checks
//   every id, number and type as it goes, and raises kiln::Error("ir::parse: line N: ...").

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

#include <kiln/tracer/graph.h>

namespace kiln::ir {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 40;       // larger dims are rejected
constexpr int64_t kMaxElements = int64_t{1} << 50;  // and so are types with more elements
constexpr size_t kMaxRank = 64;

bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_ident_char(char c) {
  return is_ident_start(c) || (c >= '0' && c <= '9') || c == '.';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_identifier(std::string_view s) {
  if (s.empty() || !is_ident_start(s[0])) return false;
  for (char c : s)
    if (!is_ident_char(c)) return false;
  return true;
}

// ---- printing ------------------------------------------------------------------------------

void append_type(std::string& out, const TensorType& t) {
  out += name(t.dtype);
  out += '[';
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i) out += ',';
    if (t.shape[i] == -1)
      out += '?';
    else
      out += std::to_string(t.shape[i]);
  }
  out += ']';
}

template <class T>
void append_float(std::string& out, T v) {
  if (std::isnan(v)) {
    out += "nan";
    return;
  }
  if (std::isinf(v)) {
    out += v < 0 ? "-inf" : "inf";
    return;
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  const std::string_view s(buf, static_cast<size_t>(r.ptr - buf));
  out += s;
  if (s.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += ch;
  }
  out += '"';
}

void append_attr(std::string& out, const AttrValue& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          out += std::to_string(x);
        } else if constexpr (std::is_same_v<T, double>) {
          append_float(out, x);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          out += fmt::format("[{}]", fmt::join(x, ", "));
        } else if constexpr (std::is_same_v<T, DType>) {
          out += name(x);
        } else {
          append_quoted(out, x);
        }
      },
      v);
}

void append_values(std::string& out, const std::vector<int>& ids) {
  for (size_t i = 0; i < ids.size(); ++i)
    out += fmt::format("{}%{}", i ? ", " : "", ids[i]);
}

// The type of value `id`, or a marker when the graph is broken (print never throws on ids).
void append_type_of(std::string& out, const Graph& g, int id) {
  if (id >= 0 && static_cast<size_t>(id) < g.types.size())
    append_type(out, g.types[static_cast<size_t>(id)]);
  else
    out += fmt::format("<bad id %{}>", id);
}

void append_constant(std::string& out, const Tensor& t) {
  KILN_CHECK(t.defined() && !t.is_symbolic(), "ir::print: a constant has no value");
  append_type(out, t.type());
  out += " = ";
  visit_dtype(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const std::vector<T> v = t.to_vector<T>();
    auto one = [&](T x) {
      if constexpr (std::is_same_v<T, bool>)
        out += x ? "true" : "false";
      else if constexpr (std::is_floating_point_v<T>)
        append_float(out, x);
      else
        out += std::to_string(static_cast<int64_t>(x));
    };
    if (t.rank() == 0) {
      one(v.at(0));
      return;
    }
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      one(v[i]);
    }
    out += ']';
  });
}

// ---- lexing --------------------------------------------------------------------------------

enum class Tok { End, Ident, Number, Value, Global, String, Punct };

struct Token {
  Tok kind = Tok::End;
  std::string_view text;  // as written
  std::string str;        // String: the decoded text; Global: the name
  int64_t id = 0;         // Value: the id
  int line = 1;
};

[[noreturn]] void fail_line(int line, const std::string& msg) {
  throw Error(fmt::format("ir::parse: line {}: {}", line, msg));
}

std::string describe(const Token& t) {
  switch (t.kind) {
    case Tok::End:
      return "end of input";
    case Tok::String:
      return "a string";
    default:
      break;
  }
  std::string_view s = t.text;
  if (s.size() > 24) return fmt::format("'{}...'", s.substr(0, 24));
  return fmt::format("'{}'", s);
}

int hex_digit(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads a quoted string starting at text[i] == '"'; returns the index past the closing quote.
size_t lex_string(std::string_view text, size_t i, int line, std::string& out) {
  ++i;
  while (true) {
    if (i >= text.size() || text[i] == '\n') fail_line(line, "unterminated string");
    const char c = text[i++];
    if (c == '"') return i;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i >= text.size()) fail_line(line, "unterminated string");
    const char e = text[i++];
    if (e == '"' || e == '\\') {
      out += e;
    } else if (e == 'n') {
      out += '\n';
    } else if (e == 't') {
      out += '\t';
    } else if (e == 'x' && i + 1 < text.size() && hex_digit(text[i]) >= 0 &&
               hex_digit(text[i + 1]) >= 0) {
      out += static_cast<char>(hex_digit(text[i]) * 16 + hex_digit(text[i + 1]));
      i += 2;
    } else {
      fail_line(line, "invalid escape in a string (use \\\" \\\\ \\n \\t or \\xHH)");
    }
  }
}

std::vector<Token> lex(std::string_view text) {
  std::vector<Token> toks;
  int line = 1;
  size_t i = 0;
  while (true) {
    while (i < text.size() &&
           (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) {
      if (text[i] == '\n') ++line;
      ++i;
    }
    Token t;
    t.line = line;
    if (i >= text.size()) {
      toks.push_back(std::move(t));
      return toks;
    }
    const size_t start = i;
    const char c = text[i];
    const char n = i + 1 < text.size() ? text[i + 1] : '\0';
    if (is_ident_start(c)) {
      while (i < text.size() && is_ident_char(text[i]))
        ++i;
      t.kind = Tok::Ident;
    } else if (is_digit(c) || (c == '-' && (is_digit(n) || is_ident_start(n) || n == '.'))) {
      ++i;
      while (i < text.size()) {
        const char d = text[i];
        if (is_ident_char(d) ||
            ((d == '+' || d == '-') && (text[i - 1] == 'e' || text[i - 1] == 'E')))
          ++i;
        else
          break;
      }
      t.kind = Tok::Number;
    } else if (c == '%') {
      ++i;
      while (i < text.size() && is_digit(text[i]))
        ++i;
      if (i == start + 1) fail_line(line, "expected a value id after '%'");
      const auto r = std::from_chars(text.data() + start + 1, text.data() + i, t.id);
      if (r.ec != std::errc() || t.id > std::numeric_limits<int>::max())
        fail_line(line, fmt::format("value id {} is out of range", text.substr(start, i - start)));
      t.kind = Tok::Value;
    } else if (c == '@') {
      ++i;
      if (i < text.size() && text[i] == '"') {
        i = lex_string(text, i, line, t.str);
      } else {
        while (i < text.size() && is_ident_char(text[i]))
          ++i;
        t.str = std::string(text.substr(start + 1, i - start - 1));
        if (t.str.empty()) fail_line(line, "expected a function name after '@'");
      }
      t.kind = Tok::Global;
    } else if (c == '"') {
      i = lex_string(text, i, line, t.str);
      t.kind = Tok::String;
    } else if (c == '-' && n == '>') {
      i += 2;
      t.kind = Tok::Punct;
    } else if (std::string_view("(){}[],:=?").find(c) != std::string_view::npos) {
      ++i;
      t.kind = Tok::Punct;
    } else {
      const auto u = static_cast<unsigned char>(c);
      fail_line(line, u >= 0x20 && u < 0x7f ? fmt::format("unexpected character '{}'", c)
                                            : fmt::format("unexpected byte 0x{:02x}", u));
    }
    t.text = text.substr(start, i - start);
    if (t.kind == Tok::Ident && (t.text == "inf" || t.text == "nan")) t.kind = Tok::Number;
    toks.push_back(std::move(t));
  }
}

bool is_int_text(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

std::optional<DType> dtype_named(std::string_view s) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (name(static_cast<DType>(i)) == s) return static_cast<DType>(i);
  return std::nullopt;
}

// ---- parsing -------------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::string_view text) : toks_(lex(text)) {}

  Graph run() {
    Graph g = parse_function(/*root=*/true);
    if (peek().kind != Tok::End)
      fail(peek(), "'variables:', 'constants:' or the end of the text after the function");
    return g;
  }

 private:
  // Parses "func @name(params) -> (types) { body }" and its sections into a fresh Graph
  // (subgraphs have constants but never variables: they use the outermost graph's).
  Graph parse_function(bool root) {
    if (++depth_ > kMaxDepth)
      fail(peek(), fmt::format("regions nested at most {} deep", kMaxDepth));
    Graph outer = std::move(g_);
    g_ = Graph{};
    expect_keyword("func", "'func' to begin the function");
    if (peek().kind != Tok::Global) fail(peek(), "a function name like @name after 'func'");
    g_.name = next().str;
    expect("(", "after the function name");
    if (!accept(")")) {
      while (true) {
        const Token& v = peek();
        if (v.kind != Tok::Value) fail(v, "a parameter like %0");
        next();
        expect(":", "after a parameter");
        TensorType t = parse_type("the parameter's type");
        g_.params.push_back(define(v, std::move(t)));
        if (accept(")")) break;
        expect(",", "or ')' after a parameter");
      }
    }
    expect("->", "after the parameters");
    expect("(", "before the result types");
    std::vector<TensorType> result_types;
    int sig_line = peek().line;
    if (!accept(")")) {
      while (true) {
        result_types.push_back(parse_type("a result type"));
        if (accept(")")) break;
        expect(",", "or ')' after a result type");
      }
    }
    expect("{", "to open the function body");
    parse_body(result_types, sig_line);
    if (root && is_keyword(peek(), "variables")) {
      next();
      expect(":", "after 'variables'");
      while (peek().kind == Tok::Number) {
        const Token& idx = peek();
        if (parse_int(next(), "a variable index") != static_cast<int64_t>(g_.variables.size()))
          fail_line(idx.line, fmt::format("variables must be numbered 0, 1, 2... in order: "
                                          "expected {}, got {}",
                                          g_.variables.size(), idx.text));
        if (peek().kind != Tok::String) fail(peek(), "the variable's quoted name");
        VariableSlot slot;
        slot.name = next().str;
        slot.type = parse_type("the variable's type");
        g_.variables.push_back(std::move(slot));
      }
    }
    if (is_keyword(peek(), "constants")) {
      next();
      expect(":", "after 'constants'");
      while (peek().kind == Tok::Number)
        parse_constant();
    }
    Graph done = std::move(g_);
    g_ = std::move(outer);
    --depth_;
    return done;
  }

  static constexpr int kMaxDepth = 64;
  int depth_ = 0;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  Graph g_;

  [[noreturn]] void fail(const Token& t, std::string_view what) {
    fail_line(t.line, fmt::format("expected {}, got {}", what, describe(t)));
  }
  const Token& peek() const { return toks_[pos_]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (t.kind != Tok::End) ++pos_;
    return t;
  }
  static bool is_keyword(const Token& t, std::string_view k) {
    return t.kind == Tok::Ident && t.text == k;
  }
  bool accept(std::string_view p) {
    if (peek().kind == Tok::Punct && peek().text == p) {
      next();
      return true;
    }
    return false;
  }
  void expect(std::string_view p, std::string_view context) {
    if (!accept(p)) fail(peek(), fmt::format("'{}' {}", p, context));
  }
  void expect_keyword(std::string_view k, std::string_view what) {
    if (!is_keyword(peek(), k)) fail(peek(), what);
    next();
  }

  int64_t parse_int(const Token& t, std::string_view what) {
    if (t.kind != Tok::Number || !is_int_text(t.text)) fail(t, what);
    int64_t v = 0;
    const auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
    if (r.ec != std::errc()) fail_line(t.line, fmt::format("integer {} is out of range", t.text));
    return v;
  }

  template <class T>
  T parse_float(const Token& t, std::string_view what) {
    if (t.kind != Tok::Number) fail(t, what);
    T v{};
    const char* end = t.text.data() + t.text.size();
    const auto r = std::from_chars(t.text.data(), end, v);
    if (r.ec == std::errc::result_out_of_range)
      fail_line(t.line, fmt::format("number {} is out of range", t.text));
    if (r.ec != std::errc() || r.ptr != end) fail(t, what);
    return v;
  }

  TensorType parse_type(std::string_view what) {
    const Token& d = peek();
    if (d.kind != Tok::Ident) fail(d, fmt::format("{} like f32[2,?]", what));
    const std::optional<DType> dt = dtype_named(d.text);
    if (!dt) fail(d, "a dtype (bool, u8, i32, i64, f32 or f64)");
    next();
    TensorType t{*dt, Shape{}};
    expect("[", "after the dtype (a scalar is written f32[])");
    if (accept("]")) return t;
    int64_t elements = 1;
    while (true) {
      const Token& tok = peek();
      int64_t dim = -1;
      if (!accept("?")) {
        dim = parse_int(next(), "a dim (a number or ?)");
        if (dim < 0 || dim > kMaxDim)
          fail_line(tok.line,
                    fmt::format("dim {} is out of range (0 to 2^40, or ? if unknown)", dim));
      }
      if (t.shape.size() >= kMaxRank)
        fail_line(tok.line, fmt::format("a type has more than {} dims", kMaxRank));
      if (dim > 1 && elements > kMaxElements / dim)
        fail_line(tok.line, "a type has more than 2^50 elements");
      elements *= std::max<int64_t>(dim, 1);
      t.shape.push_back(dim);
      if (accept("]")) return t;
      expect(",", "or ']' after a dim");
    }
  }

  // Checks that `v` is the next id to define and records its type.
  int define(const Token& v, TensorType t) {
    const int64_t expected = static_cast<int64_t>(g_.types.size());
    if (v.id < expected) fail_line(v.line, fmt::format("%{} is defined twice", v.id));
    if (v.id > expected)
      fail_line(v.line, fmt::format("%{} is defined out of order: expected %{} (values are "
                                    "numbered 0, 1, 2... in order of definition)",
                                    v.id, expected));
    return g_.add_value(std::move(t));
  }

  int use(const Token& v, std::string_view what) {
    if (v.kind != Tok::Value) fail(v, what);
    if (v.id >= static_cast<int64_t>(g_.types.size()))
      fail_line(v.line, fmt::format("%{} is used before it is defined", v.id));
    return static_cast<int>(v.id);
  }

  AttrValue parse_attr_value() {
    const Token& t = peek();
    if (t.kind == Tok::Number) {
      next();
      if (is_int_text(t.text)) return parse_int(t, "an integer");
      return parse_float<double>(t, "a number");
    }
    if (t.kind == Tok::String) return next().str;
    if (t.kind == Tok::Ident) {
      if (t.text == "true" || t.text == "false") return next().text == "true";
      if (const std::optional<DType> dt = dtype_named(t.text)) {
        next();
        return *dt;
      }
    }
    if (accept("[")) {
      std::vector<int64_t> list;
      if (accept("]")) return list;
      while (true) {
        list.push_back(parse_int(next(), "an integer in the list"));
        if (accept("]")) return list;
        expect(",", "or ']' in the list");
      }
    }
    fail(t, "an attribute value (number, true/false, [ints], dtype or \"string\")");
  }

  Attrs parse_attrs() {
    Attrs attrs;
    if (!accept("{")) return attrs;
    if (accept("}")) return attrs;
    while (true) {
      const Token& n = peek();
      if (n.kind != Tok::Ident) fail(n, "an attribute name");
      next();
      const std::string key(n.text);
      if (attrs.has(key)) fail_line(n.line, fmt::format("attribute '{}' is given twice", key));
      expect("=", fmt::format("after the attribute name '{}'", key));
      attrs.set(key, parse_attr_value());
      if (accept("}")) return attrs;
      expect(",", "or '}' after an attribute");
    }
  }

  void parse_body(const std::vector<TensorType>& result_types, int sig_line) {
    while (true) {
      const Token& t = peek();
      if (is_keyword(t, "return")) {
        next();
        if (peek().kind == Tok::Value) {
          while (true) {
            g_.results.push_back(use(next(), "a result value like %3"));
            if (!accept(",")) break;
          }
        }
        if (g_.results.size() != result_types.size())
          fail_line(t.line, fmt::format("return gives {} values but the signature (line {}) "
                                        "declares {} results",
                                        g_.results.size(), sig_line, result_types.size()));
        for (size_t i = 0; i < result_types.size(); ++i) {
          const TensorType& have = g_.types[static_cast<size_t>(g_.results[i])];
          if (!(have == result_types[i])) {
            std::string a, b;
            append_type(a, have);
            append_type(b, result_types[i]);
            fail_line(t.line, fmt::format("returned %{} has type {} but the signature (line {}) "
                                          "declares {}",
                                          g_.results[i], a, sig_line, b));
          }
        }
        expect("}", "after the return statement");
        return;
      }
      std::vector<const Token*> outs;
      if (t.kind == Tok::Value) {
        while (true) {
          const Token& v = next();
          if (v.kind != Tok::Value) fail(v, "an output value like %3");
          outs.push_back(&v);
          if (accept("=")) break;
          expect(",", "or '=' after an output value");
        }
      } else if (t.kind != Tok::Ident) {
        fail(t, "a statement ('%N = op(...)', 'op(...)' or 'return')");
      }
      const Token& op = peek();
      if (op.kind != Tok::Ident) fail(op, "an op name");
      next();
      Node node;
      node.op = std::string(op.text);
      expect("(", fmt::format("after the op name '{}'", node.op));
      if (!accept(")")) {
        while (true) {
          node.inputs.push_back(use(next(), fmt::format("an input of '{}' like %0", node.op)));
          if (accept(")")) break;
          expect(",", fmt::format("or ')' after an input of '{}'", node.op));
        }
      }
      node.attrs = parse_attrs();
      if (!outs.empty()) {
        expect(":", fmt::format("and the output types after '{}(...)'", node.op));
        std::vector<TensorType> types;
        for (size_t i = 0; i < outs.size(); ++i) {
          if (i) expect(",", fmt::format("and {} output types for '{}'", outs.size(), node.op));
          types.push_back(parse_type("an output type"));
        }
        for (size_t i = 0; i < outs.size(); ++i)
          node.outputs.push_back(define(*outs[i], std::move(types[i])));
      }
      if (is_keyword(peek(), "regions")) {
        next();
        expect("{", fmt::format("to open the regions of '{}'", node.op));
        while (is_keyword(peek(), "func"))
          node.subgraphs.push_back(std::make_shared<Graph>(parse_function(/*root=*/false)));
        expect("}", fmt::format("'func' or '}}' to close the regions of '{}'", node.op));
      }
      g_.nodes.push_back(std::move(node));
    }
  }

  template <class T>
  T parse_element(const Token& t, DType dt) {
    if constexpr (std::is_same_v<T, bool>) {
      if (is_keyword(t, "true")) return true;
      if (is_keyword(t, "false")) return false;
      fail(t, "true or false in a bool constant");
    } else if constexpr (std::is_floating_point_v<T>) {
      return parse_float<T>(t, fmt::format("a number in an {} constant", name(dt)));
    } else {
      const int64_t v = parse_int(t, fmt::format("an integer in an {} constant", name(dt)));
      if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          v > static_cast<int64_t>(std::numeric_limits<T>::max()))
        fail_line(t.line, fmt::format("{} is out of range for {}", v, name(dt)));
      return static_cast<T>(v);
    }
  }

  void parse_constant() {
    const Token& idx = next();
    const int64_t index = parse_int(idx, "a constant index");
    if (index != static_cast<int64_t>(g_.constants.size()))
      fail_line(idx.line, fmt::format("constants must be numbered 0, 1, 2... in order: expected "
                                      "{}, got {}",
                                      g_.constants.size(), index));
    const TensorType type = parse_type("the constant's type");
    std::string ts;
    append_type(ts, type);
    for (int64_t d : type.shape)
      if (d < 0) fail_line(idx.line, fmt::format("constant {} has an unknown dim: {}", index, ts));
    expect("=", "after the constant's type");
    const int64_t numel = type.shape.numel();  // <= 2^50, checked by parse_type
    g_.constants.push_back(visit_dtype(type.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      std::vector<T> values;
      if (type.shape.empty()) {
        values.push_back(parse_element<T>(next(), type.dtype));
      } else {
        expect("[", fmt::format("to open the values of constant {} ({})", index, ts));
        if (!accept("]")) {
          while (true) {
            const Token& t = next();
            if (static_cast<int64_t>(values.size()) >= numel)
              fail_line(t.line, fmt::format("constant {} has more values than its type {} holds "
                                            "({})",
                                            index, ts, numel));
            values.push_back(parse_element<T>(t, type.dtype));
            if (accept("]")) break;
            expect(",", "or ']' after a constant value");
          }
        }
      }
      if (static_cast<int64_t>(values.size()) != numel)
        fail_line(idx.line, fmt::format("constant {} has {} values but its type {} needs {}", index,
                                        values.size(), ts, numel));
      return from_vector(values, type.shape);
    }));
  }
};

}  // namespace

namespace {

// Prints g with every line indented by `indent` spaces; subgraphs follow their node inside
// "regions { ... }".
void print_graph(std::string& out, const Graph& g, int indent) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  out += pad + "func @";
  if (is_identifier(g.name))
    out += g.name;
  else
    append_quoted(out, g.name);
  out += '(';
  for (size_t i = 0; i < g.params.size(); ++i) {
    out += fmt::format("{}%{}: ", i ? ", " : "", g.params[i]);
    append_type_of(out, g, g.params[i]);
  }
  out += ") -> (";
  for (size_t i = 0; i < g.results.size(); ++i) {
    if (i) out += ", ";
    append_type_of(out, g, g.results[i]);
  }
  out += ") {\n";
  for (const Node& n : g.nodes) {
    out += pad + "  ";
    if (!n.outputs.empty()) {
      append_values(out, n.outputs);
      out += " = ";
    }
    out += n.op;
    out += '(';
    append_values(out, n.inputs);
    out += ')';
    if (!n.attrs.empty()) {
      out += " {";
      bool first = true;
      for (const auto& [k, v] : n.attrs.items()) {
        out += first ? "" : ", ";
        first = false;
        out += k;
        out += " = ";
        append_attr(out, v);
      }
      out += '}';
    }
    if (!n.outputs.empty()) {
      out += " : ";
      for (size_t i = 0; i < n.outputs.size(); ++i) {
        if (i) out += ", ";
        append_type_of(out, g, n.outputs[i]);
      }
    }
    if (!n.subgraphs.empty()) {
      out += " regions {\n";
      for (const auto& sub : n.subgraphs)
        print_graph(out, *sub, indent + 4);
      out += pad + "  }";
    }
    out += '\n';
  }
  out += pad + "  return";
  if (!g.results.empty()) {
    out += ' ';
    append_values(out, g.results);
  }
  out += "\n" + pad + "}\n";
  if (!g.variables.empty()) {
    out += pad + "variables:\n";
    for (size_t i = 0; i < g.variables.size(); ++i) {
      out += fmt::format("{}  {} ", pad, i);
      append_quoted(out, g.variables[i].name);
      out += ' ';
      append_type(out, g.variables[i].type);
      out += '\n';
    }
  }
  if (!g.constants.empty()) {
    out += pad + "constants:\n";
    for (size_t i = 0; i < g.constants.size(); ++i) {
      out += fmt::format("{}  {} ", pad, i);
      append_constant(out, g.constants[i]);
      out += '\n';
    }
  }
}

}  // namespace

std::string print(const Graph& g) {
  std::string out;
  print_graph(out, g, 0);
  return out;
}

Graph parse(std::string_view text) {
  return Parser(text).run();
}

}  // namespace kiln::ir
