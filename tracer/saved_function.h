#pragma once

// Saved functions: a kiln::function's traced signatures and the values of the variables
// they capture, written to a directory that a program with no model code can load and run
// (DESIGN.md section 3):
//
//   kiln::saved_function::save(dir, f);            // or save(dir, f, {{TensorSpec({-1, 4})}})
//   auto m = kiln::saved_function::load(dir);
//   Tensor y = m(x);
//
// The directory holds
//   manifest.json          {"format": "kiln.saved_function", "version": 1, "name": ...,
//                           "signatures": [{"file": "signature_0.ir",
//                                           "inputs": [{"dtype": "f32", "shape": [-1, 4]}],
//                                           "num_results": 1,
//                                           "variables": ["w1", ...]}],   // slot -> entry
//                           "variables": [{"entry": "w1", "name": "w1", "dtype": "f32",
//                                          "shape": [4, 8]}]}
//   signature_<i>.ir       the ir::print text of signature i
//   variables.safetensors  the variables' values in the standard safetensors layout: a
//                          little-endian u64 header length N, N bytes of JSON header
//                          (padded with spaces to a multiple of 8), then the raw data
//
// Variables are deduplicated across signatures by identity; entries are named after the
// variables, with "_1", "_2"... appended when two distinct variables share a name (the
// manifest's "name" keeps the original). Every file is written to "<file>.tmp.<pid>" and
// renamed into place. Loading validates everything it reads and raises kiln::Error naming the
// file and the problem for a missing, truncated or corrupted bundle.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/tracer/function.h>

namespace kiln::saved_function {

inline constexpr int kFormatVersion = 1;

// Writes the concrete functions (at least one) of a function called `name` to `dir`,
// creating it if missing.
void save_concrete(const std::string& dir, const std::string& name,
                   const std::vector<ConcreteFunction>& functions);

namespace detail {

template <class F, size_t... I>
ConcreteFunction concrete_n(const Function<F>& f, const std::vector<TensorSpec>& specs,
                            std::index_sequence<I...>) {
  if constexpr (std::is_invocable_v<const F&, decltype((void)I, Tensor())...>) {
    return f.get_concrete_function(specs[I]...);
  } else {
    KILN_FAIL("saved_function::save: function '{}' does not take {} tensor arguments",
              f.options().name, sizeof...(I));
  }
}

template <class F, size_t... N>
ConcreteFunction concrete_for(const Function<F>& f, const std::vector<TensorSpec>& specs,
                              std::index_sequence<N...>) {
  ConcreteFunction out;
  bool found = false;
  ((specs.size() == N ? (out = concrete_n(f, specs, std::make_index_sequence<N>{}), found = true)
                      : false),
   ...);
  KILN_CHECK(found,
             "saved_function::save: function '{}': signatures of {} tensors are not "
             "supported (at most {})",
             f.options().name, specs.size(), sizeof...(N) - 1);
  return out;
}

}  // namespace detail

// Saves `f`: the given signatures (each traced if needed), else its input_signature, else
// every signature traced so far; raises kiln::Error when that leaves none.
template <class F>
void save(const std::string& dir, const Function<F>& f,
          const std::vector<std::vector<TensorSpec>>& signatures = {}) {
  std::vector<ConcreteFunction> fns;
  if (!signatures.empty()) {
    for (const auto& s : signatures)
      fns.push_back(detail::concrete_for(f, s, std::make_index_sequence<9>{}));
  } else if (!f.options().input_signature.empty()) {
    fns.push_back(
        detail::concrete_for(f, f.options().input_signature, std::make_index_sequence<9>{}));
  } else {
    fns = f.concrete_functions();
  }
  KILN_CHECK(!fns.empty(),
             "saved_function::save: function '{}' has no signature to save: it has not been "
             "traced, has no input_signature and no signatures were given",
             f.options().name);
  save_concrete(dir, f.options().name, fns);
}

// One loaded signature.
struct SignatureInfo {
  std::string file;                // its IR file, e.g. "signature_0.ir"
  std::vector<TensorType> inputs;  // -1 dims accept any size
  size_t num_results = 0;
  std::vector<std::string> slots;  // variable slot -> entry name
  bool accepts(const std::vector<Tensor>& inputs) const;
  std::string str() const;  // "(f32[?,4]) -> 1 result"
};

// A loaded saved function: callable like the original.
class Loaded {
 public:
  Loaded() = default;

  // Runs the first signature that accepts the inputs; kiln::Error listing the signatures
  // when none does.
  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs) const;
  // One input, one result.
  Tensor operator()(const Tensor& x) const;

  const std::string& name() const { return name_; }
  const std::string& dir() const { return dir_; }
  // The variables, by entry name (shared by every signature).
  const std::map<std::string, Variable>& variables() const { return variables_; }
  const std::vector<SignatureInfo>& signatures() const { return signatures_; }
  // The signature's graph, with its variable slots bound.
  const ir::Graph& graph(size_t signature) const { return functions_.at(signature).graph(); }
  // The signature's concrete function (compiled by the JIT on its first call, as a traced
  // function is).
  const ConcreteFunction& concrete_function(size_t signature) const {
    return functions_.at(signature);
  }

 private:
  friend Loaded load(const std::string& dir);
  std::string name_;
  std::string dir_;
  std::map<std::string, Variable> variables_;
  std::vector<SignatureInfo> signatures_;
  std::vector<ConcreteFunction> functions_;
};

Loaded load(const std::string& dir);

// ---- safetensors, exposed for tests and tools --------------------------------------------

// The safetensors bytes of named tensors (names unique), in the given order, with the
// optional string metadata.
std::string encode_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
// Parses safetensors bytes; `file` names the source in error messages. Entries come back in
// data order.
std::vector<std::pair<std::string, Tensor>> decode_safetensors(std::string_view bytes,
                                                               const std::string& file);

}  // namespace kiln::saved_function
