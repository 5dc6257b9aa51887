// Finite-difference checks of every VJP rule. One TABLE row (at least) per differentiable
// primitive of the registry -- a test walks the registry and fails naming any differentiable
// op without a row or without a VJP rule -- plus rows for composites (softmax, gelu, var...).
//
// Each row builds random f64 inputs (fixed seeds) in the op's smooth domain, computes
// loss = sum(f(inputs) * W) for a fixed random W, and compares the tape's gradient of every
// floating input with central differences, element by element. The same rows then check
// second-order gradients: the gradient of sum(grad(loss) * V) through nested tapes.

#include <cfloat>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "testing.h"

#include <kiln/autograd/tape.h>
#include <kiln/core/nn_grad.h>

using namespace kiln;
using kiln::testing::check_close;

namespace {

using Inputs = std::vector<Tensor>;

struct Row {
  std::string op;     // the primitive it covers (or the composite's name)
  std::string label;  // unique: what the row does
  std::function<Inputs(std::mt19937&)> make;
  std::function<Tensor(const Inputs&)> f;
  bool composite = false;
  double rtol = 1e-6;
  double atol = 1e-8;
  double eps = 1e-6;
  bool second_order = true;
};

// ---- random inputs -----------------------------------------------------------------------------

Tensor uniform(std::mt19937& rng, const Shape& s, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (auto& x : v)
    x = d(rng);
  return from_vector(v, s);
}

// Magnitudes in [lo, hi] with a random sign (away from 0).
Tensor signed_away(std::mt19937& rng, const Shape& s, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::bernoulli_distribution neg(0.5);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (auto& x : v)
    x = neg(rng) ? -d(rng) : d(rng);
  return from_vector(v, s);
}

// Values in [lo, hi) whose fractional part is in [0.1, 0.4] or [0.6, 0.9]: away from the
// integers (floor, ceil, sign, abs and relu kinks) and from the halves (round's jumps).
Tensor off_grid(std::mt19937& rng, const Shape& s, int lo, int hi) {
  std::uniform_int_distribution<int> whole(lo, hi - 1);
  std::uniform_real_distribution<double> frac(0.1, 0.4);
  std::bernoulli_distribution upper(0.5);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (auto& x : v)
    x = whole(rng) + frac(rng) + (upper(rng) ? 0.5 : 0.0);
  return from_vector(v, s);
}

Tensor indices(std::vector<int64_t> v, const Shape& s) {
  return from_vector(v, s);
}

// Rows with one input of shape s drawn from uniform(lo, hi).
Row unary(std::string op, const Shape& s, double lo, double hi,
          std::function<Tensor(const Tensor&)> fn) {
  return {op, op, [s, lo, hi](std::mt19937& r) { return Inputs{uniform(r, s, lo, hi)}; },
          [fn](const Inputs& in) { return fn(in[0]); }};
}

Row off_grid_unary(std::string op, std::function<Tensor(const Tensor&)> fn) {
  return {op, op,
          [](std::mt19937& r) {
            return Inputs{off_grid(r, Shape{3, 4}, -3, 3)};
          },
          [fn](const Inputs& in) { return fn(in[0]); }};
}

// Binary rows with broadcasting operands: [3,1,4] with [2,4], and [2,3] with a 0-d tensor.
std::vector<Row> binary(std::string op, double lo, double hi,
                        std::function<Tensor(const Tensor&, const Tensor&)> fn, double blo = NAN,
                        double bhi = NAN) {
  if (std::isnan(blo)) blo = lo, bhi = hi;
  auto f = [fn](const Inputs& in) { return fn(in[0], in[1]); };
  return {
      {op, op + " [3,1,4]x[2,4]",
       [=](std::mt19937& r) {
         return Inputs{uniform(r, Shape{3, 1, 4}, lo, hi), uniform(r, Shape{2, 4}, blo, bhi)};
       },
       f},
      {op, op + " [2,3]x[]",
       [=](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3}, lo, hi), uniform(r, Shape{}, blo, bhi)};
       },
       f},
      {op, op + " [1,3]x[2,1]",
       [=](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 3}, lo, hi), uniform(r, Shape{2, 1}, blo, bhi)};
       },
       f},
  };
}

