#pragma once

// Files Kiln writes (saved functions, KILN_DUMP, KILN_CACHE_DIR) never appear half written.

#include <filesystem>
#include <string_view>

namespace kiln {

// Writes `bytes` to "<path>.tmp.<pid>" and renames it onto `path`; on failure removes the
// temporary file and raises kiln::Error naming `who` and the path.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes,
                           std::string_view who);

}  // namespace kiln
