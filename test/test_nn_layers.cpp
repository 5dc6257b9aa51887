// nn layers, Module, initializers and activations: values against hand-computed or f64 loop
// references, gradients against central differences in f64, naming, building and errors.
#include <cmath>
#include <functional>
#include <numeric>

#include <kiln/nn/layers.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

std::vector<double> vals(const Tensor& t) {
  return t.to_vector<double>();
}

Tensor f64_tensor(std::vector<double> v, const Shape& s) {
  return from_vector(v, s);
}

// d sum(f() * w) by the tape against central differences, for every element of every
// variable (inputs are passed as trainable Variables too). All in f64.
void check_gradients(const std::function<Tensor()>& f, const std::vector<Variable>& vars,
                     double tol = 1e-6) {
  const Tensor probe = f();
  random::seed(99);
  const Tensor w = random::normal(probe.shape(), 0, 1, f64);
  auto loss = [&] { return sum(f() * w); };
  std::vector<Tensor> grads;
  {
    GradientTape tape;
    const Tensor l = loss();
    grads = tape.gradient(l, vars);
  }
  for (size_t i = 0; i < vars.size(); ++i) {
    INFO("gradient of " << vars[i].name());
    REQUIRE(grads[i].defined());
    REQUIRE(grads[i].shape() == vars[i].shape());
    const Tensor base = vars[i].value();
    const std::vector<double> numeric = testing::numeric_gradient(
        [&](const std::vector<double>& b) {
          vars[i].assign(f64_tensor(b, base.shape()));
          return loss().item<double>();
        },
        vals(base));
    vars[i].assign(base);
    check_close(grads[i], numeric, tol, tol);
  }
}

// A composite module for the Module tests: a Dense and a BatchNormalization as children.
class Block : public nn::Module {
 public:
  Block() : Module("block"), dense_(nn::Dense(3)), norm_(nn::BatchNormalization()) {
    add_child(dense_);
    add_child(norm_);
  }
  void build(const Shape& s) override {
    scale_ = add_variable("scale", {}, nn::constant(2.0), true, dtype());
    dense_->ensure_built(s);
    norm_->ensure_built(dense_->output_shape(s));
  }
  Tensor call(const Tensor& x, bool training) override {
    return (*norm_)((*dense_)(x, training), training) * scale_;
  }
  nn::Ref<nn::Module> dense_, norm_;
  Variable scale_;
};

// Reference NHWC/HWIO convolution with TensorFlow's padding, in f64 loops.
std::vector<double> conv_ref(const std::vector<double>& x, Shape xs, const std::vector<double>& k,
                             Shape ks, int64_t s, bool same, Shape& out_shape) {
  const int64_t n = xs[0], h = xs[1], w = xs[2], c = xs[3], kh = ks[0], kw = ks[1], f = ks[3];
  const int64_t oh = same ? (h + s - 1) / s : (h - kh) / s + 1;
  const int64_t ow = same ? (w + s - 1) / s : (w - kw) / s + 1;
  const int64_t pt = same ? std::max<int64_t>((oh - 1) * s + kh - h, 0) / 2 : 0;
  const int64_t pl = same ? std::max<int64_t>((ow - 1) * s + kw - w, 0) / 2 : 0;
  out_shape = {n, oh, ow, f};
  std::vector<double> out(static_cast<size_t>(n * oh * ow * f), 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        for (int64_t o = 0; o < f; ++o) {
          double acc = 0;
          for (int64_t di = 0; di < kh; ++di)
            for (int64_t dj = 0; dj < kw; ++dj) {
              const int64_t y = i * s + di - pt, z = j * s + dj - pl;
              if (y < 0 || y >= h || z < 0 || z >= w) continue;
              for (int64_t ci = 0; ci < c; ++ci)
                acc += x[static_cast<size_t>(((b * h + y) * w + z) * c + ci)] *
                       k[static_cast<size_t>(((di * kw + dj) * c + ci) * f + o)];
            }
          out[static_cast<size_t>(((b * oh + i) * ow + j) * f + o)] = acc;
        }
  return out;
}

// Reference pooling (max or the mean over in-bounds elements), in f64 loops.
std::vector<double> pool_ref(const std::vector<double>& x, Shape xs, int64_t p, int64_t s,
                             bool same, bool is_max, Shape& out_shape) {
  const int64_t n = xs[0], h = xs[1], w = xs[2], c = xs[3];
  const int64_t oh = same ? (h + s - 1) / s : (h - p) / s + 1;
  const int64_t ow = same ? (w + s - 1) / s : (w - p) / s + 1;
  const int64_t pt = same ? std::max<int64_t>((oh - 1) * s + p - h, 0) / 2 : 0;
  const int64_t pl = same ? std::max<int64_t>((ow - 1) * s + p - w, 0) / 2 : 0;
  out_shape = {n, oh, ow, c};
  std::vector<double> out;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        for (int64_t ci = 0; ci < c; ++ci) {
          double acc = is_max ? -INFINITY : 0;
          int count = 0;
          for (int64_t di = 0; di < p; ++di)
            for (int64_t dj = 0; dj < p; ++dj) {
              const int64_t y = i * s + di - pt, z = j * s + dj - pl;
              if (y < 0 || y >= h || z < 0 || z >= w) continue;
              const double v = x[static_cast<size_t>(((b * h + y) * w + z) * c + ci)];
              acc = is_max ? std::max(acc, v) : acc + v;
              ++count;
            }
          out.push_back(is_max ? acc : acc / count);
        }
  return out;
}

}  // namespace

