// Saved functions: save a traced function with its variables, load it in a fresh object,
// run it; the safetensors layout byte by byte; errors for missing and corrupted bundles.

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <kiln/tracer/json.h>
#include <kiln/tracer/saved_function.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;
namespace fs = std::filesystem;
namespace sf = kiln::saved_function;

namespace {

fs::path scratch(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("kiln_saved_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Safetensors bytes with a hand-written header.
std::string raw_safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()),
                     static_cast<size_t>(c.numel()) * size_of(c.dtype()));
}

bool no_tmp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return false;
  return true;
}

}  // namespace

TEST_CASE("saved function: a trained MLP round-trips and runs without its code") {
  random::seed(7);
  Variable w1(random::normal({4, 8}, 0, 0.5), "w1");
  Variable b1(zeros({8}), "b1");
  Variable w2(random::normal({8, 1}, 0, 0.5), "w2");
  Variable b2(zeros({1}), "b2");
  auto forward = [&](const Tensor& x) { return matmul(tanh(matmul(x, w1) + b1), w2) + b2; };
  // A few steps of gradient descent so the variables hold trained (non-initial) values.
  const Tensor xs = random::normal({16, 4});
  const Tensor ys = sum(xs, {1}, true) * 0.5f;
  for (int step = 0; step < 20; ++step) {
    GradientTape tape;
    Tensor loss = mean(square(forward(xs) - ys));
    auto grads = tape.gradient(loss, {w1, b1, w2, b2});
    w1.assign_sub(grads[0] * 0.1f);
    b1.assign_sub(grads[1] * 0.1f);
    w2.assign_sub(grads[2] * 0.1f);
    b2.assign_sub(grads[3] * 0.1f);
  }
  // The batch dim is unknown: one trace serves every batch size.
  auto predict = kiln::function(
      forward, FunctionOptions{.name = "predict", .input_signature = {TensorSpec({-1, 4})}});

#ifdef KILN_SAVED_BUNDLE_DIR
  const fs::path dir = KILN_SAVED_BUNDLE_DIR;
  fs::remove_all(dir);
#else
  const fs::path dir = scratch("mlp");
#endif
  sf::save(dir.string(), predict);
  CHECK(fs::exists(dir / "manifest.json"));
  CHECK(fs::exists(dir / "signature_0.ir"));
  CHECK(fs::exists(dir / "variables.safetensors"));
  CHECK(no_tmp_files(dir));

  const sf::Loaded m = sf::load(dir.string());
  CHECK(m.name() == "predict");
  REQUIRE(m.signatures().size() == 1);
  CHECK(m.signatures()[0].str() == "(f32[?,4]) -> 1 result");
  for (int64_t batch : {1, 3, 16}) {
    const Tensor x = random::normal({batch, 4});
    const Tensor got = m(x);
    check_close(got, predict(x), 0, 0);  // the same compiled graph: bit-identical
  }
  check_close(m(xs), forward(xs), 1e-6, 1e-7);

  // The variables come back bit-exactly, by their names.
  REQUIRE(m.variables().size() == 4);
  const std::vector<std::pair<std::string, Variable>> originals = {
      {"w1", w1}, {"b1", b1}, {"w2", w2}, {"b2", b2}};
  for (const auto& [name, v] : originals) {
    const Variable& loaded = m.variables().at(name);
    CHECK(loaded.name() == name);
    CHECK(loaded.trainable());
    CHECK(loaded.shape() == v.shape());
    CHECK(bytes_of(loaded.value()) == bytes_of(v.value()));
  }
  // The loaded variables are live: assigning one changes the loaded function only.
  const Tensor x3 = ones({3, 4});
  const Tensor before = m(x3);
  m.variables().at("b2").assign(tensor({1.f}));
  check_close(m(x3), (before - b2.value() + 1.f), 1e-6, 1e-6);
  m.variables().at("b2").assign(b2.value());

  // Inputs no signature accepts.
  check_error([&] { m(ones({3, 5})); }, {"no signature accepts", "f32[3,5]", "(f32[?,4])"});
  check_error([&] { m(ones({3, 4}, f64)); }, {"f64[3,4]", "available signatures"});

  // The loader test (saved_model_loader) checks this output without any model code.
  const Tensor expected = predict(x3);
  std::ofstream out(dir / "expected.txt");
  out << "shape";
  for (int64_t d : expected.shape())
    out << ' ' << d;
  out << "\nvalues";
  char buf[64];
  for (float v : expected.to_vector<float>()) {
    std::snprintf(buf, sizeof buf, " %.9g", static_cast<double>(v));
    out << buf;
  }
  out << '\n';
}

