#pragma once

// Losses, as Keras defines them: a Loss maps (y_true, y_pred) to per-example values and
// reduces them. Probability inputs are clipped to [eps, 1 - eps] (eps = 1e-7) before the log
// (the categorical ones first divide by their sum over the class axis, as Keras's JAX and torch
// backends do); from_logits inputs go through a log-sum-exp (log_softmax, softplus), which is
// stable. MSE and BCE first squeeze or expand a trailing dim of 1 as Keras does ([B] labels
// meet [B, 1] predictions); shapes that still differ are an error, not a broadcast.

#include <memory>
#include <string>

#include <kiln/core/tensor.h>

namespace kiln::nn {

enum class Reduction {
  none,                 // per-example values, shape y_pred.shape[:-1] (or y_pred's for MSE)
  sum,                  // their sum
  sum_over_batch_size,  // their mean (Keras's default); 0 for an empty batch
};

class Loss {
 public:
  Loss(std::string name, Reduction reduction) : name_(std::move(name)), reduction_(reduction) {}
  virtual ~Loss() = default;

  // Per-example values, reduced. Mismatched shapes or dtypes are a kiln::Error naming the loss.
  Tensor operator()(const Tensor& y_true, const Tensor& y_pred) const;
  virtual Tensor per_example(const Tensor& y_true, const Tensor& y_pred) const = 0;

  const std::string& name() const { return name_; }
  Reduction reduction() const { return reduction_; }
  // A probability-taking loss that can take logits instead (the model's final softmax folded
  // in): the same loss with from_logits set, or null when there is none.
  virtual std::shared_ptr<Loss> with_logits() const { return nullptr; }

 private:
  std::string name_;
  Reduction reduction_;
};

// Integer labels [batch...] against class scores [batch..., classes].
class SparseCategoricalCrossentropy : public Loss {
 public:
  explicit SparseCategoricalCrossentropy(bool from_logits = false,
                                         Reduction reduction = Reduction::sum_over_batch_size);
  Tensor per_example(const Tensor& y_true, const Tensor& y_pred) const override;
  std::shared_ptr<Loss> with_logits() const override;
  bool from_logits() const { return from_logits_; }

 private:
  bool from_logits_;
};

// One-hot (or soft) labels against class scores, both [batch..., classes].
class CategoricalCrossentropy : public Loss {
 public:
  explicit CategoricalCrossentropy(bool from_logits = false,
                                   Reduction reduction = Reduction::sum_over_batch_size);
  Tensor per_example(const Tensor& y_true, const Tensor& y_pred) const override;
  std::shared_ptr<Loss> with_logits() const override;
  bool from_logits() const { return from_logits_; }

 private:
  bool from_logits_;
};

// Mean over the last axis of (y_true - y_pred)^2.
class MeanSquaredError : public Loss {
 public:
  explicit MeanSquaredError(Reduction reduction = Reduction::sum_over_batch_size);
  Tensor per_example(const Tensor& y_true, const Tensor& y_pred) const override;
};

// Labels in [0, 1] against probabilities (or logits); mean over the last axis.
class BinaryCrossentropy : public Loss {
 public:
  explicit BinaryCrossentropy(bool from_logits = false,
                              Reduction reduction = Reduction::sum_over_batch_size);
  Tensor per_example(const Tensor& y_true, const Tensor& y_pred) const override;
  bool from_logits() const { return from_logits_; }

 private:
  bool from_logits_;
};

// The per-example functions, as keras.losses.* (no reduction).
Tensor sparse_categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred,
                                       bool from_logits = false);
Tensor categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred,
                                bool from_logits = false);
Tensor mean_squared_error(const Tensor& y_true, const Tensor& y_pred);
Tensor binary_crossentropy(const Tensor& y_true, const Tensor& y_pred, bool from_logits = false);

}  // namespace kiln::nn
