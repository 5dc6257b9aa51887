#pragma once

// A small JSON reader and writer for saved functions (manifest.json and the safetensors
// header). It supports objects, arrays, strings with escapes, integers (int64), booleans and
// null; non-integer numbers are rejected. The reader is meant for untrusted input: it
// limits nesting depth and input size, rejects duplicate object keys, invalid escapes, lone
// surrogates, raw control characters and trailing garbage, and raises kiln::Error (never
// crashes) saying where the text is wrong.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <kiln/core/error.h>

namespace kiln::json {

class Value {
 public:
  enum class Type { null, boolean, integer, string, array, object };

  Value() = default;
  Value(std::nullptr_t) {}                                         // NOLINT
  Value(bool b) : type_(Type::boolean), b_(b) {}                   // NOLINT
  Value(int64_t i) : type_(Type::integer), i_(i) {}                // NOLINT
  Value(int i) : type_(Type::integer), i_(i) {}                    // NOLINT
  Value(uint64_t i);                                               // NOLINT
  Value(std::string s) : type_(Type::string), s_(std::move(s)) {}  // NOLINT
  Value(const char* s) : type_(Type::string), s_(s) {}             // NOLINT
  static Value array() {
    Value v;
    v.type_ = Type::array;
    return v;
  }
  static Value object() {
    Value v;
    v.type_ = Type::object;
    return v;
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_int() const { return type_ == Type::integer; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // Typed reads: kiln::Error ("JSON: expected an integer, got a string") on a mismatch.
  bool as_bool() const;
  int64_t as_int() const;
  const std::string& as_string() const;
  const std::vector<Value>& items() const;       // array elements
  const std::vector<std::string>& keys() const;  // object keys, in document order
  const std::vector<Value>& values() const;      // object values, parallel to keys()

  // Object member lookup; nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;

  // Building.
  Value& push_back(Value v);                // arrays
  Value& set(std::string key, Value v);     // objects: replaces an existing key
  Value& append(std::string key, Value v);  // objects: no duplicate check (the caller's)

 private:
  void expect(Type t) const;

  Type type_ = Type::null;
  bool b_ = false;
  int64_t i_ = 0;
  std::string s_;
  std::vector<Value> items_;  // array elements or object values
  std::vector<std::string> keys_;
};

// "null", "a boolean", "an integer", ...
const char* type_name(Value::Type t);

struct ParseLimits {
  size_t max_size = size_t{100} << 20;  // bytes of text
  int max_depth = 64;                   // nested arrays/objects
};

// Parses one JSON value (surrounding whitespace allowed). Errors read
// "JSON: <what> at line L, column C".
Value parse(std::string_view text, const ParseLimits& limits = {});

// Compact text when indent < 0, otherwise pretty-printed with `indent` spaces per level.
std::string dump(const Value& v, int indent = -1);
// A JSON string literal (quotes included) for s.
std::string quote(std::string_view s);

}  // namespace kiln::json
