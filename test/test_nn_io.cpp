// nn/summary (TensorBoard event files) and nn/checkpoint (safetensors): files are read back by
// readers written here, independent of the writers' code.

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <kiln/kiln.h>
#include <kiln/nn/checkpoint.h>
#include <kiln/nn/summary.h>

#include "testing.h"

namespace fs = std::filesystem;
using kiln::testing::check_error;

namespace {

// A fresh, empty directory per test, removed at its end.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name) {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / ("kiln_nn_io_" + std::to_string(::getpid()) + "_" + name +
                                        "_" + std::to_string(n.fetch_add(1)));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
T get_le(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

// ---- an independent TFRecord + protobuf reader -----------------------------------------------

// Bit-at-a-time CRC32C (no table), so it shares nothing with the writer's implementation.
uint32_t ref_crc32c(std::string_view s) {
  uint32_t c = ~0u;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k)
      c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t ref_mask(uint32_t c) {
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

// The payloads of all records, or an error saying which record is bad and why.
struct Records {
  std::vector<std::string> data;
  std::string error;
};
Records read_records(const std::string& bytes) {
  Records r;
  size_t at = 0;
  while (at < bytes.size()) {
    const size_t i = r.data.size();
    if (bytes.size() - at < 12)
      return r.error = "record " + std::to_string(i) + ": short header", r;
    const auto len = get_le<uint64_t>(bytes, at);
    if (ref_mask(ref_crc32c(bytes.substr(at, 8))) != get_le<uint32_t>(bytes, at + 8))
      return r.error = "record " + std::to_string(i) + ": length crc", r;
    if (bytes.size() - at - 12 < len + 4)
      return r.error = "record " + std::to_string(i) + ": truncated", r;
    const std::string data = bytes.substr(at + 12, len);
    if (ref_mask(ref_crc32c(data)) != get_le<uint32_t>(bytes, at + 12 + len))
      return r.error = "record " + std::to_string(i) + ": data crc", r;
    r.data.push_back(data);
    at += 12 + len + 4;
  }
  return r;
}

// One protobuf field: its wire type and either an integer (varint / fixed) or bytes.
struct Field {
  int wire = 0;
  uint64_t num = 0;
  std::string bytes;
};
using Message = std::multimap<uint32_t, Field>;

Message parse_message(const std::string& s) {
  Message m;
  size_t at = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      REQUIRE(at < s.size());
      REQUIRE(shift < 64);
      const auto b = static_cast<unsigned char>(s[at++]);
      v |= uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
  };
  while (at < s.size()) {
    const uint64_t key = varint();
    Field f;
    f.wire = static_cast<int>(key & 7);
    switch (f.wire) {
      case 0:
        f.num = varint();
        break;
      case 1:
        REQUIRE(s.size() - at >= 8);
        f.num = get_le<uint64_t>(s, at);
        at += 8;
        break;
      case 5:
        REQUIRE(s.size() - at >= 4);
        f.num = get_le<uint32_t>(s, at);
        at += 4;
        break;
      case 2: {
        const uint64_t len = varint();
        REQUIRE(s.size() - at >= len);
        f.bytes = s.substr(at, len);
        at += len;
        break;
      }
      default:
        FAIL("unexpected wire type " << f.wire);
    }
    m.emplace(static_cast<uint32_t>(key >> 3), f);
  }
  return m;
}

const Field* one(const Message& m, uint32_t field, int wire) {
  if (m.count(field) == 0) return nullptr;
  REQUIRE(m.count(field) == 1);
  const Field& f = m.find(field)->second;
  REQUIRE(f.wire == wire);
  return &f;
}
double as_double(const Field* f) {
  REQUIRE(f != nullptr);
  double d;
  std::memcpy(&d, &f->num, 8);
  return d;
}
std::vector<double> packed_doubles(const Field* f) {
  REQUIRE(f != nullptr);
  REQUIRE(f->bytes.size() % 8 == 0);
  std::vector<double> v(f->bytes.size() / 8);
  std::memcpy(v.data(), f->bytes.data(), f->bytes.size());
  return v;
}

struct Histo {
  double min, max, num, sum, sum_squares;
  std::vector<double> limits, counts;
};
// One decoded Event with at most one summary value, as the writer produces them.
struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::optional<std::string> file_version;
  std::string tag;
  std::optional<float> simple_value;
  std::optional<Histo> histo;
};