Row reduce_row(std::string op, std::string label, const Shape& s,
               std::function<Tensor(const Tensor&)> fn, double lo = -2, double hi = 2) {
  return {op, label, [s, lo, hi](std::mt19937& r) { return Inputs{uniform(r, s, lo, hi)}; },
          [fn](const Inputs& in) { return fn(in[0]); }};
}

// ---- the table ---------------------------------------------------------------------------------

std::vector<Row> make_table() {
  std::vector<Row> t;
  auto add = [&t](Row r) { t.push_back(std::move(r)); };
  auto add_all = [&t](std::vector<Row> rs) {
    for (auto& r : rs)
      t.push_back(std::move(r));
  };
  const Shape s34{3, 4};

  // unary elementwise
  add(unary("neg", s34, -2, 2, [](const Tensor& x) { return -x; }));
  add(off_grid_unary("abs", [](const Tensor& x) { return abs(x); }));
  add(unary("square", s34, -2, 2, [](const Tensor& x) { return square(x); }));
  add(off_grid_unary("sign", [](const Tensor& x) { return sign(x); }));
  add(off_grid_unary("relu", [](const Tensor& x) { return relu(x); }));
  add(unary("exp", s34, -2, 2, [](const Tensor& x) { return exp(x); }));
  add(unary("log", s34, 0.2, 3, [](const Tensor& x) { return log(x); }));
  add(unary("log1p", s34, -0.7, 3, [](const Tensor& x) { return log1p(x); }));
  add(unary("expm1", s34, -2, 2, [](const Tensor& x) { return expm1(x); }));
  add(unary("sqrt", s34, 0.2, 3, [](const Tensor& x) { return sqrt(x); }));
  add(unary("rsqrt", s34, 0.3, 3, [](const Tensor& x) { return rsqrt(x); }));
  add(unary("tanh", s34, -2, 2, [](const Tensor& x) { return tanh(x); }));
  add(unary("sigmoid", s34, -3, 3, [](const Tensor& x) { return sigmoid(x); }));
  add(unary("erf", s34, -2, 2, [](const Tensor& x) { return erf(x); }));
  add(unary("sin", s34, -3, 3, [](const Tensor& x) { return sin(x); }));
  add(unary("cos", s34, -3, 3, [](const Tensor& x) { return cos(x); }));
  add(off_grid_unary("floor", [](const Tensor& x) { return floor(x); }));
  add(off_grid_unary("ceil", [](const Tensor& x) { return ceil(x); }));
  add(off_grid_unary("round", [](const Tensor& x) { return round(x); }));
  // smooth functions of the piecewise-constant ones, so the row is not all zeros
  add({"floor", "floor * x",
       [](std::mt19937& r) {
         return Inputs{off_grid(r, Shape{2, 5}, -3, 3)};
       },
       [](const Inputs& in) { return floor(in[0]) * in[0] + ceil(in[0]) * sign(in[0]); }});
  add(unary("copy", s34, -2, 2, [](const Tensor& x) { return x.clone() * x; }));
  // f64 -> f32 -> f64 rounds to f32: a coarser step and tolerance for this row
  Row cast_row = unary("cast", s34, -2, 2, [](const Tensor& x) { return cast(cast(x, f32), f64); });
  cast_row.eps = 1e-2;
  cast_row.rtol = 1e-4;
  cast_row.atol = 1e-5;
  cast_row.second_order = false;
  add(cast_row);
  // a cast from bool cuts the gradient: d/dx of x * cast(x > 0) is the mask
  add({"cast", "cast bool->f64 (no gradient)",
       [](std::mt19937& r) {
         return Inputs{signed_away(r, Shape{3, 4}, 0.1, 2)};
       },
       [](const Inputs& in) { return in[0] * cast(in[0] > 0.0, f64); }});

  // binary elementwise
  add_all(binary("add", -2, 2, [](const Tensor& a, const Tensor& b) { return a + b; }));
  add_all(binary("sub", -2, 2, [](const Tensor& a, const Tensor& b) { return a - b; }));
  add_all(binary("mul", -2, 2, [](const Tensor& a, const Tensor& b) { return a * b; }));
  add_all(binary(
      "div", -2, 2, [](const Tensor& a, const Tensor& b) { return a / b; }, 0.5, 2));
  add_all(binary(
      "pow", 0.3, 2.5, [](const Tensor& a, const Tensor& b) { return pow(a, b); }, -2, 2));
  add_all(binary("maximum", -2, 2, [](const Tensor& a, const Tensor& b) { return maximum(a, b); }));
  add_all(binary("minimum", -2, 2, [](const Tensor& a, const Tensor& b) { return minimum(a, b); }));
  // pow with a negative base and integer exponents (an i64 tensor, cast: no gradient)
  add({"pow", "pow negative base, integer exponent",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3}, -2, -0.3), indices({2, 3, 1}, Shape{3})};
       },
       [](const Inputs& in) { return pow(in[0], cast(in[1], f64)); }});

  // select: 3-way broadcasting of cond [3,1], a [1,4], b [3,4]; and where() with a scalar
  add({"select", "where cond[3,1] a[1,4] b[3,4]",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{3, 1}, -1, 1), uniform(r, Shape{1, 4}, -2, 2),
                       uniform(r, Shape{3, 4}, -2, 2)};
       },
       [](const Inputs& in) { return where(stop_gradient(in[0]) > 0.0, in[1], in[2]) * in[0]; }});
  add({"select", "where(cond, a, 0.5)",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5}, -2, 2)};
       },
       [](const Inputs& in) { return where(in[0] > 0.3, in[0] * in[0], Scalar(0.5)); }});

  // movement
  add({"reshape", "reshape [2,3,4]->[4,6]",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3, 4}, -2, 2)};
       },
       [](const Inputs& in) {
         return reshape(in[0], Shape{4, 6}) * reshape(in[0], Shape{4, 6});
       }});
  add({"reshape_like", "reshape_like [2,3,4] like [4,6]",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3, 4}, -2, 2)};
       },
       [](const Inputs& in) {
         // The primitive itself: the public reshape_like is a reshape when like is known.
         static const OpDef& op = registry().op("reshape_like");
         return square(dispatch1(op, {in[0], zeros({4, 6}, f64)}, {}));
       }});
  add({"transpose", "transpose [2,3,4] perm 2,0,1",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3, 4}, -2, 2)};
       },
       [](const Inputs& in) {
         return square(transpose(in[0], {2, 0, 1}));
       }});
  add({"broadcast_to", "broadcast_to [3,1]->[2,3,4]",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{3, 1}, -2, 2)};
       },
       [](const Inputs& in) {
         return square(broadcast_to(in[0], Shape{2, 3, 4}));
       }});
  struct SliceCase {
    Shape s;
    int64_t axis, start, stop, step;
  };
  for (const SliceCase& c : {SliceCase{{5, 4}, 0, 1, 4, 1}, SliceCase{{3, 7}, 1, 1, 7, 2},
                             SliceCase{{3, 8}, 1, 0, 8, 3}, SliceCase{{9, 2}, 0, 2, 7, 2},
                             SliceCase{{2, 10, 3}, 1, 3, 10, 4}, SliceCase{{4, 6}, 1, 5, 6, 3}}) {
    add({"slice",
         fmt::format("slice {} axis {} [{}:{}:{}]", c.s.str(), c.axis, c.start, c.stop, c.step),
         [c](std::mt19937& r) { return Inputs{uniform(r, c.s, -2, 2)}; },
         [c](const Inputs& in) { return square(slice(in[0], c.axis, c.start, c.stop, c.step)); }});
  }
  add({"pad", "pad [2,3] ((1,2),(0,1)) value 0.5",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3}, -2, 2)};
       },
       [](const Inputs& in) {
         return square(pad(in[0], {{1, 2}, {0, 1}}, 0.5));
       }});
  add({"concatenate", "concat [2,1,3] [2,4,3] [2,2,3] axis 1",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 1, 3}, -2, 2), uniform(r, Shape{2, 4, 3}, -2, 2),
                       uniform(r, Shape{2, 2, 3}, -2, 2)};
       },
       [](const Inputs& in) {
         return square(concat({in[0], in[1], in[2]}, 1));
       }});
  add({"gather", "gather axis 0 repeated indices",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{4, 3}, -2, 2), indices({0, 2, 0, 1, 2, 2}, Shape{2, 3})};
       },
       [](const Inputs& in) { return square(gather(in[0], in[1], 0)); }});
  add({"gather", "gather axis 1 i32 indices",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5, 3}, -2, 2), from_vector<int32_t>({4, 0, 4, 3}, {4})};
       },
       [](const Inputs& in) { return square(gather(in[0], in[1], 1)); }});
  add({"scatter_add", "scatter_add axis 1 repeated indices",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 4}, -2, 2), indices({3, 0, 3}, Shape{3}),
                       uniform(r, Shape{2, 3}, -2, 2)};
       },
       [](const Inputs& in) { return square(scatter_add(in[0], in[1], in[2], 1)); }});

  // reductions
  add(reduce_row("reduce_sum", "sum all", Shape{2, 3, 4},
                 [](const Tensor& x) { return square(sum(x)); }));
  add(reduce_row("reduce_sum", "sum axes 0,2", Shape{2, 3, 4}, [](const Tensor& x) {
    return square(sum(x, {0, 2}));
  }));
  add(reduce_row("reduce_sum", "sum axis -1 keepdims", Shape{2, 3, 4},
                 [](const Tensor& x) { return square(sum(x, {-1}, true)) * x; }));
  add(reduce_row("reduce_max", "max axis 1", Shape{3, 5, 2},
                 [](const Tensor& x) { return square(max(x, {1})); }));
  add(reduce_row("reduce_max", "max all", Shape{3, 4}, [](const Tensor& x) { return max(x) * x; }));
  add(reduce_row("reduce_max", "max axes 0,2 keepdims", Shape{3, 4, 2}, [](const Tensor& x) {
    return max(x, {0, 2}, true) * x;
  }));
  add(reduce_row("reduce_min", "min axis 0", Shape{4, 3},
                 [](const Tensor& x) { return square(min(x, {0})); }));
  add(reduce_row("reduce_min", "min axes 1,2 keepdims", Shape{2, 3, 4}, [](const Tensor& x) {
    return min(x, {1, 2}, true) * x;
  }));
  add(reduce_row(
      "reduce_prod", "prod axis 1", Shape{3, 4}, [](const Tensor& x) { return prod(x, {1}); }, 0.5,
      1.5));
  add({"reduce_prod", "prod all, signed",
       [](std::mt19937& r) {
         return Inputs{signed_away(r, Shape{2, 3}, 0.5, 1.5)};
       },
       [](const Inputs& in) { return prod(in[0]) * in[0]; }});
  // prod is multilinear, so central differences are exact even at the zeros
  add({"reduce_prod", "prod axis 1 with 0, 1 and 2 zeros per row",
       [](std::mt19937& r) {
         Tensor x = uniform(r, Shape{3, 4}, 0.5, 1.5);
         std::vector<double> v = x.to_vector<double>();
         v[4 + 2] = 0;             // row 1: one zero
         v[8 + 0] = v[8 + 3] = 0;  // row 2: two zeros
         return Inputs{from_vector(v, Shape{3, 4})};
       },
       [](const Inputs& in) { return prod(in[0], {1}, true); }});

  add(reduce_row(
      "reduce_prod", "prod over a size-1 axis", Shape{1, 3},
      [](const Tensor& x) { return prod(x, {0}) * x; }, 0.5, 1.5));

  // contractions and windows (their VJPs live in autograd/vjp_nn.cpp)
  add({"matmul", "matmul [2,3,4]x[4,5]",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3, 4}, -1, 1), uniform(r, Shape{4, 5}, -1, 1)};
       },
       [](const Inputs& in) { return matmul(in[0], in[1]); }});
  add({"matmul", "matmul [1,3,4]x[2,4,2] batch broadcast",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 3, 4}, -1, 1), uniform(r, Shape{2, 4, 2}, -1, 1)};
       },
       [](const Inputs& in) { return square(matmul(in[0], in[1])); }});
  add({"matmul", "matmul [4]x[4,3] and [3,4]x[4]",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{4}, -1, 1), uniform(r, Shape{4, 3}, -1, 1)};
       },
       [](const Inputs& in) {
         return matmul(in[0], in[1]) + matmul(transpose(in[1], {1, 0}), in[0]);
       }});
  add({"conv2d", "conv2d [2,5,5,3]*[3,3,3,2] SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5, 5, 3}, -1, 1), uniform(r, Shape{3, 3, 3, 2}, -1, 1)};
       },
       [](const Inputs& in) {
         return conv2d(in[0], in[1], {1, 1}, Padding::same);
       }});
  add({"conv2d", "conv2d [1,7,6,2]*[3,2,2,3] stride 2 VALID",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 7, 6, 2}, -1, 1), uniform(r, Shape{3, 2, 2, 3}, -1, 1)};
       },
       [](const Inputs& in) {
         return square(conv2d(in[0], in[1], {2, 2}, Padding::valid));
       }});
  add({"conv2d", "conv2d [1,6,6,2]*[2,2,2,2] stride 2 SAME dilation 2",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 6, 6, 2}, -1, 1), uniform(r, Shape{2, 2, 2, 2}, -1, 1)};
       },
       [](const Inputs& in) {
         return conv2d(in[0], in[1], {2, 2}, Padding::same, {2, 2});
       }});
  add({"max_pool2d", "max_pool2d [2,5,5,2] 2x2 s2 SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5, 5, 2}, -2, 2)};
       },
       [](const Inputs& in) {
         return max_pool2d(in[0], {2, 2}, {2, 2}, Padding::same);
       }});
  // Overlapping windows with an output gradient that depends on x: second order goes
  // through max_pool2d_grad's rule (max_pool2d_select).
  add({"max_pool2d", "max_pool2d [1,6,5,1] 3x2 s1 VALID (overlapping)",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 6, 5, 1}, -2, 2)};
       },
       [](const Inputs& in) {
         return square(max_pool2d(in[0], {3, 2}, {1, 1}));
       }});
  add({"max_pool2d_grad", "max_pool2d_grad x[2,5,5,2] 2x2 s2 SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5, 5, 2}, -2, 2), uniform(r, Shape{2, 3, 3, 2}, -1, 1)};
       },
       [](const Inputs& in) {
         Tensor y = max_pool2d(in[0], {2, 2}, {2, 2}, Padding::same);
         return square(max_pool2d_grad(in[0], y, in[1], {2, 2}, {2, 2}, Padding::same));
       }});
  add({"max_pool2d_select", "max_pool2d_select x[1,6,5,2] 3x2 s1 VALID",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 6, 5, 2}, -2, 2), uniform(r, Shape{1, 6, 5, 2}, -1, 1)};
       },
       [](const Inputs& in) {
         Tensor y = max_pool2d(in[0], {3, 2}, {1, 1});
         return square(max_pool2d_select(in[0], y, in[1], {3, 2}, {1, 1}, Padding::valid));
       }});
  add({"avg_pool2d", "avg_pool2d [2,5,5,2] 3x3 s2 SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5, 5, 2}, -2, 2)};
       },
       [](const Inputs& in) {
         return avg_pool2d(in[0], {3, 3}, {2, 2}, Padding::same);
       }});
  add({"avg_pool2d", "avg_pool2d [1,5,6,1] 2x3 s1 VALID",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 5, 6, 1}, -2, 2)};
       },
       [](const Inputs& in) {
         return square(avg_pool2d(in[0], {2, 3}, {1, 1}));
       }});

  // the backward primitives of conv2d and avg_pool2d (core/nn_grad.h), differentiable again
  add({"conv2d_backprop_input", "conv2d_backprop_input x[2,5,5,2] w[3,3,2,4] SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{3, 3, 2, 4}, -1, 1), uniform(r, Shape{2, 5, 5, 4}, -1, 1)};
       },
       [](const Inputs& in) {
         return conv2d_backprop_input(Shape{2, 5, 5, 2}, in[0], in[1], {1, 1}, Padding::same);
       }});
  add({"conv2d_backprop_input", "conv2d_backprop_input x[1,7,6,2] w[3,2,2,3] s2 VALID",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{3, 2, 2, 3}, -1, 1), uniform(r, Shape{1, 3, 3, 3}, -1, 1)};
       },
       [](const Inputs& in) {
         return square(
             conv2d_backprop_input(Shape{1, 7, 6, 2}, in[0], in[1], {2, 2}, Padding::valid));
       }});
  add({"conv2d_backprop_filter", "conv2d_backprop_filter x[2,5,5,2] w[3,3,2,4] SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 5, 5, 2}, -1, 1), uniform(r, Shape{2, 5, 5, 4}, -1, 1)};
       },
       [](const Inputs& in) {
         return conv2d_backprop_filter(in[0], Shape{3, 3, 2, 4}, in[1], {1, 1}, Padding::same);
       }});
  add({"conv2d_backprop_filter", "conv2d_backprop_filter x[1,6,6,2] w[2,2,2,2] s2 SAME dil 2",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{1, 6, 6, 2}, -1, 1), uniform(r, Shape{1, 3, 3, 2}, -1, 1)};
       },
       [](const Inputs& in) {
         return square(conv2d_backprop_filter(in[0], Shape{2, 2, 2, 2}, in[1], {2, 2},
                                              Padding::same, {2, 2}));
       }});
  add({"avg_pool2d_grad", "avg_pool2d_grad x[2,5,5,2] 3x3 s2 SAME",
       [](std::mt19937& r) {
         return Inputs{uniform(r, Shape{2, 3, 3, 2}, -1, 1)};
       },
       [](const Inputs& in) {
         return square(avg_pool2d_grad(Shape{2, 5, 5, 2}, in[0], {3, 3}, {2, 2}, Padding::same));
       }});

  // composites (extra coverage)
  auto composite = [&t](std::string name, std::string label,
                        std::function<Inputs(std::mt19937&)> make,
                        std::function<Tensor(const Inputs&)> f) {
    Row r{std::move(name), std::move(label), std::move(make), std::move(f)};
    r.composite = true;
    t.push_back(std::move(r));
  };
  auto x_of = [](Shape s, double lo, double hi) {
    return [s, lo, hi](std::mt19937& r) { return Inputs{uniform(r, s, lo, hi)}; };
  };
  composite("softmax", "softmax axis -1", x_of({3, 5}, -2, 2),
            [](const Inputs& in) { return softmax(in[0]); });
  composite("softmax", "softmax axis 0", x_of({4, 2, 3}, -2, 2),
            [](const Inputs& in) { return softmax(in[0], 0); });
  composite("log_softmax", "log_softmax", x_of({3, 5}, -2, 2),
            [](const Inputs& in) { return log_softmax(in[0]); });
  composite("logsumexp", "logsumexp axes 0,2", x_of({2, 3, 4}, -2, 2), [](const Inputs& in) {
    return logsumexp(in[0], {0, 2});
  });
  composite("gelu", "gelu", x_of({3, 4}, -3, 3), [](const Inputs& in) { return gelu(in[0]); });
  composite("mean", "mean axis 1", x_of({3, 4}, -2, 2),
            [](const Inputs& in) { return square(mean(in[0], {1})); });
  composite("var", "var axis 0 keepdims", x_of({4, 3}, -2, 2),
            [](const Inputs& in) { return var(in[0], {0}, true); });
  composite("std", "std all", x_of({3, 4}, -2, 2),
            [](const Inputs& in) { return kiln::std(in[0]); });
  composite(
      "sparse_softmax_cross_entropy_with_logits", "sparse softmax cross-entropy",
      [](std::mt19937& r) {
        return Inputs{indices({1, 0, 4, 4}, Shape{4}), uniform(r, Shape{4, 5}, -2, 2)};
      },
      [](const Inputs& in) { return sparse_softmax_cross_entropy_with_logits(in[0], in[1]); });
  composite(
      "clip", "clip(x, -1, 1)",
      [](std::mt19937& r) {
        return Inputs{off_grid(r, Shape{3, 4}, -3, 3)};
      },
      [](const Inputs& in) { return clip(in[0], -1.0, 1.0) * in[0]; });
  composite(
      "stack/split", "stack and split",
      [](std::mt19937& r) {
        return Inputs{uniform(r, Shape{2, 3}, -2, 2), uniform(r, Shape{2, 3}, -2, 2)};
      },
      [](const Inputs& in) {
        auto parts = split(stack({in[0], in[1]}, 1), 3, 2);
        return parts[0] * parts[2] + squeeze(expand_dims(parts[1], 0), 0);
      });
  return t;
}

