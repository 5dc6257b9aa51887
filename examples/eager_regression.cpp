// Fits a small MLP to a noisy 1-D function with a GradientTape and a hand-written Adam
// update, printing the falling loss. Everything runs eagerly.
#include <cstdio>

#include <kiln/kiln.h>

#include "mlp_common.h"

int main() {
  using namespace kiln;
  random::seed(0);
  // Data: y = sin(3x) + 0.5x + noise, x in [-1, 1].
  Tensor x = random::uniform({256, 1}, -1, 1);
  Tensor y = sin(x * 3.0f) + x * 0.5f + random::normal({256, 1}, 0, 0.05);

  Variable w1(random::normal({1, 32}, 0, 1.0), "dense/kernel");
  Variable b1(zeros({32}), "dense/bias");
  Variable w2(random::normal({32, 1}, 0, 1.0 / std::sqrt(32.0)), "out/kernel");
  Variable b2(zeros({1}), "out/bias");
  const std::vector<Variable> params = {w1, b1, w2, b2};
  kiln_examples::Adam adam{.lr = 0.02, .fused = false};  // written out with public ops

  float first = 0, last = 0;
  for (int step = 0; step <= 500; ++step) {
    GradientTape tape;
    Tensor h = tanh(matmul(x, w1) + b1);
    Tensor loss = mean(square(matmul(h, w2) + b2 - y));
    adam.apply(tape.gradient(loss, params), params);
    last = loss.item<float>();
    if (step == 0) first = last;
    if (step % 50 == 0) std::printf("step %3d  loss %.5f\n", step, last);
  }
  std::printf("loss fell from %.4f to %.4f\n", first, last);
  return last < first * 0.1f ? 0 : 1;
}
