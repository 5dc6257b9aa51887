// The IDX format (LeCun's MNIST files): a 4-byte magic 0x0000TTNN (TT the element type, NN
// the number of dims), NN big-endian u32 dims, then the elements, big-endian, row-major.
// Files starting with gzip's magic bytes are inflated with zlib first; gzip's CRC-32 and
// length trailer are checked, so a corrupt or truncated download is caught here.

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <zlib.h>

#include <kiln/kiln.h>
#include <kiln/nn/data.h>

namespace kiln::data {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

std::vector<uint8_t> read_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  KILN_CHECK(f != nullptr, "read_idx: cannot open {}: {}", path, std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t got;
  while ((got = std::fread(chunk, 1, sizeof chunk, f.get())) > 0)
    bytes.insert(bytes.end(), chunk, chunk + got);
  KILN_CHECK(!std::ferror(f.get()), "read_idx: error reading {}: {}", path, std::strerror(errno));
  return bytes;
}

bool is_gzip(const std::vector<uint8_t>& b, size_t at = 0) {
  return b.size() >= at + 2 && b[at] == 0x1f && b[at + 1] == 0x8b;
}

// Inflates every gzip member of `in` (gzip allows several, concatenated).
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header and trailer, which zlib then checks.
  KILN_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "read_idx: {}: zlib failed to start", path);
  struct End {
    z_stream* zs;
    ~End() { inflateEnd(zs); }
  } end{&zs};

  std::vector<uint8_t> out;
  // The trailer's ISIZE (the last member's length mod 2^32) sizes the reservation when it is
  // plausible (deflate expands at most ~1032x); in a truncated file it is noise, so the
  // buffer's size still grows step by step and pages are touched only as they are filled.
  if (in.size() >= 18) {
    const size_t n = in.size();
    const uint32_t isize = uint32_t(in[n - 4]) | uint32_t(in[n - 3]) << 8 |
                           uint32_t(in[n - 2]) << 16 | uint32_t(in[n - 1]) << 24;
    if (isize / 1032 <= n) out.reserve(size_t(isize) + 1);
  }
  out.resize(1 << 16);
  size_t produced = 0;
  zs.next_in = const_cast<Bytef*>(in.data());
  size_t in_left = in.size();
  for (;;) {
    if (produced == out.size()) {
      const size_t grown = out.size() * 2;
      out.resize(out.size() < out.capacity() ? std::min(grown, out.capacity()) : grown);
    }
    const uInt in_chunk = static_cast<uInt>(std::min<size_t>(in_left, 1u << 30));
    const uInt out_chunk = static_cast<uInt>(std::min<size_t>(out.size() - produced, 1u << 30));
    zs.avail_in = in_chunk;
    zs.next_out = out.data() + produced;
    zs.avail_out = out_chunk;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    in_left -= in_chunk - zs.avail_in;
    produced += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (in_left == 0) break;
      const size_t at = in.size() - in_left;
      KILN_CHECK(is_gzip(in, at), "read_idx: {}: {} bytes of trailing garbage after the gzip data",
                 path, in_left);
      KILN_CHECK(inflateReset(&zs) == Z_OK, "read_idx: {}: zlib failed to restart", path);
      continue;
    }
    if (rc == Z_OK || rc == Z_BUF_ERROR) {
      // Out of room: grow and go on. Out of input before the trailer: the file is cut short.
      KILN_CHECK(zs.avail_out == 0 || in_left > 0,
                 "read_idx: {}: truncated gzip file: the compressed data ends before the gzip "
                 "trailer ({} bytes inflated)",
                 path, produced);
      continue;
    }
    // Z_DATA_ERROR covers a bad CRC-32 ("incorrect data check") and a bad length.
    KILN_FAIL("read_idx: {}: corrupt gzip data ({}: {})", path,
              rc == Z_DATA_ERROR  ? "data error"
              : rc == Z_MEM_ERROR ? "out of memory"
                                  : "error",
              zs.msg ? zs.msg : "no detail");
  }
  out.resize(produced);
  return out;
}

