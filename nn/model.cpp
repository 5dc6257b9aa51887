#include <kiln/nn/model.h>

#include <charconv>
#include <iostream>

#include <kiln/autograd/tape.h>
#include <kiln/core/error.h>
#include <kiln/core/ops.h>
#include <kiln/core/random.h>
#include <kiln/nn/checkpoint.h>
#include <kiln/tracer/saved_function.h>

namespace kiln::nn {

std::optional<double> find_log(const Logs& logs, const std::string& name) {
  for (const auto& [n, v] : logs)
    if (n == name) return v;
  return std::nullopt;
}

Model::Model(std::string name) : Module(std::move(name)) {}

namespace {
Model&& movable(Model& m) {
  KILN_CHECK(!m.compiled(), "Model ({}): a compiled model cannot be moved (its steps refer to it)",
             m.name());
  return std::move(m);
}
}  // namespace

Model::Model(Model&& other)
    : Module(std::move(movable(other))),
      metrics_(std::move(other.metrics_)),
      steps_done_(other.steps_done_),
      input_dtype_(other.input_dtype_) {}

void Model::compile(Ref<optim::Optimizer> optimizer, Ref<Loss> loss,
                    std::vector<Ref<Metric>> metrics, CompileOptions options) {
  KILN_CHECK(optimizer && loss, "Model::compile ({}): an optimizer and a loss are required",
             name());
  optimizer_ = optimizer.shared();
  loss_ = loss.shared();
  logits_loss_ = loss_->with_logits();
  metrics_ = std::move(metrics);
  loss_tracker_ = std::make_shared<Mean>("loss");
  compile_options_ = options;
  // The steps refer to this model (hence it is not moved once compiled). Each distinct batch
  // shape traces once: a full batch and, at most, a last smaller one.
  train_fn_.emplace(Step([this](const Tensor& x, const Tensor& y) { return train_step(x, y); }),
                    FunctionOptions{.name = name() + "_train_step"});
  test_fn_.emplace(Step([this](const Tensor& x, const Tensor& y) { return test_step(x, y); }),
                   FunctionOptions{.name = name() + "_test_step"});
  predict_fn_.emplace(
      std::function<Tensor(const Tensor&)>([this](const Tensor& x) { return (*this)(x, false); }),
      FunctionOptions{.name = name() + "_predict_step"});
}

optim::Optimizer& Model::optimizer() const {
  KILN_CHECK(optimizer_ != nullptr, "Model ({}): not compiled", name());
  return *optimizer_;
}

const Loss& Model::loss() const {
  KILN_CHECK(loss_ != nullptr, "Model ({}): not compiled", name());
  return *loss_;
}

std::pair<Tensor, Tensor> Model::forward_loss(const Tensor& x, const Tensor& y, bool training) {
  // A final softmax folded into the loss: the loss takes the logits through a log-softmax,
  // which is exact where log(softmax) would underflow; the metrics still see probabilities.
  if (logits_loss_) {
    if (std::optional<Tensor> logits = call_logits(x, training)) {
      Tensor loss = (*logits_loss_)(y, *logits);
      return {metrics_.empty() ? Tensor() : softmax(*logits), loss};
    }
  }
  Tensor out = (*this)(x, training);
  return {out, (*loss_)(y, out)};
}

std::vector<Tensor> Model::train_step(const Tensor& x, const Tensor& y) {
  std::vector<Variable> vars = trainable_variables();
  GradientTape tape;
  auto [out, loss] = forward_loss(x, y, true);
  std::vector<Tensor> grads = tape.gradient(loss, vars);
  optimizer_->apply_gradients(grads, vars);
  // The loss tracker weighs each batch by its size, so the epoch's loss is a per-example mean.
  loss_tracker_->update(broadcast_to(loss, Shape({x.dim(0)})));
  for (const auto& m : metrics_)
    m->update_state(y, out);
  return {loss};
}

std::vector<Tensor> Model::test_step(const Tensor& x, const Tensor& y) {
  auto [out, loss] = forward_loss(x, y, false);
  loss_tracker_->update(broadcast_to(loss, Shape({x.dim(0)})));
  for (const auto& m : metrics_)
    m->update_state(y, out);
  return {loss};
}

void Model::build_for(const Tensor& x) {
  KILN_CHECK(x.rank() >= 1, "Model ({}): inputs need a batch dim, got {}", name(), x.type_str());
  if (!built()) {
    Shape s = x.shape();
    s[0] = -1;
    input_dtype_ = x.dtype();
    // Floating inputs set the variables' dtype (f64 data trains an f64 model).
    ensure_built(s, is_floating(x.dtype()) ? std::optional<DType>(x.dtype()) : std::nullopt);
  }
  if (optimizer_ && !optimizer_->built()) optimizer_->build(trainable_variables());
}

void Model::reset_metrics() {
  if (loss_tracker_) loss_tracker_->reset_state();
  for (const auto& m : metrics_)
    m->reset_state();
}

Logs Model::metric_logs() const {
  Logs logs;
  if (loss_tracker_) logs.emplace_back("loss", loss_tracker_->value());
  for (const auto& m : metrics_)
    logs.emplace_back(m->name(), m->value());
  return logs;
}

void Model::run_train_step(const Tensor& x, const Tensor& y) {
  build_for(x);
  if (compile_options_.run_eagerly)
    train_step(x, y);
  else
    (*train_fn_)(x, y);
  ++steps_done_;
}

Logs Model::train_on_batch(const Tensor& x, const Tensor& y) {
  KILN_CHECK(compiled(), "Model::train_on_batch ({}): compile the model first", name());
  run_train_step(x, y);
  return metric_logs();
}

namespace {

// A (x, y) batch from a dataset element, or a kiln::Error naming the model.
std::pair<Tensor, Tensor> split_batch(const data::Element& e, const std::string& model) {
  KILN_CHECK(e.size() == 2, "Model ({}): a training dataset yields (x, y) pairs, got {} tensors",
             model, e.size());
  return {e[0], e[1]};
}

}  // namespace

History Model::fit(const Tensor& x, const Tensor& y, FitOptions options) {
  KILN_CHECK(x.rank() >= 1 && y.rank() >= 1 && x.dim(0) == y.dim(0),
             "Model::fit ({}): x {} and y {} need the same number of examples", name(),
             x.type_str(), y.type_str());
  KILN_CHECK(options.batch_size > 0, "Model::fit ({}): batch_size must be positive, got {}", name(),
             options.batch_size);
  data::Dataset ds = data::Dataset::from_tensor_slices({x, y});
  if (options.shuffle) ds = ds.shuffle(options.seed);
  return fit(ds.batch(options.batch_size), std::move(options));
}

History Model::fit(const data::Dataset& train, FitOptions options) {
  KILN_CHECK(compiled(), "Model::fit ({}): compile the model first", name());
  std::ostream& out = options.out ? *options.out : std::cout;
  const int64_t total = train.cardinality();
  ProgressBar bar(out, options.out == nullptr && ProgressBar::stdout_is_terminal(), total);
  History history;
  stop_training = false;
  for (const auto& cb : options.callbacks)
    cb->on_train_begin(*this);
  for (int epoch = options.initial_epoch; epoch < options.epochs && !stop_training; ++epoch) {
    reset_metrics();
    for (const auto& cb : options.callbacks)
      cb->on_epoch_begin(*this, epoch);
    if (options.verbose) bar.start_epoch(epoch, options.epochs);
    int64_t steps = 0;
    for (const data::Element& e : train.epoch(epoch)) {
      auto [xb, yb] = split_batch(e, name());
      run_train_step(xb, yb);  // the metrics are read only when something shows them
      ++steps;
      std::optional<Logs> logs;
      for (const auto& cb : options.callbacks) {
        if (!cb->wants_batch_logs(steps_done_)) continue;
        if (!logs) logs = metric_logs();
        cb->on_train_batch_end(*this, steps_done_, *logs);
      }
      if (options.verbose) bar.update(steps, [this] { return metric_logs(); });
    }
    Logs logs = metric_logs();
    if (options.validation_data) {
      const auto& [vx, vy] = *options.validation_data;
      for (const auto& [n, v] : evaluate(vx, vy, options.batch_size))
        logs.emplace_back("val_" + n, v);
    }
    if (options.verbose) bar.finish(steps, logs);
    history.epochs.push_back(epoch);
    for (const auto& [n, v] : logs)
      history.history[n].push_back(v);
    for (const auto& cb : options.callbacks)
      cb->on_epoch_end(*this, epoch, logs);
  }
  for (const auto& cb : options.callbacks)
    cb->on_train_end(*this);
  return history;
}

Logs Model::evaluate(const Tensor& x, const Tensor& y, int64_t batch_size) {
  KILN_CHECK(x.rank() >= 1 && y.rank() >= 1 && x.dim(0) == y.dim(0),
             "Model::evaluate ({}): x {} and y {} need the same number of examples", name(),
             x.type_str(), y.type_str());
  return evaluate(data::Dataset::from_tensor_slices({x, y}).batch(batch_size));
}

Logs Model::evaluate(const data::Dataset& data) {
  KILN_CHECK(compiled(), "Model::evaluate ({}): compile the model first", name());
  reset_metrics();
  for (const data::Element& e : data.epoch(0)) {
    auto [xb, yb] = split_batch(e, name());
    build_for(xb);
    if (compile_options_.run_eagerly)
      test_step(xb, yb);
    else
      (*test_fn_)(xb, yb);
  }
  return metric_logs();
}

Tensor Model::predict(const Tensor& x, int64_t batch_size) {
  KILN_CHECK(x.rank() >= 1 && batch_size > 0,
             "Model::predict ({}): needs batched inputs and a positive batch_size, got {}", name(),
             x.type_str());
  std::vector<Tensor> outs;
  for (int64_t start = 0; start < x.dim(0); start += batch_size) {
    Tensor xb = x.slice(0, start, std::min(x.dim(0), start + batch_size));
    build_for(xb);
    const bool eager = !predict_fn_ || compile_options_.run_eagerly;
    outs.push_back(eager ? (*this)(xb, false) : (*predict_fn_)(xb));
  }
  KILN_CHECK(!outs.empty(), "Model::predict ({}): no inputs", name());
  return outs.size() == 1 ? outs[0] : concat(outs, 0);
}

void Model::save(const std::string& dir) {
  KILN_CHECK(built(), "Model::save ({}): the model is not built yet (call or fit it first)",
             name());
  Shape spec = input_shape();
  spec[0] = -1;
  auto serve = Function<std::function<Tensor(const Tensor&)>>(
      [this](const Tensor& x) { return (*this)(x, false); },
      FunctionOptions{.name = "serve", .input_signature = {TensorSpec(spec, input_dtype_)}});
  saved_function::save(dir, serve);
}

namespace {

// A non-negative integer from a checkpoint's metadata, or a kiln::Error naming the file.
uint64_t parse_count(const std::string& text, const std::string& path, const char* what) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  KILN_CHECK(ec == std::errc() && p == end && !text.empty(),
             "Model::load_checkpoint: {}: metadata '{}' is not a count: '{}'", path, what, text);
  return v;
}

std::vector<Variable> checkpoint_variables(const Model& model) {
  std::vector<Variable> vars = model.variables();
  if (model.compiled())
    for (const Variable& v : model.optimizer().variables())
      vars.push_back(v);
  return vars;
}

}  // namespace

