// CPU kernels of the reductions: reduce_sum/prod/max/min and argmax/argmin.
//
// Every reduction is brought to one of two shapes over a dense input:
//   (outer, r, inner) when the reduced axes form one block of adjacent dims (after dropping
//   size-1 dims), else the reduced axes are moved last by one copy and it is (outer, r, 1).
// inner == 1 ("rows"): each output is a contiguous run of r elements, reduced with a
//   vectorizable multi-lane accumulator; few long rows are split across threads.
// inner > 1 ("columns"): rows of `inner` elements are accumulated into an output-row buffer,
//   so the loop vectorizes over the kept dim; with few outputs the r rows are split into
//   contiguous row blocks across threads and the partials are combined at the end.
// f32 sums accumulate in f32 over short blocks (vector-speed) and add the blocks in f64, so
// a sum of 16M ones is exact.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/parallel.h>

namespace kiln::cpu {
namespace {

constexpr int64_t kGrain = 32768;    // elements of work per thread at least
constexpr int64_t kBlock = 1024;     // elements per f32 accumulation block (rows case)
constexpr int64_t kColChunk = 1024;  // kept-dim elements per column accumulator buffer
constexpr int64_t kColWide = 8192;   // kept-dim elements done in one pass
constexpr int64_t kColRows = 64;     // rows per f32 accumulation block (columns case)
constexpr int kLanes = 32;

// An accumulator: Inner is the fast per-block type, Outer the type blocks are combined in.
template <class T, class I, class O>
struct SumOp {
  using In = T;
  using Inner = I;
  using Outer = O;
  static Inner init() { return Inner(0); }
  static Inner step(Inner a, T v) { return a + static_cast<Inner>(v); }
  static Inner merge(Inner a, Inner b) { return a + b; }
  static Outer oinit() { return Outer(0); }
  static Outer fold(Outer a, Inner b) { return a + static_cast<Outer>(b); }
  static Outer omerge(Outer a, Outer b) { return a + b; }
};

template <class T, class I>
struct ProdOp {
  using In = T;
  using Inner = I;
  using Outer = I;
  static Inner init() { return Inner(1); }
  static Inner step(Inner a, T v) { return a * static_cast<Inner>(v); }
  static Inner merge(Inner a, Inner b) { return a * b; }
  static Outer oinit() { return Outer(1); }
  static Outer fold(Outer a, Inner b) { return a * b; }
  static Outer omerge(Outer a, Outer b) { return a * b; }
};

// Max (kMax) or min. For floats a NaN, once seen, sticks: `v != v` takes it and no later
// comparison with it is true.
template <class T, bool kMax>
struct ExtremeOp {
  using In = T;
  using Inner = T;
  using Outer = T;
  static T init() {
    if constexpr (std::is_same_v<T, bool>) {
      return !kMax;
    } else if constexpr (std::is_floating_point_v<T>) {
      return kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    } else {
      return kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
    }
  }
  static T step(T a, T v) {
    if constexpr (std::is_same_v<T, bool>) {
      return kMax ? (a || v) : (a && v);
    } else {
      const bool better = kMax ? v > a : v < a;
      if constexpr (std::is_floating_point_v<T>) return (better || v != v) ? v : a;
      return better ? v : a;
    }
  }
  static T merge(T a, T b) { return step(a, b); }
  static T oinit() { return init(); }
  static T fold(T a, T b) { return step(a, b); }
  static T omerge(T a, T b) { return step(a, b); }
};

// Reduces the contiguous run p[0, n).
template <class Op>
typename Op::Outer reduce_row(const typename Op::In* p, int64_t n) {
  using Inner = typename Op::Inner;
  typename Op::Outer total = Op::oinit();
  if (n < 2 * kLanes) {  // short rows: the lanes would cost more than they save
    Inner a = Op::init();
    for (int64_t i = 0; i < n; ++i)
      a = Op::step(a, p[i]);
    return Op::fold(total, a);
  }
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    Inner acc[kLanes];
    for (int j = 0; j < kLanes; ++j)
      acc[j] = Op::init();
    int64_t i = b;
    for (; i + kLanes <= e; i += kLanes) {
#pragma omp simd
      for (int j = 0; j < kLanes; ++j)
        acc[j] = Op::step(acc[j], p[i + j]);
    }
    Inner a = acc[0];
    for (int j = 1; j < kLanes; ++j)
      a = Op::merge(a, acc[j]);
    for (; i < e; ++i)
      a = Op::step(a, p[i]);
    total = Op::fold(total, a);
  }
  return total;
}

// dst[i - i0] = reduction over rows [k0, k1) of src[k * inner + i], for i in [i0, i1).
template <class Op, class D>
void reduce_cols(const typename Op::In* src, int64_t inner, int64_t k0, int64_t k1, int64_t i0,
                 int64_t i1, D* dst) {
  using Inner = typename Op::Inner;
  using Outer = typename Op::Outer;
  // Up to kColWide kept elements are done in one pass, so whole rows stream in order;
  // wider rows go in chunks whose accumulators stay in cache.
  const int64_t cw = i1 - i0 <= kColWide ? i1 - i0 : kColChunk;
  std::unique_ptr<Inner[]> acc_buf(new Inner[static_cast<size_t>(cw)]);
  std::unique_ptr<Outer[]> tot_buf(new Outer[static_cast<size_t>(cw)]);
  Inner* acc = acc_buf.get();
  Outer* tot = tot_buf.get();
  for (int64_t ib = i0; ib < i1; ib += cw) {
    const int64_t w = std::min(cw, i1 - ib);
    for (int64_t i = 0; i < w; ++i)
      tot[i] = Op::oinit();
    for (int64_t kb = k0; kb < k1; kb += kColRows) {
      const int64_t ke = std::min(k1, kb + kColRows);
      for (int64_t i = 0; i < w; ++i)
        acc[i] = Op::init();
      for (int64_t k = kb; k < ke; ++k) {
        const typename Op::In* row = src + k * inner + ib;
#pragma omp simd
        for (int64_t i = 0; i < w; ++i)
          acc[i] = Op::step(acc[i], row[i]);
      }
      for (int64_t i = 0; i < w; ++i)
        tot[i] = Op::fold(tot[i], acc[i]);
    }
    for (int64_t i = 0; i < w; ++i)
      dst[ib - i0 + i] = static_cast<D>(tot[i]);
  }
}

// Reduces src viewed as (outer, r, inner) over r into dst (outer, inner).
template <class Op, class D>
void run_reduce(const typename Op::In* src, int64_t outer, int64_t r, int64_t inner, D* dst) {
  using Outer = typename Op::Outer;
  const int64_t nt = num_threads();
  const int64_t total = outer * r * inner;
  if (inner == 1) {
    const int64_t split = std::min<int64_t>((nt + outer - 1) / outer, r / kGrain);
    if (outer >= nt || split <= 1) {
      parallel_for(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(r, 1)),
                   [&](int64_t b, int64_t e) {
                     for (int64_t o = b; o < e; ++o)
                       dst[o] = static_cast<D>(reduce_row<Op>(src + o * r, r));
                   });
      return;
    }
    std::unique_ptr<Outer[]> part(new Outer[static_cast<size_t>(outer * split)]);
    parallel_for(outer * split, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / split, c = t % split;
        const int64_t k0 = r * c / split, k1 = r * (c + 1) / split;
        part[t] = reduce_row<Op>(src + o * r + k0, k1 - k0);
      }
    });
    for (int64_t o = 0; o < outer; ++o) {
      Outer acc = part[o * split];
      for (int64_t c = 1; c < split; ++c)
        acc = Op::omerge(acc, part[o * split + c]);
      dst[o] = static_cast<D>(acc);
    }
    return;
  }
  // Columns. Enough outer slices: one task each. Otherwise split the rows into contiguous
  // blocks (streaming reads) when there are many, else split the kept dim.
  int64_t rsplit = 1, isplit = 1;
  if (outer < nt && total >= 2 * kGrain) {
    const int64_t need = (nt + outer - 1) / outer;
    if (r >= 4 * need && inner < need * 4096)  // bounds the partials to ~need * 4096 per slice
      rsplit = std::min(need, std::max<int64_t>(1, r * inner / kGrain));
    else
      isplit = std::min(need, std::max<int64_t>(1, inner / 256));
  }
  if (rsplit == 1) {
    const int64_t tasks = outer * isplit;
    parallel_for(tasks, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, r * inner / isplit)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t t = b; t < e; ++t) {
                     const int64_t o = t / isplit, c = t % isplit;
                     const int64_t i0 = inner * c / isplit, i1 = inner * (c + 1) / isplit;
                     reduce_cols<Op>(src + o * r * inner, inner, 0, r, i0, i1,
                                     dst + o * inner + i0);
                   }
                 });
    return;
  }
  std::unique_ptr<Outer[]> part(new Outer[static_cast<size_t>(outer * rsplit * inner)]);
  parallel_for(outer * rsplit, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / rsplit, c = t % rsplit;
      const int64_t k0 = r * c / rsplit, k1 = r * (c + 1) / rsplit;
      reduce_cols<Op>(src + o * r * inner, inner, k0, k1, 0, inner, part.get() + t * inner);
    }
  });
  parallel_for(outer * inner, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const int64_t o = j / inner, i = j % inner;
      const Outer* p = part.get() + o * rsplit * inner + i;
      Outer acc = p[0];
      for (int64_t c = 1; c < rsplit; ++c)
        acc = Op::omerge(acc, p[c * inner]);
      dst[j] = static_cast<D>(acc);
    }
  });
}

