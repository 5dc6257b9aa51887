// nn/data.h: the IDX reader (raw and gzip, every type code, every way a file can be bad),
// the Fashion-MNIST loader, and the Dataset pipeline.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>
#include "testing.h"

using kiln::Tensor;
using kiln::data::Dataset;
using kiln::data::Element;
using kiln::testing::check_error;
using Bytes = std::vector<uint8_t>;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("kiln_test_nn_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void put_be(Bytes& b, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i)
    b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// An IDX file: magic 0x0000TTNN, big-endian u32 dims, then `payload` as given.
Bytes idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    put_be(b, d, 4);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// Big-endian encodings of values, one per IDX type code.
template <class T>
Bytes be_payload(const std::vector<T>& values, int width) {
  Bytes b;
  for (T v : values) {
    uint64_t bits = 0;
    if constexpr (std::is_same_v<T, float>) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      bits = u;
    } else if constexpr (std::is_same_v<T, double>) {
      std::memcpy(&bits, &v, 8);
    } else {
      bits = static_cast<uint64_t>(static_cast<int64_t>(v));
    }
    put_be(b, bits, width);
  }
  return b;
}

Bytes gzip(const Bytes& in) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::vector<int64_t> ints(const Tensor& t) {
  return t.to_vector<int64_t>();
}

// The elements of one pass, each component flattened to int64 values.
std::vector<std::vector<std::vector<int64_t>>> collect(const Dataset::Epoch& epoch) {
  std::vector<std::vector<std::vector<int64_t>>> out;
  for (const Element& e : epoch) {
    out.emplace_back();
    for (const Tensor& t : e)
      out.back().push_back(ints(t));
  }
  return out;
}

// Component 0's scalar values over one pass of a dataset of scalar elements.
std::vector<int64_t> order_of(const Dataset::Epoch& epoch) {
  std::vector<int64_t> out;
  for (const Element& e : epoch)
    out.push_back(e[0].item<int64_t>());
  return out;
}

// Sets (or, with nullptr, unsets) an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  std::string old;
  bool had;
  ScopedEnv(const char* n, const char* value) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    if (value)
      ::setenv(n, value, 1);
    else
      ::unsetenv(n);
  }
  ~ScopedEnv() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

}  // namespace

// ---- IDX ---------------------------------------------------------------------------------

TEST_CASE("read_idx: every type code round-trips, raw and gzip'd") {
  TempDir dir;
  struct Case {
    const char* name;
    uint8_t code;
    std::vector<uint32_t> dims;
    Bytes payload;
    kiln::DType dtype;
    std::vector<double> expected;
  };
  const std::vector<double> i8v = {-128, -1, 0, 1, 127, 5};
  const std::vector<double> i16v = {-32768, -300, 0, 300, 32767, 1};
  const std::vector<double> i32v = {-2147483648.0, -70000, 0, 70000, 2147483647.0, 7};
  const std::vector<double> f32v = {-0.5, 0.0, 1e30, -3.25, 0.1f, 65504};
  const std::vector<double> f64v = {M_PI, -1e-300, 0.0, 1e300, -2.5, 1.0 / 3};
  std::vector<Case> cases = {
      {"u8", 0x08, {2, 3}, {0, 1, 127, 128, 200, 255}, kiln::u8, {0, 1, 127, 128, 200, 255}},
      {"i8", 0x09, {6}, be_payload(std::vector<int>(i8v.begin(), i8v.end()), 1), kiln::i32, i8v},
      {"i16",
       0x0B,
       {3, 2},
       be_payload(std::vector<int>(i16v.begin(), i16v.end()), 2),
       kiln::i32,
       i16v},
      {"i32",
       0x0C,
       {1, 2, 3},
       be_payload(std::vector<int64_t>(i32v.begin(), i32v.end()), 4),
       kiln::i32,
       i32v},
      {"f32",
       0x0D,
       {2, 1, 3},
       be_payload(std::vector<float>(f32v.begin(), f32v.end()), 4),
       kiln::f32,
       {-0.5, 0.0, 1e30f, -3.25, 0.1f, 65504}},
      {"f64", 0x0E, {6, 1}, be_payload(f64v, 8), kiln::f64, f64v},
      {"scalar", 0x0C, {}, be_payload(std::vector<int>{-42}, 4), kiln::i32, {-42}},
      {"empty", 0x0D, {0, 5}, {}, kiln::f32, {}},
  };
  for (const Case& c : cases) {
    for (bool gz : {false, true}) {
      INFO(c.name << (gz ? " gzip" : " raw"));
      const Bytes raw = idx_bytes(c.code, c.dims, c.payload);
      const std::string path = dir.file(std::string(c.name) + (gz ? ".gz" : ""));
      write_bytes(path, gz ? gzip(raw) : raw);
      const Tensor t = kiln::data::read_idx(path);
      CHECK(t.dtype() == c.dtype);
      CHECK(t.shape() == kiln::Shape(std::vector<int64_t>(c.dims.begin(), c.dims.end())));
      kiln::testing::check_close(t, c.expected, 0, 0);  // exactly
    }
  }
}