TEST_CASE("activations by name") {
  const Tensor x = f64_tensor({-2, -0.5, 0, 1.5}, {2, 2});
  const std::vector<double> v = vals(x);
  auto map = [&](double (*fn)(double)) {
    std::vector<double> out;
    for (double e : v)
      out.push_back(fn(e));
    return out;
  };
  check_close(nn::Activation("relu")(x), map([](double e) { return std::max(e, 0.0); }));
  check_close(nn::Activation("sigmoid")(x), map([](double e) { return 1 / (1 + std::exp(-e)); }));
  check_close(nn::Activation("tanh")(x), map([](double e) { return std::tanh(e); }));
  check_close(nn::Activation("gelu")(x),
              map([](double e) { return e * 0.5 * (1 + std::erf(e / std::sqrt(2.0))); }));
  check_close(nn::Activation()(x), v);
  check_close(nn::Activation(std::string("linear"))(x), v);
  // softmax over the last axis: rows [-2, -0.5] and [0, 1.5].
  const double a = 1 / (1 + std::exp(1.5));
  check_close(nn::Activation("softmax")(x), {a, 1 - a, a, 1 - a});
  CHECK(nn::Activation("softmax").is_softmax());
  CHECK(nn::Activation().is_linear());
  CHECK(!nn::Activation("relu").is_linear());
  const nn::Activation twice("twice", [](const Tensor& t) { return t * 2.0; });
  check_close(twice(x), {-4, -1, 0, 3});
  CHECK(twice.name() == "twice");
  check_error([] { nn::Activation("rleu"); }, {"rleu", "\"linear\"", "\"relu\"", "\"gelu\"",
                                               "\"tanh\"", "\"sigmoid\"", "\"softmax\""});
  check_error([] { nn::Activation("softmax", [](const Tensor& t) { return t; }); },
              {"softmax", "built-in"});
  check_error([] { nn::Activation("f", nullptr); }, {"empty function"});
}

