// The CUDA kernels of conv2d, conv2d_bias_act, max_pool2d, avg_pool2d and their backward
// primitives (backends/cuda/nn_kernels.cpp) against the CPU's, over strides, dilations, SAME
// and VALID padding, odd sizes, batches and channels, every dtype the CPU takes, ties and NaN
// in max pooling, the patch matrix built in many chunks, gradients through a GradientTape and
// the JIT's fused conv2d_bias_act. Without a GPU (or a build without CUDA) only the
// registration check runs and every GPU test says it skipped.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <kiln/kiln.h>

#include "corpus.h"
#include "cuda_testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::gpu;
using kiln::testing::have_gpu;
using kiln::testing::rnd;
using kiln::testing::same;

namespace {

// Sums of many products: within 1e-5 relative, plus 1e-5 of the result's largest finite
// magnitude, so that an element near zero by cancellation is not held to 1e-5 of itself.
// NaN and infinities must match exactly.
void same_sum(const Tensor& got_gpu, const Tensor& want_cpu) {
  REQUIRE(got_gpu.device() == gpu);
  REQUIRE(got_gpu.type() == want_cpu.type());
  const std::vector<double> got = got_gpu.to(Device::cpu()).to_vector<double>();
  const std::vector<double> want = want_cpu.to_vector<double>();
  double scale = 1;
  for (double v : want)
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", expected " << want[i]);
    if (std::isnan(want[i]))
      CHECK(std::isnan(got[i]));
    else if (std::isinf(want[i]))
      CHECK(got[i] == want[i]);
    else
      CHECK(std::abs(got[i] - want[i]) <= 1e-5 * std::abs(want[i]) + 1e-5 * scale);
  }
}

// For large tensors: one comparison (the largest difference) instead of one per element.
void same_large(const Tensor& got_gpu, const Tensor& want_cpu) {
  REQUIRE(got_gpu.device() == gpu);
  const Tensor got = cast(got_gpu.to(Device::cpu()), f64), want = cast(want_cpu, f64);
  REQUIRE(got.shape() == want.shape());
  const double diff = max(abs(got - want), {}).item<double>();
  const double scale = max(abs(want), {}).item<double>();
  CAPTURE(diff, scale);
  CHECK(diff <= 1e-5 * std::max(scale, 1.0));
}

// Sets an environment variable for a scope (the conv kernels' chunk bound, read per call).
struct ScopedEnv {
  const char* name;
  ScopedEnv(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
  ~ScopedEnv() { unsetenv(name); }
};

struct ConvCase {
  Shape x;
  int64_t KH, KW, O;
  std::vector<int64_t> s, d;
  Padding p;
};

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {{1, 5, 5, 1}, 3, 3, 1, {1, 1}, {1, 1}, Padding::valid},
      {{2, 7, 6, 3}, 3, 3, 4, {1, 1}, {1, 1}, Padding::same},
      {{2, 9, 8, 3}, 3, 2, 5, {2, 2}, {1, 1}, Padding::same},   // strided, odd sizes
      {{3, 8, 9, 2}, 2, 3, 3, {2, 1}, {1, 1}, Padding::valid},  // uneven strides
      {{2, 10, 9, 3}, 3, 3, 2, {1, 2}, {2, 2}, Padding::same},  // dilated
      {{2, 11, 7, 4}, 3, 3, 3, {2, 2}, {2, 1}, Padding::valid},
      {{3, 6, 5, 8}, 1, 1, 6, {1, 1}, {1, 1}, Padding::valid},  // pointwise: no patch matrix
      {{2, 6, 5, 8}, 1, 1, 6, {1, 1}, {1, 1}, Padding::same},
      {{2, 7, 7, 3}, 1, 1, 4, {2, 2}, {1, 1}, Padding::same},  // 1x1 but strided: im2col
      {{1, 4, 4, 2}, 5, 5, 3, {1, 1}, {1, 1}, Padding::same},  // window larger than the input
      {{2, 5, 6, 3}, 4, 4, 2, {3, 3}, {1, 1}, Padding::same},  // even window, stride 3
  };
  return cases;
}

