// Loads a saved function with no model code in this program and checks its output.
//
//   saved_model_loader <dir> [batch]
//
// Runs the first signature on ones of its input shape (unknown dims take `batch`, default
// 3) and compares the result with <dir>/expected.txt, which test_saved_function writes:
//   shape 3 1
//   values 0.1 0.2 0.3
// Exits 0 when they agree (rtol 1e-6), 1 otherwise, 2 on a usage or load error.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <kiln/kiln.h>
#include <kiln/tracer/saved_function.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <saved function dir> [batch]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 3;
  try {
    const kiln::saved_function::Loaded m = kiln::saved_function::load(dir);
    std::printf("loaded '%s' from %s: %zu signature(s), %zu variable(s)\n", m.name().c_str(),
                dir.c_str(), m.signatures().size(), m.variables().size());
    const auto& sig = m.signatures().at(0);
    std::printf("signature 0: %s\n", sig.str().c_str());
    std::vector<kiln::Tensor> inputs;
    for (const kiln::TensorType& t : sig.inputs) {
      kiln::Shape s = t.shape;
      for (auto& d : s.dims())
        if (d < 0) d = batch;
      inputs.push_back(kiln::ones(s, t.dtype));
    }
    const std::vector<kiln::Tensor> out = m(inputs);
    if (out.empty()) {
      std::fprintf(stderr, "the function returned no results\n");
      return 1;
    }
    const kiln::Tensor y = out[0];
    std::printf("result 0: %s\n", y.type_str().c_str());

    std::ifstream in(dir + "/expected.txt");
    if (!in) {
      std::fprintf(stderr, "cannot open %s/expected.txt\n", dir.c_str());
      return 2;
    }
    std::vector<int64_t> shape;
    std::vector<double> values;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string key;
      ls >> key;
      if (key == "shape") {
        for (int64_t d; ls >> d;)
          shape.push_back(d);
      } else if (key == "values") {
        for (double v; ls >> v;)
          values.push_back(v);
      }
    }
    if (y.shape() != kiln::Shape(shape)) {
      std::fprintf(stderr, "shape mismatch: got %s, expected %s\n", y.shape().str().c_str(),
                   kiln::Shape(shape).str().c_str());
      return 1;
    }
    const std::vector<double> got = y.to_vector<double>();
    if (got.size() != values.size()) {
      std::fprintf(stderr, "expected.txt has %zu values for %zu elements\n", values.size(),
                   got.size());
      return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const bool ok = std::abs(got[i] - values[i]) <= 1e-6 * std::abs(values[i]) + 1e-7;
      std::printf("  [%zu] %.9g (expected %.9g)%s\n", i, got[i], values[i], ok ? "" : "  MISMATCH");
      bad += ok ? 0 : 1;
    }
    if (bad) {
      std::fprintf(stderr, "%d of %zu values differ\n", bad, got.size());
      return 1;
    }
    std::printf("ok\n");
    return 0;
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