Event decode_event(const std::string& bytes) {
  const Message m = parse_message(bytes);
  Event e;
  e.wall_time = as_double(one(m, 1, 1));
  if (const Field* f = one(m, 2, 0)) e.step = static_cast<int64_t>(f->num);
  if (const Field* f = one(m, 3, 2)) e.file_version = f->bytes;
  if (const Field* s = one(m, 5, 2)) {
    const Message sm = parse_message(s->bytes);
    const Message v = parse_message(one(sm, 1, 2)->bytes);
    e.tag = one(v, 1, 2)->bytes;
    if (const Field* f = one(v, 2, 5)) {
      float x;
      const auto bits = static_cast<uint32_t>(f->num);
      std::memcpy(&x, &bits, 4);
      e.simple_value = x;
    }
    if (const Field* f = one(v, 5, 2)) {
      const Message h = parse_message(f->bytes);
      e.histo =
          Histo{as_double(one(h, 1, 1)),     as_double(one(h, 2, 1)), as_double(one(h, 3, 1)),
                as_double(one(h, 4, 1)),     as_double(one(h, 5, 1)), packed_doubles(one(h, 6, 2)),
                packed_doubles(one(h, 7, 2))};
    }
  }
  return e;
}

std::vector<Event> read_events(const std::string& path) {
  const Records r = read_records(read_bytes(path));
  INFO(r.error);
  REQUIRE(r.error.empty());
  std::vector<Event> out;
  for (const auto& d : r.data)
    out.push_back(decode_event(d));
  return out;
}

// Checks the histogram's invariants against the values it summarizes, bucket by bucket.
void check_histogram(const Histo& h, const std::vector<double>& x) {
  REQUIRE(h.limits.size() == h.counts.size());
  REQUIRE(!h.limits.empty());
  double total = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    if (i > 0) CHECK(h.limits[i] >= h.limits[i - 1]);
    double expect = 0;
    for (double v : x)
      if ((i == 0 || v >= h.limits[i - 1]) && v < h.limits[i]) expect += 1;
    CHECK(h.counts[i] == expect);
    total += h.counts[i];
  }
  CHECK(total == h.num);
  CHECK(h.num == static_cast<double>(x.size()));
  if (!x.empty()) CHECK(h.limits.back() > h.max);
}

}  // namespace

// ---- CRC32C --------------------------------------------------------------------------------

TEST_CASE("crc32c: published test vectors") {
  using kiln::summary::crc32c;
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c("") == 0u);
  // RFC 3720, appendix B.4.
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(crc32c(std::string(32, '\xFF')) == 0x62A8AB43u);
  std::string inc(32, '\0'), dec(32, '\0');
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<char>(i);
    dec[i] = static_cast<char>(31 - i);
  }
  CHECK(crc32c(inc) == 0x46DD794Eu);
  CHECK(crc32c(dec) == 0x113FDB5Cu);
  // The iSCSI read command PDU of RFC 3720, B.4.
  const unsigned char pdu[48] = {0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0, 0, 0, 0,
                                 0x14, 0,    0, 0, 0, 0, 4, 0, 0, 0, 0, 0x14, 0, 0, 0, 0x18,
                                 0x28, 0,    0, 0, 0, 0, 0, 0, 2, 0, 0, 0,    0, 0, 0, 0};
  CHECK(crc32c(std::string_view(reinterpret_cast<const char*>(pdu), 48)) == 0xD9963A56u);
}

