#pragma once

// The JIT's entry in the registry's lowering slot of every primitive (see lowering.cpp).

#include <kiln/core/registry.h>

namespace kiln::jit {

struct Lowering {
  const char* how;  // "generated kernel ..." or the library call that runs the op
};

// The op's lowering, or null when the JIT has none (test_jit fails on that).
const Lowering* lowering_of(const OpDef& op);

}  // namespace kiln::jit
