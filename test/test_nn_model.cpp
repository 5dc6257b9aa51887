// nn::Model and nn::Sequential: fit / evaluate / predict, traced against eager, the final
// softmax folded into the loss, checkpoints and an exact resume, the saved bundle, the
// progress bar and the TensorBoard callback.
#include <filesystem>
#include <regex>
#include <sstream>

#include <kiln/nn/checkpoint.h>
#include <kiln/nn/layers.h>
#include <kiln/nn/model.h>
#include <kiln/nn/progress.h>

#include "testing.h"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

// 3 classes of 8-feature points, separable by a fixed linear map.
std::pair<Tensor, Tensor> toy_data(int64_t n, DType dtype = f32) {
  random::seed(1234);
  Tensor x = random::normal({n, 8}, 0, 1, dtype);
  Tensor w = random::normal({8, 3}, 0, 1, dtype);
  Tensor y = cast(argmax(matmul(x, w), 1), i32);
  return {x, y};
}

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("kiln_test_nn_model_" + name);
  fs::remove_all(p);
  return p;
}

void make_model(nn::Sequential& m, bool eager, double dropout = 0) {
  m.add(nn::Dense(16, "relu"));
  if (dropout > 0) m.add(nn::Dropout(dropout));
  m.add(nn::Dense(3, "softmax"));
  m.compile(optim::Adam(1e-2), nn::SparseCategoricalCrossentropy(),
            {nn::SparseCategoricalAccuracy("accuracy")}, {.run_eagerly = eager});
}

}  // namespace

TEST_CASE("fit learns a separable problem and reports Keras-style history") {
  auto [x, y] = toy_data(512);
  random::seed(1);
  nn::Sequential model;
  make_model(model, false);
  std::ostringstream out;
  nn::History h = model.fit(x, y, {.epochs = 6, .batch_size = 32, .out = &out});
  REQUIRE(h.history.at("loss").size() == 6);
  CHECK(h.history.at("loss").back() < h.history.at("loss").front());
  CHECK(h.history.at("accuracy").back() > 0.85);
  nn::Logs test = model.evaluate(x, y, 64);
  CHECK(nn::find_log(test, "accuracy").value() > 0.85);
  // Off a terminal: exactly one line per epoch.
  std::string line;
  std::istringstream lines(out.str());
  int n = 0;
  const std::regex format(
      R"(Epoch \d/6 - 16/16 - \S+ - \S+/step - loss: \d\.\d{4} - accuracy: \d\.\d{4})");
  while (std::getline(lines, line)) {
    INFO(line);
    CHECK(std::regex_match(line, format));
    ++n;
  }
  CHECK(n == 6);
  Tensor p = model.predict(x.slice(0, 0, 50), 16);
  CHECK(p.shape() == Shape({50, 3}));
  testing::check_close(sum(p, {1}), std::vector<double>(50, 1.0), 1e-5);
}

TEST_CASE("the traced train step matches the eager one") {
  auto [x, y] = toy_data(256);
  std::vector<double> losses[2];
  for (int eager = 0; eager < 2; ++eager) {
    random::seed(77);
    nn::Sequential model;
    make_model(model, eager == 1, 0.3);
    std::ostringstream out;
    losses[eager] = model.fit(x, y, {.epochs = 3, .batch_size = 32, .verbose = 0, .out = &out})
                        .history.at("loss");
  }
  testing::check_close(losses[0], losses[1], 2e-5);
}