TEST_CASE("crc32c: masked values and agreement with a bitwise implementation") {
  using kiln::summary::masked_crc32c;
  // Masks worked out by hand from the CRCs above.
  CHECK(masked_crc32c("123456789") == 0xC78AB0E5u);
  CHECK(masked_crc32c(std::string(32, '\0')) == 0x0FD7FFFAu);
  CHECK(masked_crc32c("") == 0xA282EAD8u);
  std::string s;
  uint32_t state = 12345;
  for (int len = 0; len < 300; ++len) {
    CHECK(kiln::summary::crc32c(s) == ref_crc32c(s));
    CHECK(masked_crc32c(s) == ref_mask(ref_crc32c(s)));
    state = state * 1664525u + 1013904223u;
    s.push_back(static_cast<char>(state >> 24));
  }
}

// ---- summary::Writer -----------------------------------------------------------------------

TEST_CASE("summary: file name, first event, scalars") {
  const ScratchDir scratch("scalars");
  const fs::path dir = scratch.path / "nested" / "run1";  // parents are created
  const double before = std::floor(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::string path;
  {
    kiln::summary::Writer w(dir.string());
    path = w.path();
    CHECK(fs::path(path).parent_path() == dir);
    const std::string name = fs::path(path).filename().string();
    INFO(name);
    // events.out.tfevents.<seconds>.<host>.<pid>.<counter>; the host name may hold dots.
    const std::string prefix = "events.out.tfevents.";
    REQUIRE(name.rfind(prefix, 0) == 0);
    const std::string rest = name.substr(prefix.size());
    const size_t t_end = rest.find('.'), c_dot = rest.rfind('.');
    const size_t p_dot = rest.rfind('.', c_dot - 1);
    REQUIRE(t_end < p_dot);
    const auto digits = [](const std::string& s) {
      return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    };
    const std::string secs = rest.substr(0, t_end);
    REQUIRE(digits(secs));
    CHECK(std::stod(secs) >= before);
    CHECK(std::stod(secs) < before + 600);
    CHECK(p_dot > t_end + 1);  // a host name
    CHECK(rest.substr(p_dot + 1, c_dot - p_dot - 1) == std::to_string(::getpid()));
    CHECK(digits(rest.substr(c_dot + 1)));

    w.scalar("loss", 0.25, 0);
    w.scalar("loss", 1.0 / 3.0, 1);
    w.scalar("accuracy/train", -7.5, 1234567890123LL);
    w.scalar("neg_step", 2.0, -3);
    w.flush();  // visible without closing
    const auto ev = read_events(path);
    REQUIRE(ev.size() == 5);
    CHECK(ev[0].file_version == "brain.Event:2");
    CHECK(ev[0].tag.empty());
    CHECK(ev[0].wall_time >= before);
    CHECK(ev[0].wall_time < before + 600);
    CHECK(ev[1].tag == "loss");
    CHECK(ev[1].step == 0);
    CHECK(ev[1].simple_value == 0.25f);
    CHECK(ev[2].step == 1);
    CHECK(ev[2].simple_value == static_cast<float>(1.0 / 3.0));
    CHECK(ev[3].tag == "accuracy/train");
    CHECK(ev[3].step == 1234567890123LL);
    CHECK(ev[3].simple_value == -7.5f);
    CHECK(ev[4].step == -3);
    for (size_t i = 1; i < ev.size(); ++i) {
      CHECK(!ev[i].file_version);
      CHECK(ev[i].wall_time >= ev[i - 1].wall_time);
    }
    w.scalar("after_flush", 1.0, 9);
  }
  // The destructor flushed the last event.
  const auto ev = read_events(path);
  REQUIRE(ev.size() == 6);
  CHECK(ev[5].tag == "after_flush");
}

TEST_CASE("summary: two writers opened in the same second get two files") {
  const ScratchDir scratch("two");
  const fs::path& dir = scratch.path;
  kiln::summary::Writer a(dir.string()), b(dir.string());
  CHECK(a.path() != b.path());
  a.scalar("x", 1, 1);
  b.scalar("x", 2, 1);
  a.flush();
  b.flush();
  CHECK(read_events(a.path()).at(1).simple_value == 1.0f);
  CHECK(read_events(b.path()).at(1).simple_value == 2.0f);
}

TEST_CASE("summary: histograms") {
  const ScratchDir scratch("histo");
  const fs::path& dir = scratch.path;
  kiln::summary::Writer w(dir.string());
  // Hand-worked: min 0, max 4, 4 buckets -> right edges 1, 2, 3 and just above 4.
  w.histogram("h", kiln::tensor({0.0, 1.0, 1.0, 2.0, 3.0, 4.0, 4.0}), 5, 4);
  w.histogram("equal", kiln::tensor({2.5f, 2.5f, 2.5f}), 6);
  std::vector<double> wide;
  uint32_t state = 7;
  for (int i = 0; i < 1000; ++i) {
    state = state * 1664525u + 1013904223u;
    wide.push_back(static_cast<double>(state) / 4294967296.0 * 20.0 - 5.0);
  }
  w.histogram("wide", kiln::from_vector(wide, kiln::Shape{10, 100}), 7);
  w.histogram("ints", kiln::tensor({3, -1, 8, 8, 0}), 8, 3);
  w.histogram("empty", kiln::Tensor::empty(kiln::Shape{0, 3}, kiln::f32), 9);
  w.flush();

  const auto ev = read_events(w.path());
  REQUIRE(ev.size() == 6);
  {
    const Event& e = ev[1];
    CHECK(e.tag == "h");
    CHECK(e.step == 5);
    CHECK(!e.simple_value);
    REQUIRE(e.histo);
    const Histo& h = *e.histo;
    CHECK(h.min == 0);
    CHECK(h.max == 4);
    CHECK(h.num == 7);
    CHECK(h.sum == 15);
    CHECK(h.sum_squares == 47);
    REQUIRE(h.limits.size() == 4);
    CHECK(h.limits[0] == 1);
    CHECK(h.limits[1] == 2);
    CHECK(h.limits[2] == 3);
    CHECK(h.limits[3] > 4);
    CHECK(h.limits[3] < 4 + 1e-9);
    CHECK(h.counts == std::vector<double>{1, 2, 1, 3});
  }
  {
    const Histo& h = *ev[2].histo;
    CHECK(h.min == 2.5);
    CHECK(h.max == 2.5);
    CHECK(h.num == 3);
    REQUIRE(h.counts.size() == 1);
    CHECK(h.counts[0] == 3);
    check_histogram(h, {2.5, 2.5, 2.5});
  }
  {
    const Histo& h = *ev[3].histo;
    CHECK(h.counts.size() == 30);  // the default
    double lo = wide[0], hi = wide[0], sum = 0, sq = 0;
    for (double v : wide) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
      sq += v * v;
    }
    CHECK(h.min == lo);
    CHECK(h.max == hi);
    CHECK(std::abs(h.sum - sum) <= 1e-9 * std::abs(sq));
    CHECK(std::abs(h.sum_squares - sq) <= 1e-12 * sq);
    for (size_t i = 0; i + 1 < h.limits.size(); ++i)  // equal widths
      CHECK(std::abs((h.limits[i] - lo) - (hi - lo) * double(i + 1) / 30) < 1e-12 * (hi - lo));
    check_histogram(h, wide);
  }
  {
    const Histo& h = *ev[4].histo;
    CHECK(h.min == -1);
    CHECK(h.max == 8);
    CHECK(h.sum == 18);
    CHECK(h.counts == std::vector<double>{2, 1, 2});  // [-1,2) [2,5) [5,8+)
    check_histogram(h, {3, -1, 8, 8, 0});
  }
  {
    const Histo& h = *ev[5].histo;
    CHECK(h.num == 0);
    CHECK(h.sum == 0);
    check_histogram(h, {});
  }
}