TEST_CASE("initializers: fans, bounds, moments, determinism") {
  CHECK(nn::compute_fans({}).in == 1);
  CHECK(nn::compute_fans({7}).in == 7);
  CHECK(nn::compute_fans({7}).out == 7);
  CHECK(nn::compute_fans({3, 5}).in == 3);
  CHECK(nn::compute_fans({3, 5}).out == 5);
  CHECK(nn::compute_fans({3, 2, 4, 8}).in == 3 * 2 * 4);
  CHECK(nn::compute_fans({3, 2, 4, 8}).out == 3 * 2 * 8);

  random::seed(7);
  const Tensor g = nn::glorot_uniform()({200, 300}, f32);
  CHECK(g.dtype() == f32);
  const double limit = std::sqrt(6.0 / 500);
  std::vector<double> gv = vals(g);
  double mx = 0, m = 0, m2 = 0;
  for (double e : gv) {
    mx = std::max(mx, std::abs(e));
    m += e;
    m2 += e * e;
  }
  m /= static_cast<double>(gv.size());
  m2 /= static_cast<double>(gv.size());
  CHECK(mx <= limit);
  CHECK(mx > 0.99 * limit);  // uses the whole range
  CHECK(std::abs(m) < 0.01 * limit);
  CHECK(m2 == Approx(limit * limit / 3).epsilon(0.01));

  // he_normal on a conv filter: fan_in = 3*3*64. The truncated draw keeps stddev
  // sqrt(2/fan_in) and never exceeds two of the pre-truncation stddevs.
  const double fan_in = 3 * 3 * 64, sd = std::sqrt(2 / fan_in);
  const Tensor he = nn::he_normal()({3, 3, 64, 512}, f64);
  CHECK(he.dtype() == f64);
  std::vector<double> hv = vals(he);
  m = m2 = mx = 0;
  for (double e : hv) {
    mx = std::max(mx, std::abs(e));
    m += e;
    m2 += e * e;
  }
  m /= static_cast<double>(hv.size());
  const double sd_got = std::sqrt(m2 / static_cast<double>(hv.size()) - m * m);
  CHECK(std::abs(m) < 0.01 * sd);
  CHECK(sd_got == Approx(sd).epsilon(0.01));
  CHECK(mx <= 2 * sd / 0.87962566103423978);
  CHECK(mx > 1.9 * sd / 0.87962566103423978);

  random::seed(3);
  const std::vector<double> a = vals(nn::he_normal()({50, 20}, f32));
  random::seed(3);
  CHECK(vals(nn::he_normal()({50, 20}, f32)) == a);

  check_close(nn::zeros()({2}, f64), {0, 0});
  check_close(nn::ones()({2}, f32), {1, 1});
  check_close(nn::constant(2.5)({3}, f64), {2.5, 2.5, 2.5});
  const std::vector<double> u = vals(nn::random_uniform(1, 3)({1000}, f32));
  CHECK(*std::min_element(u.begin(), u.end()) >= 1);
  CHECK(*std::max_element(u.begin(), u.end()) < 3);
  check_error([] { nn::random_uniform(1, 1); }, {"random_uniform", "lo < hi"});
  check_error([] { nn::glorot_uniform()({2, 2}, i32); }, {"glorot_uniform", "i32"});
  check_error([] { nn::he_normal()({-1, 2}, f32); }, {"he_normal", "[?,2]"});
}

TEST_CASE("Module: names, scopes, variable order, trainable flags") {
  nn::Dense d(4);
  CHECK(d.name() == "dense");
  CHECK(nn::Conv2D(2, {3, 3}).name() == "conv2d");
  CHECK(nn::MaxPool2D().name() == "max_pooling2d");
  CHECK(nn::AvgPool2D().name() == "average_pooling2d");
  CHECK(nn::Flatten().name() == "flatten");
  CHECK(nn::Dropout(0.1).name() == "dropout");
  CHECK(nn::LayerNorm().name() == "layer_normalization");
  CHECK(nn::BatchNormalization().name() == "batch_normalization");
  CHECK(nn::Embedding(3, 2).name() == "embedding");

  std::vector<nn::Ref<nn::Module>> taken;
  CHECK(nn::unique_name("dense", taken) == "dense");
  taken.push_back(nn::Dense(1));
  CHECK(nn::unique_name("dense", taken) == "dense_1");
  taken.push_back(nn::Dense(1));
  taken.back()->set_name("dense_2");
  CHECK(nn::unique_name("dense", taken) == "dense_1");
  taken.push_back(nn::Dense(1));
  taken.back()->set_name("dense_1");
  CHECK(nn::unique_name("dense", taken) == "dense_3");
  CHECK(nn::unique_name("flatten", taken) == "flatten");
  check_error([&] { d.set_name("a/b"); }, {"'a/b'", "'/'"});
  check_error([&] { d.set_name(""); }, {"empty"});

  // A block scoped under "model": children are rescoped, and variables are named by path.
  Block b;
  b.set_scope("model");
  CHECK(b.path() == "model/block");
  CHECK(b.dense_->path() == "model/block/dense");
  b(ones({5, 2}), true);
  std::vector<std::string> names;
  for (const Variable& v : b.variables())
    names.push_back(v.name());
  CHECK(names == std::vector<std::string>{"model/block/scale", "model/block/dense/kernel",
                                          "model/block/dense/bias",
                                          "model/block/batch_normalization/gamma",
                                          "model/block/batch_normalization/beta",
                                          "model/block/batch_normalization/moving_mean",
                                          "model/block/batch_normalization/moving_variance"});
  CHECK(b.trainable_variables().size() == 5);
  CHECK(b.non_trainable_variables().size() == 2);
  CHECK(b.non_trainable_variables()[0].name() == "model/block/batch_normalization/moving_mean");
  b.dense_->set_trainable(false);  // a frozen child offers nothing trainable
  CHECK(b.trainable_variables().size() == 3);
  CHECK(b.non_trainable_variables().size() == 4);
  b.set_trainable(false);
  CHECK(b.trainable_variables().empty());
  CHECK(b.non_trainable_variables().size() == 7);

  struct Twins : nn::Module {
    Twins() : Module("twins") {
      add_child(nn::Dense(1));
      add_child(nn::Dense(1));
    }
    Tensor call(const Tensor& x, bool) override { return x; }
  };
  check_error([] { Twins t; }, {"twins", "'dense'", "unique_name"});
}

