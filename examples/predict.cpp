// Loads a model saved by model.save(dir) (a saved_function bundle) and classifies
// Fashion-MNIST test images with it. There is no model code here: the bundle holds the graph
// and the weights.
//
//   predict DIR [--data DATA_DIR] [--count N] [--min-accuracy PERCENT]
#include <iostream>
#include <string>

#include <fmt/format.h>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>

int main(int argc, char** argv) {
  using namespace kiln;
  if (argc < 2) {
    std::cerr << "usage: predict MODEL_DIR [--data DIR] [--count N] [--min-accuracy PERCENT]\n";
    return 2;
  }
  const std::string dir = argv[1];
  std::string data_dir;
  int64_t count = 10000;
  double min_accuracy = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--data")
      data_dir = argv[i + 1];
    else if (flag == "--count")
      count = std::stoll(argv[i + 1]);
    else if (flag == "--min-accuracy")
      min_accuracy = std::stod(argv[i + 1]);
  }
  static const char* kClasses[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  try {
    auto model = saved_function::load(dir);
    data::FashionMnist ds = data::load_fashion_mnist(data_dir);
    count = std::min(count, ds.x_test.dim(0));
    Tensor x = cast(ds.x_test.slice(0, 0, count), f32) / 255.0;
    Tensor labels = cast(ds.y_test.slice(0, 0, count), i64);
    Tensor probs = model(x);  // any batch size: the serve signature's batch dim is dynamic
    Tensor predicted = argmax(probs, 1);
    const std::vector<int64_t> p = predicted.to_vector<int64_t>();
    const std::vector<int64_t> y = labels.to_vector<int64_t>();
    for (int64_t i = 0; i < std::min<int64_t>(count, 8); ++i)
      std::cout << fmt::format("image {}: predicted {:<12} (label {})\n", i, kClasses[p[i]],
                               kClasses[y[i]]);
    const double accuracy = 100 * mean(cast(equal(predicted, labels), f64)).item<double>();
    std::cout << fmt::format("accuracy on {} test images: {:.2f}%\n", count, accuracy);
    return accuracy >= min_accuracy ? 0 : 1;
  } catch (const Error& e) {
    std::cerr << "predict: " << e.what() << "\n";
    return 1;
  }
}