TEST_CASE("summary: bad arguments raise kiln::Error") {
  const ScratchDir scratch("bad");
  const fs::path& dir = scratch.path;
  kiln::summary::Writer w(dir.string());
  check_error(
      [&] {
        w.histogram("h", kiln::tensor({1.0, 2.0}), 0, 0);
      },
      {"histogram", "'h'", "buckets"});
  check_error(
      [&] {
        w.histogram("nan", kiln::tensor({1.0, std::nan(""), 2.0}), 0);
      },
      {"histogram", "'nan'", "element 1", "f64[3]"});
  check_error([&] { w.histogram("u", kiln::Tensor(), 0); }, {"histogram", "'u'", "undefined"});
  // A failed histogram writes nothing.
  w.flush();
  CHECK(read_events(w.path()).size() == 1);

  write_bytes(dir / "plain_file", "x");
  check_error([&] { kiln::summary::Writer bad((dir / "plain_file").string()); },
              {"summary::Writer", "plain_file"});
  check_error([&] { kiln::summary::Writer bad(""); }, {"summary::Writer", "empty"});
}

TEST_CASE("summary: the reader detects a corrupted byte") {
  const ScratchDir scratch("corrupt");
  const fs::path& dir = scratch.path;
  std::string path;
  {
    kiln::summary::Writer w(dir.string());
    path = w.path();
    w.scalar("a", 1.5, 1);
    w.scalar("b", 2.5, 2);
  }
  const std::string good = read_bytes(path);
  REQUIRE(read_records(good).error.empty());
  REQUIRE(read_records(good).data.size() == 3);
  const size_t first = 12 + get_le<uint64_t>(good, 0) + 4;  // where record 1 starts
  // A flipped bit anywhere: in record 1's length, its length CRC, its data, its data CRC.
  const std::vector<std::pair<size_t, std::string>> cases = {
      {first + 0, "record 1: length crc"},
      {first + 9, "record 1: length crc"},
      {first + 12, "record 1: data crc"},
      {first + 20, "record 1: data crc"},
      {first + 12 + get_le<uint64_t>(good, first) + 1, "record 1: data crc"},
  };
  for (const auto& [at, want] : cases) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    INFO("byte " << at);
    CHECK(read_records(bad).error == want);
  }
  CHECK(read_records(good.substr(0, good.size() - 1)).error == "record 2: truncated");
}

