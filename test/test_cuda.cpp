// The CUDA backend. Without a GPU (or a build without CUDA) only the error paths run and every
// GPU test says it skipped; on a GPU every CUDA kernel is compared with the CPU's, transfers
// round-trip, the allocator's counters move as documented, gradients and traced functions
// run on CUDA tensors. scripts/gpu-check.sh runs this on a GPU machine.
#include <limits>
#include <thread>

#include <kiln/jit/executable.h>
#include <kiln/kiln.h>

#include "corpus.h"
#include "cuda_testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::gpu;
using kiln::testing::have_gpu;
using kiln::testing::rnd;
using kiln::testing::same;

TEST_CASE("cuda: without a device, allocating or copying there says why") {
  if (device_count(DeviceType::cuda) > 0) return;
  auto says = [](const std::function<void()>& fn, const std::vector<std::string>& parts) {
    try {
      fn();
      FAIL("expected kiln::Error");
    } catch (const Error& e) {
      for (const std::string& p : parts)
        CHECK(std::string(e.what()).find(p) != std::string::npos);
    }
  };
  says([] { Tensor::empty({2, 3}, f32, gpu); }, {"allocate", "cuda:0", "not available"});
  says([] { ones({2}).to(gpu); }, {"to", "cuda:0", "not available"});
  says([] { synchronize(gpu); }, {"cuda:0", "not available"});
  says([] { memory::device_stats(gpu); }, {"cuda:0", "not available"});
  CHECK(device_count(DeviceType::cpu) == 1);
  // The CPU needs no backend and nothing to wait for.
  synchronize(Device::cpu());
  CHECK(ones({2}).to(Device::cpu()).device() == Device::cpu());
}

TEST_CASE("cuda: transfers round-trip, strided and large, and the host reads values") {
  if (!have_gpu()) return;
  const Tensor x = rnd({3, 1000, 1500}, 1);  // 18 MB: several staging chunks
  const Tensor d = x.to(gpu);
  CHECK(d.device() == gpu);
  CHECK(d.to(Device::cpu()).to_vector<float>() == x.to_vector<float>());
  const Tensor t = x.transpose().slice(0, 1, 3);  // a strided view copies as its values
  CHECK(t.to(gpu).to(Device::cpu()).to_vector<float>() == t.to_vector<float>());
  CHECK(full({}, 2.5f).to(gpu).item<float>() == 2.5f);
  const Tensor i = from_vector(std::vector<int64_t>{1, -2, 3}, Shape{3}).to(gpu);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});
  CHECK(d.to(gpu).device() == gpu);  // same device: no copy
}

TEST_CASE("cuda: the caching allocator's counters, reuse and empty_cache") {
  if (!have_gpu()) return;
  synchronize(gpu);
  memory::empty_cache(gpu);
  const MemoryStats s0 = memory::device_stats(gpu);
  CHECK(s0.cached_bytes == 0);
  {
    Tensor a = Tensor::empty({1 << 20}, f32, gpu);  // 4 MiB: a 2 MiB-class block
    const MemoryStats s1 = memory::device_stats(gpu);
    CHECK(s1.live_bytes - s0.live_bytes == 4 << 20);
    CHECK(s1.peak_bytes >= s1.live_bytes);
  }
  const MemoryStats s2 = memory::device_stats(gpu);
  CHECK(s2.live_bytes == s0.live_bytes);
  CHECK(s2.cached_bytes == 4 << 20);
  {
    Tensor b = Tensor::empty({1 << 20}, f32, gpu);  // the cached block comes back
    CHECK(memory::device_stats(gpu).cached_bytes == 0);
  }
  memory::empty_cache(gpu);
  CHECK(memory::device_stats(gpu).cached_bytes == 0);
}

