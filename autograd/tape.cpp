#include <kiln/autograd/tape.h>

#include <algorithm>

#include <kiln/autograd/grad_util.h>
#include <kiln/core/ops.h>

namespace kiln {
namespace {

thread_local std::vector<GradientTape*> t_tapes;
thread_local const std::vector<bool>* t_needs_grad = nullptr;

bool has_unknown_dims(const Shape& s) {
  return std::any_of(s.begin(), s.end(), [](int64_t d) { return d < 0; });
}

// Equal shapes, where an unknown (-1) dim matches anything.
bool compatible(const Shape& a, const Shape& b) {
  if (a.rank() != b.rank()) return false;
  for (int64_t d = 0; d < a.rank(); ++d)
    if (a[d] != b[d] && a[d] >= 0 && b[d] >= 0) return false;
  return true;
}

// A data-less stand-in that carries only the dtype and shape of what a rule does not read.
// A (symbolic) tensor with unknown dims is kept as it is: it costs no memory, and a rule may
// need it to read its concrete shape at run time (ones_like(x), via fill_like).
Tensor placeholder(const Tensor& t) {
  if (t.is_symbolic() && has_unknown_dims(t.shape())) return t;
  return Tensor::symbolic(t.shape(), t.dtype(), nullptr);
}

}  // namespace

namespace autograd {

// With unknown dims: an unknown grad dim against a 1 is summed (a no-op if it is 1 at run
// time); an unknown target dim is taken as not broadcast (see core/ops_shape.cpp).
Tensor unbroadcast(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.rank() - shape.rank();
  KILN_ASSERT(lead >= 0, "unbroadcast: gradient {} has lower rank than {}", grad.type_str(),
              shape.str());
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < grad.rank(); ++i)
    if (i < lead || (shape[i - lead] == 1 && grad.dim(i) != 1)) axes.push_back(i);
  if (!has_unknown_dims(shape) && !has_unknown_dims(grad.shape())) {
    Tensor g = axes.empty() ? grad : sum(grad, axes, /*keepdims=*/true);
    return reshape(g, shape);
  }
  // No reshape to `shape` (it may hold several -1s): sum the broadcast axes keeping them,
  // then drop the leading ones.
  std::vector<int64_t> kept(axes.begin() + std::min<int64_t>(lead, axes.size()), axes.end());
  Tensor g = kept.empty() ? grad : sum(grad, kept, /*keepdims=*/true);
  if (lead > 0) {
    std::vector<int64_t> leading(static_cast<size_t>(lead));
    for (int64_t i = 0; i < lead; ++i)
      leading[static_cast<size_t>(i)] = i;
    g = sum(g, leading, /*keepdims=*/false);
  }
  return g;
}

void register_vjp(const char* name, VjpFn vjp, uint32_t needs) {
  registry().mutable_op(name).set_vjp(std::move(vjp), needs);
}

bool needs_grad(size_t input) {
  return !t_needs_grad || input >= t_needs_grad->size() || (*t_needs_grad)[input];
}

}  // namespace autograd

GradientTape::GradientTape(TapeOptions options)
    : options_(options), created_in_trace_(state_is_captured()) {
  t_tapes.push_back(this);
  scope_ = std::make_unique<HookScope>(this);
}

GradientTape::~GradientTape() {
  scope_.reset();
  auto it = std::find(t_tapes.begin(), t_tapes.end(), this);
  if (it != t_tapes.end()) t_tapes.erase(it);
}

std::vector<GradientTape*> GradientTape::active() {
  return t_tapes;
}

void GradientTape::watch(const Tensor& t) {
  KILN_CHECK(t.defined(), "GradientTape::watch: the tensor is undefined");
  if (is_floating(t.dtype())) tracked_.insert(t.id());
}

void GradientTape::watch(const Variable& v) {
  KILN_CHECK(v.defined(), "GradientTape::watch: the variable is undefined");
  watched_variables_.insert(v.id());
  const Tensor cur = v.get()->stored();
  if (!is_floating(cur.dtype())) return;
  tracked_.insert(cur.id());
  auto& reads = variable_reads_[v.id()];
  if (std::find(reads.begin(), reads.end(), cur.id()) == reads.end()) reads.push_back(cur.id());
}

void GradientTape::on_variable_read(VariableImpl& var, const Tensor& value) {
  if (!recording_ || !is_floating(value.dtype())) return;
  const bool watch_it =
      (options_.watch_accessed_variables && var.trainable()) || watched_variables_.count(var.id());
  if (!watch_it) return;
  tracked_.insert(value.id());
  auto& reads = variable_reads_[var.id()];
  if (std::find(reads.begin(), reads.end(), value.id()) == reads.end()) reads.push_back(value.id());
}