TEST_CASE("saved function: the safetensors layout, byte by byte") {
  Variable v(tensor({1.f, 2.f}), "v");
  auto f = kiln::function([&](const Tensor& x) { return x * v; },
                          FunctionOptions{.name = "scale", .input_signature = {TensorSpec({2})}});
  const fs::path dir = scratch("layout");
  sf::save(dir.string(), f);
  const std::string bytes = slurp(dir / "variables.safetensors");
  std::string header =
      R"({"__metadata__":{"format":"kiln"},"v":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  REQUIRE(bytes.size() == 8 + header.size() + 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  CHECK(n == header.size());
  CHECK(n % 8 == 0);
  CHECK(bytes.substr(8, header.size()) == header);
  const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};  // 1.f, 2.f
  CHECK(std::memcmp(bytes.data() + 8 + header.size(), data, 8) == 0);

  // Every dtype round-trips through encode/decode, in data order.
  const std::vector<std::pair<std::string, Tensor>> all = {
      {"f", tensor({{1.5f, -2.f}, {0.f, 3.f}})},
      {"d", tensor({1e300, -0.0})},
      {"i", tensor({7, -8, 9})},
      {"l", tensor({int64_t{1} << 40})},
      {"u", from_vector<uint8_t>({0, 255}, {2})},
      {"b", tensor({true, false, true})},
      {"empty", zeros({0, 3})},
      {"scalar", tensor(4.0)}};
  const std::string enc = sf::encode_safetensors(all);
  const auto dec = sf::decode_safetensors(enc, "mem");
  REQUIRE(dec.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(dec[i].first == all[i].first);
    CHECK(dec[i].second.type() == all[i].second.type());
    CHECK(bytes_of(dec[i].second) == bytes_of(all[i].second));
  }
  CHECK(no_tmp_files(dir));
  fs::remove_all(dir);
}

TEST_CASE("saved function: several signatures share deduplicated, renamed variables") {
  Variable a(tensor({1.f, 2.f, 3.f}), "w");
  Variable b(tensor({10.f}), "w");  // a distinct variable with the same name
  auto f = kiln::function([&](const Tensor& x) { return x * a + b; },
                          FunctionOptions{.name = "affine", .input_signature = {}});
  f(ones({3}));
  f(ones({2, 3}));
  const fs::path dir = scratch("multi");
  sf::save(dir.string(), f);  // every traced signature
  const sf::Loaded m = sf::load(dir.string());
  REQUIRE(m.signatures().size() == 2);
  REQUIRE(m.variables().size() == 2);
  CHECK(m.variables().at("w").name() == "w");
  CHECK(m.variables().at("w_1").name() == "w");
  // Which of the two is "w" depends on the order the trace read them.
  const std::string bias = m.variables().at("w").shape() == Shape{1} ? "w" : "w_1";
  CHECK(m.variables().at(bias).shape() == Shape{1});
  check_close(m(ones({3})), {11, 12, 13});
  check_close(m(ones({2, 3})), {11, 12, 13, 11, 12, 13});
  // One Variable serves both signatures.
  m.variables().at(bias).assign(tensor({0.f}));
  check_close(m(ones({3})), {1, 2, 3});
  check_error([&] { m(ones({1, 3})); }, {"f32[1,3]", "(f32[3])", "(f32[2,3])"});
  const auto manifest = json::parse(slurp(dir / "manifest.json"));
  CHECK(manifest.find("variables")->items().size() == 2);

  // Explicit signatures (traced on demand) replace the earlier save; stale files go away.
  sf::save(dir.string(), f, {{TensorSpec({-1, 3})}});
  CHECK(!fs::exists(dir / "signature_1.ir"));
  const sf::Loaded m2 = sf::load(dir.string());
  REQUIRE(m2.signatures().size() == 1);
  check_close(m2(ones({4, 3})),
              std::vector<double>{11, 12, 13, 11, 12, 13, 11, 12, 13, 11, 12, 13});
  check_error(
      [&] {
        sf::save(dir.string(), f, {{TensorSpec({3}), TensorSpec({3})}});
      },
      {"does not take 2 tensor arguments"});
  auto untraced = kiln::function([](const Tensor& x) { return x; });
  check_error([&] { sf::save(dir.string(), untraced); }, {"no signature to save"});
  CHECK(no_tmp_files(dir));
  fs::remove_all(dir);
}

