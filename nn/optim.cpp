// Keras 3's optimizers (keras/src/optimizers/*.py) on public ops. Every update is written with
// Variable reads and assigns, so the same code runs eagerly and inside a trace, where it
// becomes ordered assign nodes; the learning rate and Adam's bias correction are tensors
// computed from `iterations`, so a traced step never bakes in a step count.

#include <kiln/nn/optim.h>

#include <cmath>
#include <numbers>
#include <unordered_set>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln::optim {

namespace {

std::string var_type(const Variable& v) {
  return fmt::format("{}{}", name(v.dtype()), v.shape().str());
}

std::string names_of(const std::vector<Variable>& vars) {
  std::string out;
  for (const Variable& v : vars)
    out += (out.empty() ? "" : ", ") + (v.defined() ? v.name() : std::string("<undefined>"));
  return "[" + out + "]";
}

}  // namespace

// ---- schedules -------------------------------------------------------------------------------

ExponentialDecay::ExponentialDecay(double initial, int64_t decay_steps, double decay_rate,
                                   bool staircase)
    : initial_(initial), rate_(decay_rate), decay_steps_(decay_steps), staircase_(staircase) {
  KILN_CHECK(decay_steps > 0, "ExponentialDecay: decay_steps must be positive, got {}",
             decay_steps);
  KILN_CHECK(decay_rate > 0, "ExponentialDecay: decay_rate must be positive, got {}", decay_rate);
}

// Computed in f64 and rounded once: in f32, step / decay_steps loses digits past 2^24 steps.
Tensor ExponentialDecay::operator()(const Tensor& step) const {
  Tensor p = div(cast(step, DType::f64), Scalar(static_cast<double>(decay_steps_)));
  if (staircase_) p = floor(p);
  return cast(mul(pow(Scalar(rate_), p), Scalar(initial_)), DType::f32);
}

double ExponentialDecay::at(int64_t step) const {
  double p = static_cast<double>(step) / static_cast<double>(decay_steps_);
  if (staircase_) p = std::floor(p);
  return initial_ * std::pow(rate_, p);
}

CosineDecay::CosineDecay(double initial, int64_t decay_steps, double alpha)
    : initial_(initial), alpha_(alpha), decay_steps_(decay_steps) {
  KILN_CHECK(decay_steps > 0, "CosineDecay: decay_steps must be positive, got {}", decay_steps);
}

Tensor CosineDecay::operator()(const Tensor& step) const {
  const double n = static_cast<double>(decay_steps_);
  Tensor done = div(minimum(cast(step, DType::f64), Scalar(n)), Scalar(n));
  Tensor cosine = mul(add(cos(mul(done, Scalar(std::numbers::pi))), Scalar(1.0)), Scalar(0.5));
  Tensor decayed = add(mul(cosine, Scalar(1 - alpha_)), Scalar(alpha_));
  return cast(mul(decayed, Scalar(initial_)), DType::f32);
}

double CosineDecay::at(int64_t step) const {
  const double n = static_cast<double>(decay_steps_);
  const double done = std::min(static_cast<double>(step), n) / n;
  return initial_ * ((1 - alpha_) * 0.5 * (1 + std::cos(std::numbers::pi * done)) + alpha_);
}

Tensor LearningRate::operator()(const Tensor& step) const {
  if (schedule_) return (*schedule_)(step);
  return scalar_tensor(value_, DType::f32);
}

double LearningRate::at(int64_t step) const {
  return schedule_ ? schedule_->at(step) : value_;
}

// ---- clipping --------------------------------------------------------------------------------