void Model::save_checkpoint(const std::string& path, int epoch) {
  KILN_CHECK(built(), "Model::save_checkpoint ({}): the model is not built yet", name());
  const random::State rng = random::state();
  std::string shape;
  for (size_t i = 1; i < input_shape().size(); ++i) {
    if (i > 1) shape += ',';
    shape += std::to_string(input_shape()[i]);
  }
  save_safetensors(path, checkpoint_variables(*this),
                   {{"epoch", std::to_string(epoch)},
                    {"rng_seed", std::to_string(rng.seed)},
                    {"rng_offset", std::to_string(rng.offset)},
                    {"input_shape", shape},
                    {"input_dtype", std::string(kiln::name(input_dtype_))}});
}

int Model::load_checkpoint(const std::string& path) {
  if (!built() || (optimizer_ && !optimizer_->built())) {
    // Build from the shape the checkpoint records, so a fresh model can resume.
    SafetensorsFile file = load_safetensors(path);
    auto it = file.metadata.find("input_shape");
    KILN_CHECK(it != file.metadata.end(),
               "Model::load_checkpoint ({}): {} records no input_shape; build the model first",
               name(), path);
    std::vector<int64_t> dims{1};
    const std::string& rest = it->second;
    for (size_t pos = 0; pos < rest.size();) {
      size_t comma = rest.find(',', pos);
      if (comma == std::string::npos) comma = rest.size();
      dims.push_back(
          static_cast<int64_t>(parse_count(rest.substr(pos, comma - pos), path, "input_shape")));
      pos = comma + 1;
    }
    auto dt = file.metadata.find("input_dtype");
    DType dtype = f32;
    for (int i = 0; dt != file.metadata.end() && i < kNumDTypes; ++i)
      if (kiln::name(static_cast<DType>(i)) == dt->second) dtype = static_cast<DType>(i);
    build_for(zeros(Shape(dims), dtype));
  }
  std::map<std::string, std::string> meta = restore_safetensors(path, checkpoint_variables(*this));
  auto get = [&](const char* key) -> uint64_t {
    auto it = meta.find(key);
    KILN_CHECK(it != meta.end(), "Model::load_checkpoint ({}): {} has no '{}' entry", name(), path,
               key);
    return parse_count(it->second, path, key);
  };
  random::set_state({get("rng_seed"), get("rng_offset")});
  return static_cast<int>(get("epoch"));
}

}  // namespace kiln::nn
