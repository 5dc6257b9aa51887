// Fashion-MNIST as Debian's dataset-fashion-mnist package installs it: four gzip'd IDX files
// in /usr/share/datasets/fashion-mnist.

#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>

namespace kiln::data {
namespace {

constexpr const char* kDefaultDir = "/usr/share/datasets/fashion-mnist";
constexpr const char* kFiles[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

// The file's path: NAME.gz as packaged, else an uncompressed NAME; empty when neither exists.
std::string find(const std::filesystem::path& dir, const std::string& name) {
  std::error_code ec;
  for (const std::string& candidate : {name + ".gz", name})
    if (std::filesystem::is_regular_file(dir / candidate, ec)) return (dir / candidate).string();
  return "";
}

void check_pair(const Tensor& x, const Tensor& y, const std::string& xpath,
                const std::string& ypath) {
  KILN_CHECK(x.dtype() == DType::u8 && x.rank() == 3 && x.dim(1) == 28 && x.dim(2) == 28,
             "load_fashion_mnist: {} holds {}, expected u8[N,28,28] images", xpath, x.type_str());
  KILN_CHECK(y.dtype() == DType::u8 && y.rank() == 1 && y.dim(0) == x.dim(0),
             "load_fashion_mnist: {} holds {}, expected u8[{}] labels to match {}", ypath,
             y.type_str(), x.dim(0), xpath);
  const uint8_t* labels = y.data<uint8_t>();
  for (int64_t i = 0; i < y.numel(); ++i)
    KILN_CHECK(labels[i] < 10, "load_fashion_mnist: {}: label {} at index {} is not in [0, 10)",
               ypath, int(labels[i]), i);
}

}  // namespace

std::string fashion_mnist_dir(const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* env = std::getenv("KILN_DATA_DIR");
  if (env != nullptr && *env != '\0') return env;
  return kDefaultDir;
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  const std::string where = fashion_mnist_dir(dir);
  const char* why = !dir.empty()           ? "the directory passed in"
                    : where != kDefaultDir ? "from $KILN_DATA_DIR"
                                           : "the default";
  std::vector<std::string> paths, missing;
  for (const char* name : kFiles) {
    paths.push_back(find(where, name));
    if (paths.back().empty()) missing.push_back(std::string(name) + ".gz");
  }
  KILN_CHECK(missing.empty(),
             "load_fashion_mnist: {} missing in {} ({}). Install Debian's package "
             "(apt-get install dataset-fashion-mnist, which puts the files in {}) or set "
             "KILN_DATA_DIR to a directory holding {}",
             fmt::join(missing, ", "), where, why, kDefaultDir,
             "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
             "and t10k-labels-idx1-ubyte.gz");

  // Inflating the 26 MB training images dominates: do it beside the other three.
  auto train_images = std::async(std::launch::async, [&] { return read_idx(paths[0]); });
  FashionMnist d;
  d.y_train = read_idx(paths[1]);
  d.x_test = read_idx(paths[2]);
  d.y_test = read_idx(paths[3]);
  d.x_train = train_images.get();
  check_pair(d.x_train, d.y_train, paths[0], paths[1]);
  check_pair(d.x_test, d.y_test, paths[2], paths[3]);
  return d;
}

}  // namespace kiln::data
