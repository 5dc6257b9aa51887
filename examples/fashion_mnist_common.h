#pragma once

// What the Fashion-MNIST examples share: their command-line flags and the data, scaled.
// Flags: --epochs N, --limit N (train on
// the first N examples), --data DIR, --out DIR, --eager, --seed S, --min-accuracy P (exit 1
// below it).

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>

namespace kiln_examples {

struct Args {
  int epochs = 0;  // 0: the example's own default
  int64_t limit = 0;
  std::string data_dir;
  std::string out_dir = "kiln_runs";
  bool eager = false;
  uint64_t seed = 42;       // initialization, dropout and the data order
  double min_accuracy = 0;  // percent
};

inline Args parse_args(int argc, char** argv, const char* usage) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << flag << " needs a value\n" << usage;
        std::exit(2);
      }
      return argv[++i];
    };
    if (flag == "--epochs") {
      a.epochs = std::stoi(value());
    } else if (flag == "--limit") {
      a.limit = std::stoll(value());
    } else if (flag == "--data") {
      a.data_dir = value();
    } else if (flag == "--out") {
      a.out_dir = value();
    } else if (flag == "--eager") {
      a.eager = true;
    } else if (flag == "--seed") {
      a.seed = std::stoull(value());
    } else if (flag == "--min-accuracy") {
      a.min_accuracy = std::stod(value());
    } else {
      std::cerr << "unknown flag " << flag << "\n" << usage;
      std::exit(2);
    }
  }
  return a;
}

struct Data {
  kiln::Tensor x_train, y_train, x_test, y_test;
};

// Fashion-MNIST with pixels scaled to [0, 1], each image reshaped to `image` ({28, 28},
// {784} or NHWC {28, 28, 1}), labels as i32 class ids, the training set cut to --limit.
inline Data load_data(const Args& a, const kiln::Shape& image) {
  using namespace kiln;
  data::FashionMnist ds = data::load_fashion_mnist(a.data_dir);
  auto images = [&](const Tensor& x) {
    Shape s{-1};
    for (int64_t d : image)
      s.push_back(d);
    return reshape(cast(x, f32) / 255.0, s);
  };
  Data d{images(ds.x_train), cast(ds.y_train, i32), images(ds.x_test), cast(ds.y_test, i32)};
  if (a.limit > 0 && a.limit < d.x_train.dim(0)) {
    d.x_train = d.x_train.slice(0, 0, a.limit);
    d.y_train = d.y_train.slice(0, 0, a.limit);
  }
  return d;
}

}  // namespace kiln_examples
