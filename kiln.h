// Kiln: an eager tensor runtime with a tracing JIT for C++. This umbrella header is the
// whole public API (DESIGN.md section 3).
#pragma once

#include <kiln/autograd/tape.h>
#include <kiln/autograd/variable.h>
#include <kiln/core/allocator.h>
#include <kiln/core/device.h>
#include <kiln/core/device_backend.h>
#include <kiln/core/dispatch.h>
#include <kiln/core/dtype.h>
#include <kiln/core/error.h>
#include <kiln/core/float_mode.h>
#include <kiln/core/nn_grad.h>
#include <kiln/core/ops.h>
#include <kiln/core/print.h>
#include <kiln/core/random.h>
#include <kiln/core/registry.h>
#include <kiln/core/shape.h>
#include <kiln/core/tensor.h>
#include <kiln/tracer/control_flow.h>
#include <kiln/tracer/function.h>
#include <kiln/tracer/saved_function.h>
