// The CPU matmul kernel. f32 goes to oneDNN, described with the operands' own strides so
// transposed views and shared weights are not copied: a 2-D product to dnnl_sgemm, a
// batched one to a cached matmul primitive. Other dtypes (and any layout oneDNN refuses)
// use a row-parallel i-k-j loop.
//
// Every operand is first reduced to a 3-D view [B, R, C] with one batch stride:
//   - a 1-D operand gets its missing dim (a: [1,K], b: [K,1]);
//   - batch dims are broadcast to the output's (stride 0) and collapsed into one; when they
//     do not collapse (e.g. [2,1] against [2,5]) the broadcast view is materialized;
//   - the last two dims must be row-major or column-major (a transposed view); anything
//     else is made dense.
// A weight shared by the whole batch (b's batch stride 0) with a row-major `a` whose batch
// folds into its rows becomes one 2-D product [B*M, K] x [K, N].

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <unordered_map>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/linalg.h>
#include <kiln/backends/cpu/onednn.h>
#include <kiln/backends/cpu/parallel.h>

namespace kiln::cpu {
namespace {

struct Mat3 {
  Tensor t;  // the storage (and offset) the view reads
  int64_t B = 1, R = 1, C = 1;
  int64_t sb = 0, sr = 0, sc = 1;
  const char* base() const { return static_cast<const char*>(t.raw_data()); }
};

// Fixes the strides of size-1 dims so the matrix is plainly row- or column-major; false when
// it is neither.
bool normalize_layout(Mat3& m) {
  const bool row = (m.C == 1 || m.sc == 1) && (m.R == 1 || m.sr >= m.C);
  const bool col = (m.R == 1 || m.sr == 1) && (m.C == 1 || m.sc >= m.R);
  if (row) {
    m.sc = 1;
    if (m.R == 1) m.sr = m.C;
  } else if (col) {
    m.sr = 1;
    if (m.C == 1) m.sc = m.R;
  } else {
    return false;
  }
  return true;
}

bool is_row_major(const Mat3& m) {
  return m.sc == 1;
}

// `x` (rank >= 2) as [B, R, C] broadcast to `batch`.
Mat3 to_mat3(const Tensor& x, const Shape& batch) {
  const int64_t r = x.rank();
  const int64_t nb = batch.rank();
  std::vector<int64_t> bst(static_cast<size_t>(nb), 0);
  for (int64_t i = 0; i < nb; ++i) {
    const int64_t xi = i - (nb - (r - 2));
    if (xi >= 0 && x.shape()[static_cast<size_t>(xi)] != 1)
      bst[static_cast<size_t>(i)] = x.strides()[static_cast<size_t>(xi)];
  }
  Mat3 m;
  m.t = x;
  m.R = x.shape()[static_cast<size_t>(r - 2)];
  m.C = x.shape()[static_cast<size_t>(r - 1)];
  m.sr = x.strides()[static_cast<size_t>(r - 2)];
  m.sc = x.strides()[static_cast<size_t>(r - 1)];
  m.B = batch.numel();
  // Collapse the batch dims into one stride, skipping size-1 dims.
  bool collapses = true;
  int64_t stride = -1, expect = -1;
  for (int64_t i = nb; i-- > 0;) {
    const int64_t d = batch[static_cast<size_t>(i)];
    if (d == 1) continue;
    const int64_t s = bst[static_cast<size_t>(i)];
    if (stride < 0) {
      stride = s;
    } else if (s != expect) {
      collapses = false;
      break;
    }
    expect = s * d;
  }
  m.sb = stride < 0 ? 0 : stride;
  if (collapses && m.sb >= 0 && normalize_layout(m)) {
    if (m.B == 1) m.sb = 0;
    return m;
  }
  // Materialize: a dense [batch..., R, C] copy.
  Shape full = batch;
  full.push_back(m.R);
  full.push_back(m.C);
  Strides st = bst;
  st.push_back(x.strides()[static_cast<size_t>(r - 2)]);
  st.push_back(x.strides()[static_cast<size_t>(r - 1)]);
  Tensor d = dense(Tensor::view_of(x, full, st, x.offset()));
  m.t = d;
  m.sr = m.C;
  m.sc = 1;
  m.sb = m.B == 1 ? 0 : m.R * m.C;
  return m;
}

// ---- own kernel ------------------------------------------------------------------------
template <class T>
void matmul_loops(const Mat3& a, Mat3 b, T* out, int64_t B, int64_t M, int64_t K, int64_t N) {
  if (!is_row_major(b) && N > 1) {  // the inner loop walks b's rows: make them contiguous
    Tensor d = dense(Tensor::view_of(b.t, Shape{b.B, K, N}, {b.sb, b.sr, b.sc}, b.t.offset()));
    b.t = d;
    b.sb = b.B == 1 ? 0 : K * N;
    b.sr = N;
    b.sc = 1;
  }
  const T* pa = reinterpret_cast<const T*>(a.base());
  const T* pb = reinterpret_cast<const T*>(b.base());
  using Acc = std::conditional_t<std::is_same_v<T, bool>, int64_t, T>;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K * N));
  parallel_for(B * M, grain, [&](int64_t begin, int64_t end) {
    std::vector<Acc> row(static_cast<size_t>(N));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t bi = r / M, i = r % M;
      const T* arow = pa + (a.B == 1 ? 0 : bi * a.sb) + i * a.sr;
      const T* bmat = pb + (b.B == 1 ? 0 : bi * b.sb);
      std::fill(row.begin(), row.end(), Acc{});
      for (int64_t k = 0; k < K; ++k) {
        const Acc av = static_cast<Acc>(arow[k * a.sc]);
        const T* brow = bmat + k * b.sr;
        if (N == 1) {
          row[0] += av * static_cast<Acc>(brow[0]);
        } else {
          for (int64_t j = 0; j < N; ++j)
            row[static_cast<size_t>(j)] += av * static_cast<Acc>(brow[j]);
        }
      }
      T* o = out + r * N;
      for (int64_t j = 0; j < N; ++j)
        o[j] = static_cast<T>(row[static_cast<size_t>(j)]);
    }
  });
}

