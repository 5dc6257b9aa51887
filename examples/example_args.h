#pragma once

// Command-line flags shared by the Fashion-MNIST examples: --epochs N, --limit N (train on
// the first N examples), --data DIR, --out DIR, --eager, --seed S, --min-accuracy P (exit 1
// below it).

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

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

}  // namespace kiln_examples