Shape filter_shape(const ConvCase& c) {
  return Shape{c.KH, c.KW, c.x[3], c.O};
}

struct PoolCase {
  Shape x;
  std::vector<int64_t> k, s;
  Padding p;
};

const std::vector<PoolCase>& pool_cases() {
  static const std::vector<PoolCase> cases = {
      {{2, 7, 9, 3}, {2, 2}, {2, 2}, Padding::valid},
      {{2, 7, 9, 3}, {3, 3}, {2, 2}, Padding::same},  // overlapping, padded
      {{1, 6, 6, 2}, {3, 3}, {1, 1}, Padding::same},
      {{3, 5, 8, 4}, {2, 3}, {1, 2}, Padding::valid},
      {{2, 4, 5, 3}, {5, 5}, {2, 2}, Padding::same},   // window larger than the input
      {{1, 9, 9, 1}, {9, 9}, {1, 1}, Padding::valid},  // global
      {{2, 8, 7, 5}, {1, 1}, {2, 2}, Padding::same},   // elements no window covers
      {{2, 6, 7, 3}, {2, 2}, {3, 3}, Padding::valid},
  };
  return cases;
}

Attrs bias_act_attrs(const ConvCase& c, const char* act) {
  return Attrs{{"strides", c.s},
               {"dilations", c.d},
               {"padding", std::string(c.p == Padding::same ? "SAME" : "VALID")},
               {"act", std::string(act)}};
}

Tensor conv2d_bias_act(const Tensor& x, const Tensor& w, const Tensor& b, const Attrs& a) {
  return dispatch1(registry().op("conv2d_bias_act"), {x, w, b}, a);
}

// conv2d and both its gradients (and conv2d_bias_act for f32) of case c on the GPU against
// the CPU.
void check_conv(const ConvCase& c, DType dt, uint32_t seed) {
  CAPTURE(c.x.str(), c.KH, c.KW, c.O, c.s, c.d, c.p == Padding::same, name(dt));
  const Tensor x = cast(rnd(c.x, seed), dt), w = cast(rnd(filter_shape(c), seed + 1), dt);
  const Tensor xg = x.to(gpu), wg = w.to(gpu);
  const Tensor y = conv2d(x, w, c.s, c.p, c.d);
  same_sum(conv2d(xg, wg, c.s, c.p, c.d), y);
  const Tensor dy = cast(rnd(y.shape(), seed + 2), dt), dyg = dy.to(gpu);
  same_sum(conv2d_backprop_input(x.shape(), wg, dyg, c.s, c.p, c.d),
           conv2d_backprop_input(x.shape(), w, dy, c.s, c.p, c.d));
  same_sum(conv2d_backprop_filter(xg, w.shape(), dyg, c.s, c.p, c.d),
           conv2d_backprop_filter(x, w.shape(), dy, c.s, c.p, c.d));
  if (dt != f32) return;
  const Tensor b = rnd({c.O}, seed + 3);
  for (const char* act : {"none", "relu"}) {
    CAPTURE(act);
    const Attrs a = bias_act_attrs(c, act);
    same_sum(conv2d_bias_act(xg, wg, b.to(gpu), a), conv2d_bias_act(x, w, b, a));
  }
}

}  // namespace

TEST_CASE("cuda nn: every conv and pooling primitive has a CUDA kernel in a CUDA build") {
  // Runs without a GPU. A build without CUDA registers no CUDA kernel at all (matmul's, from
  // backends/cuda/blas.cpp, is the witness); a CUDA build registers all of them.
  const bool cuda_build = registry().op("matmul").kernel(DeviceType::cuda) != nullptr;
  for (const char* op :
       {"conv2d", "conv2d_bias_act", "conv2d_backprop_input", "conv2d_backprop_filter",
        "max_pool2d", "max_pool2d_grad", "max_pool2d_select", "avg_pool2d", "avg_pool2d_grad"}) {
    CAPTURE(op);
    CHECK((registry().op(op).kernel(DeviceType::cuda) != nullptr) == cuda_build);
    CHECK(registry().op(op).kernel(DeviceType::cpu) != nullptr);
  }
}