TEST_CASE("Module: building, shape validation, dtypes") {
  nn::Dense d(2);
  CHECK(!d.built());
  d.ensure_built({-1, 4});
  CHECK(d.built());
  CHECK(d.input_shape() == Shape({-1, 4}));
  CHECK(d.dtype() == f32);
  CHECK(d.kernel().shape() == Shape({4, 2}));
  CHECK(d(ones({7, 4})).shape() == Shape({7, 2}));
  CHECK(d(ones({1, 4})).shape() == Shape({1, 2}));  // the batch may change
  check_error([&] { d(ones({3, 5})); }, {"dense", "[3,5]", "[?,4]"});
  check_error([&] { d(ones({3, 1, 4})); }, {"dense", "[3,1,4]", "[?,4]"});
  check_error([&] { d.ensure_built({-1, 5}); }, {"dense", "[?,4]", "[?,5]"});
  // f64 inputs to an f32 layer are cast (Keras's autocast); integers promote in matmul.
  CHECK(d(ones({2, 4}, f64)).dtype() == f32);
  CHECK(d(ones({2, 4}, i32)).dtype() == f32);

  // A layer first called with f64 builds f64 variables; a container built in f64 builds its
  // children in f64 too.
  nn::LayerNorm ln;
  ln(ones({2, 3}, f64));
  CHECK(ln.gamma().dtype() == f64);
  Block b;
  b(ones({4, 2}, f64), false);
  for (const Variable& v : b.variables())
    CHECK(v.dtype() == f64);

  // A failed build leaves the layer unbuilt, so a corrected call succeeds.
  nn::Dense r(3);
  check_error([&] { r(ones({4})); }, {"dense", "rank >= 2", "[4]"});
  CHECK(!r.built());
  CHECK(r.variables().empty());
  CHECK(r(ones({2, 4})).shape() == Shape({2, 3}));
  CHECK(r.variables().size() == 2);

  nn::Dense fresh(3);
  check_error([&] { fresh.call(ones({2, 2}), false); }, {"dense", "before the layer was built"});
  check_error([] { nn::Dense(0); }, {"Dense", "units"});
  check_error([] { nn::Dropout(1.0); }, {"Dropout", "rate"});
  check_error([] { nn::Conv2D(2, {3}); }, {"Conv2D", "kernel_size"});
  check_error([] { nn::MaxPool2D({2, 2}, {0, 1}); }, {"MaxPool2D", "strides"});
}

TEST_CASE("Dense: values, rank-3 inputs, output_shape, gradients") {
  nn::Dense d(2, "relu");
  d(zeros({1, 3}, f64));
  d.kernel().assign(f64_tensor({1, -1, 2, 0.5, -3, 1}, {3, 2}));
  d.bias().assign(f64_tensor({0.5, -0.25}, {2}));
  const Tensor x = f64_tensor({1, 2, 3, -1, 0, 1}, {2, 3});
  // Row 1: [1+4-9, -1+1+3] + b = [-3.5, 2.75]; row 2: [-1-3, 1+1] + b = [-3.5, 1.75].
  check_close(d.call_linear(x), {-3.5, 2.75, -3.5, 1.75});
  check_close(d(x), {0, 2.75, 0, 1.75});
  CHECK(d.output_shape({-1, 3}) == Shape({-1, 2}));
  CHECK(d.output_shape({-1, 5, 3}) == Shape({-1, 5, 2}));
  check_error([&] { d.output_shape({3}); }, {"dense", "[3]"});
  CHECK(d.kernel().name() == "dense/kernel");
  CHECK(d.bias().name() == "dense/bias");

  nn::Dense nb(2, {}, false);
  nb(ones({1, 3}));
  CHECK(!nb.bias().defined());
  CHECK(nb.variables().size() == 1);

  random::seed(11);
  nn::Dense d3(3, "tanh");
  Variable x3(random::normal({2, 4, 5}, 0, 1, f64), "x");
  CHECK(d3(x3).shape() == Shape({2, 4, 3}));
  // Rank 3: each [5] row goes through the same affine map.
  const Tensor row = tanh(matmul(reshape(x3.value(), {8, 5}), d3.kernel()) + d3.bias());
  check_close(reshape(d3(x3), {8, 3}), row, 1e-12);
  check_gradients([&] { return d3(x3); }, {x3, d3.kernel(), d3.bias()});
  nn::Dense d2(3, "sigmoid");
  Variable x2(random::normal({3, 4}, 0, 1, f64), "x");
  d2(x2);
  check_gradients([&] { return d2(x2); }, {x2, d2.kernel(), d2.bias()});
}