const std::vector<Row>& table() {
  static const std::vector<Row> t = make_table();
  return t;
}

// Records the names of the primitives dispatched while it is installed.
class OpRecorder : public DispatchHook {
 public:
  void observe(const OpDef& op, std::span<const Tensor>, const Attrs&,
               std::span<const Tensor>) override {
    names.insert(op.name());
  }
  std::set<std::string> names;
};

uint32_t seed_of(const std::string& label) {
  return static_cast<uint32_t>(std::hash<std::string>{}(label)&0xffffffu) + 17u;
}

std::vector<size_t> floating_inputs(const Inputs& in) {
  std::vector<size_t> out;
  for (size_t i = 0; i < in.size(); ++i)
    if (is_floating(in[i].dtype())) out.push_back(i);
  return out;
}

// Central differences of scalar(inputs) w.r.t. input i, one element at a time, compared with
// `grad`. Returns the number of mismatching elements (and reports the first few).
int compare_with_fd(const Row& row, const Inputs& in, size_t i, const Tensor& grad,
                    const std::function<double(const Inputs&)>& scalar, double rtol, double atol,
                    const char* what) {
  INFO(what << " row '" << row.label << "', input " << i << " " << in[i].type_str());
  CHECK(grad.defined());
  if (!grad.defined()) return 1;
  CHECK(grad.shape() == in[i].shape());
  CHECK(grad.dtype() == in[i].dtype());
  if (grad.shape() != in[i].shape()) return 1;
  const std::vector<double> g = grad.to_vector<double>();
  std::vector<double> v = in[i].to_vector<double>();
  int bad = 0;
  for (size_t j = 0; j < v.size(); ++j) {
    const double x0 = v[j];
    Inputs p = in;
    v[j] = x0 + row.eps;
    p[i] = from_vector(v, in[i].shape());
    const double up = scalar(p);
    v[j] = x0 - row.eps;
    p[i] = from_vector(v, in[i].shape());
    const double down = scalar(p);
    v[j] = x0;
    const double fd = (up - down) / (2 * row.eps);
    // rounding error of the two evaluations, amplified by 1/(2 eps)
    const double noise = 16 * DBL_EPSILON * (std::abs(up) + std::abs(down)) / (2 * row.eps);
    const double tol = rtol * std::abs(fd) + atol + noise;
    if (!(std::abs(g[j] - fd) <= tol)) {
      ++bad;
      if (bad <= 3) {
        INFO("element " << j << ": tape " << g[j] << ", finite differences " << fd << ", tol "
                        << tol);
        CHECK(std::abs(g[j] - fd) <= tol);
      }
    }
  }
  if (bad > 3) FAIL_CHECK(what << " row '" << row.label << "': " << bad << " elements differ");
  return bad;
}

