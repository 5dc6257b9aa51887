#pragma once

// The tracer corpus: functions of two tensors covering every op family (elementwise,
// reductions, contractions, movement, captured constants, integer math). test_function checks
// each traced one against eager execution; test_passes checks each optimized graph against
// the traced one.

#include <functional>
#include <random>

#include "testing.h"

namespace kiln::testing {

using Fn2 = std::function<Tensor(const Tensor&, const Tensor&)>;

struct Case {
  const char* name;
  Shape x, y;
  Fn2 fn;
};

inline Tensor rnd(const Shape& s, uint32_t seed, double lo = -2, double hi = 2) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& e : v)
    e = static_cast<float>(d(gen));
  return from_vector(v, s);
}

inline std::vector<Case> corpus() {
  return {
      {"add", {4, 5}, {4, 5}, [](auto& x, auto& y) { return x + y; }},
      {"chain", {16}, {16}, [](auto& x, auto& y) { return sigmoid(x * y + 0.5f) * x - y * y; }},
      {"broadcast row", {3, 4}, {4}, [](auto& x, auto& y) { return x * y - 1.f; }},
      {"broadcast col", {3, 4}, {3, 1}, [](auto& x, auto& y) { return maximum(x, y); }},
      {"unary mix", {7}, {7}, [](auto& x, auto& y) { return tanh(x) + exp(-abs(y)) + relu(x); }},
      {"log sqrt", {5}, {5}, [](auto& x, auto& y) { return log(abs(x) + 1.f) + sqrt(abs(y)); }},
      {"gelu erf", {9}, {9}, [](auto& x, auto& y) { return gelu(x) * erf(y); }},
      {"sin cos", {6}, {6}, [](auto& x, auto& y) { return sin(x) * cos(y); }},
      {"floor ceil round",
       {6},
       {6},
       [](auto& x, auto& y) { return floor(x) + ceil(y) + round(x * y); }},
      {"pow", {5}, {5}, [](auto& x, auto& y) { return pow(abs(x) + 0.5f, y); }},
      {"where", {4, 4}, {4, 4}, [](auto& x, auto& y) { return where(x > y, x, y * 2.f); }},
      {"clip", {10}, {10}, [](auto& x, auto& y) { return clip(x + y, -1, 1); }},
      {"compare cast",
       {8},
       {8},
       [](auto& x, auto& y) { return cast(x < y, f32) + cast(x >= 0.f, f32); }},
      {"sum all", {6, 7}, {7}, [](auto& x, auto& y) { return sum(x * y); }},
      {"sum axis", {6, 7}, {7}, [](auto& x, auto& y) { return sum(x, {0}) + y; }},
      {"mean keepdims", {6, 7}, {6, 1}, [](auto& x, auto& y) { return mean(x, {1}, true) * y; }},
      {"max min", {5, 3}, {3}, [](auto& x, auto& y) { return max(x, {0}) - min(x + y, {0}); }},
      {"prod", {4, 3}, {3}, [](auto& x, auto& y) { return prod(x * 0.5f, {0}) + y; }},
      {"var std", {8, 4}, {4}, [](auto& x, auto& y) { return var(x, {0}) + kiln::std(y); }},
      {"logsumexp", {5, 6}, {6}, [](auto& x, auto& y) { return logsumexp(x + y, {1}); }},
      {"softmax", {4, 10}, {10}, [](auto& x, auto& y) { return softmax(x * y); }},
      {"log_softmax", {4, 10}, {4, 10}, [](auto& x, auto& y) { return log_softmax(x - y, 0); }},
      {"argmax", {5, 6}, {6}, [](auto& x, auto& y) { return cast(argmax(x + y, 1), f32); }},
      {"matmul", {3, 4}, {4, 5}, [](auto& x, auto& y) { return matmul(x, y); }},
      {"matmul batched", {2, 3, 4}, {4, 2}, [](auto& x, auto& y) { return matmul(x, y) * 2.f; }},
      {"matmul transposed",
       {4, 3},
       {4, 5},
       [](auto& x, auto& y) { return matmul(x.transpose(), y); }},
      {"mlp", {8, 6}, {6, 4}, [](auto& x, auto& w) { return softmax(relu(matmul(x, w) + 0.1f)); }},
      {"mlp two layers",
       {8, 6},
       {6, 6},
       [](auto& x, auto& w) { return matmul(tanh(matmul(x, w)), w) - x; }},
      {"reshape",
       {4, 6},
       {24},
       [](auto& x, auto& y) {
         return x.reshape({6, 4}) + y.reshape({6, 4});
       }},
      {"transpose", {3, 4}, {4, 3}, [](auto& x, auto& y) { return x.transpose() * y; }},
      {"permute slice",
       {2, 3, 4},
       {4, 2, 2},
       [](auto& x, auto& y) {
         return x.permute({2, 0, 1}).slice(2, 0, 3, 2) + y;
       }},
      {"concat",
       {2, 3},
       {4, 3},
       [](auto& x, auto& y) {
         return concat({x, y, x}, 0);
       }},
      {"stack split",
       {3, 4},
       {3, 4},
       [](auto& x, auto& y) {
         return split(stack({x, y}, 0), 2, 0)[1] * 2.f;
       }},
      {"pad",
       {3, 3},
       {5, 4},
       [](auto& x, auto& y) {
         return pad(x, {{1, 1}, {0, 1}}, 0.5) + y;
       }},
      {"gather",
       {5, 3},
       {3},
       [](auto& x, auto& y) {
         return gather(x, tensor({4, 0, 2, 2}), 0) + y;
       }},
      {"one_hot", {4}, {4, 3}, [](auto& x, auto& y) { return one_hot(cast(abs(x), i32), 3) * y; }},
      {"cross entropy",
       {4, 5},
       {5},
       [](auto& x, auto& y) {
         return sparse_softmax_cross_entropy_with_logits(tensor({0, 4, 2, 1}), x + y);
       }},
      {"conv net",
       {2, 6, 6, 3},
       {3, 3, 3, 4},
       [](auto& x, auto& w) {
         return max_pool2d(relu(conv2d(x, w, {1, 1}, Padding::same)), {2, 2}, {2, 2});
       }},
      {"avg pool",
       {1, 5, 5, 2},
       {1, 3, 3, 2},
       [](auto& x, auto& y) {
         return avg_pool2d(x, {2, 2}, {2, 2}, Padding::same) + y.slice(1, 0, 1);
       }},
      {"captured constant",
       {3},
       {3},
       [](auto& x, auto& y) {
         return x * tensor({1.f, 2.f, 3.f}) + y;
       }},
      {"scalar ops", {4}, {4}, [](auto& x, auto& y) { return 2.f * x - y / 3.f + 1.f; }},
      {"int math",
       {6},
       {6},
       [](auto& x, auto& y) {
         return cast(floor_div(cast(x * 10.f, i32), 3) + cast(y, i32), f32);
       }},
  };
}

}  // namespace kiln::testing
