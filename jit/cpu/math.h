#pragma once

// Vectorizable f32 math for fused kernels: straight-line IR (no calls), so the loop
// vectorizer turns a kernel that uses them into SIMD code. Range reduction plus minimax
// polynomials of the classic single-precision kind; within 2e-7 relative of libm on each
// function's normal range (test_jit checks this against libm in f64). Special values (NaN,
// infinities, zero, negative arguments of log) follow libm.

#include <llvm/IR/IRBuilder.h>

namespace kiln::jit::cpu {

llvm::Value* emit_exp_f32(llvm::IRBuilder<>& b, llvm::Value* x);
llvm::Value* emit_log_f32(llvm::IRBuilder<>& b, llvm::Value* x);
llvm::Value* emit_tanh_f32(llvm::IRBuilder<>& b, llvm::Value* x);
// 1 / (1 + exp(-x)), evaluated as the eager kernel does (exp of -|x| only).
llvm::Value* emit_sigmoid_f32(llvm::IRBuilder<>& b, llvm::Value* x);
// erf: an odd polynomial below |x| = 1, 1 - exp(poly) up to 3.92, then +-1 (the f32 rounding
// of erf there). Within 7.5e-8 relative of erf in f64 for every f32 input.
llvm::Value* emit_erf_f32(llvm::IRBuilder<>& b, llvm::Value* x);

}  // namespace kiln::jit::cpu
