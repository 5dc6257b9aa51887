#include <kiln/core/dtype.h>
#include <kiln/core/error.h>

namespace kiln {

void throw_internal(const char* file, int line, const std::string& what) {
  throw InternalError(fmt::format("kiln internal error at {}:{}: {}", file, line, what));
}

std::string_view name(DType t) {
  switch (t) {
    case DType::boolean:
      return "bool";
    case DType::u8:
      return "u8";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
  }
  return "?";
}

}  // namespace kiln
