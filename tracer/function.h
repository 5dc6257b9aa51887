#pragma once

// kiln::function: tf.function for C++. Calling a Function traces the lambda once per input
// signature (tensor dtypes, shapes and devices, plus the values of static arguments) into a
// Graph, caches the ConcreteFunction, and runs it on later calls.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/tracer/trace.h>

namespace kiln {

// The dtype and shape a traced function accepts at one argument; -1 dims take any size.
struct TensorSpec {
  Shape shape;
  DType dtype = f32;
  TensorSpec(Shape s, DType d = f32) : shape(std::move(s)), dtype(d) {}  // NOLINT
  TensorType type() const { return {dtype, shape}; }
  bool accepts(const Tensor& t) const;
};

struct FunctionOptions {
  std::string name = "function";
  std::vector<TensorSpec> input_signature;
  bool jit_compile = true;  // false: run on the graph interpreter (the reference)
  bool reduce_retracing = false;
};

enum class IRStage { traced, optimized };

namespace tracer {
// A graph compiled by the JIT. jit/ registers the compiler (DESIGN.md section 1: the tracer
// reaches the JIT through a registry); without one, functions run on the interpreter.
class CompiledGraph {
 public:
  virtual ~CompiledGraph() = default;
  // Safe to call from several threads at once.
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs) const = 0;
  // Generated kernels plus library calls a call runs.
  virtual int64_t kernel_count() const = 0;
  // The optimized graph with its fused kernels, as text and as a Graphviz picture.
  virtual std::string optimized_ir() const = 0;
  virtual std::string dot() const = 0;
};
using Compiler = std::shared_ptr<const CompiledGraph> (*)(const ir::Graph& graph);
void set_compiler(Compiler compiler);
Compiler compiler();
}  // namespace tracer

namespace detail {
struct ConcreteState;
}

// One traced signature of a Function.
class ConcreteFunction {
 public:
  ConcreteFunction() = default;
  // `jit`: compile on the first call (when a compiler is registered) instead of interpreting.
  explicit ConcreteFunction(std::shared_ptr<const ir::Graph> graph, bool jit = false);

  bool defined() const { return graph_ != nullptr; }
  // Runs the graph. A GradientTape recording around the call gets one entry whose VJP is
  // gradient_function(), unless the graph draws random numbers or assigns variables: then
  // the tape records the primitives the call runs (a re-run would not be the same).
  std::vector<Tensor> call_flat(const std::vector<Tensor>& inputs) const;
  // The traced VJP, built on first use and cached: it takes the inputs followed by one
  // gradient per floating result, and returns the gradients of the floating inputs followed
  // by those of the floating variables the graph reads (in the order of its variables).
  ConcreteFunction gradient_function() const;
  // The IR text: as traced, or optimized with its fused kernels (the traced text when the
  // function is not compiled).
  std::string ir(IRStage stage = IRStage::traced) const;
  // A Graphviz picture of the compiled graph (of the traced one when not compiled).
  std::string dot() const;
  const ir::Graph& graph() const;
  // Kernels a call runs: generated kernels plus library calls when compiled, one per
  // primitive node when interpreted.
  int64_t kernel_count() const;
  bool compiled() const;

 private:
  std::vector<Tensor> call_recorded(const std::vector<Tensor>& inputs) const;
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;
  const tracer::CompiledGraph* executable() const;

  std::shared_ptr<const ir::Graph> graph_;
  std::shared_ptr<detail::ConcreteState> state_;
};

