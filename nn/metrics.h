#pragma once

// Metrics: running values whose state lives in Variables (f64 total and count), so a traced
// train step updates them in place, as Keras's do.

#include <string>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/core/tensor.h>

namespace kiln::nn {

class Metric {
 public:
  explicit Metric(std::string name);
  virtual ~Metric() = default;

  // Accumulates one batch. Works eagerly and inside a kiln::function.
  virtual void update_state(const Tensor& y_true, const Tensor& y_pred) = 0;
  // total / count as an f64 scalar tensor (0 before any update).
  Tensor result() const;
  double value() const { return result().item<double>(); }
  void reset_state();

  const std::string& name() const { return name_; }
  std::vector<Variable> variables() const { return {total_, count_}; }

 protected:
  // Adds sum(values) to the total and numel(values) to the count.
  void accumulate(const Tensor& values);

 private:
  std::string name_;
  Variable total_, count_;
};

// The running mean of the values passed to update(values); update_state(y_true, y_pred)
// averages y_pred.
class Mean : public Metric {
 public:
  explicit Mean(std::string name = "mean");
  void update(const Tensor& values) { accumulate(values); }
  void update_state(const Tensor& y_true, const Tensor& y_pred) override;
};

// The fraction of elements where y_pred equals y_true.
class Accuracy : public Metric {
 public:
  explicit Accuracy(std::string name = "accuracy");
  void update_state(const Tensor& y_true, const Tensor& y_pred) override;
};

// Integer labels [batch] against class scores [batch, classes]: argmax(y_pred) == y_true.
class SparseCategoricalAccuracy : public Metric {
 public:
  explicit SparseCategoricalAccuracy(std::string name = "sparse_categorical_accuracy");
  void update_state(const Tensor& y_true, const Tensor& y_pred) override;
};

// One-hot labels against class scores: argmax(y_pred) == argmax(y_true).
class CategoricalAccuracy : public Metric {
 public:
  explicit CategoricalAccuracy(std::string name = "categorical_accuracy");
  void update_state(const Tensor& y_true, const Tensor& y_pred) override;
};

}  // namespace kiln::nn