TEST_CASE("cuda nn: conv2d and its gradients against the CPU, f32 and f64") {
  if (!have_gpu()) return;
  uint32_t seed = 100;
  for (const ConvCase& c : conv_cases())
    for (DType dt : {f32, f64}) {
      check_conv(c, dt, seed);
      seed += 10;
    }
  // Non-contiguous device operands (a transposed filter, a slice of x along W) are made
  // dense first.
  const Tensor x = rnd({2, 6, 9, 3}, 1), w = rnd({3, 3, 4, 3}, 2);
  const Tensor xs = x.slice(2, 1, 8), wt = transpose(w, {0, 1, 3, 2});
  const Tensor xsg = x.to(gpu).slice(2, 1, 8), wtg = transpose(w.to(gpu), {0, 1, 3, 2});
  REQUIRE(!xsg.is_contiguous());
  REQUIRE(!wtg.is_contiguous());
  same_sum(conv2d(xsg, wtg, {2, 1}, Padding::same), conv2d(xs, wt, {2, 1}, Padding::same));
  const Tensor dy = rnd(conv2d(xs, wt).shape(), 3);
  same_sum(conv2d_backprop_input(xs.shape(), wtg, dy.to(gpu)),
           conv2d_backprop_input(xs.shape(), wt, dy));
  same_sum(conv2d_backprop_filter(xsg, wt.shape(), dy.to(gpu)),
           conv2d_backprop_filter(xs, wt.shape(), dy));
}

TEST_CASE("cuda nn: the patch matrix in many chunks, within images and across them") {
  if (!have_gpu()) return;
  // One row of the patch matrix is K = 3*3*3 values: 108 bytes in f32, 216 in f64. A bound of
  // 600 bytes makes chunks of 5 (f32) or 2 (f64) rows; a bound of 1 makes one row a chunk.
  const ConvCase cases[] = {
      {{2, 7, 6, 3}, 3, 3, 4, {1, 1}, {1, 1}, Padding::same},
      {{3, 9, 8, 3}, 3, 3, 5, {2, 2}, {1, 1}, Padding::same},
      {{2, 10, 9, 3}, 3, 3, 2, {1, 2}, {2, 2}, Padding::valid},
  };
  uint32_t seed = 500;
  for (const char* bound : {"600", "1", "5000"}) {
    CAPTURE(bound);
    ScopedEnv env("KILN_CUDA_IM2COL_BYTES", bound);
    for (const ConvCase& c : cases)
      for (DType dt : {f32, f64}) {
        check_conv(c, dt, seed);
        seed += 10;
      }
  }
}

TEST_CASE("cuda nn: a batch whose patch matrix exceeds the 256 MiB bound") {
  if (!have_gpu()) return;
  // K = 3*3*256 = 2304 taps, M = 8*64*64 = 32768 rows: 302 MB of f32, so two chunks of at most
  // 256 MiB / (2304*4 bytes) = 29127 rows, the second starting inside the eighth image (4096
  // rows per image).
  const Tensor x = rnd({8, 64, 64, 256}, 1, -1, 1), w = rnd({3, 3, 256, 4}, 2, -1, 1);
  const Tensor xg = x.to(gpu), wg = w.to(gpu);
  const Tensor y = conv2d(x, w, {1, 1}, Padding::same);
  same_large(conv2d(xg, wg, {1, 1}, Padding::same), y);
  const Tensor dy = rnd(y.shape(), 3, -1, 1), dyg = dy.to(gpu);
  same_large(conv2d_backprop_input(x.shape(), wg, dyg, {1, 1}, Padding::same),
             conv2d_backprop_input(x.shape(), w, dy, {1, 1}, Padding::same));
  same_large(conv2d_backprop_filter(xg, w.shape(), dyg, {1, 1}, Padding::same),
             conv2d_backprop_filter(x, w.shape(), dy, {1, 1}, Padding::same));
}

