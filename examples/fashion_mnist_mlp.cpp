// The main job: a multilayer perceptron trained on Fashion-MNIST with Kiln's Keras-style
// toolkit. The train step is traced by kiln::function and compiled by the JIT (--eager runs
// it op by op instead). Prints the progress, the test accuracy and the wall time, and says
// where the TensorBoard logs and the saved model went.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>
#include <kiln/nn/layers.h>
#include <kiln/nn/model.h>

#include "fashion_mnist_common.h"

int main(int argc, char** argv) {
  using namespace kiln;
  const auto args = kiln_examples::parse_args(
      argc, argv,
      "usage: fashion_mnist_mlp [--epochs 5] [--limit N] [--data DIR] [--out DIR] [--eager] "
      "[--min-accuracy PERCENT]\n");
  try {
    random::seed(args.seed);
    // Pixels scaled to [0, 1]; labels as i32 class ids.
    const auto [x_train, y_train, x_test, y_test] = kiln_examples::load_data(args, {28, 28});

    nn::Sequential model(
        {nn::Flatten(), nn::Dense(128, "relu"), nn::Dropout(0.2), nn::Dense(10, "softmax")});
    model.compile(optim::Adam(1e-3), nn::SparseCategoricalCrossentropy(),
                  {nn::SparseCategoricalAccuracy("accuracy")}, {.run_eagerly = args.eager});

    const std::filesystem::path out = std::filesystem::absolute(args.out_dir) / "fashion_mnist_mlp";
    const std::string logs = (out / "logs").string();
    std::cout << fmt::format("Fashion-MNIST: {} training and {} test images; {} train step\n",
                             x_train.dim(0), x_test.dim(0),
                             args.eager ? "eager" : "traced and compiled");

    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    model.fit(x_train, y_train,
              {.epochs = args.epochs > 0 ? args.epochs : 5,
               .batch_size = 32,
               .callbacks = {nn::TensorBoard(logs, /*update_freq=*/100)},
               .seed = args.seed});
    const auto t1 = clock::now();
    nn::Logs test = model.evaluate(x_test, y_test, 256);
    const auto t2 = clock::now();
    const double accuracy = 100 * nn::find_log(test, "accuracy").value();

    auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
    std::cout << fmt::format("test accuracy: {:.2f}%\n", accuracy);
    std::cout << fmt::format("test loss: {:.4f}\n", nn::find_log(test, "loss").value());
    std::cout << fmt::format("wall time: {:.1f} s (training {:.1f} s, evaluation {:.2f} s)\n",
                             secs(t2 - t0), secs(t1 - t0), secs(t2 - t1));

    const std::string saved = (out / "model").string();
    model.save(saved);
    std::cout << fmt::format("TensorBoard logs: {}  (tensorboard --logdir {})\n", logs, logs);
    std::cout << fmt::format("saved model: {}  (predict {} classifies test images with it)\n",
                             saved, saved);
    if (accuracy < args.min_accuracy) {
      std::cerr << fmt::format("test accuracy {:.2f}% is below the required {:.2f}%\n", accuracy,
                               args.min_accuracy);
      return 1;
    }
  } catch (const Error& e) {
    std::cerr << "fashion_mnist_mlp: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
