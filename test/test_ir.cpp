// The Graph IR's text form (print, parse) and verifier: golden texts, round trips over every
// attribute kind and constant dtype, parser errors with line numbers, verifier errors.
#include <cmath>
#include <cstring>
#include <limits>

#include <kiln/tracer/graph.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_error;

namespace {

TensorType ty(DType d, std::vector<int64_t> dims) {
  return TensorType{d, Shape(std::move(dims))};
}

// Builds graphs by hand, the way the tracer does: ids in order of definition.
struct Builder {
  ir::Graph g;
  explicit Builder(std::string name = "fn") { g.name = std::move(name); }
  int param(TensorType t) {
    const int id = g.add_value(std::move(t));
    g.params.push_back(id);
    return id;
  }
  std::vector<int> node(std::string op, std::vector<int> in, std::vector<TensorType> outs,
                        Attrs attrs = {}) {
    ir::Node n{std::move(op), std::move(in), {}, std::move(attrs)};
    for (auto& t : outs)
      n.outputs.push_back(g.add_value(std::move(t)));
    g.nodes.push_back(n);
    return n.outputs;
  }
  int op(std::string op, std::vector<int> in, TensorType out, Attrs attrs = {}) {
    return node(std::move(op), std::move(in), {std::move(out)}, std::move(attrs))[0];
  }
  int constant(Tensor t) {
    g.constants.push_back(t);
    return op("constant", {}, t.type(), {{"index", int64_t(g.constants.size() - 1)}});
  }
  int64_t variable(std::string name, TensorType t) {
    g.variables.push_back({std::move(name), std::move(t), nullptr});
    return static_cast<int64_t>(g.variables.size() - 1);
  }
};

ir::Graph train_step() {
  Builder b("train_step");
  const int x = b.param(ty(f32, {-1, 784}));
  b.param(ty(i32, {-1}));
  const int64_t v = b.variable("dense/kernel", ty(f32, {784, 128}));
  const int w = b.op("read_variable", {}, ty(f32, {784, 128}), {{"var", v}});
  const int y = b.op("matmul", {x, w}, ty(f32, {-1, 128}));
  const int c = b.constant(scalar_tensor(0.5, f32));
  const int z = b.op("add", {y, c}, ty(f32, {-1, 128}));
  b.node("assign_variable", {w}, {}, {{"var", v}});
  b.g.results = {z, w};
  return b.g;
}

const char* const kTrainStep =
    R"(func @train_step(%0: f32[?,784], %1: i32[?]) -> (f32[?,128], f32[784,128]) {
  %2 = read_variable() {var = 0} : f32[784,128]
  %3 = matmul(%0, %2) : f32[?,128]
  %4 = constant() {index = 0} : f32[]
  %5 = add(%3, %4) : f32[?,128]
  assign_variable(%2) {var = 0}
  return %5, %2
}
variables:
  0 "dense/kernel" f32[784,128]
constants:
  0 f32[] = 0.5
)";

ir::Graph shapes() {
  Builder b("shapes");
  const int x = b.param(ty(f32, {2, 3, 4}));
  const int s = b.op("reduce_sum", {x}, ty(f32, {1, 3, 1}),
                     {{"axes", std::vector<int64_t>{0, 2}}, {"keepdims", true}});
  const int r = b.op("reshape", {s}, ty(f32, {3, 1}), {{"shape", std::vector<int64_t>{3, 1}}});
  const int c = b.op("cast", {r}, ty(f64, {3, 1}), {{"dtype", f64}});
  const int t =
      b.op("transpose", {x}, ty(f32, {4, 2, 3}), {{"perm", std::vector<int64_t>{2, 0, 1}}});
  const int e = b.op("exp", {t}, ty(f32, {4, 2, 3}));
  const int m = b.op("greater", {e, t}, ty(boolean, {4, 2, 3}));
  const int sel = b.op("select", {m, e, t}, ty(f32, {4, 2, 3}));
  b.g.results = {c, sel};
  return b.g;
}