TEST_CASE("read_idx: a large gzip'd file and several gzip members") {
  TempDir dir;
  // 300 KB inflates past the reader's first buffer, several times over.
  Bytes payload(300 * 1000);
  for (size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<uint8_t>((i * 7919) >> 3);
  const Bytes raw = idx_bytes(0x08, {300, 1000}, payload);
  write_bytes(dir.file("big.gz"), gzip(raw));
  const Tensor big = kiln::data::read_idx(dir.file("big.gz"));
  REQUIRE(big.shape() == kiln::Shape({300, 1000}));
  CHECK(std::memcmp(big.data<uint8_t>(), payload.data(), payload.size()) == 0);

  // gzip -c a >f; gzip -c b >>f makes one valid file of two members.
  Bytes two = gzip(Bytes(raw.begin(), raw.begin() + 1000));
  const Bytes rest = gzip(Bytes(raw.begin() + 1000, raw.end()));
  two.insert(two.end(), rest.begin(), rest.end());
  write_bytes(dir.file("two.gz"), two);
  const Tensor t = kiln::data::read_idx(dir.file("two.gz"));
  REQUIRE(t.shape() == kiln::Shape({300, 1000}));
  CHECK(std::memcmp(t.data<uint8_t>(), payload.data(), payload.size()) == 0);
}

TEST_CASE("read_idx: bad files raise errors naming the file and the fault") {
  TempDir dir;
  const Bytes good = idx_bytes(0x0C, {2, 3}, be_payload(std::vector<int>{1, 2, 3, 4, 5, 6}, 4));
  auto check_file = [&](const std::string& name, const Bytes& bytes,
                        std::vector<std::string> fragments) {
    INFO(name);
    const std::string path = dir.file(name);
    write_bytes(path, bytes);
    fragments.push_back("read_idx");
    fragments.push_back(path);
    check_error([&] { kiln::data::read_idx(path); }, fragments);
  };

  check_error([&] { kiln::data::read_idx(dir.file("nope.idx")); },
              {"read_idx", "cannot open", "nope.idx", "No such file"});

  SECTION("bad magic") {
    check_file("text", {'h', 'e', 'l', 'l', 'o', '\n'}, {"bad magic number 0x68656C6C"});
    Bytes b = good;
    b[1] = 1;  // the two leading bytes must be zero
    check_file("nonzero", b, {"bad magic number 0x00010C02"});
    b = good;
    b[2] = 0x0A;  // not a type code
    check_file("type", b, {"bad magic number 0x00000A02", "0E (f64)"});
    check_file("short", {0, 0}, {"2 bytes, too short for the magic number"});
  }
  SECTION("wrong sizes") {
    Bytes b = good;
    b.push_back(0);
    check_file("extra", b, {"wrong size", "dims [2,3] of i32 need 24 bytes", "has 25", "1 extra"});
    b = good;
    b.resize(b.size() - 1);
    check_file("short_data", b, {"truncated", "dims [2,3] of i32 need 24 bytes", "has 23"});
    b = good;
    b.resize(4 + 4 + 2);  // the second dim cut short
    check_file("short_header", b, {"truncated header", "2 dims need 12 bytes", "has 10"});
    // The checks apply to the inflated bytes of a gzip'd file alike.
    b = good;
    b.resize(b.size() - 4);
    check_file("short_data.gz", gzip(b), {"truncated", "IDX data (inflated)", "has 20"});
  }
  SECTION("truncated gzip") {
    const Bytes gz = gzip(good);
    check_file("half.gz", Bytes(gz.begin(), gz.begin() + gz.size() / 2),
               {"truncated gzip file", "before the gzip trailer"});
    check_file("notrailer.gz", Bytes(gz.begin(), gz.end() - 8), {"truncated gzip file"});
    check_file("magic_only.gz", {0x1f, 0x8b}, {"truncated gzip file"});
  }
  SECTION("corrupt gzip") {
    Bytes gz = gzip(good);
    gz[gz.size() - 8] ^= 0x01;  // the CRC-32
    check_file("crc.gz", gz, {"corrupt gzip data", "incorrect data check"});
    gz = gzip(good);
    gz[gz.size() - 3] ^= 0x01;  // ISIZE
    check_file("length.gz", gz, {"corrupt gzip data", "incorrect length check"});
    gz = gzip(good);
    gz[10] = 0xff;  // the first deflate block header: an invalid block type
    check_file("block.gz", gz, {"corrupt gzip data"});
    gz = gzip(good);
    gz.push_back('x');
    gz.push_back('y');
    check_file("trailing.gz", gz, {"2 bytes of trailing garbage"});
  }
}

// ---- Fashion-MNIST -----------------------------------------------------------------------

TEST_CASE("fashion_mnist_dir: argument, then KILN_DATA_DIR, then the package's directory") {
  {
    ScopedEnv env("KILN_DATA_DIR", nullptr);
    CHECK(kiln::data::fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");
    CHECK(kiln::data::fashion_mnist_dir("/x") == "/x");
  }
  {
    ScopedEnv env("KILN_DATA_DIR", "");
    CHECK(kiln::data::fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");
  }
  ScopedEnv env("KILN_DATA_DIR", "/data/fm");
  CHECK(kiln::data::fashion_mnist_dir() == "/data/fm");
  CHECK(kiln::data::fashion_mnist_dir("/x") == "/x");
}

TEST_CASE("load_fashion_mnist: missing files say where it looked and what to do") {
  TempDir dir;
  write_bytes(dir.file("train-labels-idx1-ubyte.gz"), gzip(idx_bytes(0x08, {1}, {0})));
  ScopedEnv env("KILN_DATA_DIR", dir.path.c_str());
  check_error([] { kiln::data::load_fashion_mnist(); },
              {"load_fashion_mnist",
               "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz, "
               "t10k-labels-idx1-ubyte.gz missing in",
               dir.path.string(), "KILN_DATA_DIR", "apt-get install dataset-fashion-mnist"});
  check_error([] { kiln::data::load_fashion_mnist("/nonexistent/kiln"); },
              {"missing in /nonexistent/kiln (the directory passed in)"});
}

TEST_CASE("load_fashion_mnist: a small stand-in set through KILN_DATA_DIR") {
  TempDir dir;
  // Images i of n: every pixel is i * 10 + split; raw and gzip'd files both work.
  auto images = [](uint32_t n, uint8_t split) {
    Bytes p;
    for (uint32_t i = 0; i < n; ++i)
      p.insert(p.end(), 28 * 28, static_cast<uint8_t>(i * 10 + split));
    return idx_bytes(0x08, {n, 28, 28}, p);
  };
  write_bytes(dir.file("train-images-idx3-ubyte.gz"), gzip(images(3, 1)));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_bytes(0x08, {3}, {9, 0, 4}));
  write_bytes(dir.file("t10k-images-idx3-ubyte"), images(2, 2));
  write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), gzip(idx_bytes(0x08, {2}, {1, 2})));
  ScopedEnv env("KILN_DATA_DIR", dir.path.c_str());
  const auto d = kiln::data::load_fashion_mnist();
  CHECK(d.x_train.type_str() == "u8[3,28,28]");
  CHECK(d.x_test.type_str() == "u8[2,28,28]");
  CHECK(ints(d.y_train) == std::vector<int64_t>{9, 0, 4});
  CHECK(ints(d.y_test) == std::vector<int64_t>{1, 2});
  CHECK(d.x_train.to_vector<int64_t>()[2 * 784 + 5] == 21);
  CHECK(d.x_test.to_vector<int64_t>()[783] == 2);

  write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), gzip(idx_bytes(0x08, {2}, {1, 10})));
  check_error([] { kiln::data::load_fashion_mnist(); },
              {"t10k-labels-idx1-ubyte.gz", "label 10 at index 1 is not in [0, 10)"});
  write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), gzip(idx_bytes(0x08, {3}, {1, 2, 3})));
  check_error([] { kiln::data::load_fashion_mnist(); },
              {"t10k-labels-idx1-ubyte.gz holds u8[3], expected u8[2] labels"});
  write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_bytes(0x08, {2, 4}, Bytes(8)));
  check_error([] { kiln::data::load_fashion_mnist(); },
              {"t10k-images-idx3-ubyte holds u8[2,4], expected u8[N,28,28] images"});
}