TEST_CASE("Conv2D: against an f64 loop, shapes, gradients") {
  random::seed(21);
  for (bool same : {false, true}) {
    for (int64_t stride : {1, 2}) {
      INFO("same " << same << " stride " << stride);
      nn::Conv2D c(3, {3, 2}, {stride, stride}, same ? Padding::same : Padding::valid);
      const Tensor x = random::normal({2, 5, 6, 2}, 0, 1, f64);
      const Tensor y = c(x);
      CHECK(c.kernel().shape() == Shape({3, 2, 2, 3}));
      CHECK(c.bias().shape() == Shape({3}));
      c.bias().assign(f64_tensor({0.5, -1, 2}, {3}));
      Shape os;
      std::vector<double> ref = conv_ref(vals(x), x.shape(), vals(c.kernel().value()),
                                         c.kernel().shape(), stride, same, os);
      for (size_t i = 0; i < ref.size(); ++i)
        ref[i] += std::vector<double>{0.5, -1, 2}[i % 3];
      const Tensor got = c(x);
      CHECK(got.shape() == os);
      CHECK(c.output_shape(x.shape()) == os);
      check_close(got, ref, 1e-10, 1e-10);
      (void)y;
    }
  }
  nn::Conv2D c(2, {2, 2}, {1, 1}, Padding::valid, "relu");
  CHECK(c.output_shape({-1, 5, -1, 3}) == Shape({-1, 4, -1, 2}));
  check_error([&] { c.output_shape({-1, 1, 5, 3}); }, {"conv2d", "[?,1,5,3]", "window"});
  check_error([&] { c.output_shape({-1, 5, 5}); }, {"conv2d", "NHWC", "[?,5,5]"});
  Variable x(random::normal({1, 4, 3, 2}, 0, 1, f64), "x");
  c(x);
  CHECK(c.kernel().name() == "conv2d/kernel");
  check_gradients([&] { return c(x); }, {x, c.kernel(), c.bias()});
  nn::Conv2D s(2, {3, 3}, {2, 2}, Padding::same, "tanh");
  s(x);
  check_gradients([&] { return s(x); }, {x, s.kernel(), s.bias()});
}

TEST_CASE("MaxPool2D and AvgPool2D: against f64 loops, default strides, gradients") {
  random::seed(31);
  const Tensor x = random::normal({2, 5, 4, 3}, 0, 1, f64);
  for (bool same : {false, true}) {
    INFO("same " << same);
    const Padding p = same ? Padding::same : Padding::valid;
    nn::MaxPool2D mp({2, 2}, {}, p);  // strides default to the pool size
    nn::AvgPool2D ap({2, 2}, {}, p);
    Shape ms, as;
    const std::vector<double> mref = pool_ref(vals(x), x.shape(), 2, 2, same, true, ms);
    const std::vector<double> aref = pool_ref(vals(x), x.shape(), 2, 2, same, false, as);
    const Tensor my = mp(x), ay = ap(x);
    CHECK(my.shape() == ms);
    CHECK(ay.shape() == as);
    CHECK(mp.output_shape(x.shape()) == ms);
    CHECK(ap.output_shape({-1, 5, 4, 3}) == Shape({-1, ms[1], ms[2], 3}));
    check_close(my, mref, 1e-12);
    check_close(ay, aref, 1e-12);
  }
  nn::MaxPool2D strided({3, 3}, {1, 1});
  Shape ss;
  check_close(strided(x), pool_ref(vals(x), x.shape(), 3, 1, false, true, ss), 1e-12);
  check_error([&] { strided(ones({2, 5, 4, 2})); }, {"max_pooling2d", "[2,5,4,2]", "[2,5,4,3]"});
  // A bad first input leaves the layer unbuilt.
  nn::AvgPool2D fresh;
  check_error([&] { fresh(ones({2, 5, 4})); }, {"average_pooling2d", "NHWC", "[2,5,4]"});
  CHECK(!fresh.built());
  CHECK(fresh(ones({2, 4, 4, 1})).shape() == Shape({2, 2, 2, 1}));

  Variable xv(random::normal({1, 4, 4, 2}, 0, 1, f64), "x");
  nn::MaxPool2D mp;
  nn::AvgPool2D ap({2, 2}, {1, 1}, Padding::same);
  check_gradients([&] { return mp(xv); }, {xv});
  check_gradients([&] { return ap(xv); }, {xv});
}

