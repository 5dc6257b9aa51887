// Keras 3's losses on public ops, so they are differentiable and traceable. The formulas follow
// keras/src/backend/jax/nn.py (probabilities are normalized to sum 1, then clipped to
// [eps, 1 - eps]); the wrapper's squeeze_or_expand_to_same_rank runs before MSE and BCE.
// Unlike Keras, shapes that still differ after that are an error, not a broadcast.

#include <kiln/nn/losses.h>
#include <kiln/nn/rank_util.h>

#include <utility>

#include <kiln/core/ops.h>

namespace kiln::nn {

namespace {

constexpr double kEpsilon = 1e-7;  // keras.backend.epsilon()

void check_defined(const char* loss, const Tensor& y_true, const Tensor& y_pred) {
  KILN_CHECK(y_true.defined() && y_pred.defined(), "{}: y_true or y_pred is an undefined Tensor",
             loss);
}

// Equal ranks, and dims equal or unknown (-1) in either.
bool dims_fit(const Shape& a, const Shape& b) {
  if (a.rank() != b.rank()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] && a[i] >= 0 && b[i] >= 0) return false;
  return true;
}

void check_prediction(const char* loss, const Tensor& y_true, const Tensor& y_pred) {
  KILN_CHECK(is_floating(y_pred.dtype()),
             "{}: y_pred must be floating point (f32 or f64), got {} (y_true {})", loss,
             y_pred.type_str(), y_true.type_str());
  KILN_CHECK(y_pred.rank() >= 1, "{}: y_pred must have rank >= 1, got {} (y_true {})", loss,
             y_pred.type_str(), y_true.type_str());
}

void check_same_shape(const char* loss, const Tensor& y_true, const Tensor& y_pred) {
  KILN_CHECK(dims_fit(y_true.shape(), y_pred.shape()),
             "{}: y_true {} and y_pred {} must have the same shape", loss, y_true.type_str(),
             y_pred.type_str());
}

using detail::match_ranks;

// p / sum(p), clipped, then logged: the probability form's log-likelihoods.
Tensor clipped_log_probs(const Tensor& p) {
  return log(clip(div(p, sum(p, {-1}, true)), kEpsilon, 1 - kEpsilon));
}

Tensor reduce(const Tensor& values, Reduction reduction) {
  // Keras returns scalars unreduced; "none" keeps the per-example values.
  if (reduction == Reduction::none || values.rank() == 0) return values;
  Tensor total = sum(values);
  if (reduction == Reduction::sum) return total;
  bool known = true;
  for (int64_t d : values.shape())
    known = known && d >= 0;
  // divide_no_nan, as Keras: an empty batch gives 0.
  if (known) return div(total, Scalar(static_cast<double>(std::max<int64_t>(values.numel(), 1))));
  return div(total, maximum(sum(ones_like(values)), Scalar(1.0)));
}

}  // namespace

// ---- per-example functions -------------------------------------------------------------------

Tensor sparse_categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred,
                                       bool from_logits) {
  constexpr const char* loss = "sparse_categorical_crossentropy";
  check_defined(loss, y_true, y_pred);
  check_prediction(loss, y_true, y_pred);
  KILN_CHECK(is_integral(y_true.dtype()),
             "{}: labels must be integers (u8, i32 or i64), got {} (y_pred {}); cast them", loss,
             y_true.type_str(), y_pred.type_str());
  Tensor labels = y_true;
  // Labels [B, 1] are squeezed to [B], as Keras does.
  if (labels.rank() == y_pred.rank() && labels.shape().back() == 1) labels = squeeze(labels, -1);
  const Shape& ps = y_pred.shape();
  const Shape outer(std::vector<int64_t>(ps.begin(), ps.end() - 1));
  KILN_CHECK(dims_fit(labels.shape(), outer),
             "{}: labels {} must have the shape of y_pred {} without its last dim", loss,
             y_true.type_str(), y_pred.type_str());
  const int64_t classes = ps.back();
  KILN_CHECK(classes > 0, "{}: the class dim of y_pred {} must be known and positive (labels {})",
             loss, y_pred.type_str(), y_true.type_str());
  if (!labels.is_symbolic()) {
    for (int64_t v : labels.to_vector<int64_t>())
      KILN_CHECK(v >= 0 && v < classes, "{}: label {} is out of range [0, {}) for y_pred {}", loss,
                 v, classes, y_pred.type_str());
  }
  labels = cast(labels, i64);
  if (from_logits) return sparse_softmax_cross_entropy_with_logits(labels, y_pred);
  // Pick the label's log-probability with where(), not a product with one_hot: the clipped
  // log is finite, but a where keeps the other classes out of the gradient exactly.
  Tensor mask = one_hot(labels, classes, DType::boolean);
  return neg(sum(where(mask, clipped_log_probs(y_pred), Scalar(0.0)), {-1}));
}

