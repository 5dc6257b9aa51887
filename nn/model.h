#pragma once

// Model: a Module that trains (Keras's Model). compile(optimizer, loss, metrics), then
// fit / evaluate / predict. The train, test and predict steps are traced through
// kiln::function (compiled by the JIT) unless compile's run_eagerly is set.
//
//   nn::Sequential model({nn::Flatten(), nn::Dense(128, "relu"), nn::Dropout(0.2),
//                         nn::Dense(10, "softmax")});
//   model.compile(optim::Adam(1e-3), nn::SparseCategoricalCrossentropy(),
//                 {nn::SparseCategoricalAccuracy("accuracy")});
//   model.fit(x, y, {.epochs = 5, .batch_size = 32});
//
// A Model is used in place: its compiled steps refer to it, so it is neither copied nor
// moved once compiled.

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <kiln/nn/data.h>
#include <kiln/nn/handle.h>
#include <kiln/nn/losses.h>
#include <kiln/nn/metrics.h>
#include <kiln/nn/module.h>
#include <kiln/nn/optim.h>
#include <kiln/nn/progress.h>
#include <kiln/nn/summary.h>
#include <kiln/tracer/function.h>

namespace kiln::nn {

class Model;

// Logs (nn/progress.h): metric values by name, in the order Keras prints them ("loss"
// first, then the metrics; "val_"-prefixed ones after).
std::optional<double> find_log(const Logs& logs, const std::string& name);

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Model& model) {}
  virtual void on_epoch_begin(Model& model, int epoch) {}
  // step: batches done since training began (across epochs), counted from 1. Called when
  // wants_batch_logs(step) says so (reading the metrics every step costs a little).
  virtual void on_train_batch_end(Model& model, int64_t step, const Logs& logs) {}
  virtual bool wants_batch_logs(int64_t step) const { return true; }
  virtual void on_epoch_end(Model& model, int epoch, const Logs& logs) {}
  virtual void on_train_end(Model& model) {}
};

struct FitOptions {
  int epochs = 1;
  int64_t batch_size = 32;  // for x/y tensors; a Dataset comes batched
  std::optional<std::pair<Tensor, Tensor>> validation_data;
  std::vector<Ref<Callback>> callbacks;
  bool shuffle = true;          // x/y tensors: a new order each epoch
  uint64_t seed = 0;            // the shuffle's seed (the order of epoch e depends on seed and e)
  int verbose = 1;              // 0 silent, 1 a progress bar (one line per epoch off a terminal)
  int initial_epoch = 0;        // resume: epochs [initial_epoch, epochs) run
  std::ostream* out = nullptr;  // where progress goes; std::cout when null
};

struct History {
  std::vector<int> epochs;
  std::map<std::string, std::vector<double>> history;  // "loss", "accuracy", "val_loss", ...
};

struct CompileOptions {
  bool run_eagerly = false;  // the Keras option: run the steps eagerly instead of traced
};

class Model : public Module {
 public:
  explicit Model(std::string name = "model");
  // Moving is for models not yet compiled (a Sequential nested as a layer); a compiled
  // model's steps refer to it, so moving one is a kiln::Error.
  Model(Model&& other);
  Model& operator=(Model&&) = delete;

  void compile(Ref<optim::Optimizer> optimizer, Ref<Loss> loss,
               std::vector<Ref<Metric>> metrics = {}, CompileOptions options = {});
  bool compiled() const { return optimizer_ != nullptr; }

  History fit(const Tensor& x, const Tensor& y, FitOptions options = {});
  // The dataset yields (x, y) batches.
  History fit(const data::Dataset& train, FitOptions options = {});
  Logs evaluate(const Tensor& x, const Tensor& y, int64_t batch_size = 32);
  Logs evaluate(const data::Dataset& data);
  // The model's output for x, in batches, concatenated.
  Tensor predict(const Tensor& x, int64_t batch_size = 32);

  // Runs one optimizer step on a batch and returns the running logs of the epoch so far.
  Logs train_on_batch(const Tensor& x, const Tensor& y);
  // Clears the metrics (and the loss tracker).
  void reset_metrics();
  Logs metric_logs() const;