// (i32 overflow is left out: the CPU's i32 sums overflow as undefined behaviour, so they are
// no reference for the GPU's wrapping ones.)
TEST_CASE("cuda nn: integer and bool convolutions wrap as the CPU's loops") {
  if (!have_gpu()) return;
  for (const ConvCase& c : {conv_cases()[2], conv_cases()[4], conv_cases()[6]}) {
    CAPTURE(c.x.str(), c.KH, c.KW);
    const Tensor xf = rnd(c.x, 7, -100, 100), wf = rnd(filter_shape(c), 8, -100, 100);
    for (DType dt : {i32, i64}) {
      const Tensor x = cast(xf, dt), w = cast(wf, dt);
      same(conv2d(x.to(gpu), w.to(gpu), c.s, c.p, c.d), conv2d(x, w, c.s, c.p, c.d));
    }
    // u8 wraps mod 256; bool is "any x and w".
    const Tensor xu = cast(abs(xf), u8), wu = cast(abs(wf), u8);
    same(conv2d(xu.to(gpu), wu.to(gpu), c.s, c.p, c.d), conv2d(xu, wu, c.s, c.p, c.d));
    const Tensor xb = xf > 60.f, wb = wf > 60.f;
    same(conv2d(xb.to(gpu), wb.to(gpu), c.s, c.p, c.d), conv2d(xb, wb, c.s, c.p, c.d));
  }
}

TEST_CASE("cuda nn: conv2d_bias_act: bias shapes, NaN through the relu, an empty sum") {
  if (!have_gpu()) return;
  const ConvCase c{{2, 9, 9, 3}, 3, 3, 8, {1, 1}, {1, 1}, Padding::same};
  const Tensor x = rnd(c.x, 1), w = rnd(filter_shape(c), 2);
  std::vector<float> bv = rnd({8}, 3).to_vector<float>();
  bv[0] = NAN;
  bv[1] = -std::numeric_limits<float>::infinity();
  const Tensor b = from_vector(bv, Shape{8});
  for (const char* act : {"none", "relu"}) {
    CAPTURE(act);
    const Attrs a = bias_act_attrs(c, act);
    same_sum(conv2d_bias_act(x.to(gpu), w.to(gpu), b.to(gpu), a), conv2d_bias_act(x, w, b, a));
    const Tensor b4 = b.reshape(Shape{1, 1, 1, 8});
    same_sum(conv2d_bias_act(x.to(gpu), w.to(gpu), b4.to(gpu), a), conv2d_bias_act(x, w, b4, a));
    // A bias view that is not 16-byte aligned is copied for cublasLt's epilogue.
    const Tensor wide = rnd({9}, 4), off = wide.slice(0, 1, 9);
    same_sum(conv2d_bias_act(x.to(gpu), w.to(gpu), wide.to(gpu).slice(0, 1, 9), a),
             conv2d_bias_act(x, w, off, a));
    // No input channels: every output is act(bias).
    const Tensor x0 = zeros({2, 5, 5, 0}), w0 = zeros({3, 3, 0, 8});
    same_sum(conv2d_bias_act(x0.to(gpu), w0.to(gpu), b.to(gpu), a), conv2d_bias_act(x0, w0, b, a));
  }
  const std::vector<float> relu_out =
      conv2d_bias_act(x.to(gpu), w.to(gpu), b.to(gpu), bias_act_attrs(c, "relu"))
          .to_vector<float>();
  CHECK(relu_out[0] == 0.f);  // NaN + anything, then relu: 0, as on the CPU
  CHECK(relu_out[1] == 0.f);  // -inf
}

