#pragma once

// A small MLP with a hand-written Adam update, shared by the eager regression example and
// the autograd benchmark (the nn/ toolkit will provide these for real).

#include <cmath>
#include <vector>

#include <kiln/kiln.h>

namespace kiln_examples {

struct Adam {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-7;
  int64_t t = 0;
  bool fused = true;  // one adam_update pass per parameter, or a dozen public ops
  std::vector<kiln::Variable> m, v;

  void apply(const std::vector<kiln::Tensor>& grads, const std::vector<kiln::Variable>& vars) {
    using namespace kiln;
    if (m.empty())
      for (const auto& var : vars) {
        m.emplace_back(zeros_like(var.value()), var.name() + "/m", false);
        v.emplace_back(zeros_like(var.value()), var.name() + "/v", false);
      }
    ++t;
    const double c1 = 1 - std::pow(beta1, static_cast<double>(t));
    const double c2 = 1 - std::pow(beta2, static_cast<double>(t));
    const double step = lr * std::sqrt(c2) / c1;  // bias correction folded into the step
    for (size_t i = 0; i < vars.size(); ++i) {
      const Tensor& g = grads[i];
      if (fused) {
        AdamUpdate u = adam_update(vars[i], m[i], v[i], g, step, beta1, beta2, eps);
        vars[i].assign(u.var);
        m[i].assign(u.m);
        v[i].assign(u.v);
        continue;
      }
      m[i].assign(m[i].value() * beta1 + g * (1 - beta1));
      v[i].assign(v[i].value() * beta2 + square(g) * (1 - beta2));
      vars[i].assign_sub(m[i].value() * step / (sqrt(v[i].value()) + eps));
    }
  }
};

}  // namespace kiln_examples