Tensor categorical_crossentropy(const Tensor& y_true, const Tensor& y_pred, bool from_logits) {
  constexpr const char* loss = "categorical_crossentropy";
  check_defined(loss, y_true, y_pred);
  check_prediction(loss, y_true, y_pred);
  check_same_shape(loss, y_true, y_pred);
  Tensor y = cast(y_true, y_pred.dtype());
  Tensor log_p = from_logits ? log_softmax(y_pred, -1) : clipped_log_probs(y_pred);
  return neg(sum(mul(y, log_p), {-1}));
}

Tensor mean_squared_error(const Tensor& y_true, const Tensor& y_pred) {
  constexpr const char* loss = "mean_squared_error";
  check_defined(loss, y_true, y_pred);
  auto [t, p] = match_ranks(y_true, y_pred);
  check_prediction(loss, y_true, y_pred);
  check_same_shape(loss, t, p);
  return mean(square(sub(cast(t, p.dtype()), p)), {-1});
}

Tensor binary_crossentropy(const Tensor& y_true, const Tensor& y_pred, bool from_logits) {
  constexpr const char* loss = "binary_crossentropy";
  check_defined(loss, y_true, y_pred);
  auto [t, x] = match_ranks(y_true, y_pred);
  check_prediction(loss, y_true, y_pred);
  check_same_shape(loss, t, x);
  Tensor y = cast(t, x.dtype());
  Tensor per_element;
  if (from_logits) {
    // TensorFlow's sigmoid_cross_entropy_with_logits: max(x, 0) - x y + log1p(exp(-|x|)),
    // with max and -|x| chosen by one shared where() so the gradient at x = 0 is the true
    // sigmoid(0) - y (separate relu and abs would each take a one-sided derivative there).
    Tensor nonneg = greater_equal(x, Scalar(0.0));
    Tensor relu_x = where(nonneg, x, Scalar(0.0));
    Tensor neg_abs = where(nonneg, neg(x), x);
    per_element = add(sub(relu_x, mul(x, y)), log1p(exp(neg_abs)));
  } else {
    Tensor p = clip(x, kEpsilon, 1 - kEpsilon);
    per_element = neg(add(mul(y, log(p)), mul(sub(Scalar(1.0), y), log(sub(Scalar(1.0), p)))));
  }
  return mean(per_element, {-1});
}

// ---- Loss classes ----------------------------------------------------------------------------

Tensor Loss::operator()(const Tensor& y_true, const Tensor& y_pred) const {
  check_defined(name_.c_str(), y_true, y_pred);
  return reduce(per_example(y_true, y_pred), reduction_);
}

SparseCategoricalCrossentropy::SparseCategoricalCrossentropy(bool from_logits, Reduction reduction)
    : Loss("sparse_categorical_crossentropy", reduction), from_logits_(from_logits) {}

Tensor SparseCategoricalCrossentropy::per_example(const Tensor& y_true,
                                                  const Tensor& y_pred) const {
  return sparse_categorical_crossentropy(y_true, y_pred, from_logits_);
}

std::shared_ptr<Loss> SparseCategoricalCrossentropy::with_logits() const {
  if (from_logits_) return nullptr;  // already takes logits: nothing to fold
  return std::make_shared<SparseCategoricalCrossentropy>(true, reduction());
}

CategoricalCrossentropy::CategoricalCrossentropy(bool from_logits, Reduction reduction)
    : Loss("categorical_crossentropy", reduction), from_logits_(from_logits) {}

Tensor CategoricalCrossentropy::per_example(const Tensor& y_true, const Tensor& y_pred) const {
  return categorical_crossentropy(y_true, y_pred, from_logits_);
}

std::shared_ptr<Loss> CategoricalCrossentropy::with_logits() const {
  if (from_logits_) return nullptr;
  return std::make_shared<CategoricalCrossentropy>(true, reduction());
}

MeanSquaredError::MeanSquaredError(Reduction reduction) : Loss("mean_squared_error", reduction) {}

Tensor MeanSquaredError::per_example(const Tensor& y_true, const Tensor& y_pred) const {
  return mean_squared_error(y_true, y_pred);
}

BinaryCrossentropy::BinaryCrossentropy(bool from_logits, Reduction reduction)
    : Loss("binary_crossentropy", reduction), from_logits_(from_logits) {}

Tensor BinaryCrossentropy::per_example(const Tensor& y_true, const Tensor& y_pred) const {
  return binary_crossentropy(y_true, y_pred, from_logits_);
}

}  // namespace kiln::nn
