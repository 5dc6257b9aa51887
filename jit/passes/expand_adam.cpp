// Adam expansion: each adam_update node becomes the elementwise ops of its eager kernel
// (backends/cpu/optim.cpp), in the same order, with the hyperparameters as scalar constants:
//
//   m' = b1 * m + (1 - b1) * g
//   v' = b2 * v + ((1 - b2) * g) * g
//   var' = var - (lr * m') / (sqrt(v') + eps)
//
// Fusion then makes one generated kernel with three outputs per update, and buffer assignment
// can write all three over the variables' own buffers (donation), which a library call that
// allocates its outputs cannot. The eager kernel evaluates the same expression in the
// variable's dtype; the generated kernel may contract a multiply and an add into an FMA, so
// the two agree to a few ulps, not bit for bit.
//
// Assumes: a verified graph (it runs once, after the simplification passes, on what the JIT
// compiles). Rewrites only f32 and f64 updates (the dtypes the kernel generator emits); the
// node's outputs keep their value ids, so every use and assign stays as it was.

#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {
namespace {

bool expand(ir::Graph& g) {
  std::vector<ir::Node> nodes;
  nodes.reserve(g.nodes.size());
  bool changed = false;
  for (ir::Node& n : g.nodes) {
    const TensorType t =
        n.op == "adam_update" ? g.types[static_cast<size_t>(n.outputs[0])] : TensorType{};
    if (n.op != "adam_update" || (t.dtype != DType::f32 && t.dtype != DType::f64)) {
      nodes.push_back(std::move(n));
      continue;
    }
    auto constant = [&](double value) {
      const int v = g.add_value(TensorType{t.dtype, Shape{}});
      ir::Node c;
      c.op = "constant";
      c.outputs = {v};
      c.attrs.set("index", static_cast<int64_t>(g.constants.size()));
      g.constants.push_back(scalar_tensor(value, t.dtype));
      nodes.push_back(std::move(c));
      return v;
    };
    // op(a, b) into `out`, or into a new value of the update's type when out < 0.
    auto emit = [&](const char* op, std::vector<int> in, int out = -1) {
      if (out < 0) out = g.add_value(t);
      ir::Node e;
      e.op = op;
      e.inputs = std::move(in);
      e.outputs = {out};
      nodes.push_back(std::move(e));
      return out;
    };
    const double b1 = n.attrs.f("beta1"), b2 = n.attrs.f("beta2");
    const int var = n.inputs[0], m = n.inputs[1], v = n.inputs[2], grad = n.inputs[3];
    const int var_out = n.outputs[0], m_out = n.outputs[1], v_out = n.outputs[2];
    // The constants are rounded to the dtype as the eager kernel rounds them: 1 - b1 in
    // double first.
    emit("add", {emit("mul", {constant(b1), m}), emit("mul", {constant(1 - b1), grad})}, m_out);
    const int c2g = emit("mul", {constant(1 - b2), grad});
    emit("add", {emit("mul", {constant(b2), v}), emit("mul", {c2g, grad})}, v_out);
    const int step =
        emit("div", {emit("mul", {constant(n.attrs.f("lr")), m_out}),
                     emit("add", {emit("sqrt", {v_out}), constant(n.attrs.f("eps"))})});
    emit("sub", {var, step}, var_out);
    changed = true;
  }
  g.nodes = std::move(nodes);
  if (changed) compact(g);
  return changed;
}

}  // namespace

Pass expand_adam() {
  return Pass("expand_adam", expand);
}

}  // namespace kiln::jit