TEST_CASE("a final softmax is folded into the loss, exactly as the f64 formula") {
  auto [x, y] = toy_data(64, f64);
  random::seed(5);
  nn::Sequential model;
  model.add(nn::Dense(3, "softmax"));
  model.compile(optim::SGD(0.1), nn::SparseCategoricalCrossentropy(), {});
  model(x);  // builds in f64
  std::optional<Tensor> logits = model.call_logits(x, false);
  REQUIRE(logits.has_value());
  // Independent: -log of the softmax computed by hand, in f64.
  std::vector<double> z = logits->to_vector<double>(), labels = y.to_vector<double>();
  double expected = 0;
  for (int i = 0; i < 64; ++i) {
    double mx = std::max({z[i * 3], z[i * 3 + 1], z[i * 3 + 2]}), s = 0;
    for (int k = 0; k < 3; ++k)
      s += std::exp(z[i * 3 + k] - mx);
    expected += -(z[i * 3 + static_cast<int>(labels[i])] - mx - std::log(s)) / 64;
  }
  nn::Logs logs = model.evaluate(x, y, 64);
  CHECK(nn::find_log(logs, "loss").value() == Approx(expected).epsilon(1e-12));
  // A confident wrong prediction: logits [-800, 0] for class 0. Folded, the loss is exactly
  // 800; through the probabilities it would be clipped at -log(1e-7) = 16.1.
  Tensor big = tensor({{-800.f, 0.f, 0.f, 0.f}});
  nn::Sequential m2;
  m2.add(nn::Dense(2, "softmax", /*use_bias=*/false, [](const Shape& s, DType d) {
    return cast(concat({ones({s[0], 1}), zeros({s[0], 1})}, 1), d);
  }));
  m2.compile(optim::SGD(0.1), nn::SparseCategoricalCrossentropy(), {});
  m2(big);
  double l = nn::find_log(m2.evaluate(big, tensor({0}), 1), "loss").value();
  CHECK(l == Approx(800).epsilon(1e-6));
}

TEST_CASE("a checkpoint resumes training exactly") {
  auto [x, y] = toy_data(200);
  const fs::path dir = scratch("resume");
  fs::create_directories(dir);
  const std::string ckpt = (dir / "epoch_{epoch}.safetensors").string();
  std::vector<double> uninterrupted;
  {
    random::seed(99);
    nn::Sequential model;
    make_model(model, false, 0.25);
    std::ostringstream out;
    uninterrupted = model
                        .fit(x, y,
                             {.epochs = 4,
                              .batch_size = 32,
                              .callbacks = {nn::ModelCheckpoint(ckpt)},
                              .seed = 3,
                              .out = &out})
                        .history.at("loss");
  }
  REQUIRE(fs::exists(dir / "epoch_2.safetensors"));
  random::seed(12345);  // a different initialization, overwritten by the checkpoint
  nn::Sequential resumed;
  make_model(resumed, false, 0.25);
  const int epoch = resumed.load_checkpoint((dir / "epoch_2.safetensors").string());
  CHECK(epoch == 2);
  std::ostringstream out;
  std::vector<double> rest =
      resumed
          .fit(x, y,
               {.epochs = 4, .batch_size = 32, .seed = 3, .initial_epoch = epoch, .out = &out})
          .history.at("loss");
  REQUIRE(rest.size() == 2);
  CHECK(rest[0] == uninterrupted[2]);
  CHECK(rest[1] == uninterrupted[3]);
  fs::remove_all(dir);
}

TEST_CASE("model.save writes a bundle that serves any batch size") {
  auto [x, y] = toy_data(64);
  random::seed(8);
  nn::Sequential model;
  make_model(model, false, 0.5);
  std::ostringstream out;
  model.fit(x, y, {.epochs = 1, .batch_size = 16, .out = &out});
  const fs::path dir = scratch("bundle");
  model.save(dir.string());
  auto loaded = saved_function::load(dir.string());
  for (int64_t n : {1, 7, 64}) {
    Tensor xb = x.slice(0, 0, n);
    testing::check_close(loaded(xb), model.predict(xb), 1e-5, 1e-7);
  }
  fs::remove_all(dir);
}

TEST_CASE("the TensorBoard callback writes train and validation event files") {
  auto [x, y] = toy_data(96);
  random::seed(2);
  nn::Sequential model;
  make_model(model, false);
  const fs::path dir = scratch("tb");
  std::ostringstream out;
  nn::History h = model.fit(x, y,
                            {.epochs = 2,
                             .batch_size = 32,
                             .validation_data = std::make_pair(x, y),
                             .callbacks = {nn::TensorBoard(dir.string(), 1, 1)},
                             .out = &out});
  CHECK(h.history.count("val_loss") == 1);
  CHECK(h.history.count("val_accuracy") == 1);
  for (const char* sub : {"train", "validation"}) {
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir / sub)) {
      CHECK(e.path().filename().string().rfind("events.out.tfevents.", 0) == 0);
      CHECK(fs::file_size(e.path()) > 100);
      ++files;
    }
    CHECK(files == 1);
  }
  fs::remove_all(dir);
}