// ---- oneDNN ------------------------------------------------------------------------------
// Outputs up to this many elements may take dnnl_sgemm plus a separate bias/relu pass.
constexpr int64_t kSgemmEpilogueElements = 1 << 16;
// Products of at least this many multiply-adds run that pass on each thread's block of rows.
constexpr int64_t kRowBlockEpilogueMacs = int64_t{1} << 20;

SgemmOperands sgemm_operands(const Mat3& a, const Mat3& b) {
  SgemmOperands o;
  o.ta = is_row_major(a) ? 'N' : 'T';
  o.tb = is_row_major(b) ? 'N' : 'T';
  o.lda = o.ta == 'N' ? a.sr : a.sc;
  o.ldb = o.tb == 'N' ? b.sr : b.sc;
  o.row_step = a.sr;
  o.a_col_step = a.sc;
  o.b_row_step = b.sr;
  o.pa = reinterpret_cast<const float*>(a.base());
  o.pb = reinterpret_cast<const float*>(b.base());
  return o;
}

// Rows [r0, r1) of the [., N] product into the dense `out`, contracting over K.
bool sgemm_rows(const SgemmOperands& o, int64_t N, int64_t K, float* out, int64_t r0, int64_t r1) {
  if (r1 <= r0) return true;
  return dnnl_sgemm(o.ta, o.tb, r1 - r0, N, K, 1.f, o.pa + r0 * o.row_step, o.lda, o.pb, o.ldb, 0.f,
                    out + r0 * N, N) == dnnl_success;
}

// out[r, :] = act(out[r, :] + bias) over `rows` rows of N.
void bias_act_rows(float* o, const float* pb, int64_t rows, int64_t N, bool relu) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r)
                   for (int64_t j = 0; j < N; ++j) {
                     const float v = o[r * N + j] + pb[j];
                     o[r * N + j] = relu ? (v > 0.f ? v : 0.f) : v;
                   }
               });
}