TEST_CASE("summary: concurrent writers interleave whole records") {
  const ScratchDir scratch("threads");
  const fs::path& dir = scratch.path;
  kiln::summary::Writer w(dir.string());
  constexpr int kThreads = 4, kEach = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&w, t] {
      const std::string tag = fmt::format("t{}", t);
      for (int i = 0; i < kEach; ++i) {
        w.scalar(tag, t * 1000 + i, i);
        if (i % 50 == 0) w.flush();
      }
    });
  for (auto& th : threads)
    th.join();
  w.flush();
  const auto ev = read_events(w.path());
  REQUIRE(ev.size() == 1 + kThreads * kEach);
  std::set<std::pair<std::string, int64_t>> seen;
  for (size_t i = 1; i < ev.size(); ++i) {
    const int t = std::stoi(ev[i].tag.substr(1));
    CHECK(ev[i].simple_value == static_cast<float>(t * 1000 + ev[i].step));
    seen.emplace(ev[i].tag, ev[i].step);
  }
  CHECK(seen.size() == static_cast<size_t>(kThreads * kEach));
}

// ---- checkpoints ---------------------------------------------------------------------------

namespace {

// A safetensors file from a header text and data bytes, for hand-made (and broken) files.
std::string st_file(const std::string& header, const std::string& data, uint64_t n_override = 0) {
  std::string out(8, '\0');
  const uint64_t n = n_override != 0 ? n_override : header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void check_same(const kiln::Tensor& got, const kiln::Tensor& want) {
  REQUIRE(got.dtype() == want.dtype());
  REQUIRE(got.shape() == want.shape());
  CHECK(got.to_vector<double>() == want.to_vector<double>());
}

}  // namespace

TEST_CASE("checkpoint: round trip of dtypes, shapes, scalars, empty tensors and metadata") {
  const ScratchDir scratch("roundtrip");
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "m.safetensors").string();
  std::map<std::string, kiln::Tensor> tensors = {
      {"f64", kiln::tensor({{1.5, -2.25, 1e300}, {0.1, -0.0, 3.0}})},
      {"f32_scalar", kiln::tensor(3.5f)},
      {"i64", kiln::tensor({int64_t{-9000000000}, int64_t{7}})},
      {"i32_empty", kiln::Tensor::empty(kiln::Shape{3, 0, 2}, kiln::i32)},
      {"u8", kiln::from_vector(std::vector<uint8_t>{0, 1, 254, 255, 128}, kiln::Shape{5})},
      {"bool", kiln::from_vector(std::vector<bool>{true, false, false, true}, kiln::Shape{2, 2})},
      {"empty_1d", kiln::Tensor::empty(kiln::Shape{0}, kiln::f64)},
      {"layer/0.weight", kiln::tensor({{1.f, 2.f}, {3.f, 4.f}}).transpose()},  // a strided view
  };
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"epoch", "3"}, {"ключ", "значение"}, {"odd \"key\"", "line\nbreak\t"}};
  kiln::nn::save_safetensors(path, tensors, meta);
  const kiln::nn::SafetensorsFile f = kiln::nn::load_safetensors(path);
  CHECK(f.metadata == meta);
  REQUIRE(f.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(f.tensors.count(name) == 1);
    check_same(f.tensors.at(name), t);
  }
  CHECK(f.tensors.at("layer/0.weight").to_vector<float>() == std::vector<float>{1, 3, 2, 4});
  CHECK(f.tensors.at("f64").to_vector<double>()[2] == 1e300);
  CHECK(std::signbit(f.tensors.at("f64").to_vector<double>()[4]));

  // Without metadata there is no "__metadata__" entry, and the data follow in name order.
  kiln::nn::save_safetensors(path, {{"z", kiln::tensor(1)}, {"a", kiln::tensor(2)}});
  const std::string bytes = read_bytes(path);
  const auto n = get_le<uint64_t>(bytes, 0);
  CHECK(n % 8 == 0);
  const std::string header = bytes.substr(8, n);
  CHECK(header.find("__metadata__") == std::string::npos);
  CHECK(header.find("\"a\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}") !=
        std::string::npos);
  CHECK(get_le<int32_t>(bytes, 8 + n) == 2);
  CHECK(get_le<int32_t>(bytes, 8 + n + 4) == 1);
  CHECK(kiln::nn::load_safetensors(path).metadata.empty());
}