TEST_CASE("Flatten: values, unknown batch dims in a trace") {
  nn::Flatten f;
  const Tensor x = reshape(arange(0, 24, 1, f64), {2, 3, 4});
  const Tensor y = f(x);
  CHECK(y.shape() == Shape({2, 12}));
  check_close(y, vals(x));
  CHECK(f.output_shape({-1, 3, 4}) == Shape({-1, 12}));
  CHECK(f.output_shape({5, -1, 4}) == Shape({5, -1}));
  nn::Flatten f1;
  CHECK(f1(ones({3})).shape() == Shape({3, 1}));

  nn::Flatten ft;
  auto traced = function([&](const Tensor& t) { return ft(t); }, {TensorSpec({-1, 3, 4}, f64)});
  check_close(traced(x), y);
  CHECK(traced(ones({5, 3, 4}, f64)).shape() == Shape({5, 12}));
  CHECK(traced.tracing_count() == 1);
}

TEST_CASE("Dropout: identity at inference, inverted scaling in training") {
  nn::Dropout d(0.25);
  random::seed(41);
  const Tensor x = random::uniform({200, 100}, 1, 2, f64);
  check_close(d(x), vals(x));
  check_close(d(x, false), vals(x));
  const Tensor y = d(x, true);
  const std::vector<double> xv = vals(x), yv = vals(y);
  size_t dropped = 0;
  double sx = 0, sy = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0) {
      ++dropped;
    } else {
      CHECK(yv[i] == Approx(xv[i] / 0.75).epsilon(1e-12));
    }
    sx += xv[i];
    sy += yv[i];
  }
  // 20000 draws: the dropped fraction's stddev is ~0.003.
  CHECK(static_cast<double>(dropped) / static_cast<double>(xv.size()) ==
        Approx(0.25).margin(0.015));
  CHECK(sy / sx == Approx(1).margin(0.02));
  // The gradient is the same mask and scale.
  Variable xs(x, "x");
  GradientTape tape;
  const Tensor out = d(xs, true);
  const std::vector<double> g = vals(tape.gradient(sum(out), xs)), ov = vals(out);
  for (size_t i = 0; i < g.size(); ++i)
    CHECK(g[i] == (ov[i] == 0 ? 0.0 : 1 / 0.75));
  CHECK(nn::Dropout(0.0)(x, true).shape() == x.shape());
}

TEST_CASE("LayerNorm: against an f64 loop, gradients") {
  random::seed(51);
  nn::LayerNorm ln(1e-3);
  Variable x(random::normal({3, 2, 5}, 1, 2, f64), "x");
  ln(x);
  CHECK(ln.gamma().name() == "layer_normalization/gamma");
  CHECK(ln.beta().shape() == Shape({5}));
  ln.gamma().assign(f64_tensor({1, 2, 0.5, -1, 3}, {5}));
  ln.beta().assign(f64_tensor({0, 1, -1, 0.5, 2}, {5}));
  const std::vector<double> xv = vals(x.value()), gm = vals(ln.gamma().value()),
                            bt = vals(ln.beta().value());
  std::vector<double> ref;
  for (size_t r = 0; r < 6; ++r) {
    double m = 0, v = 0;
    for (size_t k = 0; k < 5; ++k)
      m += xv[r * 5 + k] / 5;
    for (size_t k = 0; k < 5; ++k)
      v += (xv[r * 5 + k] - m) * (xv[r * 5 + k] - m) / 5;
    for (size_t k = 0; k < 5; ++k)
      ref.push_back((xv[r * 5 + k] - m) / std::sqrt(v + 1e-3) * gm[k] + bt[k]);
  }
  check_close(ln(x), ref, 1e-12, 1e-12);
  check_gradients([&] { return ln(x); }, {x, ln.gamma(), ln.beta()});
}

