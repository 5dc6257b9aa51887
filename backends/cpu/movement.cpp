// CPU kernels of the movement primitives. Views (reshape where possible, transpose,
// broadcast_to, slice) only compute new strides; the rest copy rows with memcpy.

#include <cstring>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/parallel.h>

namespace kiln::cpu {
namespace {

// Strides that let `shape` view the elements of (old_shape, old_strides) in row-major order,
// or false when no view exists (the data must be copied first).
bool view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape,
                  Strides& out) {
  out.assign(shape.size(), 0);
  if (shape.numel() == 0 || old_shape.empty()) {
    out = contiguous_strides(shape);
    return true;
  }
  int64_t view_d = shape.rank() - 1;
  int64_t chunk_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = old_shape.rank() - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

std::vector<Tensor> reshape_kernel(std::span<const Tensor> in, const Attrs&,
                                   std::span<const TensorType> out) {
  const Tensor& x = in[0];
  Strides s;
  if (view_strides(x.shape(), x.strides(), out[0].shape, s))
    return {Tensor::view_of(x, out[0].shape, std::move(s), x.offset())};
  Tensor d = dense(x);
  return {Tensor::view_of(d, out[0].shape, contiguous_strides(out[0].shape), d.offset())};
}

std::vector<Tensor> transpose_kernel(std::span<const Tensor> in, const Attrs& a,
                                     std::span<const TensorType> out) {
  const Tensor& x = in[0];
  const auto& perm = a.ints("perm");
  Strides s(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    s[i] = x.strides()[perm[i]];
  return {Tensor::view_of(x, out[0].shape, std::move(s), x.offset())};
}

std::vector<Tensor> broadcast_kernel(std::span<const Tensor> in, const Attrs&,
                                     std::span<const TensorType> out) {
  const Tensor& x = in[0];
  const Shape& target = out[0].shape;
  Strides s(target.size(), 0);
  const int64_t lead = target.rank() - x.rank();
  for (int64_t d = 0; d < x.rank(); ++d)
    s[lead + d] = x.shape()[d] == 1 && target[lead + d] != 1 ? 0 : x.strides()[d];
  return {Tensor::view_of(x, target, std::move(s), x.offset())};
}

std::vector<Tensor> slice_kernel(std::span<const Tensor> in, const Attrs& a,
                                 std::span<const TensorType> out) {
  const Tensor& x = in[0];
  const int64_t axis = a.i("axis");
  Strides s = x.strides();
  const int64_t offset = x.offset() + a.i("start") * s[axis];
  s[axis] *= a.i("step");
  return {Tensor::view_of(x, out[0].shape, std::move(s), offset)};
}

void fill_value(Tensor& t, double v) {
  visit_dtype(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.mutable_data<T>();
    const T value = static_cast<T>(v);
    parallel_for(t.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        p[i] = value;
    });
  });
}

// Copies dense `src` into `dst` (dense) at element offset `base`, where dst's row-major
// strides are `dst_strides`: one memcpy per innermost row.
void copy_block(const Tensor& src, char* dst, const Strides& dst_strides, int64_t base) {
  const int64_t r = src.rank();
  const size_t es = size_of(src.dtype());
  const char* sp = static_cast<const char*>(src.raw_data());
  if (src.numel() == 0) return;
  if (r == 0) {
    std::memcpy(dst + base * es, sp, es);
    return;
  }
  const int64_t row = src.shape()[r - 1];
  const int64_t rows = src.numel() / row;
  parallel_for(rows, 256, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t rem = i, off = base;
      for (int64_t d = r - 2; d >= 0; --d) {
        off += (rem % src.shape()[d]) * dst_strides[d];
        rem /= src.shape()[d];
      }
      std::memcpy(dst + off * es, sp + i * row * es, row * es);
    }
  });
}

std::vector<Tensor> pad_kernel(std::span<const Tensor> in, const Attrs& a,
                               std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  fill_value(out, a.f("value"));
  const auto& pads = a.ints("pads");
  const Strides os = contiguous_strides(out.shape());
  int64_t base = 0;
  for (size_t d = 0; d < os.size(); ++d)
    base += pads[2 * d] * os[d];
  copy_block(dense(in[0]), out.mutable_data<char>(), os, base);
  return {out};
}