// The tape's first-order gradients of sum(f(in) * W) w.r.t. the floating inputs.
std::vector<Tensor> first_order(const Row& row, const Inputs& in, const Tensor& W,
                                const std::vector<size_t>& fl) {
  GradientTape tape;
  std::vector<Tensor> sources;
  for (size_t i : fl) {
    tape.watch(in[i]);
    sources.push_back(in[i]);
  }
  Tensor loss = sum(row.f(in) * W);
  return tape.gradient(loss, sources, {}, Unconnected::zero);
}

double loss_value(const Row& row, const Inputs& in, const Tensor& W) {
  return sum(row.f(in) * W).item<double>();
}

}  // namespace

TEST_CASE("every differentiable primitive has a VJP rule and a gradcheck row", "[gradcheck]") {
  std::set<std::string> covered;
  for (const Row& r : table())
    if (!r.composite) covered.insert(r.op);
  std::vector<std::string> no_row, no_vjp;
  for (const OpDef* op : registry().all()) {
    if (!op->differentiable()) continue;
    if (!op->vjp()) no_vjp.push_back(op->name());
    if (!covered.count(op->name())) no_row.push_back(op->name());
  }
  INFO("differentiable ops without a VJP rule: " << fmt::format("{}", fmt::join(no_vjp, ", ")));
  CHECK(no_vjp.empty());
  INFO(
      "differentiable ops without a gradcheck row: " << fmt::format("{}", fmt::join(no_row, ", ")));
  CHECK(no_row.empty());
  // and every row names a primitive that exists
  for (const Row& r : table()) {
    if (r.composite) continue;
    INFO("row '" << r.label << "' names op '" << r.op << "'");
    CHECK(registry().find(r.op) != nullptr);
  }
}

