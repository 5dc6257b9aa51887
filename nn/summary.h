#pragma once

// TensorBoard event files: `events.out.tfevents.<time>.<host>.<pid>.<n>` in a log directory,
// holding Event protos (scalars and histograms) in TFRecord framing with masked CRC32C.
// `tensorboard --logdir <dir>` reads them.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <kiln/core/tensor.h>

namespace kiln::summary {

class Writer {
 public:
  // Creates logdir (and its parents) and a new event file in it, starting with the
  // file_version event ("brain.Event:2"). kiln::Error when it cannot.
  explicit Writer(const std::string& logdir);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void scalar(const std::string& tag, double value, int64_t step);
  // A histogram of the tensor's values in `buckets` equal-width buckets between its min and
  // max (TensorBoard's HistogramProto: min, max, num, sum, sum_squares, limits, counts).
  void histogram(const std::string& tag, const Tensor& values, int64_t step, int buckets = 30);
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_record(std::string_view data);
  std::mutex mu_;
  std::string path_;
  std::FILE* file_ = nullptr;
};

// CRC32C (Castagnoli), and TFRecord's mask of it: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t crc32c(std::string_view data);
uint32_t masked_crc32c(std::string_view data);

}  // namespace kiln::summary
