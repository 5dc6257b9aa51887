#include <kiln/nn/summary.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include <unistd.h>

#include <kiln/core/error.h>

namespace kiln::summary {

static_assert(std::endian::native == std::endian::little,
              "event files are little-endian; the encoder copies host doubles as is");

namespace {

// ---- CRC32C --------------------------------------------------------------------------------

// Reflected Castagnoli polynomial, one table lookup per byte: event records are small, so a
// slicing or SSE4.2 variant would not be worth its code.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

// ---- protobuf wire format ------------------------------------------------------------------
// Only what Event needs: varints, 64-bit doubles, 32-bit floats and length-delimited fields.

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, uint32_t field, Wire wire) {
  put_varint(out, (uint64_t{field} << 3) | wire);
}
template <class T>
void put_raw(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_double(std::string& out, uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_raw(out, v);
}
void put_float(std::string& out, uint32_t field, float v) {
  put_key(out, field, kFixed32);
  put_raw(out, v);
}
// int64 goes as the two's complement varint (10 bytes when negative), as protobuf does.
void put_int64(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));
}
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_packed_doubles(std::string& out, uint32_t field, const std::vector<double>& v) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, v.size() * sizeof(double));
  for (double d : v)
    put_raw(out, d);
}

// Field numbers of tensorflow/core/util/event.proto and framework/summary.proto.
namespace event {
constexpr uint32_t wall_time = 1, step = 2, file_version = 3, summary = 5;
}
namespace value {
constexpr uint32_t tag = 1, simple_value = 2, histo = 5;
}
namespace histo {
constexpr uint32_t min = 1, max = 2, num = 3, sum = 4, sum_squares = 5, bucket_limit = 6,
                   bucket = 7;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// An Event holding one Summary with one Summary.Value (already encoded).
std::string summary_event(int64_t step, const std::string& encoded_value) {
  std::string summary;
  put_bytes(summary, 1, encoded_value);  // Summary.value (repeated, here once)
  std::string ev;
  put_double(ev, event::wall_time, now_seconds());
  put_int64(ev, event::step, step);
  put_bytes(ev, event::summary, summary);
  return ev;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string h(buf);
  // The name becomes part of a file name: keep it one path component.
  std::replace(h.begin(), h.end(), '/', '_');
  return h;
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data)
    c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view data) {
  const uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

// ---- Writer --------------------------------------------------------------------------------

Writer::Writer(const std::string& logdir) {
  namespace fs = std::filesystem;
  KILN_CHECK(!logdir.empty(), "summary::Writer: the log directory name is empty");
  std::error_code ec;
  fs::create_directories(logdir, ec);
  KILN_CHECK(!ec && fs::is_directory(logdir),
             "summary::Writer: cannot create the log directory {}: {}", logdir,
             ec ? ec.message() : "not a directory");
  // Two writers opened in one second by one process differ by the counter; "x" (exclusive)
  // makes a clash with any other file an error instead of a silent overwrite.
  static std::atomic<uint64_t> counter{0};
  const auto seconds = static_cast<int64_t>(std::floor(now_seconds()));
  const std::string file = "events.out.tfevents." + std::to_string(seconds) + "." + host_name() +
                           "." + std::to_string(::getpid()) + "." +
                           std::to_string(counter.fetch_add(1));
  path_ = (fs::path(logdir) / file).string();
  file_ = std::fopen(path_.c_str(), "wbx");
  KILN_CHECK(file_ != nullptr, "summary::Writer: cannot create {}: {}", path_,
             std::strerror(errno));
  std::string ev;
  put_double(ev, event::wall_time, now_seconds());
  put_bytes(ev, event::file_version, "brain.Event:2");
  try {
    write_record(ev);
    flush();
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    throw;
  }
}

Writer::~Writer() {
  if (file_ != nullptr) std::fclose(file_);  // fclose flushes; a destructor cannot report
}

void Writer::scalar(const std::string& tag, double value, int64_t step) {
  std::string v;
  put_bytes(v, value::tag, tag);
  put_float(v, value::simple_value, static_cast<float>(value));
  write_record(summary_event(step, v));
}

void Writer::histogram(const std::string& tag, const Tensor& values, int64_t step, int buckets) {
  KILN_CHECK(buckets >= 1, "summary::Writer::histogram: '{}': buckets must be >= 1, got {}", tag,
             buckets);
  KILN_CHECK(values.defined(), "summary::Writer::histogram: '{}': the tensor is undefined", tag);
  KILN_CHECK(!values.is_symbolic(),
             "summary::Writer::histogram: '{}': {} is symbolic (inside a trace); write summaries "
             "from eager code",
             tag, values.type_str());
  const std::vector<double> x = values.to_vector<double>();
  double lo = 0, hi = 0, sum = 0, sum_sq = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    KILN_CHECK(std::isfinite(x[i]), "summary::Writer::histogram: '{}': element {} of {} is {}", tag,
               i, values.type_str(), x[i]);
    lo = i == 0 ? x[i] : std::min(lo, x[i]);
    hi = i == 0 ? x[i] : std::max(hi, x[i]);
    sum += x[i];
    sum_sq += x[i] * x[i];
  }
  // Bucket i counts [limit[i-1], limit[i]) (TF's convention); the last limit sits just above
  // max so that max itself falls in the last bucket. Equal values make one bucket.
  const int k = lo == hi ? 1 : buckets;
  std::vector<double> limits(static_cast<size_t>(k));
  for (int i = 0; i + 1 < k; ++i)  // std::lerp is monotonic and cannot overflow
    limits[static_cast<size_t>(i)] = std::min(hi, std::lerp(lo, hi, double(i + 1) / k));
  limits.back() = std::nextafter(hi, HUGE_VAL);
  std::vector<double> counts(limits.size(), 0.0);
  for (double v : x) {
    const auto it = std::upper_bound(limits.begin(), limits.end(), v);
    counts[static_cast<size_t>(it - limits.begin())] += 1;
  }

  std::string h;
  put_double(h, histo::min, lo);
  put_double(h, histo::max, hi);
  put_double(h, histo::num, static_cast<double>(x.size()));
  put_double(h, histo::sum, sum);
  put_double(h, histo::sum_squares, sum_sq);
  put_packed_doubles(h, histo::bucket_limit, limits);
  put_packed_doubles(h, histo::bucket, counts);
  std::string v;
  put_bytes(v, value::tag, tag);
  put_bytes(v, value::histo, h);
  write_record(summary_event(step, v));
}

void Writer::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  KILN_CHECK(std::fflush(file_) == 0, "summary::Writer: flushing {} failed: {}", path_,
             std::strerror(errno));
}

// TFRecord framing: u64 length, masked CRC of those 8 bytes, data, masked CRC of data.
void Writer::write_record(std::string_view data) {
  std::string rec;
  rec.reserve(data.size() + 16);
  put_raw(rec, static_cast<uint64_t>(data.size()));
  put_raw(rec, masked_crc32c(rec));
  rec.append(data);
  put_raw(rec, masked_crc32c(data));
  std::lock_guard<std::mutex> lock(mu_);
  KILN_CHECK(std::fwrite(rec.data(), 1, rec.size(), file_) == rec.size(),
             "summary::Writer: writing {} failed: {}", path_, std::strerror(errno));
}

}  // namespace kiln::summary