struct IdxType {
  uint8_t code;
  const char* name;
  size_t bytes;  // in the file
  DType dtype;   // in memory
};
constexpr IdxType kTypes[] = {
    {0x08, "u8", 1, DType::u8},   {0x09, "i8", 1, DType::i32},  {0x0B, "i16", 2, DType::i32},
    {0x0C, "i32", 4, DType::i32}, {0x0D, "f32", 4, DType::f32}, {0x0E, "f64", 8, DType::f64},
};

uint64_t load_be(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i)
    v = v << 8 | p[i];
  return v;
}

// Converts n big-endian file elements of type `t` into `dst` (of t.dtype).
void decode(const IdxType& t, const uint8_t* src, int64_t n, void* dst) {
  switch (t.code) {
    case 0x08:
      std::memcpy(dst, src, static_cast<size_t>(n));
      return;
    case 0x09: {
      auto* d = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < n; ++i)
        d[i] = static_cast<int8_t>(src[i]);
      return;
    }
    case 0x0B: {
      auto* d = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < n; ++i)
        d[i] = static_cast<int16_t>(load_be(src + 2 * i, 2));
      return;
    }
    case 0x0C:
    case 0x0D: {  // the bits of i32 and f32 alike
      auto* d = static_cast<uint32_t*>(dst);
      for (int64_t i = 0; i < n; ++i)
        d[i] = static_cast<uint32_t>(load_be(src + 4 * i, 4));
      return;
    }
    default: {
      auto* d = static_cast<uint64_t*>(dst);
      for (int64_t i = 0; i < n; ++i)
        d[i] = load_be(src + 8 * i, 8);
      return;
    }
  }
}

}  // namespace

Tensor read_idx(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  const bool gz = is_gzip(bytes);
  if (gz) bytes = gunzip(bytes, path);
  const char* kind = gz ? "IDX data (inflated)" : "IDX file";

  KILN_CHECK(bytes.size() >= 4, "read_idx: {}: the {} has {} bytes, too short for the magic number",
             path, kind, bytes.size());
  const uint32_t magic = static_cast<uint32_t>(load_be(bytes.data(), 4));
  const IdxType* type = nullptr;
  for (const IdxType& t : kTypes)
    if (t.code == bytes[2]) type = &t;
  KILN_CHECK(bytes[0] == 0 && bytes[1] == 0 && type != nullptr,
             "read_idx: {}: bad magic number 0x{:08X}: expected 0x0000TTNN with type TT one of "
             "08 (u8), 09 (i8), 0B (i16), 0C (i32), 0D (f32), 0E (f64); not an IDX file?",
             path, magic);
  const size_t rank = bytes[3];
  const size_t header = 4 + 4 * rank;
  KILN_CHECK(bytes.size() >= header,
             "read_idx: {}: truncated header: {} dims need {} bytes, the {} has {}", path, rank,
             header, kind, bytes.size());

  std::vector<int64_t> dims(rank);
  uint64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < rank; ++i) {
    dims[i] = static_cast<int64_t>(load_be(bytes.data() + 4 + 4 * i, 4));
    // u32 dims: the product overflows only past 2^62, far beyond any real file.
    if (dims[i] != 0 && numel > (uint64_t(1) << 62) / static_cast<uint64_t>(dims[i]))
      overflow = true;
    numel *= static_cast<uint64_t>(dims[i]);
  }
  const Shape shape(dims);
  KILN_CHECK(!overflow, "read_idx: {}: dims {} are too large", path, shape.str());
  const uint64_t want = numel * type->bytes;
  const uint64_t have = bytes.size() - header;
  KILN_CHECK(have >= want,
             "read_idx: {}: truncated: dims {} of {} need {} bytes of data, the {} has {}", path,
             shape.str(), type->name, want, kind, have);
  KILN_CHECK(have == want,
             "read_idx: {}: wrong size: dims {} of {} need {} bytes of data, the {} has {} "
             "({} extra)",
             path, shape.str(), type->name, want, kind, have, have - want);

  Tensor out = Tensor::empty(shape, type->dtype);
  if (numel > 0)
    decode(*type, bytes.data() + header, static_cast<int64_t>(numel), out.mutable_data<void>());
  return out;
}

}  // namespace kiln::data