TEST_CASE("checkpoint: byte-exact file") {
  const ScratchDir scratch("bytes");
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "small.safetensors").string();
  kiln::nn::save_safetensors(path, {{"b", kiln::tensor({1.0f, -2.0f})}, {"a", kiln::tensor(7)}},
                             {{"k", "v"}});
  // 132 bytes of JSON padded with 4 spaces to 136 = 0x88; then a = int32 7, b = f32 1, -2.
  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"
      "    ";
  const std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + json +
                               std::string(
                                   "\x07\0\0\0"
                                   "\0\0\x80\x3f"
                                   "\0\0\0\xc0",
                                   12);
  CHECK(read_bytes(path) == expected);
  // And a hand-made file with the header keys in another order and no padding loads.
  write_bytes(path, st_file(R"({"b":{"data_offsets":[0,8],"shape":[1,2],"dtype":"F32"}})",
                            std::string("\0\0\x80\x3f\0\0\0\xc0", 8)));
  const auto f = kiln::nn::load_safetensors(path);
  check_same(f.tensors.at("b"), kiln::tensor({{1.0f, -2.0f}}));
}

TEST_CASE("checkpoint: variables save and restore") {
  const ScratchDir scratch("vars");
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "ckpt.safetensors").string();
  kiln::Variable w(kiln::tensor({{1.f, 2.f}, {3.f, 4.f}}), "dense/w");
  kiln::Variable b(kiln::tensor({0.5, -0.5, 0.25}), "dense/b");
  kiln::Variable step(kiln::tensor(int64_t{41}), "step", false);
  kiln::nn::save_safetensors(path, {w, b, step}, {{"step", "41"}});

  w.assign(kiln::tensor({{0.f, 0.f}, {0.f, 0.f}}));
  b.assign(kiln::tensor({9.0, 9.0, 9.0}));
  step.assign(kiln::tensor(int64_t{0}));
  const auto meta = kiln::nn::restore_safetensors(path, {step, w, b});
  CHECK(meta == std::map<std::string, std::string>{{"step", "41"}});
  check_same(w.value(), kiln::tensor({{1.f, 2.f}, {3.f, 4.f}}));
  check_same(b.value(), kiln::tensor({0.5, -0.5, 0.25}));
  check_same(step.value(), kiln::tensor(int64_t{41}));
  // A subset of the file's tensors may be restored.
  b.assign(kiln::tensor({1.0, 1.0, 1.0}));
  kiln::nn::restore_safetensors(path, {b});
  check_same(b.value(), kiln::tensor({0.5, -0.5, 0.25}));

  kiln::Variable w2(kiln::tensor(1.f), "dense/w");
  check_error(
      [&] {
        kiln::nn::save_safetensors(path, {w, w2});
      },
      {"save_safetensors", path, "two variables", "dense/w"});
  check_error(
      [&] {
        kiln::nn::save_safetensors(path, {w, kiln::Variable()});
      },
      {"save_safetensors", path, "variable 1 is undefined"});
  check_error(
      [&] {
        kiln::nn::save_safetensors(path, {{"", kiln::tensor(1)}});
      },
      {"save_safetensors", path, "invalid tensor name"});
  // The failed saves left the file as it was.
  CHECK(kiln::nn::load_safetensors(path).tensors.size() == 3);
}