const char* const kShapes = R"(func @shapes(%0: f32[2,3,4]) -> (f64[3,1], f32[4,2,3]) {
  %1 = reduce_sum(%0) {axes = [0, 2], keepdims = true} : f32[1,3,1]
  %2 = reshape(%1) {shape = [3, 1]} : f32[3,1]
  %3 = cast(%2) {dtype = f64} : f64[3,1]
  %4 = transpose(%0) {perm = [2, 0, 1]} : f32[4,2,3]
  %5 = exp(%4) : f32[4,2,3]
  %6 = greater(%5, %4) : bool[4,2,3]
  %7 = select(%6, %5, %4) : f32[4,2,3]
  return %3, %7
}
)";

// An op the registry does not know, with every attribute kind and two outputs.
ir::Graph all_attrs() {
  Builder b("odd name");
  const int x = b.param(ty(f32, {-1}));
  auto outs = b.node("split_like", {x, x}, {ty(f32, {-1}), ty(i64, {})},
                     {{"n", int64_t{-3}},
                      {"rate", 0.5},
                      {"eps", 1e-7},
                      {"big", 1e20},
                      {"whole", 2.0},
                      {"neg_zero", -0.0},
                      {"flag", false},
                      {"axes", std::vector<int64_t>{}},
                      {"dtype", boolean},
                      {"padding", std::string("SA\"ME\\\n\t\x01")}});
  b.g.results = {outs[1], outs[0]};
  return b.g;
}

const char* const kAllAttrs = R"(func @"odd name"(%0: f32[?]) -> (i64[], f32[?]) {
  %1, %2 = split_like(%0, %0) {n = -3, rate = 0.5, eps = 1e-07, big = 1e+20, whole = 2.0, neg_zero = -0.0, flag = false, axes = [], dtype = bool, padding = "SA\"ME\\\n\t\x01"} : f32[?], i64[]
  return %2, %1
}
)";

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

void check_round_trip(const ir::Graph& g) {
  const std::string text = ir::print(g);
  INFO(text);
  const ir::Graph p = ir::parse(text);
  CHECK(ir::print(p) == text);
  CHECK(p.name == g.name);
  CHECK(p.types == g.types);
  CHECK(p.params == g.params);
  CHECK(p.results == g.results);
  REQUIRE(p.nodes.size() == g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    CHECK(p.nodes[i].op == g.nodes[i].op);
    CHECK(p.nodes[i].inputs == g.nodes[i].inputs);
    CHECK(p.nodes[i].outputs == g.nodes[i].outputs);
    CHECK(p.nodes[i].attrs == g.nodes[i].attrs);
  }
  REQUIRE(p.variables.size() == g.variables.size());
  for (size_t i = 0; i < g.variables.size(); ++i) {
    CHECK(p.variables[i].name == g.variables[i].name);
    CHECK(p.variables[i].type == g.variables[i].type);
    CHECK(p.variables[i].var == nullptr);
  }
  REQUIRE(p.constants.size() == g.constants.size());
  for (size_t i = 0; i < g.constants.size(); ++i) {
    REQUIRE(p.constants[i].type() == g.constants[i].type());
    visit_dtype(g.constants[i].dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, bool>)
        CHECK(p.constants[i].to_vector<bool>() == g.constants[i].to_vector<bool>());
      else
        CHECK(same_bits(p.constants[i].to_vector<T>(), g.constants[i].to_vector<T>()));
    });
  }
}

}  // namespace

TEST_CASE("IR golden text") {
  CHECK(ir::print(train_step()) == kTrainStep);
  CHECK(ir::print(shapes()) == kShapes);
  CHECK(ir::print(all_attrs()) == kAllAttrs);
  ir::Graph empty;
  empty.name = "empty";
  CHECK(ir::print(empty) == "func @empty() -> () {\n  return\n}\n");
  // Parsing the golden texts gives back the same graphs.
  for (const char* text : {kTrainStep, kShapes, kAllAttrs}) {
    INFO(text);
    CHECK(ir::print(ir::parse(text)) == text);
  }
  check_round_trip(train_step());
  check_round_trip(shapes());
  check_round_trip(all_attrs());
  check_round_trip(empty);
}