TEST_CASE("the progress bar's lines") {
  double t = 0;
  std::ostringstream plain;
  nn::ProgressBar bar(plain, false, 10, [&] { return t; });
  bar.start_epoch(0, 2);
  for (int i = 1; i <= 10; ++i) {
    t += 0.2;
    bar.update(i, [] { return nn::Logs{{"loss", 0.5}}; });
  }
  bar.finish(10, {{"loss", 0.5}, {"accuracy", 0.25}});
  CHECK(plain.str() == "Epoch 1/2 - 10/10 - 2.0s - 200ms/step - loss: 0.5000 - accuracy: 0.2500\n");

  std::ostringstream tty;
  nn::ProgressBar live(tty, true, 100, [&] { return t; });
  live.start_epoch(1, 2);
  t += 5;  // the first step traces and compiles: the rate leaves it out
  live.update(1, [] { return nn::Logs{{"loss", 1.0}}; });
  t += 0.96;
  live.update(25, [] { return nn::Logs{{"loss", 1.0}}; });
  const std::string s = tty.str();
  CHECK(s.rfind("Epoch 2/2\n", 0) == 0);
  CHECK(s.find("\r") != std::string::npos);
  CHECK(s.find(" 25/100") != std::string::npos);
  CHECK(s.find("3.0s") != std::string::npos);  // ETA: 75 steps at 40 ms
  CHECK(s.find("40ms/step - loss: 1.0000") != std::string::npos);
  CHECK(nn::format_duration(0.00085) == "850us");
  CHECK(nn::format_duration(125) == "2m05s");
}

TEST_CASE("model mistakes are kiln::Errors") {
  auto [x, y] = toy_data(16);
  nn::Sequential model({nn::Dense(3)});
  testing::check_error([&] { model.fit(x, y); }, {"fit", "compile"});
  model.compile(optim::SGD(), nn::SparseCategoricalCrossentropy(true));
  testing::check_error([&] { model.fit(x, y.slice(0, 0, 8)); }, {"fit", "f32[16,8]", "[8]"});
  testing::check_error([&] { model.save("/nonexistent/dir/x"); }, {"save"});
}

TEST_CASE("a Sequential nests as a layer; a compiled model refuses to move") {
  random::seed(21);
  nn::Sequential inner({nn::Dense(4, "tanh")}, "block");
  nn::Sequential outer({std::move(inner), nn::Dense(2)});
  Tensor x = random::normal({3, 5});
  CHECK(outer(x).shape() == Shape({3, 2}));
  std::vector<std::string> names;
  for (const Variable& v : outer.variables())
    names.push_back(v.name());
  CHECK(names == std::vector<std::string>{"sequential/block/dense/kernel",
                                          "sequential/block/dense/bias", "sequential/dense/kernel",
                                          "sequential/dense/bias"});
  nn::Sequential compiled({nn::Dense(1)});
  compiled.compile(optim::SGD(), nn::MeanSquaredError());
  testing::check_error([&] { nn::Sequential moved(std::move(compiled)); }, {"moved", "compiled"});
}

TEST_CASE("a checkpoint with corrupt metadata is a kiln::Error") {
  const fs::path dir = scratch("bad_meta");
  fs::create_directories(dir);
  const std::string path = (dir / "bad.safetensors").string();
  nn::save_safetensors(path, std::map<std::string, Tensor>{{"x", tensor({1.f})}},
                       {{"input_shape", "28,x8"}, {"epoch", "1"}});
  nn::Sequential model({nn::Dense(2)});
  model.compile(optim::SGD(), nn::MeanSquaredError());
  testing::check_error([&] { model.load_checkpoint(path); }, {"load_checkpoint", "input_shape"});
  fs::remove_all(dir);
}