// A dense input seen as (outer, r, inner) with r the reduced extent.
struct Plan {
  Tensor src;
  int64_t outer = 1, r = 1, inner = 1;
};

Plan plan_reduce(const Tensor& x, const std::vector<int64_t>& axes) {
  Tensor d = dense(x);
  const Shape& s = d.shape();
  auto reduced = [&](int64_t i) { return std::binary_search(axes.begin(), axes.end(), i); };
  // Runs of adjacent dims with the same status, size-1 dims dropped.
  std::vector<std::pair<int64_t, bool>> groups;
  for (int64_t i = 0; i < s.rank(); ++i) {
    const int64_t n = s[static_cast<size_t>(i)];
    if (n == 1) continue;
    const bool red = reduced(i);
    if (!groups.empty() && groups.back().second == red)
      groups.back().first *= n;
    else
      groups.emplace_back(n, red);
  }
  int nred = 0;
  for (const auto& g : groups)
    nred += g.second;
  Plan p;
  if (nred <= 1) {
    p.src = d;
    bool seen = false;
    for (const auto& [n, red] : groups) {
      if (red) {
        p.r = n;
        seen = true;
      } else {
        (seen ? p.inner : p.outer) *= n;
      }
    }
    return p;
  }
  // Kept dims first, then reduced ones: one transposing copy.
  Shape shape;
  Strides strides;
  const Strides& ds = d.strides();
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t i = 0; i < s.rank(); ++i) {
      const int64_t n = s[static_cast<size_t>(i)];
      if (n == 1 || reduced(i) != (pass == 1)) continue;
      shape.push_back(n);
      strides.push_back(ds[static_cast<size_t>(i)]);
      (pass == 0 ? p.outer : p.r) *= n;
    }
  p.src = dense(Tensor::view_of(d, shape, strides, d.offset()));
  return p;
}

