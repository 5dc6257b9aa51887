// Algebraic simplification: identities that hold bit for bit in IEEE arithmetic, for every
// input including -0.0, infinities and NaN (up to NaN payloads). Each rule replaces a node's
// output by an existing value of exactly the same type, or rewrites a node into a cheaper one.
//
//   x * 1, 1 * x, x / 1          -> x    (integers and floats)
//   x + (-0.0), (-0.0) + x       -> x    (floats; x + 0 for integers)
//   x - 0.0                      -> x    (floats: +0.0 only; x - 0 for integers)
//   neg(neg(x))                  -> x    (integers and floats: IEEE negation flips the sign bit)
//   transpose(transpose(x, p), q)-> transpose(x, p∘q); an identity permutation -> x
//   reshape(reshape(x, a), b)    -> reshape(x, b) (b without copy_dims); a reshape to x's own
//                                   shape -> x
//   reshape(reduce(x, keepdims = true)) to the shape without the kept 1s
//                                -> reduce(x, keepdims = false) (sum, prod, max, min; known
//                                   shapes): the same elements, summed in the same order
//   broadcast_to(x) of x's shape -> x
//   cast(x) to x's dtype         -> x
//   op(..., broadcast_to(s), ...)-> op(..., s, ...) for an elementwise op with several inputs,
//                                   which broadcasts s itself to the same result shape
//
// Kept on purpose (not exact): x + 0.0 for floats (-0.0 + 0.0 is +0.0, not -0.0), and
// x - (-0.0) (the same sum); x * 0 (NaN, inf and -0.0); x - x (NaN, inf); x / x; reassociation.
// A constant identity only applies where it does not broadcast x: its dims must be 1 or
// known equal to x's, so x * ones(3) with x: f32[1] (a bigger result) stays. Bool operands
// are left alone. stop_gradient and copy stay too: a tape around the interpreter sees them.
//
// Assumes: a verified graph. Guarantees: results keep their types; replaced nodes are removed
// here, the constants and producers they used are left for dce.

#include <algorithm>
#include <cmath>

#include <kiln/core/registry.h>
#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {
namespace {

class Simplifier {
 public:
  explicit Simplifier(ir::Graph& g)
      : g_(g),
        def_(definers(g)),
        subst_(identity_substitution(g)),
        dead_(g.nodes.size()),
        uses_(g.types.size(), 0) {
    for (const ir::Node& n : g.nodes)
      for (int v : n.inputs)
        ++uses_[static_cast<size_t>(v)];
    for (int v : g.results)
      ++uses_[static_cast<size_t>(v)];
  }

  bool run() {
    bool changed = false;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      ir::Node& n = g_.nodes[i];
      for (int& v : n.inputs)
        v = resolve(v);
      if (!n.subgraphs.empty() || n.outputs.size() != 1 || !registry().find(n.op)) continue;
      bool rewrote = false;
      const int x = simplify(n, rewrote);
      changed |= rewrote;
      if (x < 0) continue;
      subst_[static_cast<size_t>(n.outputs[0])] = x;
      dead_[i] = true;
      changed = true;
    }
    if (!changed) return false;
    substitute(g_, subst_);
    std::vector<ir::Node> kept;
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      if (!dead_[i]) kept.push_back(std::move(g_.nodes[i]));
    g_.nodes = std::move(kept);
    compact(g_);
    return true;
  }

 private:
  ir::Graph& g_;
  std::vector<int> def_;
  std::vector<int> subst_;
  std::vector<bool> dead_;
  std::vector<int> uses_;  // reads of each value in the graph as it came in

  int resolve(int v) const {
    while (subst_[static_cast<size_t>(v)] != v)
      v = subst_[static_cast<size_t>(v)];
    return v;
  }
  const TensorType& type(int v) const { return g_.types[static_cast<size_t>(v)]; }
  // The node defining v when it is an `op` node, else null.
  const ir::Node* producer(int v, const char* op) const {
    const int d = def_[static_cast<size_t>(v)];
    if (d < 0 || dead_[static_cast<size_t>(d)]) return nullptr;
    const ir::Node& p = g_.nodes[static_cast<size_t>(d)];
    return p.op == op ? &p : nullptr;
  }
  const Tensor* constant(int v) const {
    const ir::Node* c = producer(v, "constant");
    return c ? &g_.constants[static_cast<size_t>(c->attrs.i("index"))] : nullptr;
  }