std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double clip_norm,
                                        Tensor* global_norm) {
  KILN_CHECK(clip_norm > 0, "clip_by_global_norm: clip_norm must be positive, got {}", clip_norm);
  // The norm is accumulated in the widest dtype among the gradients.
  DType acc = DType::f32;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    KILN_CHECK(is_floating(grads[i].dtype()),
               "clip_by_global_norm: gradient {} is {}, not floating point", i,
               grads[i].type_str());
    if (grads[i].dtype() == DType::f64) acc = DType::f64;
  }
  Tensor squared = scalar_tensor(0.0, acc);
  for (const Tensor& g : grads)
    if (g.defined()) squared = add(squared, cast(sum(square(g)), acc));
  Tensor norm = sqrt(squared);
  if (global_norm) *global_norm = norm;
  // Keras's form: clip * min(1/norm, 1/clip) is 1 for a zero norm (1/0 = inf), and
  // (norm - norm) makes the scale NaN when a gradient is not finite.
  Tensor scale =
      add(mul(minimum(div(Scalar(1.0), norm), Scalar(1.0 / clip_norm)), Scalar(clip_norm)),
          sub(norm, norm));
  std::vector<Tensor> out;
  out.reserve(grads.size());
  for (const Tensor& g : grads)
    out.push_back(g.defined() ? mul(g, cast(scale, g.dtype())) : g);
  return out;
}

// ---- Optimizer -------------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, LearningRate learning_rate)
    : name_(std::move(name)),
      lr_(std::move(learning_rate)),
      iterations_(scalar_tensor(int64_t{0}, DType::i64), name_ + "/iterations", false) {
  const double lr0 = lr_.at(0);
  KILN_CHECK(std::isfinite(lr0) && lr0 >= 0,
             "{}: the learning rate must be finite and >= 0, got {}", name_, lr0);
}

Tensor Optimizer::learning_rate() const {
  return lr_(iterations_.value());
}

std::vector<Variable> Optimizer::variables() const {
  std::vector<Variable> out{iterations_};
  out.insert(out.end(), slots_.begin(), slots_.end());
  return out;
}

Variable Optimizer::add_slot(const Variable& var, const std::string& slot) {
  Variable s(zeros(var.shape(), var.dtype()), name_ + "/" + var.name() + "/" + slot, false);
  slots_.push_back(s);
  return s;
}

void Optimizer::build(const std::vector<Variable>& vars) {
  KILN_CHECK(!vars.empty(), "{}: build needs at least one variable", name_);
  for (size_t i = 0; i < vars.size(); ++i)
    KILN_CHECK(vars[i].defined(), "{}: variable {} of {} is undefined", name_, i, vars.size());
  if (built()) {
    bool same = vars.size() == vars_.size();
    for (size_t i = 0; same && i < vars.size(); ++i)
      same = vars[i].id() == vars_[i].id();
    KILN_CHECK(same,
               "{}: was built for the variables {} but is given {}; use one optimizer per list "
               "of variables",
               name_, names_of(vars_), names_of(vars));
    return;
  }
  std::unordered_set<uint64_t> seen;
  for (const Variable& v : vars) {
    KILN_CHECK(is_floating(v.dtype()), "{}: variable '{}' is {}, not floating point", name_,
               v.name(), var_type(v));
    KILN_CHECK(seen.insert(v.id()).second, "{}: variable '{}' appears twice in {}", name_, v.name(),
               names_of(vars));
  }
  // A failed build (a trace that may not create variables) leaves the optimizer unbuilt.
  const size_t slots_before = slots_.size();
  try {
    for (size_t i = 0; i < vars.size(); ++i)
      build_slots(vars[i], i);
  } catch (...) {
    slots_.resize(slots_before);
    throw;
  }
  vars_ = vars;
}

void Optimizer::apply_gradients(const std::vector<Tensor>& grads,
                                const std::vector<Variable>& vars) {
  KILN_CHECK(grads.size() == vars.size(), "{}: apply_gradients got {} gradients for {} variables",
             name_, grads.size(), vars.size());
  for (size_t i = 0; i < vars.size(); ++i)
    KILN_CHECK(vars[i].defined(), "{}: variable {} of {} is undefined", name_, i, vars.size());
  bool any = false;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    any = true;
    KILN_CHECK(grads[i].shape() == vars[i].shape() && grads[i].dtype() == vars[i].dtype(),
               "{}: the gradient of variable '{}' is {} but the variable is {}", name_,
               vars[i].name(), grads[i].type_str(), var_type(vars[i]));
  }
  KILN_CHECK(any, "{}: no gradients provided for any variable of {}", name_, names_of(vars));
  build(vars);  // checks the list against the built one
  const std::vector<Tensor> clipped =
      global_clipnorm > 0 ? clip_by_global_norm(grads, global_clipnorm) : grads;
  Tensor it = iterations_.value();
  Tensor lr = lr_(it);
  Tensor step = cast(add(it, Scalar(1)), DType::f32);
  for (size_t i = 0; i < vars.size(); ++i)
    if (clipped[i].defined()) update(vars[i], i, clipped[i], lr, step);
  iterations_.assign_add(scalar_tensor(int64_t{1}, DType::i64));
}