TEST_CASE("load_fashion_mnist: the installed dataset") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) {
    WARN("SKIPPED: " << dir
                     << " is missing (apt-get install dataset-fashion-mnist to run this test)");
    return;
  }
  const auto d = kiln::data::load_fashion_mnist(dir);
  CHECK(d.x_train.type_str() == "u8[60000,28,28]");
  CHECK(d.y_train.type_str() == "u8[60000]");
  CHECK(d.x_test.type_str() == "u8[10000,28,28]");
  CHECK(d.y_test.type_str() == "u8[10000]");

  // The label files decoded independently, by zlib's gz reader, past the 8-byte header.
  for (auto [name, labels] : {std::pair{"train-labels-idx1-ubyte.gz", d.y_train},
                              std::pair{"t10k-labels-idx1-ubyte.gz", d.y_test}}) {
    gzFile f = gzopen((dir + "/" + name).c_str(), "rb");
    REQUIRE(f != nullptr);
    Bytes raw(static_cast<size_t>(labels.numel()) + 9);
    const int got = gzread(f, raw.data(), static_cast<unsigned>(raw.size()));
    gzclose(f);
    REQUIRE(got == labels.numel() + 8);
    CHECK(std::memcmp(raw.data() + 8, labels.data<uint8_t>(), labels.numel()) == 0);
  }

  // Balanced classes: 6000 of each in train, 1000 in test.
  std::vector<int> train_counts(10), test_counts(10);
  for (int64_t y : ints(d.y_train))
    ++train_counts.at(y);
  for (int64_t y : ints(d.y_test))
    ++test_counts.at(y);
  CHECK(train_counts == std::vector<int>(10, 6000));
  CHECK(test_counts == std::vector<int>(10, 1000));
  // The first labels (ankle boot, T-shirt, T-shirt, dress, ... as published).
  CHECK(ints(d.y_train.slice(0, 0, 10)) == std::vector<int64_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
  CHECK(ints(d.y_test.slice(0, 0, 10)) == std::vector<int64_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
  // The training set's published pixel mean, 0.2860 of 255.
  const uint8_t* px = d.x_train.data<uint8_t>();
  double sum = 0;
  for (int64_t i = 0; i < d.x_train.numel(); ++i)
    sum += px[i];
  CHECK(std::abs(sum / d.x_train.numel() / 255.0 - 0.2860) < 5e-4);
}

// ---- Dataset -----------------------------------------------------------------------------

namespace {

// x: i64 [n, 2] with row i = {2i, 2i+1}; y: i32 [n] = 100 + i.
Dataset pairs(int64_t n) {
  std::vector<int64_t> x(static_cast<size_t>(2 * n));
  std::iota(x.begin(), x.end(), 0);
  std::vector<int32_t> y(static_cast<size_t>(n));
  std::iota(y.begin(), y.end(), 100);
  return Dataset::from_tensor_slices(
      {kiln::from_vector(x, kiln::Shape({n, 2})), kiln::from_vector(y, kiln::Shape({n}))});
}

Dataset range(int64_t n) {
  return Dataset::from_tensor_slices({kiln::arange(0, n, 1, kiln::i64)});
}

Element identity(const Element& e) {
  return e;
}

}  // namespace

TEST_CASE("Dataset::from_tensor_slices slices along dim 0") {
  const Dataset ds = pairs(3);
  CHECK(ds.cardinality() == 3);
  std::vector<std::vector<std::vector<int64_t>>> want = {
      {{0, 1}, {100}}, {{2, 3}, {101}}, {{4, 5}, {102}}};
  CHECK(collect(ds.epoch(0)) == want);
  for (const Element& e : ds.epoch(0)) {
    CHECK(e[0].type_str() == "i64[2]");
    CHECK(e[1].type_str() == "i32[]");
  }
  // A strided view is read in its logical order.
  const Tensor m = kiln::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, kiln::Shape({2, 3}));
  const auto cols = collect(Dataset::from_tensor_slices({m.transpose()}).epoch(0));
  CHECK(cols == std::vector<std::vector<std::vector<int64_t>>>{{{1, 4}}, {{2, 5}}, {{3, 6}}});
  // No elements at all is a valid, empty epoch.
  const Dataset none = Dataset::from_tensor_slices({kiln::zeros({0, 4})});
  CHECK(none.cardinality() == 0);
  CHECK(collect(none.batch(3).epoch(0)).empty());
  CHECK(collect(none.shuffle(1).epoch(0)).empty());

  check_error([] { Dataset::from_tensor_slices({}); }, {"from_tensor_slices", "no tensors"});
  check_error(
      [] {
        Dataset::from_tensor_slices({kiln::zeros({3, 2}), kiln::zeros({4})});
      },
      {"from_tensor_slices", "disagree on dim 0", "f32[3,2]", "tensor 1 is f32[4]"});
  check_error([] { Dataset::from_tensor_slices({kiln::tensor(1.f)}); },
              {"from_tensor_slices", "scalar f32[]"});
  check_error([] { Dataset::from_tensor_slices({Tensor()}); }, {"tensor 0 is undefined"});
}

