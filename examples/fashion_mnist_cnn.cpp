// A small convolutional net on Fashion-MNIST: two 3x3 convolutions with max pooling, then a
// dense head. The train step is traced and compiled (convolutions run through oneDNN).
#include <chrono>
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
      "usage: fashion_mnist_cnn [--epochs 3] [--limit N] [--data DIR] [--out DIR] [--eager] "
      "[--min-accuracy PERCENT]\n");
  try {
    random::seed(args.seed);
    // NHWC images with one channel, scaled to [0, 1].
    const auto [x_train, y_train, x_test, y_test] = kiln_examples::load_data(args, {28, 28, 1});

    nn::Sequential model(
        {nn::Conv2D(32, {3, 3}, {1, 1}, Padding::valid, "relu"), nn::MaxPool2D({2, 2}),
         nn::Conv2D(64, {3, 3}, {1, 1}, Padding::valid, "relu"), nn::MaxPool2D({2, 2}),
         nn::Flatten(), nn::Dropout(0.25), nn::Dense(128, "relu"), nn::Dense(10, "softmax")});
    model.compile(optim::Adam(1e-3), nn::SparseCategoricalCrossentropy(),
                  {nn::SparseCategoricalAccuracy("accuracy")}, {.run_eagerly = args.eager});
    const std::filesystem::path out = std::filesystem::absolute(args.out_dir) / "fashion_mnist_cnn";

    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    model.fit(x_train, y_train,
              {.epochs = args.epochs > 0 ? args.epochs : 3,
               .batch_size = 64,
               .callbacks = {nn::TensorBoard((out / "logs").string())},
               .seed = args.seed});
    const auto t1 = clock::now();
    nn::Logs test = model.evaluate(x_test, y_test, 256);
    const auto t2 = clock::now();
    const double accuracy = 100 * nn::find_log(test, "accuracy").value();
    auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
    std::cout << model.summary();
    std::cout << fmt::format("test accuracy: {:.2f}%\n", accuracy);
    std::cout << fmt::format("wall time: {:.1f} s (training {:.1f} s, evaluation {:.2f} s)\n",
                             secs(t2 - t0), secs(t1 - t0), secs(t2 - t1));
    std::cout << fmt::format("TensorBoard logs: {}\n", (out / "logs").string());
    return accuracy >= args.min_accuracy ? 0 : 1;
  } catch (const Error& e) {
    std::cerr << "fashion_mnist_cnn: " << e.what() << "\n";
    return 1;
  }
}
