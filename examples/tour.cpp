// A short tour of Kiln's eager API: tensors, broadcasting, reductions, matmul, views,
// random numbers, and the errors a mistake produces.
#include <kiln/kiln.h>

#include <iostream>

int main() {
  using namespace kiln;

  Tensor a = tensor({{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}});
  Tensor b = tensor({10.f, 20.f, 30.f});
  std::cout << "a =\n" << a << "\n";
  std::cout << "a + b (broadcast) =\n" << a + b << "\n";
  std::cout << "a * 2 - 1 =\n" << a * 2 - 1 << "\n";
  std::cout << "sum(a, {1}) = " << sum(a, {1}) << "\n";
  std::cout << "mean(a) = " << mean(a).item<float>() << "\n";
  std::cout << "softmax(a) =\n" << softmax(a) << "\n";
  std::cout << "a @ a^T =\n" << matmul(a, a.transpose()) << "\n";
  std::cout << "a.permute({1,0}).slice(0, 1, 3) (a view) =\n"
            << a.permute({1, 0}).slice(0, 1, 3) << "\n";
  std::cout << "integer division is true division: " << tensor({7, 8}) / 2 << "\n";
  std::cout << "floor_div(-7, 2) = " << floor_div(tensor({-7}), 2) << "\n";

  random::seed(42);
  std::cout << "random::normal({2, 3}) =\n" << random::normal({2, 3}) << "\n";

  Tensor x = tensor({{{{1.f}, {2.f}}, {{3.f}, {4.f}}}});  // NHWC [1,2,2,1]
  Tensor w = ones({2, 2, 1, 1});                          // HWIO
  std::cout << "conv2d(x, ones 2x2) = " << conv2d(x, w) << "\n";

  // The same ops on a GPU, when there is one (the CUDA backend is in the build).
  if (device_count(DeviceType::cuda) > 0) {
    const Device gpu = Device::cuda(0);
    Tensor xg = a.to(gpu);
    Tensor yg = softmax(matmul(xg, a.transpose().to(gpu)), -1);
    Tensor zg = kiln::function([](const Tensor& t) { return tanh(t) * 2.f; })(xg);
    std::cout << "on " << gpu.str() << ": softmax(a a^T) = " << yg << ", tanh(a) * 2 = " << zg
              << ", " << memory::device_stats(gpu).live_bytes << " bytes live\n";
  } else {
    std::cout << "no CUDA device: Tensor::empty({2}, f32, Device::cuda(0)) would raise\n";
  }

  std::cout << "\nMistakes raise kiln::Error with the op, shapes and dtypes:\n";
  try {
    matmul(ones({2, 3}), ones({4, 5}));
  } catch (const Error& e) {
    std::cout << "  " << e.what() << "\n";
  }
  try {
    add(ones({2, 3}), ones({4}));
  } catch (const Error& e) {
    std::cout << "  " << e.what() << "\n";
  }
  try {
    ones({2, 3}).reshape({4});
  } catch (const Error& e) {
    std::cout << "  " << e.what() << "\n";
  }
  try {
    ones({2, 3}).item<float>();
  } catch (const Error& e) {
    std::cout << "  " << e.what() << "\n";
  }
  return 0;
}
