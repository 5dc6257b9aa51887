#include <filesystem>

#include <kiln/core/error.h>
#include <kiln/nn/model.h>

namespace kiln::nn {

TensorBoard::TensorBoard(std::string log_dir, int64_t update_freq, int histogram_freq)
    : log_dir_(std::move(log_dir)), update_freq_(update_freq), histogram_freq_(histogram_freq) {
  KILN_CHECK(update_freq_ >= 0 && histogram_freq_ >= 0,
             "TensorBoard: update_freq and histogram_freq must be >= 0, got {} and {}",
             update_freq_, histogram_freq_);
}

void TensorBoard::on_train_begin(Model& model) {
  if (!train_)
    train_ =
        std::make_unique<summary::Writer>((std::filesystem::path(log_dir_) / "train").string());
}

void TensorBoard::on_train_batch_end(Model& model, int64_t step, const Logs& logs) {
  if (!wants_batch_logs(step)) return;
  for (const auto& [name, value] : logs)
    train_->scalar("batch_" + name, value, step);
}

void TensorBoard::on_epoch_end(Model& model, int epoch, const Logs& logs) {
  for (const auto& [name, value] : logs) {
    const bool val = name.rfind("val_", 0) == 0;
    // The validation writer (and its file) appears with the first validation metric.
    if (val && !validation_)
      validation_ = std::make_unique<summary::Writer>(
          (std::filesystem::path(log_dir_) / "validation").string());
    (val ? validation_ : train_)->scalar("epoch_" + (val ? name.substr(4) : name), value, epoch);
  }
  if (histogram_freq_ > 0 && (epoch + 1) % histogram_freq_ == 0)
    for (const Variable& v : model.variables())
      train_->histogram(v.name(), v.value(), epoch);
  train_->flush();
  if (validation_) validation_->flush();
}

void TensorBoard::on_train_end(Model& model) {
  if (train_) train_->flush();
  if (validation_) validation_->flush();
}

ModelCheckpoint::ModelCheckpoint(std::string path) : path_(std::move(path)) {}

void ModelCheckpoint::on_epoch_end(Model& model, int epoch, const Logs& logs) {
  std::string path = path_;
  const std::string key = "{epoch}";
  if (auto pos = path.find(key); pos != std::string::npos)
    path.replace(pos, key.size(), std::to_string(epoch + 1));
  // The saved epoch is the number of epochs done: fit(initial_epoch = it) resumes after it.
  model.save_checkpoint(path, epoch + 1);
}

}  // namespace kiln::nn