enum class Kind { sum, prod, max, min };

template <Kind K, class T>
void reduce_typed(const Plan& p, const Tensor& out) {
  auto go = [&](auto op, auto* dst) {
    using Op = decltype(op);
    run_reduce<Op>(p.src.data<T>(), p.outer, p.r, p.inner, dst);
  };
  if constexpr (K == Kind::sum) {
    if constexpr (std::is_same_v<T, float>)
      go(SumOp<float, float, double>{}, out.mutable_data<float>());
    else if constexpr (std::is_same_v<T, double>)
      go(SumOp<double, double, double>{}, out.mutable_data<double>());
    else
      go(SumOp<T, int64_t, int64_t>{}, out.mutable_data<int64_t>());
  } else if constexpr (K == Kind::prod) {
    if constexpr (std::is_floating_point_v<T>)
      go(ProdOp<T, double>{}, out.mutable_data<T>());
    else
      go(ProdOp<T, int64_t>{}, out.mutable_data<int64_t>());
  } else {
    go(ExtremeOp<T, K == Kind::max>{}, out.mutable_data<T>());
  }
}

template <Kind K>
std::vector<Tensor> reduce_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out) {
  const Tensor& x = in[0];
  Tensor y = alloc(out[0]);
  if (y.numel() == 0) return {y};
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (x.numel() == 0) {  // an empty reduction of sum or prod: the identity
      visit_dtype(y.dtype(), [&](auto otag) {
        using O = typename decltype(otag)::type;
        std::fill_n(y.mutable_data<O>(), y.numel(), static_cast<O>(K == Kind::prod ? 1 : 0));
      });
      return;
    }
    reduce_typed<K, T>(plan_reduce(x, a.ints("axes")), y);
  });
  return {y};
}