std::vector<Tensor> concat_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const int64_t axis = a.i("axis");
  const Strides os = contiguous_strides(out.shape());
  int64_t at = 0;
  for (const Tensor& x : in) {
    copy_block(dense(x), out.mutable_data<char>(), os, at * os[axis]);
    at += x.shape()[axis];
  }
  return {out};
}

std::vector<int64_t> checked_indices(const Tensor& indices, int64_t n, const char* op,
                                     const Tensor& x) {
  Tensor idx = dense(indices);
  std::vector<int64_t> out(idx.numel());
  visit_dtype(idx.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = idx.data<T>();
    for (int64_t i = 0; i < idx.numel(); ++i) {
      const int64_t v = static_cast<int64_t>(p[i]);
      KILN_CHECK(v >= 0 && v < n, "{}: index {} is out of range [0, {}) for {} (indices {})", op, v,
                 n, x.type_str(), indices.type_str());
      out[i] = v;
    }
  });
  return out;
}

std::vector<Tensor> gather_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const Tensor x = dense(in[0]);
  const AxisSplit s = split_at(x.shape(), a.i("axis"));
  const std::vector<int64_t> idx = checked_indices(in[1], s.n, "gather", in[0]);
  const int64_t k = static_cast<int64_t>(idx.size());
  const size_t es = size_of(x.dtype());
  const char* xp = static_cast<const char*>(x.raw_data());
  char* op = out.mutable_data<char>();
  parallel_for(s.outer * k, std::max<int64_t>(1, 4096 / std::max<int64_t>(s.inner, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t r = b; r < e; ++r) {
                   const int64_t o = r / k, j = r % k;
                   std::memcpy(op + r * s.inner * es, xp + (o * s.n + idx[j]) * s.inner * es,
                               s.inner * es);
                 }
               });
  return {out};
}

std::vector<Tensor> scatter_add_kernel(std::span<const Tensor> in, const Attrs& a,
                                       std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const Tensor x = dense(in[0]);
  const Tensor upd = dense(in[2]);
  const AxisSplit s = split_at(x.shape(), a.i("axis"));
  const std::vector<int64_t> idx = checked_indices(in[1], s.n, "scatter_add", in[0]);
  const int64_t k = static_cast<int64_t>(idx.size());
  if (x.numel())
    std::memcpy(out.mutable_data<char>(), x.raw_data(), x.numel() * size_of(x.dtype()));
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = out.mutable_data<T>();
    const T* u = upd.data<T>();
    // Rows of one outer index never collide across threads; duplicates within one
    // outer index accumulate in order.
    parallel_for(s.outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t oi = b; oi < e; ++oi)
        for (int64_t j = 0; j < k; ++j) {
          T* dst = o + (oi * s.n + idx[j]) * s.inner;
          const T* src = u + (oi * k + j) * s.inner;
          for (int64_t i = 0; i < s.inner; ++i) {
            if constexpr (std::is_same_v<T, bool>)
              dst[i] = dst[i] || src[i];
            else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>)
              dst[i] = static_cast<T>(static_cast<std::make_unsigned_t<T>>(dst[i]) +
                                      static_cast<std::make_unsigned_t<T>>(src[i]));
            else
              dst[i] = static_cast<T>(dst[i] + src[i]);
          }
        }
    });
  });
  return {out};
}

KILN_STATIC_INIT {
  register_cpu_kernel("reshape", reshape_kernel);
  register_cpu_kernel("transpose", transpose_kernel);
  register_cpu_kernel("broadcast_to", broadcast_kernel);
  register_cpu_kernel("slice", slice_kernel);
  // Views only describe memory (reshape copies through the device's own copy kernel when no
  // view exists): the same kernels serve every device.
  for (const char* op : {"reshape", "transpose", "broadcast_to", "slice"})
    for (int d = 1; d < kNumDeviceTypes; ++d)
      registry().mutable_op(op).set_kernel(static_cast<DeviceType>(d),
                                           registry().op(op).kernel(DeviceType::cpu));
  register_cpu_kernel("pad", pad_kernel);
  register_cpu_kernel("concatenate", concat_kernel);
  register_cpu_kernel("gather", gather_kernel);
  register_cpu_kernel("scatter_add", scatter_add_kernel);
};

}  // namespace
}  // namespace kiln::cpu