TEST_CASE("Dataset::batch stacks consecutive elements") {
  const Dataset ds = pairs(5);
  const Dataset b = ds.batch(2);
  CHECK(b.cardinality() == 3);
  std::vector<std::vector<std::vector<int64_t>>> want = {
      {{0, 1, 2, 3}, {100, 101}}, {{4, 5, 6, 7}, {102, 103}}, {{8, 9}, {104}}};
  CHECK(collect(b.epoch(0)) == want);
  std::vector<std::string> types;
  for (const Element& e : b.epoch(0))
    types.push_back(e[0].type_str() + " " + e[1].type_str());
  CHECK(types == std::vector<std::string>{"i64[2,2] i32[2]", "i64[2,2] i32[2]", "i64[1,2] i32[1]"});

  const Dataset d = ds.batch(2, /*drop_remainder=*/true);
  CHECK(d.cardinality() == 2);
  want.pop_back();
  CHECK(collect(d.epoch(0)) == want);
  CHECK(ds.batch(5, true).cardinality() == 1);
  CHECK(ds.batch(6, true).cardinality() == 0);
  CHECK(collect(ds.batch(6, true).epoch(0)).empty());
  CHECK(ds.batch(6).cardinality() == 1);
  CHECK(collect(ds.batch(6).epoch(0)).size() == 1);

  // Batches of batches; and stacking elements a map made (the copying path) agrees with
  // gathering rows of the sources.
  CHECK(collect(ds.batch(2).batch(2).epoch(0)) ==
        std::vector<std::vector<std::vector<int64_t>>>{
            {{0, 1, 2, 3, 4, 5, 6, 7}, {100, 101, 102, 103}}, {{8, 9}, {104}}});
  CHECK(collect(ds.map(identity).batch(2).epoch(0)) == collect(b.epoch(0)));
  CHECK(collect(ds.shuffle(3).map(identity).batch(2).epoch(4)) ==
        collect(ds.shuffle(3).batch(2).epoch(4)));

  check_error([&] { ds.batch(0); }, {"batch", "at least 1", "got 0"});
  const Dataset ragged = range(3).map(
      [](const Element& e) { return Element{kiln::zeros({e[0].item<int64_t>() + 1})}; });
  check_error([&] { collect(ragged.batch(2).epoch(0)); },
              {"batch", "cannot stack component 0", "element 1 of the batch is f32[2]",
               "element 0 is f32[1]"});
  const Dataset arity = range(3).map([](const Element& e) {
    return e[0].item<int64_t>() == 1 ? Element{e[0], e[0]} : Element{e[0]};
  });
  check_error([&] { collect(arity.batch(3).epoch(0)); },
              {"batch", "element 1 of the batch has 2 components but element 0 has 1"});
}