// Runs out = a x b through oneDNN, plus bias (a [N] vector) and a relu post-op when asked;
// false when oneDNN refuses the layout.
bool matmul_onednn(const Mat3& a, const Mat3& b, float* out, int64_t B, int64_t M, int64_t K,
                   int64_t N, const float* bias = nullptr, bool relu = false) {
  using dims = dnnl::memory::dims;
  using dt = dnnl::memory::data_type;
  dims ad, as, bd, bs, od, os;
  const bool fold =
      a.B == B && is_row_major(a) && (a.sb == M * a.sr || B == 1) && (b.B == 1 || b.sb == 0);
  if (fold) {
    // One 2-D product: the batch folds into a's rows.
    ad = {B * M, K};
    as = {a.sr, 1};
    bd = {K, N};
    bs = {b.sr, b.sc};
    od = {B * M, N};
    os = {N, 1};
  } else {
    const int64_t ab = (a.B == 1 || a.sb == 0) ? 1 : B;
    const int64_t bb = (b.B == 1 || b.sb == 0) ? 1 : B;
    ad = {ab, M, K};
    as = {ab == 1 ? std::max(a.sr * M, a.sc * K) : a.sb, a.sr, a.sc};
    bd = {bb, K, N};
    bs = {bb == 1 ? std::max(b.sr * K, b.sc * N) : b.sb, b.sr, b.sc};
    od = {B, M, N};
    os = {M * N, N, 1};
  }
  // A plain 2-D product goes straight to dnnl_sgemm: the same JIT kernels as the primitive
  // without its per-call memory objects and argument map, which cost as much as the whole
  // product at the sizes of a small layer. The bias and relu then run as an epilogue, so
  // only small outputs (a pass over them costs little) take this road when there is one.
  const int64_t rows = fold ? B * M : M;
  if ((fold || B == 1) && (bias == nullptr || rows * N <= kSgemmEpilogueElements)) {
    const SgemmOperands o = sgemm_operands(a, b);
    if (bias != nullptr && rows * N * K >= kRowBlockEpilogueMacs && rows >= 16) {
      // A large product: each thread computes a block of rows and adds the bias to them (and
      // applies the relu) while they are in its cache.
      std::atomic<bool> ok{true};
      parallel_for(rows, std::max<int64_t>(8, kRowBlockEpilogueMacs / 4 / (N * K)),
                   [&](int64_t r0, int64_t r1) {
                     if (!sgemm_rows(o, N, K, out, r0, r1)) {
                       ok.store(false);
                       return;
                     }
                     bias_act_rows(out + r0 * N, bias, r1 - r0, N, relu);
                   });
      if (ok.load()) return true;
    } else if (sgemm_rows(o, N, K, out, 0, rows)) {
      if (bias != nullptr) bias_act_rows(out, bias, rows, N, relu);
      return true;
    }
  }
  dims biasd(od.size(), 1);
  biasd.back() = N;
  const std::string key = "matmul:f32:" + dims_key(ad) + "/" + dims_key(as) + ":" + dims_key(bd) +
                          "/" + dims_key(bs) + ":" + dims_key(od) + (bias ? ":bias" : "") +
                          (relu ? ":relu" : "");
  auto entry = onednn_cached(key, [&] {
    dnnl::memory::desc amd(ad, dt::f32, as), bmd(bd, dt::f32, bs), omd(od, dt::f32, os);
    dnnl::memory::desc biasmd;  // [1, N] or [1, 1, N], dense
    if (bias)
      biasmd = dnnl::memory::desc(biasd, dt::f32, biasd.size() == 2 ? dims{N, 1} : dims{N, N, 1});
    dnnl::primitive_attr attr;
    if (relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::desc md =
        bias ? dnnl::matmul::desc(amd, bmd, biasmd, omd) : dnnl::matmul::desc(amd, bmd, omd);
    dnnl::matmul::primitive_desc pd(md, attr, onednn_engine());
    OneDnnEntry e;
    e.prims.push_back(dnnl::matmul(pd));
    e.descs = {amd, bmd, omd, biasmd};
    return e;
  });
  if (!entry->ok) return false;
  auto& eng = onednn_engine();
  dnnl::memory am(entry->descs[0], eng, const_cast<char*>(a.base()));
  dnnl::memory bm(entry->descs[1], eng, const_cast<char*>(b.base()));
  dnnl::memory om(entry->descs[2], eng, out);
  auto& s = onednn_stream();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, om}};
  if (bias)
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(entry->descs[3], eng, const_cast<float*>(bias)));
  entry->prims[0].execute(s, args);
  s.wait();
  return true;
}

std::vector<Tensor> matmul_kernel(std::span<const Tensor> in, const Attrs&,
                                  std::span<const TensorType> out_types) {
  Tensor a = in[0], b = in[1];
  const bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
  if (a_vec)
    a = Tensor::view_of(a, Shape{1, a.dim(0)}, {a.dim(0) * a.strides()[0], a.strides()[0]},
                        a.offset());
  if (b_vec) b = Tensor::view_of(b, Shape{b.dim(0), 1}, {b.strides()[0], 1}, b.offset());
  const int64_t M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
  Shape batch_a(std::vector<int64_t>(a.shape().begin(), a.shape().end() - 2));
  Shape batch_b(std::vector<int64_t>(b.shape().begin(), b.shape().end() - 2));
  const Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  const int64_t B = batch.numel();

  Tensor out = alloc(out_types[0]);
  if (out.numel() == 0) return {out};
  if (K == 0) {  // empty sum: zeros
    std::memset(out.mutable_data<char>(), 0,
                static_cast<size_t>(out.numel()) * size_of(out.dtype()));
    return {out};
  }
  const Mat3 ma = to_mat3(a, batch), mb = to_mat3(b, batch);
  if (out.dtype() == DType::f32 && matmul_onednn(ma, mb, out.mutable_data<float>(), B, M, K, N))
    return {out};
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    matmul_loops<T>(ma, mb, out.mutable_data<T>(), B, M, K, N);
  });
  return {out};
}