TEST_CASE("IR constants of every dtype round-trip exactly") {
  const float finf = std::numeric_limits<float>::infinity();
  const double dinf = std::numeric_limits<double>::infinity();
  Builder c("consts");
  c.param(ty(i32, {}));
  c.constant(from_vector<float>({0.1f, -0.0f, finf, -finf, std::nanf(""), 1e-45f,
                                 std::numeric_limits<float>::max(), 3.0f, -2.5e-12f},
                                {3, 3}));
  c.constant(from_vector<double>(
      {0.1, -0.0, dinf, -dinf, std::nan(""), 5e-324, 1.7976931348623157e308, 1.0 / 3.0},
      {2, 2, 2}));
  c.constant(scalar_tensor(-0.0, f64));
  c.constant(from_vector<int32_t>(
      {std::numeric_limits<int32_t>::min(), 0, 7, std::numeric_limits<int32_t>::max()}, {4}));
  c.constant(from_vector<int64_t>(
      {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}, {2, 1}));
  c.constant(from_vector<uint8_t>({0, 128, 255}, {3}));
  c.constant(from_vector<bool>({true, false, false, true}, {2, 2}));
  c.constant(scalar_tensor(true, boolean));
  c.constant(from_vector<float>({}, {0}));
  c.constant(from_vector<int32_t>({}, {2, 0}));
  c.g.results = {1, 3, 7};
  check_round_trip(c.g);
  const std::string text = ir::print(c.g);
  CHECK(text.find("  0 f32[3,3] = [0.1, -0.0, inf, -inf, nan, 1e-45, 3.4028235e+38, 3.0, "
                  "-2.5e-12]\n") != std::string::npos);
  CHECK(text.find("  2 f64[] = -0.0\n") != std::string::npos);
  CHECK(text.find("  3 i32[4] = [-2147483648, 0, 7, 2147483647]\n") != std::string::npos);
  CHECK(text.find("  5 u8[3] = [0, 128, 255]\n") != std::string::npos);
  CHECK(text.find("  6 bool[2,2] = [true, false, false, true]\n") != std::string::npos);
  CHECK(text.find("  7 bool[] = true\n") != std::string::npos);
  CHECK(text.find("  8 f32[0] = []\n") != std::string::npos);
  CHECK(text.find("  9 i32[2,0] = []\n") != std::string::npos);
  const ir::Graph p = ir::parse(text);
  const auto f = p.constants[0].to_vector<float>();
  CHECK(std::signbit(f[1]));
  CHECK(std::isnan(f[4]));
  CHECK(f[5] == 1e-45f);
  CHECK(std::signbit(p.constants[2].item<double>()));
  ir::verify(p);
}

TEST_CASE("IR round trip: variables, unknown dims, odd strings, multi-output") {
  Builder b("a.b_c");
  const int x = b.param(ty(f64, {-1, -1, 3}));
  const int y = b.param(ty(u8, {}));
  const int64_t v0 = b.variable("scope/\"quoted\"\\name\n", ty(f64, {3}));
  const int64_t v1 = b.variable("", ty(i64, {}));
  const int r0 = b.op("read_variable", {}, ty(f64, {3}), {{"var", v0}});
  const int s = b.op("add", {x, r0}, ty(f64, {-1, -1, 3}));
  auto outs = b.node("custom", {s, y}, {ty(f64, {-1}), ty(boolean, {0}), ty(u8, {1, 1, 1})},
                     {{"a", int64_t{std::numeric_limits<int64_t>::min()}},
                      {"b", std::numeric_limits<double>::infinity()},
                      {"c", -std::numeric_limits<double>::infinity()},
                      {"d", 123456789.123456789},
                      {"e", std::vector<int64_t>{-1, 0, std::numeric_limits<int64_t>::max()}},
                      {"f", true},
                      {"g", i32},
                      {"h", std::string("")},
                      {"i", std::string("caf\xc3\xa9")}});
  const int r1 = b.op("read_variable", {}, ty(i64, {}), {{"var", v1}});
  b.node("assign_variable", {r1}, {}, {{"var", v1}});
  b.g.results = {outs[2], outs[0], s, outs[2]};
  check_round_trip(b.g);

  // nan attributes print as nan and parse back as nan.
  Builder n;
  n.node("nan_attr", {}, {}, {{"x", std::nan("")}});
  const ir::Graph p = ir::parse(ir::print(n.g));
  CHECK(ir::print(n.g) == "func @fn() -> () {\n  nan_attr() {x = nan}\n  return\n}\n");
  CHECK(std::isnan(p.nodes[0].attrs.f("x")));

  // Whitespace and line breaks are not significant.
  const ir::Graph q =
      ir::parse("func @f(%0:f32[2])->(f32[2]){%1=neg(%0):f32[2]\n\n  return %1}\r\nconstants:\n");
  CHECK(ir::print(q) ==
        "func @f(%0: f32[2]) -> (f32[2]) {\n  %1 = neg(%0) : f32[2]\n  return %1\n}\n");
}