// ---- SGD -------------------------------------------------------------------------------------

SGD::SGD(LearningRate learning_rate, double momentum, bool nesterov)
    : Optimizer("SGD", std::move(learning_rate)), momentum_(momentum), nesterov_(nesterov) {
  KILN_CHECK(momentum >= 0 && momentum <= 1, "SGD: momentum must be in [0, 1], got {}", momentum);
}

void SGD::build_slots(const Variable& var, size_t index) {
  if (momentum_ == 0) return;  // plain SGD keeps no state
  if (velocity_.size() <= index) velocity_.resize(index + 1);
  velocity_[index] = add_slot(var, "velocity");
}

void SGD::update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
                 const Tensor& step) {
  Tensor lr_g = mul(grad, cast(lr, var.dtype()));
  if (momentum_ == 0) {
    var.assign_sub(lr_g);
    return;
  }
  const Variable& velocity = velocity_[index];
  Tensor v = sub(mul(velocity.value(), Scalar(momentum_)), lr_g);
  velocity.assign(v);
  var.assign_add(nesterov_ ? sub(mul(v, Scalar(momentum_)), lr_g) : v);
}

// ---- Adam, AdamW -----------------------------------------------------------------------------

Adam::Adam(LearningRate learning_rate, double beta_1, double beta_2, double epsilon)
    : Adam("adam", std::move(learning_rate), beta_1, beta_2, epsilon) {}

Adam::Adam(std::string name, LearningRate learning_rate, double beta_1, double beta_2,
           double epsilon)
    : Optimizer(std::move(name), std::move(learning_rate)),
      beta_1_(beta_1),
      beta_2_(beta_2),
      epsilon_(epsilon) {
  KILN_CHECK(beta_1 >= 0 && beta_1 < 1 && beta_2 >= 0 && beta_2 < 1,
             "{}: beta_1 and beta_2 must be in [0, 1), got {} and {}", this->name(), beta_1,
             beta_2);
  KILN_CHECK(epsilon >= 0, "{}: epsilon must be >= 0, got {}", this->name(), epsilon);
}

void Adam::build_slots(const Variable& var, size_t index) {
  if (m_.size() <= index) {
    m_.resize(index + 1);
    v_.resize(index + 1);
  }
  m_[index] = add_slot(var, "m");
  v_[index] = add_slot(var, "v");
}

void Adam::update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
                  const Tensor& step) {
  adam_step(var, var.value(), index, grad, lr, step);
}