void GradientTape::observe(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                           std::span<const Tensor> outputs) {
  if (!recording_ || !op.differentiable()) return;
  bool touches = false;
  for (const Tensor& t : inputs)
    touches |= tracks(t.id());
  if (!touches) return;
  Entry e;
  e.op = &op;
  const bool keep_in = op.vjp_needs() & kVjpNeedsInputs;
  const bool keep_out = op.vjp_needs() & kVjpNeedsOutputs;
  e.inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    e.inputs.push_back(keep_in ? t : placeholder(t));
    e.input_ids.push_back(t.id());
  }
  e.attrs = attrs;
  for (const Tensor& t : outputs) {
    e.outputs.push_back(keep_out ? t : placeholder(t));
    e.output_ids.push_back(t.id());
    if (is_floating(t.dtype())) tracked_.insert(t.id());
  }
  entries_.push_back(std::move(e));
}

void GradientTape::record_closure(std::span<const Tensor> inputs, std::span<const Tensor> outputs,
                                  ClosureVjp vjp) {
  if (!recording_) return;
  bool touches = false;
  for (const Tensor& t : inputs)
    touches |= tracks(t.id());
  if (!touches) return;
  Entry e;
  for (const Tensor& t : inputs) {
    e.inputs.push_back(placeholder(t));
    e.input_ids.push_back(t.id());
  }
  for (const Tensor& t : outputs) {
    e.outputs.push_back(placeholder(t));
    e.output_ids.push_back(t.id());
    if (is_floating(t.dtype())) tracked_.insert(t.id());
  }
  e.closure = std::move(vjp);
  entries_.push_back(std::move(e));
}

bool GradientTape::is_recording_here() const {
  return recording_ && hook_is_installed(this);
}

std::vector<GradientTape*> GradientTape::recording_here() {
  std::vector<GradientTape*> out;
  for (GradientTape* t : t_tapes)
    if (t->is_recording_here()) out.push_back(t);
  return out;
}

void GradientTape::reset() {
  entries_.clear();
  tracked_.clear();
  variable_reads_.clear();
  watched_variables_.clear();
  used_ = false;
}

std::unordered_map<uint64_t, Tensor> GradientTape::backprop(
    const std::vector<Tensor>& targets, const std::vector<Tensor>& output_gradients) {
  std::unordered_map<uint64_t, Tensor> grads;
  for (size_t k = 0; k < targets.size(); ++k) {
    const Tensor& target = targets[k];
    if (!is_floating(target.dtype())) continue;
    Tensor g;
    if (k >= output_gradients.size() || !output_gradients[k].defined()) {
      g = ones_like(target);
    } else {
      const Tensor& og = output_gradients[k];
      KILN_CHECK(compatible(og.shape(), target.shape()),
                 "gradient: output_gradients {} does not match the target {}", og.type_str(),
                 target.type_str());
      g = cast(og, target.dtype());
    }
    auto [it, inserted] = grads.try_emplace(target.id(), g);
    if (!inserted) it->second = add(it->second, g);
  }
  // A persistent tape records its own backward pass (for higher order); others pause.
  std::unique_ptr<Pause> pause;
  if (!options_.persistent) pause = std::make_unique<Pause>(this);
  std::vector<Tensor> og;
  std::vector<bool> needs;
  for (size_t n = entries_.size(); n-- > 0;) {
    const Entry& e = entries_[n];
    bool any = false;
    og.assign(e.outputs.size(), Tensor());
    for (size_t k = 0; k < e.outputs.size(); ++k) {
      auto it = grads.find(e.output_ids[k]);
      if (it != grads.end()) {
        og[k] = it->second;
        any = true;
      }
    }
    if (!any) continue;
    for (size_t k = 0; k < og.size(); ++k)
      if (!og[k].defined())
        og[k] = has_unknown_dims(e.outputs[k].shape())
                    ? zeros_like(e.outputs[k])  // kept by placeholder(): shape read at run time
                    : zeros(e.outputs[k].shape(), e.outputs[k].dtype());
    needs.assign(e.inputs.size(), false);
    for (size_t i = 0; i < e.inputs.size(); ++i)
      needs[i] = tracks(e.input_ids[i]);
    std::vector<Tensor> ig;
    {
      KILN_CHECK(e.closure || static_cast<bool>(e.op->vjp()),
                 "gradient: op '{}' has no gradient rule (inputs {})", e.op->name(),
                 e.inputs.empty() ? std::string("none") : e.inputs[0].type_str());
      // Restored on the way out, also when a rule raises or a closure differentiates again.
      const std::vector<bool>* saved = t_needs_grad;
      t_needs_grad = &needs;
      struct Restore {
        const std::vector<bool>* saved;
        ~Restore() { t_needs_grad = saved; }
      } restore{saved};
      ig = e.closure ? e.closure(og) : e.op->vjp()(e.inputs, e.attrs, e.outputs, og);
    }
    KILN_ASSERT(ig.size() == e.inputs.size(),
                "gradient rule of '{}' returned {} gradients for {} inputs",
                e.op ? e.op->name() : "custom_gradient", ig.size(), e.inputs.size());
    for (size_t i = 0; i < ig.size(); ++i) {
      if (!ig[i].defined() || !needs[i]) continue;
      KILN_CHECK(compatible(ig[i].shape(), e.inputs[i].shape()),
                 "gradient: the rule of '{}' gave a {} gradient for input {} of shape {}",
                 e.op ? e.op->name() : "custom_gradient", ig[i].type_str(), i,
                 e.inputs[i].shape().str());
      Tensor g = ig[i].dtype() == e.inputs[i].dtype() ? ig[i] : cast(ig[i], e.inputs[i].dtype());
      auto [it, inserted] = grads.try_emplace(e.input_ids[i], g);
      if (!inserted) it->second = add(it->second, g);
    }
  }
  return grads;
}