TEST_CASE("cuda: every elementwise kernel against the CPU, f32 and f64, with broadcasting") {
  if (!have_gpu()) return;
  using U = Tensor (*)(const Tensor&);
  const std::pair<const char*, U> unary[] = {
      {"neg", neg}, {"abs", abs},     {"square", square},   {"sign", sign},   {"relu", relu},
      {"exp", exp}, {"tanh", tanh},   {"sigmoid", sigmoid}, {"erf", erf},     {"sin", sin},
      {"cos", cos}, {"floor", floor}, {"ceil", ceil},       {"round", round}, {"expm1", expm1},
  };
  for (DType dt : {f32, f64}) {
    const Tensor x = cast(rnd({17, 33}, 2, -3, 3), dt);
    const Tensor pos = abs(x) + 0.5;
    for (const auto& [name, fn] : unary) {
      CAPTURE(name, kiln::name(dt));
      same(fn(x.to(gpu)), fn(x));
    }
    same(log(pos.to(gpu)), log(pos));
    same(log1p(pos.to(gpu)), log1p(pos));
    same(sqrt(pos.to(gpu)), sqrt(pos));
    same(rsqrt(pos.to(gpu)), rsqrt(pos));
    const Tensor y = cast(rnd({33}, 3), dt), col = cast(rnd({17, 1}, 4), dt);
    const Tensor xg = x.to(gpu), yg = y.to(gpu), cg = col.to(gpu);
    same(xg + yg, x + y);
    same(xg - cg, x - col);
    same(xg * yg, x * y);
    same(xg / cg, x / col);
    same(pow(pos.to(gpu), yg), pow(pos, y));
    same(maximum(xg, yg), maximum(x, y));
    same(minimum(xg, cg), minimum(x, col));
    same(xg > yg, x > y);
    same(xg <= cg, x <= col);
    same(equal(xg, xg), equal(x, x));
    same(where(xg > yg, xg, cg), where(x > y, x, col));
    same(xg * 2.5 + 1.0, x * 2.5 + 1.0);  // CPU scalars go along
    same(cast(xg, i32), cast(x, i32));
    same(cast(cast(xg, i64), dt), cast(cast(x, i64), dt));
    same(xg.transpose() + 1.0, x.transpose() + 1.0);  // strided views
  }
  const Tensor b = rnd({40}, 5) > 0.f, c = rnd({40}, 6) > 0.f;
  same(logical_and(b.to(gpu), c.to(gpu)), logical_and(b, c));
  same(logical_or(b.to(gpu), c.to(gpu)), logical_or(b, c));
  same(logical_not(b.to(gpu)), logical_not(b));
  const Tensor n = from_vector(std::vector<int32_t>{-3, 0, 2, 7}, Shape{4});
  same(n.to(gpu) * n.to(gpu) - 1, n * n - 1);
  same(pow(n.to(gpu), full({4}, 3, i32).to(gpu)), pow(n, full({4}, 3, i32)));
}