TEST_CASE("Dataset::shuffle: a permutation per epoch, fixed by (seed, epoch)") {
  const int64_t n = 100;
  const kiln::random::State before = kiln::random::state();
  const Dataset ds = range(n).shuffle(42);
  CHECK(ds.cardinality() == n);
  const std::vector<int64_t> e0 = order_of(ds.epoch(0));
  const std::vector<int64_t> e1 = order_of(ds.epoch(1));
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  CHECK(sorted == all);
  sorted = e1;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == all);
  CHECK(e0 != all);
  CHECK(e0 != e1);
  // A separate pipeline with the same seed replays any epoch on its own; another seed differs.
  CHECK(order_of(range(n).shuffle(42).epoch(1)) == e1);
  CHECK(order_of(range(n).shuffle(42).epoch(0)) == e0);
  CHECK(order_of(range(n).shuffle(43).epoch(0)) != e0);
  // A pipeline of whole elements (after map) is shuffled with the same order as rows.
  CHECK(order_of(range(n).map(identity).shuffle(42).epoch(1)) == e1);
  // Shuffled elements stay whole: x and y of an element come from the same row.
  for (const Element& e : pairs(20).shuffle(7).epoch(3)) {
    const std::vector<int64_t> x = ints(e[0]);
    CHECK(x[1] == x[0] + 1);
    CHECK(e[1].item<int64_t>() == 100 + x[0] / 2);
  }
  // Range-for over the dataset itself runs epochs 0, 1, 2, ...; copies share the count.
  const Dataset copy = ds;
  std::vector<std::vector<int64_t>> passes;
  for (int pass = 0; pass < 3; ++pass) {
    passes.emplace_back();
    for (const Element& e : (pass == 1 ? copy : ds))
      passes.back().push_back(e[0].item<int64_t>());
  }
  CHECK(passes[0] == e0);
  CHECK(passes[1] == e1);
  CHECK(passes[2] == order_of(ds.epoch(2)));
  // The global generator is untouched.
  CHECK(kiln::random::state().seed == before.seed);
  CHECK(kiln::random::state().offset == before.offset);
}