TEST_CASE("gradcheck: first-order gradients match central differences", "[gradcheck]") {
  std::vector<std::string> failed;
  for (const Row& row : table()) {
    std::mt19937 rng(seed_of(row.label));
    const Inputs in = row.make(rng);
    const std::vector<size_t> fl = floating_inputs(in);
    // the row must exercise its primitive
    OpRecorder rec;
    Tensor y;
    {
      HookScope scope(&rec);
      y = row.f(in);
    }
    if (!row.composite) {
      INFO("row '" << row.label << "' does not dispatch '" << row.op << "'");
      CHECK(rec.names.count(row.op) == 1);
    }
    const Tensor W = uniform(rng, y.shape(), -1, 1);
    std::vector<Tensor> grads;
    try {
      grads = first_order(row, in, W, fl);
    } catch (const std::exception& e) {
      FAIL_CHECK("row '" << row.label << "': gradient threw: " << e.what());
      failed.push_back(row.label);
      continue;
    }
    REQUIRE(grads.size() == fl.size());
    int bad = 0;
    for (size_t k = 0; k < fl.size(); ++k)
      bad += compare_with_fd(
          row, in, fl[k], grads[k], [&](const Inputs& p) { return loss_value(row, p, W); },
          row.rtol, row.atol, "first order");
    if (bad) failed.push_back(row.label);
  }
  INFO("failing rows: " << fmt::format("{}", fmt::join(failed, "; ")));
  CHECK(failed.empty());
}