void Adam::adam_step(const Variable& var, const Tensor& value, size_t index, const Tensor& grad,
                     const Tensor& lr, const Tensor& step) {
  const Variable& m = m_[index];
  const Variable& v = v_[index];
  if (!state_is_captured()) {
    // Eager: one fused pass per variable, the bias correction folded into the rate on the
    // host (from the same f32 rate the traced path uses).
    const double t = step.item<double>();
    const double alpha =
        lr.item<double>() * std::sqrt(1 - std::pow(beta_2_, t)) / (1 - std::pow(beta_1_, t));
    AdamUpdate u =
        adam_update(value, m.value(), v.value(), grad, alpha, beta_1_, beta_2_, epsilon_);
    m.assign(u.m);
    v.assign(u.v);
    var.assign(u.var);
    return;
  }
  // Traced: elementwise ops the JIT fuses. alpha is formed in f64 as on the eager path (Keras
  // forms it in the variable's dtype; in f32, 1 - 0.999^t is off by 1e-5 relative).
  Tensor t = cast(step, DType::f64);
  Tensor alpha = div(mul(cast(lr, DType::f64), sqrt(sub(Scalar(1.0), pow(Scalar(beta_2_), t)))),
                     sub(Scalar(1.0), pow(Scalar(beta_1_), t)));
  Tensor m_old = m.value(), v_old = v.value();
  Tensor m_new = add(m_old, mul(sub(grad, m_old), Scalar(1 - beta_1_)));
  Tensor v_new = add(v_old, mul(sub(square(grad), v_old), Scalar(1 - beta_2_)));
  m.assign(m_new);
  v.assign(v_new);
  var.assign(
      sub(value, div(mul(m_new, cast(alpha, var.dtype())), add(sqrt(v_new), Scalar(epsilon_)))));
}

AdamW::AdamW(LearningRate learning_rate, double weight_decay, double beta_1, double beta_2,
             double epsilon)
    : Adam("adamw", std::move(learning_rate), beta_1, beta_2, epsilon),
      weight_decay_(weight_decay) {
  KILN_CHECK(weight_decay >= 0, "adamw: weight_decay must be >= 0, got {}", weight_decay);
}

void AdamW::update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
                   const Tensor& step) {
  // Keras's _apply_weight_decay, decoupled from the gradient: var -= var * wd * lr, with the
  // schedule's rate (not Adam's bias-corrected one), before the Adam step.
  Tensor value = var.value();
  if (weight_decay_ != 0)
    value = sub(value, mul(mul(value, Scalar(weight_decay_)), cast(lr, var.dtype())));
  adam_step(var, value, index, grad, lr, step);
}

// ---- RMSprop ---------------------------------------------------------------------------------

RMSprop::RMSprop(LearningRate learning_rate, double rho, double momentum, double epsilon,
                 bool centered)
    : Optimizer("rmsprop", std::move(learning_rate)),
      rho_(rho),
      momentum_(momentum),
      epsilon_(epsilon),
      centered_(centered) {
  KILN_CHECK(rho >= 0 && rho < 1, "rmsprop: rho must be in [0, 1), got {}", rho);
  KILN_CHECK(momentum >= 0 && momentum <= 1, "rmsprop: momentum must be in [0, 1], got {}",
             momentum);
  KILN_CHECK(epsilon >= 0, "rmsprop: epsilon must be >= 0, got {}", epsilon);
}

void RMSprop::build_slots(const Variable& var, size_t index) {
  if (avg_.size() <= index) {
    avg_.resize(index + 1);
    mom_.resize(index + 1);
    mean_grad_.resize(index + 1);
  }
  avg_[index] = add_slot(var, "velocity");
  if (momentum_ > 0) mom_[index] = add_slot(var, "momentum");
  if (centered_) mean_grad_[index] = add_slot(var, "average_gradient");
}

void RMSprop::update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
                     const Tensor& step) {
  const Variable& avg = avg_[index];
  Tensor a = add(mul(avg.value(), Scalar(rho_)), mul(square(grad), Scalar(1 - rho_)));
  avg.assign(a);
  Tensor denominator;
  if (centered_) {
    const Variable& mean_grad = mean_grad_[index];
    Tensor mg = add(mul(mean_grad.value(), Scalar(rho_)), mul(grad, Scalar(1 - rho_)));
    mean_grad.assign(mg);
    denominator = add(sub(a, square(mg)), Scalar(epsilon_));
  } else {
    denominator = add(a, Scalar(epsilon_));
  }
  Tensor increment = div(mul(grad, cast(lr, var.dtype())), sqrt(denominator));
  if (momentum_ > 0) {
    const Variable& mom = mom_[index];
    Tensor mo = add(mul(mom.value(), Scalar(momentum_)), increment);
    mom.assign(mo);
    var.assign_sub(mo);
  } else {
    var.assign_sub(increment);
  }
}

}  // namespace kiln::optim