namespace detail {

template <class T>
using bare = std::remove_cvref_t<T>;
template <class T>
inline constexpr bool is_tensor = std::is_same_v<bare<T>, Tensor>;
template <class T>
inline constexpr bool is_spec = std::is_same_v<bare<T>, TensorSpec>;
template <class T>
inline constexpr bool is_tensor_list = std::is_same_v<bare<T>, std::vector<Tensor>>;
template <class T>
inline constexpr bool is_variable = std::is_same_v<bare<T>, Variable>;

std::string static_key(bool v);
std::string static_key(int64_t v);
std::string static_key(double v);
std::string static_key(const std::string& v);

// Accumulates the cache key, the parameter types and the flat tensor inputs of one call.
struct Signature {
  const std::vector<TensorSpec>* input_signature = nullptr;
  std::vector<std::string> parts;  // one per argument, for "what changed" messages
  std::vector<TensorType> params;
  std::vector<Tensor> flat;
  size_t tensor_index = 0;
  std::string function_name;

  void add_tensor(const Tensor& t, std::string& part);
  void add_spec(const TensorSpec& s, std::string& part);
  std::string key() const;
};

template <class A>
void describe(Signature& sig, const A& a) {
  std::string part;
  if constexpr (is_tensor<A>) {
    sig.add_tensor(a, part);
  } else if constexpr (is_spec<A>) {
    sig.add_spec(a, part);
  } else if constexpr (is_tensor_list<A>) {
    part = "list" + std::to_string(a.size()) + "(";
    for (const Tensor& t : a)
      sig.add_tensor(t, part);
    part += ")";
  } else if constexpr (is_variable<A>) {
    part = "variable#" + std::to_string(a.id());
  } else if constexpr (std::is_same_v<bare<A>, bool>) {
    part = static_key(a);
  } else if constexpr (std::is_enum_v<bare<A>>) {
    part = "enum:" + static_key(static_cast<int64_t>(a));
  } else if constexpr (std::is_integral_v<bare<A>>) {
    part = static_key(static_cast<int64_t>(a));
  } else if constexpr (std::is_floating_point_v<bare<A>>) {
    part = static_key(static_cast<double>(a));
  } else if constexpr (std::is_convertible_v<const A&, std::string>) {
    part = static_key(std::string(a));
  } else {
    static_assert(sizeof(A) == 0,
                  "kiln::function arguments are Tensors, Variables, std::vector<Tensor>, or "
                  "static values (integers, bool, double, enums, std::string)");
  }
  sig.parts.push_back(std::move(part));
}

// The argument the traced lambda receives in place of `a`.
template <class A>
decltype(auto) rebuild(const A& a, const std::vector<Tensor>& sym, size_t& pos) {
  if constexpr (is_tensor<A> || is_spec<A>) {
    return Tensor(sym[pos++]);
  } else if constexpr (is_tensor_list<A>) {
    std::vector<Tensor> v(sym.begin() + static_cast<std::ptrdiff_t>(pos),
                          sym.begin() + static_cast<std::ptrdiff_t>(pos + a.size()));
    pos += a.size();
    return v;
  } else {
    return static_cast<const A&>(a);
  }
}

template <class A>
using traced_arg_t =
    std::conditional_t<is_tensor<A> || is_spec<A>, Tensor,
                       std::conditional_t<is_tensor_list<A>, std::vector<Tensor>, const A&>>;

template <class R>
std::vector<Tensor> flatten_result(R&& r) {
  using B = bare<R>;
  if constexpr (std::is_same_v<B, Tensor>) {
    return {r};
  } else if constexpr (std::is_same_v<B, std::vector<Tensor>>) {
    return r;
  } else {
    return std::apply([](const auto&... t) { return std::vector<Tensor>{Tensor(t)...}; }, r);
  }
}

template <class R>
R unflatten_result(std::vector<Tensor> v) {
  if constexpr (std::is_void_v<R>) {
    return;
  } else if constexpr (std::is_same_v<R, Tensor>) {
    return v.at(0);
  } else if constexpr (std::is_same_v<R, std::vector<Tensor>>) {
    return v;
  } else {
    return [&]<size_t... I>(std::index_sequence<I...>) {
      return R{v.at(I)...};
    }
    (std::make_index_sequence<std::tuple_size_v<R>>{});
  }
}

// The shared, type-erased part of every Function: the trace cache and its statistics.
class FunctionCore {
 public:
  explicit FunctionCore(FunctionOptions options) : options_(std::move(options)) {}
  const FunctionOptions& options() const { return options_; }
  int tracing_count() const;
  // Every concrete function traced so far (in cache-key order).
  std::vector<ConcreteFunction> concrete_functions() const;
  // The cached concrete function for `sig`, tracing with `fn` on a miss.
  ConcreteFunction concrete(
      Signature& sig, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
      size_t& num_results);