TEST_CASE("cuda: reductions over every axis set, and matmul through cublasLt") {
  if (!have_gpu()) return;
  const Tensor x = rnd({6, 7, 8}, 7);
  const Tensor xg = x.to(gpu);
  for (std::vector<int64_t> axes : {std::vector<int64_t>{0}, {1}, {2}, {0, 2}, {0, 1, 2}}) {
    for (bool keep : {false, true}) {
      CAPTURE(axes, keep);
      same(sum(xg, axes, keep), sum(x, axes, keep), 1e-5, 1e-5);
      same(max(xg, axes, keep), max(x, axes, keep));
      same(min(xg, axes, keep), min(x, axes, keep));
      same(mean(xg, axes, keep), mean(x, axes, keep), 1e-5, 1e-5);
    }
  }
  same(softmax(xg, -1), softmax(x, -1));
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  for (const Case& c :
       {Case{{64, 32}, {32, 48}, false, false}, Case{{32, 64}, {32, 48}, true, false},
        Case{{64, 32}, {48, 32}, false, true}, Case{{5, 7, 9}, {9, 4}, false, false},
        Case{{3, 5, 7}, {3, 7, 2}, false, false}, Case{{7}, {7, 3}, false, false},
        Case{{4, 7}, {7}, false, false}}) {
    for (DType dt : {f32, f64}) {
      Tensor a = cast(rnd(c.a, 8), dt), b = cast(rnd(c.b, 9), dt);
      if (c.ta) a = a.transpose();
      if (c.tb) b = b.transpose();
      CAPTURE(a.type_str(), b.type_str());
      same(matmul(a.to(gpu), b.to(gpu)), matmul(a, b), 1e-5, 1e-4);
    }
  }
  // TF32 rounds the inputs to a 10-bit mantissa: with inputs in [-2, 2] and 256 terms, the
  // error is about 6e-3 absolute (RMS), so the tolerance is 3e-2; f32 stays within 1e-4.
  const Tensor a = rnd({128, 256}, 10), b = rnd({256, 64}, 11);
  set_allow_tf32(true);
  same(matmul(a.to(gpu), b.to(gpu)), matmul(a, b), 1e-2, 3e-2);
  set_allow_tf32(false);
  same(matmul(a.to(gpu), b.to(gpu)), matmul(a, b), 1e-5, 1e-4);
  // A vector against a batch; a view with an offset (not 256-byte aligned) as an operand.
  const Tensor batch = rnd({5, 7, 9}, 12), vec = rnd({9}, 13);
  same(matmul(batch.to(gpu), vec.to(gpu)), matmul(batch, vec), 1e-5, 1e-4);
  same(matmul(vec.to(gpu), rnd({5, 9, 4}, 14).to(gpu)), matmul(vec, rnd({5, 9, 4}, 14)), 1e-5,
       1e-4);
  const Tensor big = rnd({33, 40}, 15);
  const Tensor off = big.slice(0, 1, 33);  // starts 160 bytes in
  same(matmul(off.to(gpu).slice(0, 0, 32), b.slice(0, 0, 40).to(gpu)),
       matmul(off.slice(0, 0, 32), b.slice(0, 0, 40)), 1e-5, 1e-4);
  const Tensor dev_big = big.to(gpu);
  same(matmul(dev_big.slice(0, 1, 33), b.slice(0, 0, 40).to(gpu)),
       matmul(big.slice(0, 1, 33), b.slice(0, 0, 40)), 1e-5, 1e-4);
  // Integer reductions accumulate in i64, as on the CPU.
  const Tensor ints = cast(rnd({6, 50}, 16) * 1000.f, i32);
  same(sum(ints.to(gpu), {1}), sum(ints, {1}));
  same(sum(ints.to(gpu), {0, 1}), sum(ints, {0, 1}));
  same(max(ints.to(gpu), {0}), max(ints, {0}));
  // A long row and a full reduction (a block per row).
  const Tensor row = rnd({3, 100000}, 17);
  same(sum(row.to(gpu), {1}), sum(row, {1}), 1e-4, 1e-3);
  same(max(row.to(gpu), {0, 1}), max(row, {0, 1}));
  same(zeros_like(row.to(gpu)), zeros_like(row));
}

TEST_CASE("cuda: gradients, and traced functions, on CUDA tensors") {
  if (!have_gpu()) return;
  const Tensor x = rnd({8, 5}, 12), w = rnd({5, 3}, 13);
  auto loss_grad = [](const Tensor& xx, const Tensor& ww) {
    Variable v(ww, "w");
    GradientTape tape;
    Tensor loss = sum(tanh(matmul(xx, v.value())) * 0.5);
    return tape.gradient(loss, {v})[0];
  };
  same(loss_grad(x.to(gpu), w.to(gpu)), loss_grad(x, w), 1e-5, 1e-6);
  // Traced: compiled functions called with CUDA tensors run the optimized graph on them.
  for (const auto& c : kiln::testing::corpus()) {
    CAPTURE(c.name);
    const Tensor a = rnd(c.x, 1), b = rnd(c.y, 2);
    Tensor want;
    try {
      want = c.fn(a, b);
    } catch (const Error&) {
      continue;
    }
    try {
      same(kiln::function(c.fn)(a.to(gpu), b.to(gpu)), want, 1e-5, 1e-5);
    } catch (const Error& e) {
      // Ops without a CUDA kernel yet say so; nothing else may fail.
      CHECK(std::string(e.what()).find("no kernel for device cuda:0") != std::string::npos);
    }
  }
}

