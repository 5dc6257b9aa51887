#include "math.h"

#include <limits>

#include <llvm/IR/Intrinsics.h>

namespace kiln::jit::cpu {
namespace {

// A float constant of type t: a scalar, or a splat when t is a vector (the row programs
// that put one row in each lane emit these functions on vectors of f32).
llvm::Value* f(llvm::Type* t, double v) {
  return llvm::ConstantFP::get(t, v);
}

// The i32 type with t's shape (scalar or vector).
llvm::Type* int_like(llvm::IRBuilder<>& b, llvm::Type* t) {
  return t->getWithNewType(b.getInt32Ty());
}

llvm::Value* i32(llvm::Type* t, int v) {
  return llvm::ConstantInt::get(t, static_cast<uint64_t>(static_cast<int64_t>(v)), true);
}

// Horner's scheme: ((c0 * x + c1) * x + c2) ...
llvm::Value* horner(llvm::IRBuilder<>& b, llvm::Value* x, std::initializer_list<double> c) {
  auto it = c.begin();
  llvm::Value* p = f(x->getType(), *it++);
  for (; it != c.end(); ++it)
    p = b.CreateFAdd(b.CreateFMul(p, x), f(x->getType(), *it));
  return p;
}

// Inside these functions multiplies and adds may fuse into FMAs (LLVM's `contract`): fewer
// instructions and no less accurate. Elementwise ops outside them stay exactly as written.
struct Contract {
  explicit Contract(llvm::IRBuilder<>& b) : guard(b) {
    llvm::FastMathFlags fmf;
    fmf.setAllowContract();
    b.setFastMathFlags(fmf);
  }
  llvm::IRBuilder<>::FastMathFlagGuard guard;
};

llvm::Value* unary(llvm::IRBuilder<>& b, llvm::Intrinsic::ID id, llvm::Value* x) {
  return b.CreateUnaryIntrinsic(id, x);
}

}  // namespace

llvm::Value* emit_exp_f32(llvm::IRBuilder<>& b, llvm::Value* x) {
  Contract contract(b);
  llvm::Type* ft = x->getType();
  llvm::Type* it = int_like(b, ft);
  // x = n ln2 + r with |r| <= ln2 / 2; ln2 in two parts so that n * ln2 is exact enough.
  llvm::Value* xc = b.CreateBinaryIntrinsic(llvm::Intrinsic::maxnum, x, f(ft, -104.0));
  xc = b.CreateBinaryIntrinsic(llvm::Intrinsic::minnum, xc, f(ft, 89.0));
  llvm::Value* n = unary(b, llvm::Intrinsic::floor,
                         b.CreateFAdd(b.CreateFMul(xc, f(ft, 1.44269504088896341)), f(ft, 0.5)));
  llvm::Value* r = b.CreateFSub(xc, b.CreateFMul(n, f(ft, 0.693359375)));
  r = b.CreateFSub(r, b.CreateFMul(n, f(ft, -2.12194440e-4)));
  llvm::Value* p = horner(b, r,
                          {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                           1.6666665459e-1, 5.0000001201e-1});
  llvm::Value* y = b.CreateFAdd(b.CreateFAdd(b.CreateFMul(p, b.CreateFMul(r, r)), r), f(ft, 1.0));
  // 2^n as two factors, so that results down to the subnormals are reached.
  llvm::Value* ni = b.CreateFPToSI(n, it);
  llvm::Value* n1 = b.CreateAShr(ni, 1);
  llvm::Value* n2 = b.CreateSub(ni, n1);
  auto pow2 = [&](llvm::Value* e) {
    return b.CreateBitCast(b.CreateShl(b.CreateAdd(e, i32(it, 127)), 23), ft);
  };
  llvm::Value* res = b.CreateFMul(b.CreateFMul(y, pow2(n1)), pow2(n2));
  return b.CreateSelect(b.CreateFCmpUNO(x, x), x, res);
}

llvm::Value* emit_log_f32(llvm::IRBuilder<>& b, llvm::Value* x) {
  Contract contract(b);
  llvm::Type* ft = x->getType();
  llvm::Type* it = int_like(b, ft);
  // x = m 2^e with m in [sqrt(1/2), sqrt(2)); log x = log1p(m - 1) + e ln2.
  llvm::Value* sub = b.CreateFCmpOLT(x, f(ft, std::numeric_limits<float>::min()));
  llvm::Value* xs = b.CreateSelect(sub, b.CreateFMul(x, f(ft, 8388608.0)), x);
  llvm::Value* bits = b.CreateBitCast(xs, it);
  llvm::Value* e = b.CreateSub(b.CreateAnd(b.CreateLShr(bits, 23), 0xff), i32(it, 126));
  e = b.CreateSub(e, b.CreateSelect(sub, i32(it, 23), i32(it, 0)));
  llvm::Value* m = b.CreateBitCast(b.CreateOr(b.CreateAnd(bits, 0x007fffff), 0x3f000000),
                                   ft);  // in [0.5, 1)
  llvm::Value* small = b.CreateFCmpOLT(m, f(ft, 0.707106781186547524));
  e = b.CreateSub(e, b.CreateZExt(small, it));
  llvm::Value* t = b.CreateSelect(small, b.CreateFSub(b.CreateFAdd(m, m), f(ft, 1.0)),
                                  b.CreateFSub(m, f(ft, 1.0)));
  llvm::Value* z = b.CreateFMul(t, t);
  llvm::Value* p =
      horner(b, t,
             {7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
              -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1});
  llvm::Value* fe = b.CreateSIToFP(e, ft);
  llvm::Value* y = b.CreateFMul(b.CreateFMul(p, t), z);
  y = b.CreateFAdd(y, b.CreateFMul(fe, f(ft, -2.12194440e-4)));
  y = b.CreateFSub(y, b.CreateFMul(z, f(ft, 0.5)));
  llvm::Value* res = b.CreateFAdd(b.CreateFAdd(t, y), b.CreateFMul(fe, f(ft, 0.693359375)));
  const double inf = std::numeric_limits<double>::infinity();
  res = b.CreateSelect(b.CreateFCmpOEQ(x, f(ft, inf)), f(ft, inf), res);
  res = b.CreateSelect(b.CreateFCmpOEQ(x, f(ft, 0.0)), f(ft, -inf), res);
  res = b.CreateSelect(b.CreateFCmpOLT(x, f(ft, 0.0)),
                       f(ft, std::numeric_limits<double>::quiet_NaN()), res);
  return b.CreateSelect(b.CreateFCmpUNO(x, x), x, res);
}

llvm::Value* emit_tanh_f32(llvm::IRBuilder<>& b, llvm::Value* x) {
  Contract contract(b);
  llvm::Type* ft = x->getType();
  llvm::Value* ax = unary(b, llvm::Intrinsic::fabs, x);
  // |x| < 0.625: an odd polynomial; beyond: 1 - 2 / (exp(2|x|) + 1), with x's sign.
  llvm::Value* z = b.CreateFMul(x, x);
  llvm::Value* p = horner(b, z,
                          {-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                           -3.33332819422e-1});
  llvm::Value* near = b.CreateFAdd(x, b.CreateFMul(b.CreateFMul(x, z), p));
  llvm::Value* e = emit_exp_f32(b, b.CreateFAdd(ax, ax));
  llvm::Value* far =
      b.CreateFSub(f(ft, 1.0), b.CreateFDiv(f(ft, 2.0), b.CreateFAdd(e, f(ft, 1.0))));
  far = b.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, far, x);
  return b.CreateSelect(b.CreateFCmpOLT(ax, f(ft, 0.625)), near, far);
}

