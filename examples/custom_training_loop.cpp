// The TF2 custom training loop in C++: a GradientTape inside a kiln::function train step,
// and a hand-written loop over a Dataset (tf.data style: shuffle, batch, prefetch).
#include <iostream>

#include <fmt/format.h>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>
#include <kiln/nn/layers.h>
#include <kiln/nn/losses.h>
#include <kiln/nn/metrics.h>
#include <kiln/nn/model.h>
#include <kiln/nn/optim.h>

#include "fashion_mnist_common.h"

int main(int argc, char** argv) {
  using namespace kiln;
  const auto args = kiln_examples::parse_args(
      argc, argv, "usage: custom_training_loop [--epochs 2] [--limit N] [--data DIR]\n");
  try {
    random::seed(7);
    const auto [x_train, y_train, x_test, y_test] = kiln_examples::load_data(args, {784});
    auto train = data::Dataset::from_tensor_slices({x_train, y_train})
                     .shuffle(7)
                     .batch(64, /*drop_remainder=*/true)
                     .prefetch(2);

    nn::Sequential model({nn::Dense(256, "relu"), nn::Dense(10)});
    model(zeros({1, 784}));  // builds the variables before the step is traced
    optim::Adam opt(optim::CosineDecay(2e-3, 2 * train.cardinality()));
    opt.build(model.trainable_variables());
    nn::SparseCategoricalCrossentropy loss_fn(/*from_logits=*/true);
    nn::Mean train_loss("loss");
    nn::SparseCategoricalAccuracy train_accuracy("accuracy");

    auto train_step = function([&](const Tensor& x, const Tensor& y) {
      GradientTape tape;
      Tensor logits = model(x, /*training=*/true);
      Tensor loss = loss_fn(y, logits);
      std::vector<Variable> vars = model.trainable_variables();
      opt.apply_gradients(tape.gradient(loss, vars), vars);
      train_loss.update(loss);
      train_accuracy.update_state(y, logits);
      return loss;
    });

    const int epochs = args.epochs > 0 ? args.epochs : 2;
    for (int epoch = 0; epoch < epochs; ++epoch) {
      train_loss.reset_state();
      train_accuracy.reset_state();
      for (const data::Element& batch : train.epoch(epoch))
        train_step(batch[0], batch[1]);
      std::cout << fmt::format("epoch {}: loss {:.4f}, accuracy {:.2f}%, learning rate {:.2e}\n",
                               epoch + 1, train_loss.value(), 100 * train_accuracy.value(),
                               opt.learning_rate().item<float>());
    }
    Tensor predicted = argmax(model(x_test), 1);
    const double accuracy =
        100 * mean(cast(equal(predicted, cast(y_test, i64)), f64)).item<double>();
    std::cout << fmt::format("test accuracy: {:.2f}% ({} traces of the train step)\n", accuracy,
                             train_step.tracing_count());
    return accuracy >= args.min_accuracy ? 0 : 1;
  } catch (const Error& e) {
    std::cerr << "custom_training_loop: " << e.what() << "\n";
    return 1;
  }
}