TEST_CASE("cuda: mixing devices names both") {
  if (!have_gpu()) return;
  try {
    (void)(ones({3}).to(gpu) + ones({3}));
    FAIL("expected kiln::Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("cuda:0") != std::string::npos);
    CHECK(std::string(e.what()).find("cpu") != std::string::npos);
  }
}

TEST_CASE("cuda: compiled functions run their fused kernels as PTX, against the interpreter") {
  if (!have_gpu()) return;
  const FunctionOptions interpreted{.jit_compile = false};
  struct Pattern {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> fn;
  };
  const Pattern patterns[] = {
      {"chain", [](auto& a, auto& b) { return sigmoid(a * b + 0.5f) * a - b * b; }},
      {"softmax", [](auto& a, auto&) { return softmax(a, -1); }},
      {"layer norm",
       [](auto& a, auto& b) {
         Tensor m = mean(a, {-1}, true);
         return (a - m) * rsqrt(mean(square(a - m), {-1}, true) + 1e-5f) * b;
       }},
      {"column sums", [](auto& a, auto& b) { return sum(a * b, {0}); }},
      {"broadcast rows", [](auto& a, auto& b) { return a * b.slice(0, 0, 1) + 1.f; }},
      {"transposed read", [](auto& a, auto& b) { return a.transpose() * 2.f + b.transpose(); }},
      {"matmul bias relu", [](auto& a, auto& b) { return relu(matmul(a, b.transpose()) + 1.f); }},
      {"f64 math",
       [](auto& a, auto& b) { return cast(exp(cast(a, f64)) + erf(cast(b, f64)), f32); }},
  };
  const Tensor x = rnd({64, 33}, 1), y = rnd({64, 33}, 2);
  for (const Pattern& p : patterns) {
    CAPTURE(p.name);
    const Tensor want = kiln::function(p.fn, interpreted)(x, y);
    auto compiled = kiln::function(p.fn);
    same(compiled(x.to(gpu), y.to(gpu)), want, 1e-5, 1e-5);
    CHECK(compiled.get_concrete_function(x.to(gpu), y.to(gpu)).kernel_count() ==
          compiled.get_concrete_function(x, y).kernel_count());
  }
  // A dynamic batch dim: one compile, several batch sizes.
  auto dyn = kiln::function([](const Tensor& a) { return softmax(a * 2.f, -1); },
                            FunctionOptions{.input_signature = {TensorSpec({-1, 10})}});
  for (int64_t b : {1, 7, 128, 1000}) {
    const Tensor a = rnd({b, 10}, 3);
    same(dyn(a.to(gpu)), softmax(a * 2.f, -1), 1e-5, 1e-6);
  }
}

TEST_CASE("cuda: a compiled train step with its variables on the GPU matches the CPU's") {
  if (!have_gpu()) return;
  auto run = [](Device d) {
    Variable w1(rnd({20, 16}, 4, -0.3, 0.3).to(d), "w1"),
        w2(rnd({16, 5}, 5, -0.3, 0.3).to(d), "w2");
    Variable m1(zeros({20, 16}).to(d), "m1"), v1(zeros({20, 16}).to(d), "v1");
    Variable m2(zeros({16, 5}).to(d), "m2"), v2(zeros({16, 5}).to(d), "v2");
    auto step = kiln::function([&](const Tensor& x, const Tensor& t) {
      GradientTape tape;
      Tensor loss = mean(square(matmul(tanh(matmul(x, w1.value())), w2.value()) - t));
      const std::vector<Tensor> g = tape.gradient(loss, {w1, w2});
      Variable* vars[2][3] = {{&w1, &m1, &v1}, {&w2, &m2, &v2}};
      for (int i = 0; i < 2; ++i) {
        const AdamUpdate u = adam_update(vars[i][0]->value(), vars[i][1]->value(),
                                         vars[i][2]->value(), g[i], 1e-2, 0.9, 0.999, 1e-7);
        vars[i][0]->assign(u.var);
        vars[i][1]->assign(u.m);
        vars[i][2]->assign(u.v);
      }
      return loss;
    });
    const Tensor x = rnd({32, 20}, 6).to(d), t = rnd({32, 5}, 7).to(d);
    std::vector<double> losses;
    for (int i = 0; i < 20; ++i)
      losses.push_back(step(x, t).to(Device::cpu()).item<double>());
    return std::make_pair(losses, w2.value().to(Device::cpu()));
  };
  const auto [cpu_losses, cpu_w2] = run(Device::cpu());
  const auto [gpu_losses, gpu_w2] = run(gpu);
  check_close(gpu_losses, cpu_losses, 1e-4, 1e-6);
  CHECK(gpu_losses.back() < gpu_losses.front());
  check_close(gpu_w2, cpu_w2.to_vector<double>(), 1e-4, 1e-6);
}

TEST_CASE("cuda: compiled functions replay a CUDA Graph from their second call") {
  if (!have_gpu()) return;
  // A variable update, a view among the results, a host scalar creation op, fused kernels
  // and a cublasLt matmul: each call against the same function run on the CPU.
  auto make = [](Variable& v) {
    return kiln::function([&v](const Tensor& x, const Tensor& w) {
      Tensor h = relu(matmul(x, w) + full(Shape{}, 0.25));
      v.assign(v.value() * 0.5 + sum(h, {0}));
      return std::vector<Tensor>{sum(square(h)), h.transpose(), v.value() * 2.0};
    });
  };
  Variable vc(rnd({6}, 1), "v"), vg(rnd({6}, 1).to(gpu), "v");
  auto fc = make(vc), fg = make(vg);
  const int64_t before = jit::cuda_graph_replays();
  std::vector<Tensor> kept;
  for (int call = 0; call < 5; ++call) {
    CAPTURE(call);
    const Tensor x = rnd({9, 4}, 10 + call), w = rnd({4, 6}, 20 + call);
    const Tensor xg = x.to(gpu), wg = w.to(gpu);
    const std::vector<Tensor> want = fc(x, w), got = fg(xg, wg);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i)
      same(got[i], want[i], 1e-5, 1e-5);
    same(vg.value(), vc.value(), 1e-5, 1e-5);
    same(xg, x);  // the inputs are read, never written
    if (call == 1) kept = got;
  }
  // Calls 2 to 5 replayed the graph captured on call 2; results of a replay are fresh tensors,
  // so a later replay does not change them.
  CHECK(jit::cuda_graph_replays() - before == 4);
  const Tensor h1 = relu(matmul(rnd({9, 4}, 11), rnd({4, 6}, 21)) + 0.25);
  same(kept[0], sum(square(h1)), 1e-5, 1e-5);
  // Not capturable: a gather's bounds check reads the device on the host, and random draws
  // are made on the host. Each call runs step by step and matches the CPU.
  auto gathered =
      kiln::function([](const Tensor& x, const Tensor& i) { return gather(x, i) * 2.0; });
  const Tensor x = rnd({7, 3}, 30), idx = from_vector(std::vector<int32_t>{6, 0, 2, 2}, Shape{4});
  const int64_t mid = jit::cuda_graph_replays();
  for (int call = 0; call < 3; ++call)
    same(gathered(x.to(gpu), idx.to(gpu)), gather(x, idx) * 2.0);
  auto noisy = kiln::function([](const Tensor& x) { return x + random::uniform_like(x); });
  for (int call = 0; call < 3; ++call) {
    random::seed(7 + call);
    const Tensor want = noisy(x);
    random::seed(7 + call);
    same(noisy(x.to(gpu)), want);
  }
  CHECK(jit::cuda_graph_replays() == mid);
}