std::vector<Tensor> GradientTape::gradient_ids(const std::vector<Tensor>& targets,
                                               const std::vector<std::vector<uint64_t>>& source_ids,
                                               const std::vector<Tensor>& like,
                                               const std::vector<Tensor>& output_gradients,
                                               Unconnected unconnected, bool consume) {
  for (const Tensor& target : targets)
    KILN_CHECK(target.defined(), "gradient: the target is undefined");
  KILN_CHECK(!(used_ && !options_.persistent),
             "gradient: a non-persistent GradientTape can only compute gradients once; create it "
             "with TapeOptions{{.persistent = true}} to call gradient() again");
  KILN_CHECK(output_gradients.size() <= targets.size(),
             "gradient: {} output_gradients for {} targets", output_gradients.size(),
             targets.size());
  std::vector<Tensor> out(source_ids.size());
  {
    auto grads = backprop(targets, output_gradients);
    for (size_t s = 0; s < source_ids.size(); ++s) {
      if (!like[s].defined() || !is_floating(like[s].dtype())) continue;
      Tensor total;
      for (uint64_t id : source_ids[s]) {
        auto it = grads.find(id);
        if (it == grads.end()) continue;
        total = total.defined() ? add(total, it->second) : it->second;
      }
      out[s] = total;
    }
  }
  for (size_t s = 0; s < out.size(); ++s)
    if (!out[s].defined() && unconnected == Unconnected::zero && like[s].defined() &&
        is_floating(like[s].dtype()))
      out[s] = zeros_like(like[s]);
  if (consume && !options_.persistent) {
    used_ = true;
    entries_.clear();
    tracked_.clear();
    variable_reads_.clear();
  }
  return out;
}

std::vector<Tensor> GradientTape::gradient(const Tensor& target, const std::vector<Tensor>& sources,
                                           const std::vector<Tensor>& output_gradients,
                                           Unconnected unconnected) {
  std::vector<std::vector<uint64_t>> ids;
  for (const Tensor& s : sources) {
    KILN_CHECK(s.defined(), "gradient: a source is undefined");
    ids.push_back({s.id()});
  }
  return gradient_ids({target}, ids, sources, output_gradients, unconnected, true);
}

std::vector<Tensor> GradientTape::gradient(const Tensor& target,
                                           const std::vector<Variable>& sources,
                                           const std::vector<Tensor>& output_gradients,
                                           Unconnected unconnected) {
  std::vector<std::vector<uint64_t>> ids;
  std::vector<Tensor> like;
  for (const Variable& v : sources) {
    KILN_CHECK(v.defined(), "gradient: a source variable is undefined");
    auto it = variable_reads_.find(v.id());
    ids.push_back(it == variable_reads_.end() ? std::vector<uint64_t>{} : it->second);
    like.push_back(v.get()->stored());
  }
  return gradient_ids({target}, ids, like, output_gradients, unconnected, true);
}