TEST_CASE("cuda nn: empty batches and empty channels") {
  if (!have_gpu()) return;
  for (DType dt : {f32, f64}) {
    const Tensor x = zeros({0, 6, 5, 3}, dt), w = cast(rnd({3, 3, 3, 2}, 1), dt);
    const Tensor dy = zeros({0, 4, 3, 2}, dt);
    same(conv2d(x.to(gpu), w.to(gpu)), conv2d(x, w));
    same(conv2d_backprop_input(x.shape(), w.to(gpu), dy.to(gpu)),
         conv2d_backprop_input(x.shape(), w, dy));
    same(conv2d_backprop_filter(x.to(gpu), w.shape(), dy.to(gpu)),
         conv2d_backprop_filter(x, w.shape(), dy));
    const Tensor xc = zeros({2, 6, 5, 0}, dt), wc = zeros({3, 3, 0, 2}, dt);
    same(conv2d(xc.to(gpu), wc.to(gpu)), conv2d(xc, wc));  // zeros
    same(max_pool2d(x.to(gpu), {2, 2}, {2, 2}), max_pool2d(x, {2, 2}, {2, 2}));
    same(avg_pool2d_grad(x.shape(), zeros({0, 3, 2, 3}, dt).to(gpu), {2, 2}, {2, 2}),
         avg_pool2d_grad(x.shape(), zeros({0, 3, 2, 3}, dt), {2, 2}, {2, 2}));
  }
}

TEST_CASE("cuda nn: pooling and its gradients against the CPU, f32 and f64") {
  if (!have_gpu()) return;
  uint32_t seed = 300;
  for (const PoolCase& c : pool_cases())
    for (DType dt : {f32, f64}) {
      CAPTURE(c.x.str(), c.k, c.s, c.p == Padding::same, name(dt));
      const Tensor x = cast(rnd(c.x, seed), dt), xg = x.to(gpu);
      const Tensor y = max_pool2d(x, c.k, c.s, c.p);
      same(max_pool2d(xg, c.k, c.s, c.p), y, 0, 0);
      same_sum(avg_pool2d(xg, c.k, c.s, c.p), avg_pool2d(x, c.k, c.s, c.p));
      const Tensor dy = cast(rnd(y.shape(), seed + 1), dt), dyg = dy.to(gpu), yg = y.to(gpu);
      same(max_pool2d_grad(xg, yg, dyg, c.k, c.s, c.p), max_pool2d_grad(x, y, dy, c.k, c.s, c.p));
      const Tensor v = cast(rnd(c.x, seed + 2), dt);
      same(max_pool2d_select(xg, yg, v.to(gpu), c.k, c.s, c.p),
           max_pool2d_select(x, y, v, c.k, c.s, c.p), 0, 0);
      same_sum(avg_pool2d_grad(x.shape(), dyg, c.k, c.s, c.p),
               avg_pool2d_grad(x.shape(), dy, c.k, c.s, c.p));
      seed += 10;
    }
}

TEST_CASE("cuda nn: max pooling's ties go to the first element, NaN propagates and routes") {
  if (!have_gpu()) return;
  for (const PoolCase& c : pool_cases())
    for (DType dt : {f32, f64}) {
      CAPTURE(c.x.str(), c.k, c.s, c.p == Padding::same, name(dt));
      // Values in {-2, -1, 0, 1}: most windows hold their maximum more than once.
      Tensor x = cast(floor(rnd(c.x, 11)), dt);
      const Tensor dy = cast(rnd(max_pool2d(x, c.k, c.s, c.p).shape(), 12), dt);
      const Tensor v = cast(rnd(c.x, 13), dt);
      for (int pass = 0; pass < 2; ++pass) {
        CAPTURE(pass);
        const Tensor y = max_pool2d(x, c.k, c.s, c.p);
        const Tensor xg = x.to(gpu), yg = y.to(gpu);
        same(max_pool2d(xg, c.k, c.s, c.p), y, 0, 0);
        same(max_pool2d_grad(xg, yg, dy.to(gpu), c.k, c.s, c.p),
             max_pool2d_grad(x, y, dy, c.k, c.s, c.p), 0, 0);
        same(max_pool2d_select(xg, yg, v.to(gpu), c.k, c.s, c.p),
             max_pool2d_select(x, y, v, c.k, c.s, c.p), 0, 0);
        // Second pass: a NaN in every seventh element (the CPU then runs its loops, which
        // propagate NaN; the gradient goes to the window's first NaN).
        std::vector<double> xv = x.to_vector<double>();
        for (size_t i = 0; i < xv.size(); i += 7)
          xv[i] = std::nan("");
        x = cast(from_vector(xv, c.x), dt);
      }
    }
}