TEST_CASE("IR parser errors name the line and what was expected") {
  using ir::parse;
  check_error([] { parse(""); }, {"line 1", "expected 'func'", "end of input"});
  check_error([] { parse("fun @f() -> () {\n  return\n}\n"); }, {"line 1", "'func'", "'fun'"});
  check_error([] { parse("func @f(%0) -> () {\n  return\n}\n"); },
              {"line 1", "expected ':' after a parameter", "')'"});
  check_error([] { parse("func @f(%1: f32[]) -> () {\n  return\n}\n"); },
              {"line 1", "%1 is defined out of order", "expected %0"});
  check_error(
      [] {
        parse(
            "func @f(%0: f32[]) -> () {\n  %1 = neg(%0) : f32[]\n  %1 = neg(%0) : "
            "f32[]\n  return\n}\n");
      },
      {"line 3", "%1 is defined twice"});
  check_error(
      [] { parse("func @f(%0: f32[]) -> () {\n  %1 = add(%0, %5) : f32[]\n  return\n}\n"); },
      {"line 2", "%5 is used before it is defined"});
  check_error([] { parse("func @f(%0: f33[2]) -> () {\n  return\n}\n"); },
              {"line 1", "expected a dtype", "'f33'"});
  check_error([] { parse("func @f(%0: f32[2,-1]) -> () {\n  return\n}\n"); },
              {"line 1", "dim -1 is out of range"});
  check_error([] { parse("func @f(%0: f32[2000000000000]) -> () {\n  return\n}\n"); },
              {"line 1", "dim 2000000000000 is out of range"});
  check_error([] { parse("func @f(%0: f32[1000000,1000000,1000000]) -> () {\n  return\n}\n"); },
              {"line 1", "more than 2^50 elements"});
  check_error(
      [] { parse("func @f() -> () {\n  return\n}\nconstants:\n  0 f32[1000000000] = [1.0]\n"); },
      {"line 5", "constant 0 has 1 values", "f32[1000000000] needs 1000000000"});
  check_error(
      [] { parse("func @f() -> () {\n  return\n}\nconstants:\n  0 f32[1] = [1.0,\n 2.0]\n"); },
      {"line 6", "more values than its type f32[1]"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nconstants:\n  0 u8[] = 256\n"); },
              {"line 5", "256 is out of range for u8"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nconstants:\n  0 i32[] = 1.5\n"); },
              {"line 5", "expected an integer in an i32 constant", "'1.5'"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nconstants:\n  0 f32[] = 1e39\n"); },
              {"line 5", "1e39 is out of range"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nconstants:\n  1 f32[] = 1.0\n"); },
              {"line 5", "expected 0, got 1"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nconstants:\n  0 f32[?] = [1.0]\n"); },
              {"line 5", "unknown dim", "f32[?]"});
  check_error([] { parse("func @f() -> () {\n  foo() {s = \"abc\n  return\n}\n"); },
              {"line 2", "unterminated string"});
  check_error([] { parse("func @f() -> () {\n  foo() {s = \"a\\qb\"}\n  return\n}\n"); },
              {"line 2", "invalid escape"});
  check_error([] { parse("func @f() -> () {\n  foo() {a = [1.5]}\n  return\n}\n"); },
              {"line 2", "expected an integer in the list", "'1.5'"});
  check_error([] { parse("func @f() -> () {\n  foo() {a = 1, a = 2}\n  return\n}\n"); },
              {"line 2", "attribute 'a' is given twice"});
  check_error([] { parse("func @f() -> () {\n  foo() {a = 99999999999999999999}\n  return\n}\n"); },
              {"line 2", "integer 99999999999999999999 is out of range"});
  check_error([] { parse("func @f() -> () {\n  foo() {a = f32[2]}\n  return\n}\n"); },
              {"line 2", "expected ',' or '}' after an attribute", "'['"});
  check_error([] { parse("func @f(%0: f32[]) -> (f32[]) {\n  %1 = neg(%0)\n  return %1\n}\n"); },
              {"line 3", "expected ':' and the output types after 'neg(...)'", "'return'"});
  check_error(
      [] {
        parse("func @f(%0: f32[]) -> (f32[]) {\n  %1, %2 = two(%0) : f32[]\n  return %1\n}\n");
      },
      {"line 3", "2 output types for 'two'"});
  check_error([] { parse("func @f(%0: f32[]) -> (f32[2]) {\n  return %0\n}\n"); },
              {"line 2", "returned %0 has type f32[] but the signature (line 1) declares f32[2]"});
  check_error([] { parse("func @f(%0: f32[]) -> (f32[], f32[]) {\n  return %0\n}\n"); },
              {"line 2", "return gives 1 values", "declares 2 results"});
  check_error([] { parse("func @f() -> () {\n  return\n"); },
              {"line 3", "expected '}' after the return statement", "end of input"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nextra\n"); }, {"line 4", "'extra'"});
  check_error([] { parse("func @f() -> () {\n  %0 = $x()\n}\n"); },
              {"line 2", "unexpected character '$'"});
  check_error([] { parse("func @f() -> () {\n  return %99999999999999999999\n}\n"); },
              {"line 2", "value id", "out of range"});
  check_error([] { parse("func @f() -> () {\n  return\n}\nvariables:\n  0 dense f32[]\n"); },
              {"line 5", "the variable's quoted name", "'dense'"});
  check_error([] { parse(std::string_view("func @f\0", 8)); }, {"line 1", "byte 0x00"});
}

TEST_CASE("IR verifier accepts well-formed graphs") {
  ir::verify(train_step());
  ir::verify(shapes());
  ir::verify(ir::parse(kTrainStep));
  ir::verify(ir::parse(kShapes));
  ir::Graph empty;
  ir::verify(empty);
}

TEST_CASE("IR verifier rejects broken graphs and says where") {
  using ir::verify;
  {  // unknown op
    ir::Graph g = all_attrs();
    check_error([&] { verify(g); }, {"node 0 (split_like)", "unknown op 'split_like'"});
  }
  {  // wrong input count
    ir::Graph g = train_step();
    g.nodes[1].inputs.push_back(0);
    check_error([&] { verify(g); }, {"node 1 (matmul)", "expects 2 inputs, got 3"});
  }
  {  // use before definition
    ir::Graph g = train_step();
    g.nodes[1].inputs[1] = 5;
    check_error([&] { verify(g); }, {"node 1 (matmul)", "input 1 uses %5 before it is defined"});
  }
  {  // out-of-range id
    ir::Graph g = train_step();
    g.nodes[3].inputs[0] = 42;
    check_error([&] { verify(g); }, {"node 3 (add)", "%42 is out of range", "6 values"});
  }
  {  // defined twice
    ir::Graph g = train_step();
    g.nodes[2].outputs[0] = 2;
    check_error([&] { verify(g); },
                {"node 2 (constant)", "%2 is defined twice", "node 0 (read_variable)"});
    g = train_step();
    g.params = {0, 1, 0};
    check_error([&] { verify(g); }, {"parameter 2", "%0 is defined twice", "a parameter"});
  }
  {  // undefined result
    ir::Graph g = train_step();
    g.nodes.erase(g.nodes.begin() + 3, g.nodes.begin() + 4);
    check_error([&] { verify(g); }, {"result 0", "%5 is never defined"});
    g = train_step();
    g.results.push_back(-1);
    check_error([&] { verify(g); }, {"result 2", "%-1 is out of range"});
  }
  {  // param out of range
    ir::Graph g = train_step();
    g.params.push_back(17);
    check_error([&] { verify(g); }, {"parameter 2", "%17 is out of range"});
  }
  {  // constant index out of range, missing, mistyped
    ir::Graph g = train_step();
    g.nodes[2].attrs.set("index", int64_t{1});
    check_error([&] { verify(g); },
                {"node 2 (constant)", "index = 1 is out of range", "1 constants"});
    g.nodes[2].attrs = Attrs{{"index", 0.0}};
    check_error([&] { verify(g); }, {"node 2 (constant)", "integer attribute 'index'"});
  }
  {  // constant type mismatch
    ir::Graph g = train_step();
    g.constants[0] = scalar_tensor(0.5, f64);
    check_error([&] { verify(g); },
                {"node 2 (constant)", "constant 0 has type f64[]", "output %4 has type f32[]"});
  }
  {  // variable index and type
    ir::Graph g = train_step();
    g.nodes[0].attrs.set("var", int64_t{3});
    check_error([&] { verify(g); }, {"node 0 (read_variable)", "var = 3 is out of range"});
    g = train_step();
    g.variables[0].type = ty(f32, {784, 64});
    check_error([&] { verify(g); }, {"node 0 (read_variable)", "variable 0 ('dense/kernel')",
                                     "f32[784,64]", "%2 has type f32[784,128]"});
  }
  {  // assign type mismatch
    ir::Graph g = train_step();
    g.nodes[4].inputs[0] = 0;
    check_error([&] { verify(g); }, {"node 4 (assign_variable)", "assigns %0 of type f32[?,784]",
                                     "variable 0 ('dense/kernel') of type f32[784,128]"});
    g = train_step();
    g.nodes[4].inputs[0] = 5;  // f32[?,128] may be f32[784,128]: accepted
    verify(g);
    g.nodes[4].outputs.push_back(g.add_value(ty(f32, {})));
    check_error([&] { verify(g); }, {"node 4 (assign_variable)", "has 1 outputs, expected 0"});
  }
  {  // output type disagrees with inference
    ir::Graph g = train_step();
    g.types[3] = ty(f32, {-1, 64});
    check_error([&] { verify(g); }, {"node 1 (matmul)", "output 0 (%3) has type f32[?,64]",
                                     "inference gives f32[?,128]"});
    g = shapes();
    g.types[6] = ty(u8, {4, 2, 3});
    check_error([&] { verify(g); }, {"node 5 (greater)", "u8[4,2,3]", "bool[4,2,3]"});
  }
  {  // inference errors become verifier errors at the node
    ir::Graph g = train_step();
    g.variables[0].type = g.types[2] = ty(f32, {100, 128});
    check_error([&] { verify(g); },
                {"node 1 (matmul)", "shape inference fails", "inner dimensions differ"});
    g = shapes();
    g.nodes[1].attrs = Attrs{};
    check_error([&] { verify(g); }, {"node 1 (reshape)", "shape inference fails", "'shape'"});
  }
  {  // a malformed type
    ir::Graph g = train_step();
    g.types[3] = ty(f32, {-5, 128});
    check_error([&] { verify(g); }, {"%3 has a malformed type f32[-5,128]"});
  }
  {  // a value used by its own node
    ir::Graph g = shapes();
    g.nodes[4].inputs[0] = 5;
    check_error([&] { verify(g); }, {"node 4 (exp)", "uses %5 before it is defined"});
  }
}