std::vector<Tensor> GradientTape::gradient(const std::vector<Tensor>& targets,
                                           const std::vector<Tensor>& sources,
                                           const std::vector<Variable>& variables,
                                           const std::vector<Tensor>& output_gradients,
                                           Unconnected unconnected) {
  std::vector<std::vector<uint64_t>> ids;
  std::vector<Tensor> like;
  for (const Tensor& s : sources) {
    KILN_CHECK(s.defined(), "gradient: a source is undefined");
    ids.push_back({s.id()});
    like.push_back(s);
  }
  for (const Variable& v : variables) {
    KILN_CHECK(v.defined(), "gradient: a source variable is undefined");
    auto it = variable_reads_.find(v.id());
    ids.push_back(it == variable_reads_.end() ? std::vector<uint64_t>{} : it->second);
    like.push_back(v.get()->stored());
  }
  return gradient_ids(targets, ids, like, output_gradients, unconnected, true);
}

Tensor GradientTape::jacobian(const Tensor& y, const Tensor& x) {
  std::vector<Tensor> rows;
  const int64_t n = y.numel();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> onehot(n, 0.0);
    onehot[i] = 1.0;
    Tensor og = cast(from_vector(onehot, y.shape()), y.dtype());
    rows.push_back(gradient_ids({y}, {{x.id()}}, {x}, {og}, Unconnected::zero, false)[0]);
  }
  if (!options_.persistent) {
    used_ = true;
    entries_.clear();
  }
  Shape s = y.shape();
  for (int64_t d : x.shape())
    s.push_back(d);
  if (rows.empty()) return zeros(s, x.dtype());
  return reshape(stack(rows, 0), s);
}

Tensor GradientTape::jacobian(const Tensor& y, const Variable& x) {
  auto it = variable_reads_.find(x.id());
  KILN_CHECK(it != variable_reads_.end() && !it->second.empty(),
             "jacobian: variable '{}' was not read under this tape", x.name());
  // Reads of one value share a Tensor; the latest read is the one y depends on.
  Tensor value = x.get()->stored();
  return jacobian(y, value);
}

Tensor GradientTape::batch_jacobian(const Tensor& y, const Tensor& x) {
  KILN_CHECK(y.rank() >= 1 && x.rank() >= 1 && y.dim(0) == x.dim(0),
             "batch_jacobian: y {} and x {} need the same leading batch dim", y.type_str(),
             x.type_str());
  const int64_t b = y.dim(0);
  const int64_t per = b ? y.numel() / b : 0;
  std::vector<Tensor> cols;
  for (int64_t j = 0; j < per; ++j) {
    std::vector<double> mask(b * per, 0.0);
    for (int64_t i = 0; i < b; ++i)
      mask[i * per + j] = 1.0;
    Tensor og = cast(from_vector(mask, y.shape()), y.dtype());
    cols.push_back(gradient_ids({y}, {{x.id()}}, {x}, {og}, Unconnected::zero, false)[0]);
  }
  if (!options_.persistent) {
    used_ = true;
    entries_.clear();
  }
  Shape s{b};
  for (int64_t d = 1; d < y.rank(); ++d)
    s.push_back(y.dim(d));
  for (int64_t d = 1; d < x.rank(); ++d)
    s.push_back(x.dim(d));
  if (cols.empty()) return zeros(s, x.dtype());
  return reshape(stack(cols, 1), s);
}

namespace detail {

Tensor custom_call(
    std::vector<Tensor> inputs, const std::function<Tensor()>& forward,
    std::function<std::vector<Tensor>(const std::vector<Tensor>&, const Tensor&, const Tensor&)>
        vjp) {
  const std::vector<GradientTape*> tapes = GradientTape::active();
  Tensor y;
  {
    std::vector<std::unique_ptr<GradientTape::Pause>> paused;
    for (GradientTape* t : tapes)
      paused.push_back(std::make_unique<GradientTape::Pause>(t));
    y = forward();
  }
  KILN_CHECK(y.defined(), "custom_gradient: the forward function returned an undefined Tensor");
  y = Tensor::view_of(y, y.shape(), y.strides(), y.offset());  // a fresh id for the output
  for (GradientTape* t : tapes) {
    t->record_closure(inputs, std::span<const Tensor>(&y, 1),
                      [vjp, inputs, y](std::span<const Tensor> og) {
                        std::vector<Tensor> g = vjp(inputs, y, og[0]);
                        KILN_CHECK(g.size() == inputs.size(),
                                   "custom_gradient: the vjp returned {} gradients for {} inputs",
                                   g.size(), inputs.size());
                        return g;
                      });
  }
  return y;
}

}  // namespace detail
}  // namespace kiln