  // A saved_function bundle (see tracer/saved_function.h) whose "serve" signature maps
  // inputs [batch, ...] (any batch) to the model's outputs in inference mode.
  void save(const std::string& dir);

  // Every variable (the model's, the optimizer's) and the RNG state and epoch, in a
  // .safetensors file written atomically. Restoring and fitting with initial_epoch = the
  // saved epoch reproduces an uninterrupted run exactly.
  void save_checkpoint(const std::string& path, int epoch);
  int load_checkpoint(const std::string& path);  // returns the saved epoch

  optim::Optimizer& optimizer() const;
  const Loss& loss() const;
  const std::vector<Ref<Metric>>& metrics() const { return metrics_; }
  bool stop_training = false;  // a callback may set it to end fit after the current epoch

  // The logits the loss takes in place of the output when the model ends in a softmax that
  // the loss can fold in (null otherwise). Sequential overrides it.
  virtual std::optional<Tensor> call_logits(const Tensor& x, bool training) { return {}; }

 private:
  using Step = std::function<std::vector<Tensor>(const Tensor&, const Tensor&)>;
  std::vector<Tensor> train_step(const Tensor& x, const Tensor& y);
  void run_train_step(const Tensor& x, const Tensor& y);  // traced or eager, per compile
  std::vector<Tensor> test_step(const Tensor& x, const Tensor& y);
  // The output (for metrics) and the loss of one batch.
  std::pair<Tensor, Tensor> forward_loss(const Tensor& x, const Tensor& y, bool training);
  // Builds the model (batch dim unknown) and the optimizer's slots for inputs like x.
  void build_for(const Tensor& x);

  std::shared_ptr<optim::Optimizer> optimizer_;
  std::shared_ptr<Loss> loss_, logits_loss_;
  std::vector<Ref<Metric>> metrics_;
  std::shared_ptr<Mean> loss_tracker_;
  CompileOptions compile_options_;
  std::optional<Function<Step>> train_fn_, test_fn_;
  std::optional<Function<std::function<Tensor(const Tensor&)>>> predict_fn_;
  int64_t steps_done_ = 0;
  DType input_dtype_ = f32;
};

// Layers run in order; a layer list mixes kinds through Ref<Module>.
class Sequential : public Model {
 public:
  Sequential(std::vector<Ref<Module>> layers = {}, std::string name = "sequential");
  void add(Ref<Module> layer);
  const std::vector<Ref<Module>>& layers() const { return layers_; }

  Tensor call(const Tensor& x, bool training) override;
  void build(const Shape& input_shape) override;
  Shape output_shape(const Shape& input_shape) const override;
  std::optional<Tensor> call_logits(const Tensor& x, bool training) override;
  // One line per layer: name, kind, output shape, parameter count (Keras's model.summary()).
  std::string summary() const;

 private:
  std::vector<Ref<Module>> layers_;
};

// TensorBoard logs as Keras writes them: <log_dir>/train and <log_dir>/validation, scalars
// "epoch_<metric>" per epoch, "batch_<metric>" every update_freq steps (0: epochs only), and
// a histogram of every variable each histogram_freq epochs (0: never).
class TensorBoard : public Callback {
 public:
  explicit TensorBoard(std::string log_dir, int64_t update_freq = 0, int histogram_freq = 0);
  void on_train_begin(Model& model) override;
  void on_train_batch_end(Model& model, int64_t step, const Logs& logs) override;
  bool wants_batch_logs(int64_t step) const override {
    return update_freq_ > 0 && step % update_freq_ == 0;
  }
  void on_epoch_end(Model& model, int epoch, const Logs& logs) override;
  void on_train_end(Model& model) override;
  const std::string& log_dir() const { return log_dir_; }

 private:
  std::string log_dir_;
  int64_t update_freq_;
  int histogram_freq_;
  std::unique_ptr<summary::Writer> train_, validation_;
};

// Saves a checkpoint at the end of every epoch (path may contain "{epoch}").
class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(std::string path);
  bool wants_batch_logs(int64_t step) const override { return false; }
  void on_epoch_end(Model& model, int epoch, const Logs& logs) override;

 private:
  std::string path_;
};

}  // namespace kiln::nn