TEST_CASE("checkpoint: restore mismatches change nothing") {
  const ScratchDir scratch("restore");
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "ckpt.safetensors").string();
  kiln::nn::save_safetensors(path, {{"a", kiln::tensor({1.f, 2.f})}, {"b", kiln::tensor(3.0)}});
  // "a" comes first and matches: it must not be assigned when a later variable fails.
  kiln::Variable a(kiln::tensor({0.f, 0.f}), "a");
  const auto untouched = [&] { check_same(a.value(), kiln::tensor({0.f, 0.f})); };

  kiln::Variable missing(kiln::tensor(0.0), "c");
  check_error(
      [&] {
        kiln::nn::restore_safetensors(path, {a, missing});
      },
      {"restore_safetensors", path, "variable 'c' has no tensor", "'a', 'b'"});
  untouched();
  kiln::Variable shape(kiln::tensor({0.0}), "b");
  check_error(
      [&] {
        kiln::nn::restore_safetensors(path, {a, shape});
      },
      {"restore_safetensors", path, "'b'", "f64[1]", "f64[]"});
  untouched();
  check_same(shape.value(), kiln::tensor({0.0}));
  kiln::Variable dtype(kiln::tensor(0.f), "b");
  check_error(
      [&] {
        kiln::nn::restore_safetensors(path, {a, dtype});
      },
      {"restore_safetensors", path, "'b'", "f32[]", "f64[]"});
  untouched();
  std::map<std::string, kiln::Tensor> many;
  for (int i = 0; i < 12; ++i)
    many.emplace(fmt::format("t{}", i + 10), kiln::tensor(i));
  kiln::nn::save_safetensors(path, many);
  check_error([&] { kiln::nn::restore_safetensors(path, {a}); },
              {"'a' has no tensor", "'t10', 't11',", "'t19' and 2 more"});
  untouched();
  check_error([&] { kiln::nn::restore_safetensors((dir / "nope").string(), {a}); },
              {"nope", "missing"});
  untouched();
}