// h(in) = sum_i sum(grad_i(in) * V_i), with grad from an inner tape; its gradient from an outer
// tape (which records the inner VJP rules) against central differences of h.
TEST_CASE("gradcheck: second-order gradients match central differences", "[gradcheck]") {
  std::vector<std::string> failed;
  for (const Row& row : table()) {
    if (!row.second_order) continue;
    std::mt19937 rng(seed_of(row.label) + 1);
    const Inputs in = row.make(rng);
    const std::vector<size_t> fl = floating_inputs(in);
    const Tensor W = uniform(rng, row.f(in).shape(), -1, 1);
    std::vector<Tensor> V;
    for (size_t i : fl)
      V.push_back(uniform(rng, in[i].shape(), -1, 1));
    auto h = [&](const Inputs& p) {
      std::vector<Tensor> g = first_order(row, p, W, fl);
      Tensor total = zeros(Shape{}, f64);
      for (size_t k = 0; k < g.size(); ++k)
        total = total + sum(g[k] * V[k]);
      return total;
    };
    std::vector<Tensor> grads;
    try {
      GradientTape outer;
      std::vector<Tensor> sources;
      for (size_t i : fl) {
        outer.watch(in[i]);
        sources.push_back(in[i]);
      }
      grads = outer.gradient(h(in), sources, {}, Unconnected::zero);
    } catch (const std::exception& e) {
      FAIL_CHECK("row '" << row.label << "': second-order gradient threw: " << e.what());
      failed.push_back(row.label);
      continue;
    }
    int bad = 0;
    for (size_t k = 0; k < fl.size(); ++k)
      bad += compare_with_fd(
          row, in, fl[k], grads[k], [&](const Inputs& p) { return h(p).item<double>(); },
          std::max(row.rtol, 1e-5), std::max(row.atol, 1e-7), "second order");
    if (bad) failed.push_back(row.label);
  }
  INFO("failing rows: " << fmt::format("{}", fmt::join(failed, "; ")));
  CHECK(failed.empty());
}

// ---- specific rules ----------------------------------------------------------------------------
