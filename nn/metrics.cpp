// Metrics as Keras's MeanMetricWrapper: per-element values summed into an f64 total and
// counted. Updates go through Variable::assign_add, which a trace records as ordered assigns.

#include <kiln/nn/metrics.h>
#include <kiln/nn/rank_util.h>

#include <kiln/core/ops.h>

namespace kiln::nn {

namespace {

bool dims_fit(const Shape& a, const Shape& b) {
  if (a.rank() != b.rank()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] && a[i] >= 0 && b[i] >= 0) return false;
  return true;
}

void check_inputs(const std::string& metric, const Tensor& y_true, const Tensor& y_pred) {
  KILN_CHECK(y_true.defined() && y_pred.defined(), "{}: y_true or y_pred is an undefined Tensor",
             metric);
}

using detail::match_ranks;

Tensor f64_zero() {
  return scalar_tensor(0.0, DType::f64);
}

}  // namespace

Metric::Metric(std::string name)
    : name_(std::move(name)),
      total_(f64_zero(), name_ + "/total", false),
      count_(f64_zero(), name_ + "/count", false) {}

Tensor Metric::result() const {
  // divide_no_nan: the count is a whole number, so max(count, 1) only changes 0/0.
  return div(total_.value(), maximum(count_.value(), Scalar(1.0)));
}

void Metric::reset_state() {
  total_.assign(f64_zero());
  count_.assign(f64_zero());
}

void Metric::accumulate(const Tensor& values) {
  KILN_CHECK(values.defined(), "{}: update with an undefined tensor", name_);
  Tensor v = cast(values, DType::f64);
  bool known = true;
  for (int64_t d : v.shape())
    known = known && d >= 0;
  // The count is a constant unless a dim is only known when the traced function runs.
  Tensor n = known ? scalar_tensor(static_cast<double>(v.numel()), DType::f64) : sum(ones_like(v));
  total_.assign_add(sum(v));
  count_.assign_add(n);
}

Mean::Mean(std::string name) : Metric(std::move(name)) {}

void Mean::update_state(const Tensor& y_true, const Tensor& y_pred) {
  KILN_CHECK(y_pred.defined(), "{}: y_pred is an undefined Tensor", name());
  accumulate(y_pred);
}

Accuracy::Accuracy(std::string name) : Metric(std::move(name)) {}

void Accuracy::update_state(const Tensor& y_true, const Tensor& y_pred) {
  check_inputs(name(), y_true, y_pred);
  auto [t, p] = match_ranks(y_true, y_pred);
  KILN_CHECK(dims_fit(t.shape(), p.shape()), "{}: y_true {} and y_pred {} must have the same shape",
             name(), y_true.type_str(), y_pred.type_str());
  accumulate(equal(t, p));
}

SparseCategoricalAccuracy::SparseCategoricalAccuracy(std::string name) : Metric(std::move(name)) {}

void SparseCategoricalAccuracy::update_state(const Tensor& y_true, const Tensor& y_pred) {
  check_inputs(name(), y_true, y_pred);
  KILN_CHECK(y_pred.rank() >= 1, "{}: y_pred {} must have rank >= 1 (y_true {})", name(),
             y_pred.type_str(), y_true.type_str());
  Tensor labels = y_true;
  if (labels.rank() == y_pred.rank() && labels.shape().back() == 1) labels = squeeze(labels, -1);
  const Shape outer(std::vector<int64_t>(y_pred.shape().begin(), y_pred.shape().end() - 1));
  KILN_CHECK(dims_fit(labels.shape(), outer),
             "{}: labels {} must have the shape of y_pred {} without its last dim", name(),
             y_true.type_str(), y_pred.type_str());
  // equal() promotes: float labels compare as floats against the i64 argmax.
  accumulate(equal(labels, argmax(y_pred, -1)));
}

CategoricalAccuracy::CategoricalAccuracy(std::string name) : Metric(std::move(name)) {}

void CategoricalAccuracy::update_state(const Tensor& y_true, const Tensor& y_pred) {
  check_inputs(name(), y_true, y_pred);
  KILN_CHECK(y_pred.rank() >= 1 && dims_fit(y_true.shape(), y_pred.shape()),
             "{}: y_true {} and y_pred {} must have the same shape, of rank >= 1", name(),
             y_true.type_str(), y_pred.type_str());
  accumulate(equal(argmax(y_true, -1), argmax(y_pred, -1)));
}

}  // namespace kiln::nn
