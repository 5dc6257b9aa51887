#pragma once

// The CPU matmul kernel's entry for callers that split a product's rows across threads
// themselves: the JIT runs a large product and the elementwise kernel that consumes it
// together, each thread computing a block of rows and then the kernel over that block while
// it is still in its cache (jit/product_epilogue.cpp).

#include <optional>

#include <kiln/core/tensor.h>

namespace kiln::cpu {

// A 2-D f32 product's dnnl_sgemm arguments, from its operands' layouts ('N' or 'T' each).
struct SgemmOperands {
  char ta = 'N', tb = 'N';
  int64_t lda = 0, ldb = 0;
  int64_t row_step = 0;                    // a's elements from one row to the next
  int64_t a_col_step = 0, b_row_step = 0;  // along the contraction, in a and in b
  const float* pa = nullptr;
  const float* pb = nullptr;
};

// out = a x b for f32 matrices a [M, K] and b [K, N], row-major or transposed views, written
// to a dense row-major [M, N] buffer a block of rows at a time through dnnl_sgemm.
class RowBlockProduct {
 public:
  // nullopt unless a and b are 2-D f32 tensors on the CPU with K > 0, each row- or
  // column-major (anything else takes the matmul kernel, which copies it first).
  static std::optional<RowBlockProduct> make(const Tensor& a, const Tensor& b);
  // Rows [r0, r1) of the product into out (M x N, dense), on the calling thread when called
  // inside a parallel region. False where oneDNN refuses the call.
  bool rows(float* out, int64_t r0, int64_t r1) const;
  // act(a x b + bias) into out (M x N, dense) on `threads` threads, each taking one block of
  // the contraction, K split as split_rows(K, threads, t) does: thread t reads only columns
  // [k0, k1) of a and rows [k0, k1) of b. The blocks' partial products (all but the first in
  // `partials`, (threads - 1) x M x N floats) are then summed with the bias, each thread
  // taking a block of output rows. bias may be null; relu applies the activation. False
  // where oneDNN refuses a call.
  bool split_contraction(const float* bias, bool relu, float* out, float* partials,
                         int threads) const;

 private:
  RowBlockProduct() = default;
  Tensor a_, b_;  // keep the operands' storage alive
  SgemmOperands op_;
  int64_t M_ = 0, K_ = 0, N_ = 0;
  // All M rows of a[:, k0:k1] x b[k0:k1, :] into out (M x N, dense).
  bool contraction_block(float* out, int64_t k0, int64_t k1) const;
};

}  // namespace kiln::cpu