TEST_CASE("cuda: threads calling one compiled function while it is captured and replayed") {
  if (!have_gpu()) return;
  // Inference with shared weights from four threads: one captures while the others run step
  // by step (reading the weights through the variable meanwhile), then all replay.
  Variable w(rnd({16, 8}, 40).to(gpu), "w");
  const Tensor w_cpu = w.value().to(Device::cpu());
  auto f =
      kiln::function([&w](const Tensor& x) { return softmax(tanh(matmul(x, w.value())), -1); });
  constexpr int kThreads = 4, kCalls = 12;
  std::vector<std::vector<Tensor>> got(kThreads), inputs(kThreads);
  for (int t = 0; t < kThreads; ++t)
    for (int c = 0; c < kCalls; ++c)
      inputs[t].push_back(rnd({5, 16}, 100 * t + c));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCalls; ++c)
        got[t].push_back(f(inputs[t][c].to(gpu)));
    });
  for (std::thread& th : threads)
    th.join();
  for (int t = 0; t < kThreads; ++t)
    for (int c = 0; c < kCalls; ++c) {
      CAPTURE(t, c);
      same(got[t][c], softmax(tanh(matmul(inputs[t][c], w_cpu)), -1), 1e-5, 1e-6);
    }
  same(w.value(), w_cpu);
}