// act(a x b + bias) for f32 matrices: one oneDNN call with a bias and a relu post-op, or
// the loops followed by the epilogue where oneDNN refuses the layout.
std::vector<Tensor> matmul_bias_act_kernel(std::span<const Tensor> in, const Attrs& attrs,
                                           std::span<const TensorType> out_types) {
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  const Tensor bias = in[2].is_contiguous() ? in[2] : dense(in[2]);
  const bool relu = attrs.str("act") == "relu";
  const int64_t M = a.dim(0), K = a.dim(1), N = b.dim(1);
  KILN_CHECK(bias.numel() == N, "matmul_bias_act: bias {} does not match the product [{}, {}]",
             bias.type_str(), M, N);
  Tensor out = alloc(out_types[0]);
  if (out.numel() == 0) return {out};
  float* o = out.mutable_data<float>();
  const Mat3 ma = to_mat3(a, Shape{}), mb = to_mat3(b, Shape{});
  if (K > 0 && matmul_onednn(ma, mb, o, 1, M, K, N, bias.data<float>(), relu)) return {out};
  if (K == 0)
    std::memset(o, 0, static_cast<size_t>(out.numel()) * sizeof(float));
  else
    matmul_loops<float>(ma, mb, o, 1, M, K, N);
  bias_act_rows(o, bias.data<float>(), M, N, relu);
  return {out};
}

}  // namespace

std::optional<RowBlockProduct> RowBlockProduct::make(const Tensor& a, const Tensor& b) {
  if (a.rank() != 2 || b.rank() != 2 || a.dtype() != DType::f32 || b.dtype() != DType::f32 ||
      !a.device().is_cpu() || !b.device().is_cpu() || a.dim(1) != b.dim(0) || a.dim(1) == 0)
    return std::nullopt;
  // The layouts as given, without the copy to_mat3 would make of any other.
  auto layout = [](const Tensor& t, Mat3& m) {
    m.t = t;
    m.R = t.dim(0);
    m.C = t.dim(1);
    m.sr = t.strides()[0];
    m.sc = t.strides()[1];
    return normalize_layout(m);
  };
  Mat3 ma, mb;
  if (!layout(a, ma) || !layout(b, mb)) return std::nullopt;
  RowBlockProduct p;
  p.a_ = a;
  p.b_ = b;
  p.op_ = sgemm_operands(ma, mb);
  p.M_ = ma.R;
  p.K_ = ma.C;
  p.N_ = mb.C;
  return p;
}

bool RowBlockProduct::rows(float* out, int64_t r0, int64_t r1) const {
  return sgemm_rows(op_, N_, K_, out, r0, r1);
}

bool RowBlockProduct::contraction_block(float* out, int64_t k0, int64_t k1) const {
  if (k1 <= k0) {
    std::memset(out, 0, static_cast<size_t>(M_ * N_) * sizeof(float));
    return true;
  }
  return dnnl_sgemm(op_.ta, op_.tb, M_, N_, k1 - k0, 1.f, op_.pa + k0 * op_.a_col_step, op_.lda,
                    op_.pb + k0 * op_.b_row_step, op_.ldb, 0.f, out, N_) == dnnl_success;
}

bool RowBlockProduct::split_contraction(const float* bias, bool relu, float* out, float* partials,
                                        int threads) const {
  std::atomic<bool> ok{true};
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    FloatModeScope mode;
    const auto [k0, k1] = split_rows(K_, nt, t);
    if (!contraction_block(t == 0 ? out : partials + (t - 1) * M_ * N_, k0, k1)) ok.store(false);
#pragma omp barrier
    const auto [r0, r1] = split_rows(M_, nt, t);
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * N_;
      for (int u = 1; u < nt; ++u) {
        const float* q = partials + ((u - 1) * M_ + r) * N_;
        for (int64_t j = 0; j < N_; ++j)
          o[j] += q[j];
      }
      for (int64_t j = 0; bias != nullptr && j < N_; ++j)
        o[j] += bias[j];
      for (int64_t j = 0; relu && j < N_; ++j)
        o[j] = o[j] > 0.f ? o[j] : 0.f;
    }
  }
  return ok.load();
}

KILN_STATIC_INIT {
  register_cpu_kernel("matmul", matmul_kernel);
  register_cpu_kernel("matmul_bias_act", matmul_bias_act_kernel);
};

}  // namespace kiln::cpu