TEST_CASE("Dataset::shuffle draws every order equally often") {
  // 6000 epochs of 3 elements: each of the 6 orders about 1000 times (sd ~29). A biased
  // Fisher-Yates (j drawn from [0, i) or [0, n)) would be far off.
  std::map<std::vector<int64_t>, int> counts;
  const Dataset ds = range(3).shuffle(5);
  for (int64_t e = 0; e < 6000; ++e)
    ++counts[order_of(ds.epoch(e))];
  REQUIRE(counts.size() == 6);
  for (const auto& [order, count] : counts) {
    INFO("order " << order[0] << order[1] << order[2] << ": " << count);
    CHECK(std::abs(count - 1000) < 150);
  }
}

TEST_CASE("Dataset::map applies a function to every element") {
  const Dataset ds = pairs(4).map([](const Element& e) {
    return Element{e[0] * int64_t(10), kiln::cast(e[1], kiln::i64) + int64_t(1), e[1]};
  });
  CHECK(ds.cardinality() == 4);
  const auto got = collect(ds.batch(3).epoch(0));
  REQUIRE(got.size() == 2);
  CHECK(got[0] == std::vector<std::vector<int64_t>>{
                      {0, 10, 20, 30, 40, 50}, {101, 102, 103}, {100, 101, 102}});
  CHECK(got[1] == std::vector<std::vector<int64_t>>{{60, 70}, {104}, {103}});
  check_error([] { range(2).map(nullptr); }, {"map", "empty"});
}