TEST_CASE("saved function: missing, truncated and corrupted bundles raise kiln::Error") {
  Variable v(tensor({1.f, 2.f}), "v");
  auto f = kiln::function([&](const Tensor& x) { return x * v; },
                          FunctionOptions{.name = "scale", .input_signature = {TensorSpec({2})}});
  const fs::path good = scratch("good");
  sf::save(good.string(), f);
  const fs::path dir = scratch("bad");
  auto fresh = [&] {
    fs::remove_all(dir);
    fs::copy(good, dir);
  };
  const fs::path st = dir / "variables.safetensors";
  const fs::path man = dir / "manifest.json";
  const std::string data8("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  auto with_vars = [&](const std::string& bytes) {
    fresh();
    spit(st, bytes);
    return [&] { sf::load(dir.string()); };
  };

  check_error([&] { sf::load((good / "nope").string()); }, {"does not exist", "nope"});
  fs::create_directories(dir);
  fs::remove_all(dir);
  fs::create_directories(dir);
  check_error([&] { sf::load(dir.string()); }, {"manifest.json", "missing"});

  fresh();
  fs::remove(st);
  check_error([&] { sf::load(dir.string()); }, {"variables.safetensors", "missing"});

  // Truncated: inside the length, inside the header, inside the data.
  const std::string valid = slurp(good / "variables.safetensors");
  check_error(with_vars(valid.substr(0, 5)), {"variables.safetensors", "truncated"});
  check_error(with_vars(valid.substr(0, 20)),
              {"variables.safetensors", "truncated", "header length"});
  check_error(with_vars(valid.substr(0, valid.size() - 3)),
              {"variables.safetensors", "out of range"});
  // A header length far beyond the file.
  check_error(with_vars(std::string(8, '\xff') + "{}"), {"header length", "over the limit"});

  // Corrupted header JSON.
  std::string bad = valid;
  bad[8 + 1] = '#';
  check_error(with_vars(bad), {"variables.safetensors", "JSON"});
  check_error(
      with_vars(raw_safetensors(R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", data8)),
      {"variables.safetensors", "JSON", "expected ',' or '}'"});
  check_error(with_vars(raw_safetensors(R"([1,2])", data8)), {"not a JSON object"});

  // Offsets out of range, overlapping, or not matching dtype and shape.
  check_error(with_vars(raw_safetensors(
                  R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data8)),
              {"variables.safetensors", "tensor \"v\"", "out of range"});
  check_error(with_vars(raw_safetensors(R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
                                        data8)),
              {"invalid data_offsets"});
  check_error(
      with_vars(raw_safetensors(
          R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          data8)),
      {"overlap"});
  check_error(with_vars(raw_safetensors(R"({"v":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                        data8)),
              {"need 12 bytes"});
  check_error(with_vars(raw_safetensors(R"({"v":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                        data8)),
              {"4 bytes after the last tensor"});
  check_error(
      with_vars(raw_safetensors(
          R"({"v":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data8)),
      {"too large"});
  check_error(with_vars(raw_safetensors(
                  R"({"v":{"dtype":"BOOL","shape":[8],"data_offsets":[0,8]}})", data8)),
              {"not 0 or 1"});

  // Wrong dtype: unknown, or not the one the manifest lists.
  check_error(with_vars(raw_safetensors(R"({"v":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})",
                                        data8)),
              {"variables.safetensors", "unknown dtype \"F16\""});
  check_error(with_vars(raw_safetensors(R"({"v":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                                        data8)),
              {"variables.safetensors", "i32[2]", "f32[2]"});
  // The manifest refers to an entry the file lacks.
  check_error(with_vars(raw_safetensors(R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                        data8)),
              {"manifest.json", "\"v\"", "does not contain"});

  // Manifest problems.
  const std::string manifest = slurp(good / "manifest.json");
  fresh();
  spit(man, manifest.substr(0, manifest.size() / 2));
  check_error([&] { sf::load(dir.string()); }, {"manifest.json", "JSON"});
  fresh();
  spit(man, R"({"format": "kiln.saved_function", "version": 2})");
  check_error([&] { sf::load(dir.string()); }, {"manifest.json", "version 2"});
  fresh();
  spit(man, R"({"format": "kiln.saved_function", "version": 1, "name": "x", "variables": [],
               "signatures": [{"file": "../escape.ir", "inputs": [], "num_results": 1,
                               "variables": []}]})");
  check_error([&] { sf::load(dir.string()); }, {"not a plain file name"});

  // IR problems.
  fresh();
  spit(dir / "signature_0.ir", "func @scale(%0: f32[2]) -> (f32[2]) {\n  %1 = bogus(\n");
  check_error([&] { sf::load(dir.string()); }, {"signature_0.ir"});
  fresh();
  fs::remove(dir / "signature_0.ir");
  check_error([&] { sf::load(dir.string()); }, {"signature_0.ir", "missing"});

  // The good bundle still loads, and nothing left temporaries behind.
  fresh();
  check_close(sf::load(dir.string())(tensor({3.f, 4.f})), {3, 8});
  CHECK(no_tmp_files(good));
  fs::remove_all(dir);
  fs::remove_all(good);
}

TEST_CASE("json: escapes, limits and malformed input") {
  const json::Value v =
      json::parse(R"( {"a": [1, -2, true, false, null], "s": "q\"\\\/\n\u00e9\ud83d\ude00"} )");
  CHECK(v.find("a")->items()[1].as_int() == -2);
  CHECK(v.find("s")->as_string() == "q\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(json::parse(json::dump(v)).find("s")->as_string() == v.find("s")->as_string());
  CHECK(json::parse(json::dump(v, 2)).find("a")->items().size() == 5);
  CHECK(json::parse("-9223372036854775808").as_int() == INT64_MIN);
  check_error([] { json::parse("9223372036854775808"); }, {"int64"});
  check_error([] { json::parse("1.5"); }, {"integer"});
  check_error([] { json::parse(std::string(100, '[')); }, {"nesting"});
  check_error([] { json::parse(R"({"a":1,"a":2})"); }, {"duplicate key"});
  check_error([] { json::parse(R"("\ud800")"); }, {"surrogate"});
  check_error([] { json::parse("\"a\nb\""); }, {"control character"});
  check_error([] { json::parse("[1,]"); }, {"unexpected character"});
  check_error([] { json::parse("{} x"); }, {"after the value"});
  check_error([] { json::parse("01"); }, {"leading zeros"});
}
