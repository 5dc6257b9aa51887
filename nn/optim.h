#pragma once

// Optimizers, as Keras 3 defines them. Their state (the step count and one or more slots per
// variable) lives in Variables, so a traced train step updates it in place and checkpoints
// save it. The learning rate is a tensor computed from `iterations`, so schedules work inside
// a traced step without retracing.

#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/core/tensor.h>

namespace kiln::optim {

class LearningRateSchedule {
 public:
  virtual ~LearningRateSchedule() = default;
  // The rate at `step` (an i64 scalar tensor, possibly symbolic) as an f32 scalar.
  virtual Tensor operator()(const Tensor& step) const = 0;
  // The same in double, for logs and tests.
  virtual double at(int64_t step) const = 0;
};

// initial * rate^(step / decay_steps), the exponent floored when staircase.
class ExponentialDecay : public LearningRateSchedule {
 public:
  ExponentialDecay(double initial, int64_t decay_steps, double decay_rate, bool staircase = false);
  Tensor operator()(const Tensor& step) const override;
  double at(int64_t step) const override;

 private:
  double initial_, rate_;
  int64_t decay_steps_;
  bool staircase_;
};

// initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha).
class CosineDecay : public LearningRateSchedule {
 public:
  CosineDecay(double initial, int64_t decay_steps, double alpha = 0);
  Tensor operator()(const Tensor& step) const override;
  double at(int64_t step) const override;

 private:
  double initial_, alpha_;
  int64_t decay_steps_;
};

// A constant rate or a schedule.
class LearningRate {
 public:
  LearningRate(double value) : value_(value) {}  // NOLINT(google-explicit-constructor)
  template <class S>
  requires std::derived_from<S, LearningRateSchedule> LearningRate(
      S schedule)  // NOLINT(google-explicit-constructor)
      : schedule_(std::make_shared<S>(std::move(schedule))) {}
  Tensor operator()(const Tensor& step) const;
  double at(int64_t step) const;

 private:
  double value_ = 0;
  std::shared_ptr<const LearningRateSchedule> schedule_;
};

// Rescales the gradients so that their global L2 norm is at most clip_norm (undefined
// gradients pass through). The norm before clipping is stored in *global_norm when given.
std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double clip_norm,
                                        Tensor* global_norm = nullptr);

class Optimizer {
 public:
  Optimizer(std::string name, LearningRate learning_rate);
  virtual ~Optimizer() = default;

  // One step: clips (when global_clipnorm > 0), updates every variable whose gradient is
  // defined, and increments iterations. Builds the slots on first use; build() them before
  // tracing a train step so that the trace does not create variables. Mismatched lists,
  // shapes or dtypes are a kiln::Error naming the variable.
  void apply_gradients(const std::vector<Tensor>& grads, const std::vector<Variable>& vars);
  void build(const std::vector<Variable>& vars);
  bool built() const { return !vars_.empty(); }

  // The rate of the coming step, an f32 scalar (reads iterations).
  Tensor learning_rate() const;
  const Variable& iterations() const { return iterations_; }  // i64 scalar, starts at 0
  // iterations, then every slot, in creation order: what a checkpoint saves.
  std::vector<Variable> variables() const;
  const std::string& name() const { return name_; }

  double global_clipnorm = 0;  // > 0: clip_by_global_norm before each step

 protected:
  // Creates this optimizer's slots for one variable (add_slot).
  virtual void build_slots(const Variable& var, size_t index) = 0;
  // Updates var (index: its position in the built list) with its gradient. lr: the rate as
  // an f32 scalar; step: iterations + 1 as an f32 scalar (for bias corrections).
  virtual void update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
                      const Tensor& step) = 0;
  // A zero-initialized non-trainable Variable like var, named "<name>/<var name>/<slot>".
  Variable add_slot(const Variable& var, const std::string& slot);
  const std::vector<Variable>& slots() const { return slots_; }

 private:
  std::string name_;
  LearningRate lr_;
  Variable iterations_;
  std::vector<Variable> vars_, slots_;
};

// Momentum as Keras: v = momentum*v - lr*g; var += v (nesterov: var += momentum*v - lr*g).
class SGD : public Optimizer {
 public:
  explicit SGD(LearningRate learning_rate = 0.01, double momentum = 0, bool nesterov = false);

 protected:
  void build_slots(const Variable& var, size_t index) override;
  void update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
              const Tensor& step) override;

 private:
  double momentum_;
  bool nesterov_;
  std::vector<Variable> velocity_;
};

class Adam : public Optimizer {
 public:
  explicit Adam(LearningRate learning_rate = 1e-3, double beta_1 = 0.9, double beta_2 = 0.999,
                double epsilon = 1e-7);

 protected:
  Adam(std::string name, LearningRate learning_rate, double beta_1, double beta_2, double epsilon);
  void build_slots(const Variable& var, size_t index) override;
  void update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
              const Tensor& step) override;
  // The Adam step from `value` (var's current value, or AdamW's decayed one) into var.
  void adam_step(const Variable& var, const Tensor& value, size_t index, const Tensor& grad,
                 const Tensor& lr, const Tensor& step);

 private:
  double beta_1_, beta_2_, epsilon_;
  std::vector<Variable> m_, v_;
};

// Adam with decoupled weight decay: var -= lr * weight_decay * var before the Adam step.
class AdamW : public Adam {
 public:
  explicit AdamW(LearningRate learning_rate = 1e-3, double weight_decay = 0.004,
                 double beta_1 = 0.9, double beta_2 = 0.999, double epsilon = 1e-7);

 protected:
  void update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
              const Tensor& step) override;

 private:
  double weight_decay_;
};

// Keras's RMSprop: a = rho*a + (1-rho)*g^2 (centered: minus the mean gradient's square);
// var -= lr*g/sqrt(a + eps), through a momentum slot when momentum > 0.
class RMSprop : public Optimizer {
 public:
  explicit RMSprop(LearningRate learning_rate = 1e-3, double rho = 0.9, double momentum = 0,
                   double epsilon = 1e-7, bool centered = false);

 protected:
  void build_slots(const Variable& var, size_t index) override;
  void update(const Variable& var, size_t index, const Tensor& grad, const Tensor& lr,
              const Tensor& step) override;

 private:
  double rho_, momentum_, epsilon_;
  bool centered_;
  std::vector<Variable> avg_, mom_, mean_grad_;
};

}  // namespace kiln::optim