TEST_CASE("BatchNormalization: batch statistics, moving statistics, gradients") {
  random::seed(61);
  nn::BatchNormalization bn(0.9, 1e-3);
  const Tensor x = random::normal({4, 3}, 2, 3, f64);
  const Tensor y_inf = bn(x);  // builds; inference with moving stats 0 and 1
  check_close(y_inf, vals(x / std::sqrt(1 + 1e-3)), 1e-12);
  CHECK(bn.moving_mean().name() == "batch_normalization/moving_mean");
  CHECK(!bn.moving_variance().trainable());
  CHECK(bn.trainable_variables().size() == 2);
  CHECK(bn.non_trainable_variables().size() == 2);
  bn.gamma().assign(f64_tensor({1, 2, -1}, {3}));
  bn.beta().assign(f64_tensor({0, 0.5, 1}, {3}));

  const std::vector<double> xv = vals(x);
  std::vector<double> mean(3, 0), var(3, 0), ref(12);
  for (size_t i = 0; i < 12; ++i)
    mean[i % 3] += xv[i] / 4;
  for (size_t i = 0; i < 12; ++i)
    var[i % 3] += (xv[i] - mean[i % 3]) * (xv[i] - mean[i % 3]) / 4;
  const std::vector<double> gamma{1, 2, -1}, beta{0, 0.5, 1};
  for (size_t i = 0; i < 12; ++i)
    ref[i] = (xv[i] - mean[i % 3]) / std::sqrt(var[i % 3] + 1e-3) * gamma[i % 3] + beta[i % 3];
  check_close(bn(x, true), ref, 1e-12, 1e-12);
  std::vector<double> mm(3), mv(3);
  for (size_t k = 0; k < 3; ++k) {
    mm[k] = 0.1 * mean[k];
    mv[k] = 0.9 + 0.1 * var[k];
  }
  check_close(bn.moving_mean().value(), mm, 1e-12);
  check_close(bn.moving_variance().value(), mv, 1e-12);
  // Inference now uses the moving statistics.
  std::vector<double> inf(12);
  for (size_t i = 0; i < 12; ++i)
    inf[i] = (xv[i] - mm[i % 3]) / std::sqrt(mv[i % 3] + 1e-3) * gamma[i % 3] + beta[i % 3];
  check_close(bn(x, false), inf, 1e-12, 1e-12);
  // Frozen: inference even when training, and no statistics update (Keras).
  bn.set_trainable(false);
  check_close(bn(x, true), inf, 1e-12, 1e-12);
  check_close(bn.moving_mean().value(), mm, 1e-12);
  bn.set_trainable(true);

  // NHWC: statistics over N, H and W.
  nn::BatchNormalization b4;
  Variable x4(random::normal({2, 3, 2, 2}, 0, 1, f64), "x");
  const std::vector<double> y4 = vals(b4(x4, true)), x4v = vals(x4.value());
  for (size_t c = 0; c < 2; ++c) {
    double m = 0, s = 0;
    for (size_t i = c; i < 24; i += 2)
      m += y4[i] / 12;
    for (size_t i = c; i < 24; i += 2)
      s += y4[i] * y4[i] / 12;
    CHECK(std::abs(m) < 1e-12);
    double xm = 0, xs2 = 0;
    for (size_t i = c; i < 24; i += 2)
      xm += x4v[i] / 12;
    for (size_t i = c; i < 24; i += 2)
      xs2 += (x4v[i] - xm) * (x4v[i] - xm) / 12;
    CHECK(s == Approx(xs2 / (xs2 + 1e-3)).epsilon(1e-10));
  }
  check_gradients([&] { return b4(x4, true); }, {x4, b4.gamma(), b4.beta()});
  Variable x2(random::normal({5, 3}, 0, 1, f64), "x");
  nn::BatchNormalization b2;
  b2(x2, true);
  b2.moving_variance().assign(f64_tensor({0.5, 2, 1.5}, {3}));
  check_gradients([&] { return b2(x2, false); }, {x2, b2.gamma(), b2.beta()});
  check_error(
      [] {
        nn::BatchNormalization b;
        b(ones({4}));
      },
      {"batch_normalization", "[4]"});
}