TEST_CASE("cuda nn: integer pooling: max exactly, averages truncated toward zero") {
  if (!have_gpu()) return;
  for (const PoolCase& c : pool_cases()) {
    CAPTURE(c.x.str(), c.k, c.s, c.p == Padding::same);
    const Tensor xf = rnd(c.x, 21, -1000, 1000);
    for (DType dt : {i32, i64}) {
      const Tensor x = cast(xf, dt);
      same(max_pool2d(x.to(gpu), c.k, c.s, c.p), max_pool2d(x, c.k, c.s, c.p));
      same(avg_pool2d(x.to(gpu), c.k, c.s, c.p), avg_pool2d(x, c.k, c.s, c.p));
    }
    const Tensor xu = cast(abs(xf) * 0.25f, u8);
    same(max_pool2d(xu.to(gpu), c.k, c.s, c.p), max_pool2d(xu, c.k, c.s, c.p));
    same(avg_pool2d(xu.to(gpu), c.k, c.s, c.p), avg_pool2d(xu, c.k, c.s, c.p));
  }
}

TEST_CASE("cuda nn: gradients through a GradientTape, conv into pooling, on CUDA tensors") {
  if (!have_gpu()) return;
  auto grads = [](const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& w2) {
    Variable vx(x, "x"), vw(w, "w"), vb(b, "b"), vw2(w2, "w2");
    GradientTape tape;
    Tensor h = relu(conv2d(vx.value(), vw.value(), {1, 1}, Padding::same) + vb.value());
    Tensor p = max_pool2d(h, {2, 2}, {2, 2}, Padding::same);
    Tensor q = avg_pool2d(p, {3, 3}, {1, 1}, Padding::same);
    Tensor z = conv2d(q, vw2.value(), {2, 2}, Padding::valid, {1, 1});
    Tensor loss = sum(tanh(z) * 0.5) + sum(square(q)) * 0.1;
    return tape.gradient(loss, {vx, vw, vb, vw2});
  };
  for (DType dt : {f32, f64}) {
    CAPTURE(name(dt));
    const Tensor x = cast(rnd({3, 9, 8, 3}, 1), dt), w = cast(rnd({3, 3, 3, 5}, 2, -1, 1), dt);
    const Tensor b = cast(rnd({5}, 3), dt), w2 = cast(rnd({3, 3, 5, 2}, 4, -1, 1), dt);
    const std::vector<Tensor> want = grads(x, w, b, w2);
    const std::vector<Tensor> got = grads(x.to(gpu), w.to(gpu), b.to(gpu), w2.to(gpu));
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      same_sum(got[i], want[i]);
    }
  }
}

TEST_CASE("cuda nn: a compiled conv layer runs conv2d_bias_act on the GPU") {
  if (!have_gpu()) return;
  auto layer = [](const Tensor& x, const Tensor& w, const Tensor& b) {
    Tensor h = relu(conv2d(x, w, {1, 1}, Padding::same) + b);
    return avg_pool2d(max_pool2d(h, {3, 3}, {2, 2}, Padding::same), {2, 2}, {1, 1});
  };
  const Tensor x = rnd({4, 12, 11, 3}, 1), w = rnd({3, 3, 3, 8}, 2), b = rnd({8}, 3);
  const Tensor want = kiln::function(layer, FunctionOptions{.jit_compile = false})(x, w, b);
  auto compiled = kiln::function(layer);
  const Tensor xg = x.to(gpu), wg = w.to(gpu), bg = b.to(gpu);
  CHECK(compiled.get_concrete_function(xg, wg, bg).ir(IRStage::optimized).find("conv2d_bias_act") !=
        std::string::npos);
  same_sum(compiled(xg, wg, bg), want);
}
