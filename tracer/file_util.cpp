#include <kiln/tracer/file_util.h>

#include <fstream>
#include <string>

#include <unistd.h>

#include <kiln/core/error.h>

namespace kiln {

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes,
                           std::string_view who) {
  namespace fs = std::filesystem;
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    KILN_CHECK(out.good(), "{}: cannot create {}", who, tmp.string());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      KILN_FAIL("{}: writing {} failed", who, tmp.string());
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    KILN_FAIL("{}: cannot rename {} to {}: {}", who, tmp.string(), path.string(), ec.message());
  }
}

}  // namespace kiln