  // The value n's output can be replaced by, or -1; `rewrote` is set when n itself changed.
  int simplify(ir::Node& n, bool& rewrote) {
    const int out = n.outputs[0];
    const std::string& op = n.op;
    bypass_broadcasts(n, rewrote);
    if (op == "mul") return binary_identity(n, Identity::one, Identity::one);
    if (op == "div") return binary_identity(n, Identity::none, Identity::one);
    if (op == "add") return binary_identity(n, Identity::add_zero, Identity::add_zero);
    if (op == "sub") return binary_identity(n, Identity::none, Identity::sub_zero);
    const int in = n.inputs.empty() ? -1 : n.inputs[0];
    if (op == "neg") {
      const ir::Node* p = producer(in, "neg");
      return p && type(p->inputs[0]) == type(out) ? p->inputs[0] : -1;
    }
    if (op == "cast")
      return n.attrs.dtype("dtype") == type(in).dtype && type(in) == type(out) ? in : -1;
    if (op == "transpose") return transpose(n, rewrote);
    if (op == "reshape") return reshape(n, rewrote);
    if (op == "broadcast_to") {
      const auto& target = n.attrs.ints("shape");
      const Shape& s = type(in).shape;
      bool same = target.size() == s.size() && type(in) == type(out);
      for (size_t d = 0; same && d < s.size(); ++d)
        same = target[d] == -1 || (target[d] == s[d] && s[d] >= 0);
      return same ? in : -1;
    }
    return -1;
  }

  enum class Identity { none, one, add_zero, sub_zero };

  // Whether every element of the constant c is the identity `id` for x's dtype.
  static bool is_identity(const Tensor& c, Identity id) {
    if (id == Identity::none || c.dtype() == DType::boolean) return false;
    const bool floating = is_floating(c.dtype());
    const std::vector<double> v = c.to_vector<double>();
    return std::all_of(v.begin(), v.end(), [&](double e) {
      switch (id) {
        case Identity::one:
          return e == 1.0;
        case Identity::add_zero:  // x + (-0.0) == x for every x; x + 0.0 is +0.0 at x = -0.0
          return e == 0.0 && (!floating || std::signbit(e));
        case Identity::sub_zero:  // x - 0.0 == x for every x; x - (-0.0) is x + 0.0
          return e == 0.0 && (!floating || !std::signbit(e));
        default:
          return false;
      }
    });
  }

  // Whether x op c has exactly x's shape: c's dims (aligned right) are 1 or known equal.
  bool keeps_shape(int x, int c, int out) const {
    const Shape& xs = type(x).shape;
    const Shape& cs = type(c).shape;
    if (!(type(x) == type(out)) || cs.size() > xs.size()) return false;
    const size_t lead = xs.size() - cs.size();
    for (size_t d = 0; d < cs.size(); ++d)
      if (cs[d] != 1 && (xs[lead + d] < 0 || cs[d] != xs[lead + d])) return false;
    return true;
  }

  int binary_identity(const ir::Node& n, Identity left, Identity right) const {
    const int a = n.inputs[0], b = n.inputs[1], out = n.outputs[0];
    if (const Tensor* c = constant(b); c && is_identity(*c, right) && keeps_shape(a, b, out))
      return a;
    if (const Tensor* c = constant(a); c && is_identity(*c, left) && keeps_shape(b, a, out))
      return b;
    return -1;
  }

  int transpose(ir::Node& n, bool& rewrote) {
    if (const ir::Node* p = producer(n.inputs[0], "transpose")) {
      // out[i] = mid[q[i]] = x[p[q[i]]]
      const auto& pp = p->attrs.ints("perm");
      const auto& q = n.attrs.ints("perm");
      std::vector<int64_t> composed(q.size());
      for (size_t i = 0; i < q.size(); ++i)
        composed[i] = pp[static_cast<size_t>(q[i])];
      n.inputs[0] = p->inputs[0];
      n.attrs.set("perm", std::move(composed));
      rewrote = true;
    }
    const auto& perm = n.attrs.ints("perm");
    for (size_t i = 0; i < perm.size(); ++i)
      if (perm[i] != static_cast<int64_t>(i)) return -1;
    return type(n.inputs[0]) == type(n.outputs[0]) ? n.inputs[0] : -1;
  }