llvm::Value* emit_sigmoid_f32(llvm::IRBuilder<>& b, llvm::Value* x) {
  Contract contract(b);
  llvm::Type* ft = x->getType();
  // 1 / (1 + exp(-x)) in one division, with no branch on x's sign: for x < 0, exp(-x) is
  // large and the quotient keeps its relative accuracy (down to the subnormals, then 0 once
  // exp overflows below x = -88.7, where sigmoid is below 2^-128); NaN stays NaN.
  llvm::Value* e = emit_exp_f32(b, b.CreateFNeg(x));
  return b.CreateFDiv(f(ft, 1.0), b.CreateFAdd(f(ft, 1.0), e));
}

llvm::Value* emit_erf_f32(llvm::IRBuilder<>& b, llvm::Value* x) {
  Contract contract(b);
  llvm::Type* ft = x->getType();
  // Coefficients: Chebyshev fits at 40 digits rounded to f32 (scripts/fit_erf.py). Every f32
  // from 1e-37 to 4.5, checked against erf in f64, is within 7.42e-8 relative (worst near
  // 0.99); beyond, the result is exactly +-1.
  llvm::Value* ax = unary(b, llvm::Intrinsic::fabs, x);
  // |x| < 1: erf(x) / x - 1 as a polynomial in x^2, so x + x q rounds once (one FMA) and
  // the result keeps x's full relative precision down to the smallest x (erf x ~ 2x/sqrt(pi)).
  llvm::Value* q = horner(b, b.CreateFMul(x, x),
                          {7.875874871e-05, -8.016864303e-04, 5.189087242e-03, -2.685421146e-02,
                           1.128359437e-01, -3.761262596e-01, 1.283791661e-01});
  llvm::Value* near = b.CreateFAdd(x, b.CreateFMul(x, q));
  // 1 <= |x| < 3.92: erfc is smooth in the log, log erfc(|x|) a polynomial in |x| - 1 (exact);
  // erf's absolute error is erfc times the relative error of exp, at most 0.16 of it.
  llvm::Value* h =
      horner(b, b.CreateFSub(ax, f(ft, 1.0)),
             {1.670432766e-06, -3.332433334e-05, 3.218394995e-04, -2.057931153e-03, 1.008231193e-02,
              -4.157872126e-02, -8.431038260e-01, -2.638967752e+00, -1.849605560e+00});
  llvm::Value* far = b.CreateFSub(f(ft, 1.0), emit_exp_f32(b, h));
  // From 3.92 on, erfc < 2^-25 and erf rounds to 1 (also for inf; NaN stays NaN via far).
  far = b.CreateSelect(b.CreateFCmpOGE(ax, f(ft, 3.92)), f(ft, 1.0), far);
  far = b.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, far, x);
  return b.CreateSelect(b.CreateFCmpOLT(ax, f(ft, 1.0)), near, far);
}

}  // namespace kiln::jit::cpu