// First index of the extreme (the first NaN, if any) along r of (outer, r, inner).
template <class T, bool kMax>
void arg_reduce(const T* src, int64_t outer, int64_t r, int64_t inner, int64_t* dst) {
  auto better = [](T v, T best) {
    if constexpr (std::is_floating_point_v<T>) {
      if (v != v) return best == best;
    }
    return kMax ? v > best : v < best;
  };
  const int64_t slab = r * inner;
  if (inner == 1) {
    parallel_for(outer, std::max<int64_t>(1, kGrain / r), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* p = src + o * r;
        T best = p[0];
        int64_t idx = 0;
        for (int64_t k = 1; k < r; ++k)
          if (better(p[k], best)) {
            best = p[k];
            idx = k;
          }
        dst[o] = idx;
      }
    });
    return;
  }
  const int64_t chunks = (inner + kColChunk - 1) / kColChunk;
  parallel_for(outer * chunks, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, r * kColChunk)),
               [&](int64_t b, int64_t e) {
                 std::unique_ptr<T[]> best(new T[kColChunk]);
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t o = t / chunks, i0 = (t % chunks) * kColChunk;
                   const int64_t w = std::min(kColChunk, inner - i0);
                   const T* base = src + o * slab + i0;
                   int64_t* d = dst + o * inner + i0;
                   for (int64_t i = 0; i < w; ++i) {
                     best[i] = base[i];
                     d[i] = 0;
                   }
                   for (int64_t k = 1; k < r; ++k) {
                     const T* row = base + k * inner;
                     for (int64_t i = 0; i < w; ++i)
                       if (better(row[i], best[i])) {
                         best[i] = row[i];
                         d[i] = k;
                       }
                   }
                 }
               });
}

template <bool kMax>
std::vector<Tensor> arg_kernel(std::span<const Tensor> in, const Attrs& a,
                               std::span<const TensorType> out) {
  Tensor x = dense(in[0]);
  Tensor y = alloc(out[0]);
  if (y.numel() == 0) return {y};
  const int64_t axis = a.i("axis");
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i < axis) outer *= x.shape()[static_cast<size_t>(i)];
    if (i > axis) inner *= x.shape()[static_cast<size_t>(i)];
  }
  const int64_t r = x.shape()[static_cast<size_t>(axis)];
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    arg_reduce<T, kMax>(x.data<T>(), outer, r, inner, y.mutable_data<int64_t>());
  });
  return {y};
}

}  // namespace

KILN_STATIC_INIT {
  register_cpu_kernel("reduce_sum", reduce_kernel<Kind::sum>);
  register_cpu_kernel("reduce_prod", reduce_kernel<Kind::prod>);
  register_cpu_kernel("reduce_max", reduce_kernel<Kind::max>);
  register_cpu_kernel("reduce_min", reduce_kernel<Kind::min>);
  register_cpu_kernel("argmax", arg_kernel<true>);
  register_cpu_kernel("argmin", arg_kernel<false>);
};

}  // namespace kiln::cpu