TEST_CASE("checkpoint: truncated and corrupt files are rejected naming the path") {
  const ScratchDir scratch("corrupt_st");
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "bad.safetensors").string();
  const std::string hdr = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data("\0\0\x80\x3f\0\0\0\x40", 8);
  write_bytes(path, st_file(hdr, data));
  check_same(kiln::nn::load_safetensors(path).tensors.at("x"), kiln::tensor({1.f, 2.f}));
  const std::string good = read_bytes(path);

  const auto rejects = [&](const std::string& bytes, const std::string& why) {
    write_bytes(path, bytes);
    INFO("expected: " << why);
    check_error([&] { kiln::nn::load_safetensors(path); }, {"load_safetensors", path, why});
  };
  // Truncated anywhere.
  for (size_t len : {size_t{0}, size_t{7}, size_t{8}, size_t{30}, 8 + hdr.size() - 1})
    rejects(good.substr(0, len), "truncated");
  for (size_t len : {8 + hdr.size(), good.size() - 4, good.size() - 1})
    rejects(good.substr(0, len), "out of range");
  rejects(good + "x", "after the last tensor");
  rejects(st_file(hdr, data, uint64_t{1} << 40), "over the limit");
  rejects(st_file(hdr, data, hdr.size() + data.size() + 1), "truncated");
  rejects(st_file(R"(["x"])", ""), "not a JSON object");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", data), "JSON");
  rejects(st_file(R"({"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", data.substr(4)),
          "unknown dtype");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
          "not a valid dim");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
          "need 12 bytes");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", data),
          "out of range");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data),
          "invalid data_offsets");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data + "pad!"),
          "unused bytes");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  data),
          "overlap");
  rejects(st_file(R"({"x":{"dtype":"F32","shape":[2]}})", data), "data_offsets");
  rejects(st_file(R"({"x":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", "\x01\x02"),
          "not 0 or 1");
  rejects(st_file(R"({"__metadata__":{"k":1}})", ""), "expected a string");
  rejects(st_file(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                  R"("x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                  "ab"),
          "duplicate");
  check_error([&] { kiln::nn::load_safetensors(dir.string()); },
              {"load_safetensors", dir.string(), "not a regular file"});
}

TEST_CASE("checkpoint: writes are atomic and leave no temporary file") {
  const ScratchDir scratch("atomic");
  const fs::path& dir = scratch.path;
  const std::string path = (dir / "c.safetensors").string();
  kiln::nn::save_safetensors(path, {{"x", kiln::tensor({1, 2, 3})}});
  kiln::nn::save_safetensors(path, {{"y", kiln::tensor(5.0)}});  // replaces the file
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  CHECK(names == std::vector<std::string>{"c.safetensors"});
  const auto f = kiln::nn::load_safetensors(path);
  CHECK(f.tensors.size() == 1);
  check_same(f.tensors.at("y"), kiln::tensor(5.0));

  // A directory that does not exist: an error, and nothing written anywhere.
  const std::string bad = (dir / "missing" / "c.safetensors").string();
  check_error(
      [&] {
        kiln::nn::save_safetensors(bad, {{"x", kiln::tensor(1)}});
      },
      {"save_safetensors", bad});
  CHECK(!fs::exists(dir / "missing"));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
}