TEST_CASE(
    "cuda: compiled matmul + bias + relu (a cublasLt epilogue) treats NaN and inf as the CPU") {
  if (!have_gpu()) return;
  auto f = kiln::function(
      [](const Tensor& x, const Tensor& w, const Tensor& b) { return relu(matmul(x, w) + b); });
  std::vector<float> xv = rnd({5, 4}, 1).to_vector<float>();
  xv[0] = std::numeric_limits<float>::quiet_NaN();
  xv[6] = -std::numeric_limits<float>::infinity();
  xv[9] = std::numeric_limits<float>::infinity();
  const Tensor x = from_vector(xv, Shape{5, 4}), w = rnd({4, 3}, 2), b = rnd({3}, 3);
  const Tensor want = relu(matmul(x, w) + b);
  for (int call = 0; call < 3; ++call)  // step by step, then captured and replayed
    same(f(x.to(gpu), w.to(gpu), b.to(gpu)), want);
}

TEST_CASE("cuda: eager training pieces: adam_update, cross-entropy and its gradient") {
  if (!have_gpu()) return;
  for (DType dt : {f32, f64}) {
    const Tensor var = cast(rnd({300}, 1), dt), m = cast(rnd({300}, 2), dt) * 0.1,
                 v = abs(cast(rnd({300}, 3), dt)), g = cast(rnd({300}, 4), dt);
    const AdamUpdate want = adam_update(var, m, v, g, 1e-2, 0.9, 0.999, 1e-7);
    const AdamUpdate got =
        adam_update(var.to(gpu), m.to(gpu), v.to(gpu), g.to(gpu), 1e-2, 0.9, 0.999, 1e-7);
    same(got.var, want.var);
    same(got.m, want.m);
    same(got.v, want.v);
  }
  const Tensor logits = rnd({16, 10}, 5);
  const Tensor labels = random::randint({16}, 0, 10, i32);
  auto loss_and_grad = [&](Device d) {
    Variable w(logits.to(d), "logits");
    GradientTape tape;
    Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(labels.to(d), w.value()));
    return std::make_pair(loss, tape.gradient(loss, {w})[0]);
  };
  const auto [cpu_loss, cpu_grad] = loss_and_grad(Device::cpu());
  const auto [gpu_loss, gpu_grad] = loss_and_grad(gpu);
  same(gpu_loss, cpu_loss);
  same(gpu_grad, cpu_grad);
}

TEST_CASE("cuda: random draws shaped like a CUDA tensor equal the CPU's under one seed") {
  if (!have_gpu()) return;
  // Uniform, randint and bernoulli run Philox on the device; normal is drawn on the host and
  // copied. Odd sizes leave a partial last block; a large one spans many thread blocks.
  for (int64_t n : {1, 7, 1001, 1 << 20}) {
    CAPTURE(n);
    const Tensor x = zeros({n}), xg = x.to(gpu);
    const Tensor x64 = zeros({n}, f64), x64g = x64.to(gpu);
    const Tensor xi = zeros({n}, i64), xig = xi.to(gpu);
    auto draws = [](const Tensor& t, const Tensor& t64, const Tensor& ti) {
      random::seed(123);
      return std::vector<Tensor>{random::uniform_like(t, -1, 1),   random::normal_like(t, 0, 2),
                                 random::bernoulli_like(t, 0.3),   random::uniform_like(t64, 2, 3),
                                 random::normal_like(t64, 1, 0.5), random::randint_like(ti, -5, 9),
                                 random::uniform_like(t, 0, 1e-30)};
    };
    const std::vector<Tensor> want = draws(x, x64, xi), got = draws(xg, x64g, xig);
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i].device() == gpu);
      CHECK(got[i].to(Device::cpu()).to_vector<double>() == want[i].to_vector<double>());
    }
  }
  // Traced: a sized draw in a compiled function runs the device kernel with fresh counters on
  // every call, the same numbers as the same function on the CPU.
  auto draws = kiln::function([](const Tensor& t) {
    return std::vector<Tensor>{t * 2.f, random::uniform({64, 3}, -1, 1),
                               random::randint({64, 3}, 0, 4, i32)};
  });
  const Tensor x = rnd({64, 3}, 50);
  for (int call = 0; call < 3; ++call) {
    random::seed(77 + call);
    const std::vector<Tensor> want = draws(x);
    random::seed(77 + call);
    const std::vector<Tensor> got = draws(x.to(gpu));
    for (size_t i = 1; i < 3; ++i) {
      CHECK(got[i].device() == gpu);
      CHECK(got[i].to(Device::cpu()).to_vector<double>() == want[i].to_vector<double>());
    }
  }
}