TEST_CASE("Embedding: lookups, shapes, errors, gradients") {
  random::seed(71);
  nn::Embedding e(5, 3);
  const Tensor ids = tensor({{0, 4}, {2, 2}});
  const Tensor y = e(ids);
  CHECK(y.shape() == Shape({2, 2, 3}));
  CHECK(e.output_shape({-1, 2}) == Shape({-1, 2, 3}));
  CHECK(e.embeddings().name() == "embedding/embeddings");
  CHECK(e.embeddings().dtype() == f32);
  const std::vector<double> table = vals(e.embeddings().value()), yv = vals(y);
  for (double v : table)
    CHECK(std::abs(v) <= 0.05);  // random_uniform(-0.05, 0.05)
  const std::vector<int> idv{0, 4, 2, 2};
  for (size_t i = 0; i < 4; ++i)
    for (size_t k = 0; k < 3; ++k)
      CHECK(yv[i * 3 + k] == table[static_cast<size_t>(idv[i]) * 3 + k]);
  check_close(e(tensor({{uint8_t{4}, uint8_t{0}}})),
              {table[12], table[13], table[14], table[0], table[1], table[2]});
  check_close(e(tensor({{int64_t{1}, int64_t{1}}})),
              {table[3], table[4], table[5], table[3], table[4], table[5]});
  check_error([&] { e(tensor({1, 2})); }, {"embedding", "[2]", "[2,2]"});
  check_error([&] { e(tensor({{0.f, 1.f}})); }, {"embedding", "integers", "f32[1,2]"});
  check_error([&] { e(tensor({{0.0, 1.0}})); }, {"embedding", "f64[1,2]"});
  check_error([&] { e(tensor({{1, 5}})); }, {"embedding", "[0, 5)", "5"});
  check_error([] { nn::Embedding(0, 3); }, {"Embedding", "input_dim"});

  // f64 tables for the finite differences; duplicate ids accumulate.
  nn::Embedding e64(4, 2, nn::glorot_uniform());
  e64.ensure_built({-1, 3}, f64);
  CHECK(e64.embeddings().dtype() == f64);
  const Tensor ids3 = tensor({{1, 3, 1}, {0, 1, 2}});
  check_gradients([&] { return e64(ids3); }, {e64.embeddings()});
}

TEST_CASE("layers traced: Dense + BatchNormalization in training, traced equals eager") {
  random::seed(81);
  const Tensor x = random::normal({6, 4}, 0, 1, f64);
  const Tensor x2 = random::normal({3, 4}, 0, 1, f64);
  nn::Dense d(3, "relu");
  nn::BatchNormalization bn(0.8);
  // Built inside the trace, for an unknown batch.
  auto step =
      function([&](const Tensor& t) { return bn(d(t, true), true); }, {TensorSpec({-1, 4}, f64)});
  const Tensor traced = step(x);
  CHECK(d.input_shape() == Shape({-1, 4}));
  CHECK(d.kernel().dtype() == f64);
  const std::vector<double> mm = vals(bn.moving_mean().value());
  const std::vector<double> mv = vals(bn.moving_variance().value());
  const Tensor traced2 = step(x2);
  CHECK(step.tracing_count() == 1);
  const std::vector<double> mm2 = vals(bn.moving_mean().value());

  bn.moving_mean().assign(zeros({3}, f64));
  bn.moving_variance().assign(ones({3}, f64));
  check_close(bn(d(x, true), true), traced, 1e-12, 1e-12);
  check_close(bn.moving_mean().value(), mm, 1e-12, 1e-12);
  check_close(bn.moving_variance().value(), mv, 1e-12, 1e-12);
  check_close(bn(d(x2, true), true), traced2, 1e-12, 1e-12);
  check_close(bn.moving_mean().value(), mm2, 1e-12, 1e-12);

  // Gradients through the traced call equal the eager ones.
  std::vector<Variable> vars = d.trainable_variables();
  for (const Variable& v : bn.trainable_variables())
    vars.push_back(v);
  auto grads = [&](bool use_trace) {
    GradientTape tape;
    const Tensor y = use_trace ? step(x) : bn(d(x, true), true);
    return tape.gradient(sum(y * y), vars);
  };
  const std::vector<Tensor> gt = grads(true), ge = grads(false);
  for (size_t i = 0; i < vars.size(); ++i)
    check_close(gt[i], ge[i], 1e-10, 1e-12);
}