 private:
  void relax(Signature& sig);
  void note_call(const Signature& sig, bool traced);

  FunctionOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::pair<ConcreteFunction, size_t>> cache_;
  int traces_ = 0;
  std::vector<std::vector<TensorType>> seen_params_;  // for reduce_retracing
  std::vector<bool> recent_traces_;                   // the last 10 calls: traced or not
  std::vector<std::string> last_parts_;
};

}  // namespace detail

template <class F>
class Function {
 public:
  Function(F fn, FunctionOptions options)
      : fn_(std::make_shared<F>(std::move(fn))),
        core_(std::make_shared<detail::FunctionCore>(std::move(options))) {}

  template <class... Args>
  auto operator()(const Args&... args) const {
    using R = std::invoke_result_t<const F&, detail::traced_arg_t<Args>...>;
    detail::Signature sig;
    ConcreteFunction cf = concrete(sig, args...);
    std::vector<Tensor> out = cf.call_flat(sig.flat);
    if constexpr (!std::is_void_v<R>)
      return detail::unflatten_result<bare_result<R>>(std::move(out));
  }

  // The concrete function for these arguments (Tensors or TensorSpecs), tracing if needed.
  template <class... Args>
  ConcreteFunction get_concrete_function(const Args&... args) const {
    detail::Signature sig;
    return concrete(sig, args...);
  }

  int tracing_count() const { return core_->tracing_count(); }
  // Every concrete function traced so far (saved_function::save uses them).
  std::vector<ConcreteFunction> concrete_functions() const { return core_->concrete_functions(); }
  const FunctionOptions& options() const { return core_->options(); }

 private:
  template <class R>
  using bare_result = std::remove_cvref_t<R>;

  template <class... Args>
  ConcreteFunction concrete(detail::Signature& sig, const Args&... args) const {
    using R = std::invoke_result_t<const F&, detail::traced_arg_t<Args>...>;
    sig.function_name = core_->options().name;
    if (!core_->options().input_signature.empty()) {
      sig.input_signature = &core_->options().input_signature;
      const size_t tensors = ((detail::is_tensor<Args> || detail::is_spec<Args> ? 1 : 0) + ... + 0);
      KILN_CHECK(tensors == core_->options().input_signature.size(),
                 "function '{}': called with {} tensors but its input_signature has {}",
                 core_->options().name, tensors, core_->options().input_signature.size());
    }
    (detail::describe(sig, args), ...);
    auto fn = fn_;
    auto body = [fn, &args...](const std::vector<Tensor>& sym) -> std::vector<Tensor> {
      size_t pos = 0;
      // Braced init keeps the rebuild order left to right.
      std::tuple<detail::traced_arg_t<Args>...> traced{detail::rebuild(args, sym, pos)...};
      (void)pos;  // unused when the function takes no arguments
      if constexpr (std::is_void_v<R>) {
        std::apply(*fn, traced);
        return {};
      } else {
        return detail::flatten_result(std::apply(*fn, traced));
      }
    };
    size_t n = 0;
    return core_->concrete(sig, body, n);
  }

  std::shared_ptr<F> fn_;
  std::shared_ptr<detail::FunctionCore> core_;
};

template <class F>
Function<F> function(F fn, FunctionOptions options = {}) {
  return Function<F>(std::move(fn), std::move(options));
}

template <class F>
Function<F> function(F fn, std::vector<TensorSpec> input_signature) {
  FunctionOptions o;
  o.input_signature = std::move(input_signature);
  return Function<F>(std::move(fn), std::move(o));
}

}  // namespace kiln