TEST_CASE("Dataset::prefetch yields what the pipeline does, in order") {
  const Dataset base = pairs(50).shuffle(9).map([](const Element& e) {
    return Element{e[0] + int64_t(1), e[1]};
  });
  for (bool drop : {false, true}) {
    const Dataset ds = base.batch(4, drop);
    for (int64_t buffer : {1, 2, 7}) {
      INFO("buffer " << buffer << " drop " << drop);
      const Dataset p = ds.prefetch(buffer);
      CHECK(p.cardinality() == ds.cardinality());
      for (int64_t e : {0, 1, 5})
        CHECK(collect(p.epoch(e)) == collect(ds.epoch(e)));
    }
  }
  // Prefetch on prefetch, and in the middle of a pipeline.
  CHECK(collect(base.prefetch(2).batch(3).prefetch(1).epoch(2)) == collect(base.batch(3).epoch(2)));
  check_error([] { range(2).prefetch(0); }, {"prefetch", "at least 1", "got 0"});
}

TEST_CASE("Dataset::prefetch: an iterator destroyed mid-epoch stops the producer") {
  std::atomic<int> calls{0};
  const Dataset slow = range(1000)
                           .map([&calls](const Element& e) {
                             ++calls;
                             std::this_thread::sleep_for(std::chrono::milliseconds(2));
                             return e;
                           })
                           .prefetch(3);
  const auto t0 = std::chrono::steady_clock::now();
  {
    auto it = slow.epoch(0).begin();
    CHECK(it->at(0).item<int64_t>() == 0);
    ++it;
    ++it;
    CHECK((*it)[0].item<int64_t>() == 2);
  }  // joins here
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // 3 taken + 3 buffered + 1 in flight when the stop came; nowhere near 1000 (2 s).
  CHECK(calls.load() <= 8);
  CHECK(ms < 1000);
  const int after = calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(calls.load() == after);  // nothing runs after the join

  // Abandoning nested prefetches, and a pass that ends normally, also join cleanly.
  for (const Element& e : range(100).prefetch(2).map(identity).prefetch(2).epoch(0))
    if (e[0].item<int64_t>() == 10) break;
  int count = 0;
  for (auto it = range(10).prefetch(4).epoch(0).begin(); it != nullptr; ++it)
    ++count;  // the dataset was a temporary: the iterator keeps the pipeline alive
  CHECK(count == 10);
}

TEST_CASE("Dataset: an exception in the pipeline reaches the consumer, in order") {
  const Dataset failing = range(10).map([](const Element& e) {
    const int64_t i = e[0].item<int64_t>();
    KILN_CHECK(i != 4, "map fn: element {} is bad", i);
    return e;
  });
  for (bool prefetch : {false, true}) {
    INFO("prefetch " << prefetch);
    const Dataset ds = prefetch ? failing.prefetch(3) : failing;
    std::vector<int64_t> seen;
    check_error(
        [&] {
          for (const Element& e : ds.epoch(0))
            seen.push_back(e[0].item<int64_t>());
        },
        {"map fn: element 4 is bad"});
    CHECK(seen == std::vector<int64_t>{0, 1, 2, 3});
  }
  // In the first element, with batching after the prefetch; other exception types pass too.
  const Dataset throws =
      range(5)
          .map([](const Element&) -> Element { throw std::runtime_error("not a kiln::Error"); })
          .prefetch(2)
          .batch(2);
  CHECK_THROWS_WITH(throws.epoch(0).begin(), "not a kiln::Error");
}
