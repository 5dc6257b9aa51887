#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace kiln {

// A user mistake: the message names the op, the shapes and the dtypes involved, e.g.
// "matmul: inner dimensions differ: a f32[2,3] vs b f32[4,5]".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A broken invariant of Kiln itself (our bug, not the user's).
class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& what) : std::logic_error(what) {}
};

[[noreturn]] void throw_internal(const char* file, int line, const std::string& what);

}  // namespace kiln

// KILN_CHECK(cond, "op: message {}", args...) throws kiln::Error when cond is false.
#define KILN_CHECK(cond, ...)                          \
  do {                                                 \
    if (!(cond)) [[unlikely]]                          \
      throw ::kiln::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)

#define KILN_FAIL(...) throw ::kiln::Error(::fmt::format(__VA_ARGS__))

// KILN_ASSERT(cond, "message {}", args...) flags a Kiln bug.
#define KILN_ASSERT(cond, ...)                                                \
  do {                                                                        \
    if (!(cond)) [[unlikely]]                                                 \
      ::kiln::throw_internal(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)