  int reshape(ir::Node& n, bool& rewrote) {
    // A reshape reads its input's elements in row-major order, so the middle one of two can
    // go -- unless the outer one copies dims of its own input at run time ("copy_dims").
    const AttrValue* copy_attr = n.attrs.find("copy_dims");
    if (const ir::Node* p = producer(n.inputs[0], "reshape"); p && !copy_attr) {
      n.inputs[0] = p->inputs[0];
      rewrote = true;
    }
    if (!copy_attr && reduce_without_kept_dims(n)) {
      rewrote = true;
      return -1;
    }
    // The identity: every output dim is x's (copied from the same dim, or known and equal),
    // or it is the one free -1 ("the rest"), which then resolves to x's dim as long as the
    // other dims are known and their product is not 0 (else the reshape raises at run time).
    const int in = n.inputs[0];
    const Shape& s = type(in).shape;
    const auto& target = n.attrs.ints("shape");
    if (target.size() != s.size() || !(type(in) == type(n.outputs[0]))) return -1;
    const std::vector<int64_t> none(target.size(), -1);
    const auto& copy = copy_attr ? std::get<std::vector<int64_t>>(*copy_attr) : none;
    if (copy.size() != target.size()) return -1;
    int free = 0;
    bool all_known = true;
    int64_t rest = 1;
    for (size_t d = 0; d < s.size(); ++d) {
      if (copy[d] >= 0) {
        if (copy[d] != static_cast<int64_t>(d)) return -1;
        all_known = all_known && s[d] >= 0;
        rest *= std::max<int64_t>(s[d], 0);
      } else if (target[d] == -1) {
        ++free;
      } else {
        if (s[d] < 0 || target[d] != s[d]) return -1;
        rest *= s[d];
      }
    }
    return free == 0 || (free == 1 && all_known && rest > 0) ? in : -1;
  }

  // Rewrites reshape n of a keepdims reduction into that reduction without the kept dims,
  // where that gives n's type exactly (every shape known) and n is the reduction's only
  // reader (else the reduction would run twice).
  bool reduce_without_kept_dims(ir::Node& n) {
    for (const char* r : {"reduce_sum", "reduce_prod", "reduce_max", "reduce_min"}) {
      const ir::Node* p = producer(n.inputs[0], r);
      if (!p || !p->attrs.b("keepdims") || uses_[static_cast<size_t>(n.inputs[0])] != 1) continue;
      const TensorType& x = type(p->inputs[0]);
      if (!fully_known(x) || !fully_known(type(n.outputs[0]))) return false;
      Attrs attrs = p->attrs;
      attrs.set("keepdims", false);
      const OpDef& op = registry().op(r);
      const std::vector<TensorType> inferred = op.infer()(op, {&x, 1}, attrs);
      if (inferred.size() != 1 || !(inferred[0] == type(n.outputs[0]))) return false;
      n.op = r;
      n.inputs = {p->inputs[0]};
      n.attrs = std::move(attrs);
      return true;
    }
    return false;
  }

  // op(..., broadcast_to(s), ...) -> op(..., s, ...) where op broadcasts its operands itself
  // and the result type stays the same. Every type involved must be fully known, so that the
  // static inference is what happens at run time.
  void bypass_broadcasts(ir::Node& n, bool& rewrote) {
    const OpDef& op = registry().op(n.op);
    if (!op.has(kElementwise) || n.inputs.size() < 2 || !op.infer()) return;
    const TensorType& out = type(n.outputs[0]);
    if (!fully_known(out)) return;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ir::Node* p = producer(n.inputs[i], "broadcast_to");
      if (!p) continue;
      std::vector<TensorType> in;
      for (size_t k = 0; k < n.inputs.size(); ++k)
        in.push_back(type(k == i ? p->inputs[0] : n.inputs[k]));
      if (!std::all_of(in.begin(), in.end(), [](const TensorType& t) { return fully_known(t); }))
        continue;
      std::vector<TensorType> inferred;
      try {
        inferred = op.infer()(op, in, n.attrs);
      } catch (const Error&) {
        continue;
      }
      if (inferred.size() != 1 || !(inferred[0] == out)) continue;
      n.inputs[i] = p->inputs[0];
      rewrote = true;
    }
  }
};

bool simplify(ir::Graph& g) {
  return Simplifier(g).run();
}

}  // namespace

Pass algebraic_simplify() {
  return Pass("algebraic_simplify", simplify);
}

}  // namespace kiln::jit
