#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <kiln/autograd/variable.h>
#include <kiln/core/dispatch.h>

namespace kiln {

struct TapeOptions {
  bool persistent = false;
  bool watch_accessed_variables = true;
};

// What gradient() returns for a source the target does not depend on.
enum class Unconnected { none, zero };

// Records the primitives that touch watched tensors while it is alive (RAII), as a
// DispatchHook on this thread, and differentiates them with the registry's VJP rules.
// VJPs are public ops, so an outer tape records this tape's backward pass (higher order).
class GradientTape : public DispatchHook {
 public:
  explicit GradientTape(TapeOptions options = {});
  ~GradientTape() override;
  GradientTape(const GradientTape&) = delete;
  GradientTape& operator=(const GradientTape&) = delete;

  void watch(const Tensor& t);
  void watch(const Variable& v);

  std::vector<Tensor> gradient(const Tensor& target, const std::vector<Tensor>& sources,
                               const std::vector<Tensor>& output_gradients = {},
                               Unconnected unconnected = Unconnected::none);
  std::vector<Tensor> gradient(const Tensor& target, const std::vector<Variable>& sources,
                               const std::vector<Tensor>& output_gradients = {},
                               Unconnected unconnected = Unconnected::none);
  std::vector<Tensor> gradient(const Tensor& target, std::initializer_list<Variable> sources,
                               const std::vector<Tensor>& output_gradients = {},
                               Unconnected unconnected = Unconnected::none) {
    return gradient(target, std::vector<Variable>(sources), output_gradients, unconnected);
  }
  std::vector<Tensor> gradient(const Tensor& target, std::initializer_list<Tensor> sources,
                               const std::vector<Tensor>& output_gradients = {},
                               Unconnected unconnected = Unconnected::none) {
    return gradient(target, std::vector<Tensor>(sources), output_gradients, unconnected);
  }
  Tensor gradient(const Tensor& target, const Tensor& source) {
    return gradient(target, std::vector<Tensor>{source})[0];
  }
  Tensor gradient(const Tensor& target, const Variable& source) {
    return gradient(target, std::vector<Variable>{source})[0];
  }

  // d y / d x with shape y.shape + x.shape.
  Tensor jacobian(const Tensor& y, const Tensor& x);
  Tensor jacobian(const Tensor& y, const Variable& x);
  // Per-example Jacobians for y [B, ...] and x [B, ...] whose examples are independent:
  // shape [B] + y.shape[1:] + x.shape[1:].
  Tensor batch_jacobian(const Tensor& y, const Tensor& x);

  // Pauses recording for the guard's lifetime.
  class Pause {
   public:
    explicit Pause(GradientTape* t) : tape_(t), was_(t->recording_) { t->recording_ = false; }
    ~Pause() { tape_->recording_ = was_; }
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;

   private:
    GradientTape* tape_;
    bool was_;
  };
  [[nodiscard]] Pause stop_recording() { return Pause(this); }
  // Forgets everything recorded and watched.
  void reset();

  // Gradients of several targets at once, each weighted by its output gradient (ones where
  // output_gradients is empty), with respect to tensors and then variables: the result holds
  // sources.size() + variables.size() gradients.
  std::vector<Tensor> gradient(const std::vector<Tensor>& targets,
                               const std::vector<Tensor>& sources,
                               const std::vector<Variable>& variables,
                               const std::vector<Tensor>& output_gradients,
                               Unconnected unconnected = Unconnected::none);

  // Records an op whose VJP is a closure (custom_gradient, traced control flow). Not for
  // general use. The closure gets one gradient per output (zeros where none flowed) and
  // returns one per input; autograd::needs_grad(i) says which inputs need one.
  using ClosureVjp = std::function<std::vector<Tensor>(std::span<const Tensor> output_grads)>;
  void record_closure(std::span<const Tensor> inputs, std::span<const Tensor> outputs,
                      ClosureVjp vjp);
  // Whether this tape is installed on this thread now (not hidden by SuspendHooks).
  bool is_recording_here() const;
  // The tapes recording and installed on this thread now, outermost first.
  static std::vector<GradientTape*> recording_here();
  // The tapes recording on this thread, outermost first.
  static std::vector<GradientTape*> active();

  // DispatchHook
  void observe(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
               std::span<const Tensor> outputs) override;
  void on_variable_read(VariableImpl& var, const Tensor& value) override;

  size_t recorded_ops() const { return entries_.size(); }
  // Whether gradients would flow from `t` on this tape (watched, or computed from something
  // watched while recording).
  bool is_watching(const Tensor& t) const { return recording_ && tracks(t.id()); }
  // Whether this tape was created inside a trace and may still be asked for gradients of
  // what it records there.
  bool records_traced_ops() const {
    return created_in_trace_ && recording_ && (options_.persistent || !used_);
  }

 private:
  struct Entry {
    const OpDef* op = nullptr;   // null for a closure entry
    std::vector<Tensor> inputs;  // real tensors, or placeholders with type only
    std::vector<uint64_t> input_ids;
    Attrs attrs;
    std::vector<Tensor> outputs;
    std::vector<uint64_t> output_ids;
    ClosureVjp closure;
  };
  bool tracks(uint64_t id) const { return tracked_.count(id) != 0; }
  std::unordered_map<uint64_t, Tensor> backprop(const std::vector<Tensor>& targets,
                                                const std::vector<Tensor>& output_gradients);
  std::vector<Tensor> gradient_ids(const std::vector<Tensor>& targets,
                                   const std::vector<std::vector<uint64_t>>& source_ids,
                                   const std::vector<Tensor>& like,
                                   const std::vector<Tensor>& output_gradients,
                                   Unconnected unconnected, bool consume);

  TapeOptions options_;
  bool created_in_trace_ = false;
  bool recording_ = true;
  bool used_ = false;
  std::deque<Entry> entries_;  // a deque: a persistent tape may record while it differentiates
  std::unordered_set<uint64_t> tracked_;  // watched tensors and outputs of recorded ops
  std::unordered_map<uint64_t, std::vector<uint64_t>> variable_reads_;  // var id -> tensor ids
  std::unordered_set<uint64_t> watched_variables_;
  std::unique_ptr<HookScope> scope_;
};

namespace detail {
Tensor custom_call(
    std::vector<Tensor> inputs, const std::function<Tensor()>& forward,
    std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs, const Tensor& output,
                                      const Tensor& grad_output)>
        vjp);
}  // namespace detail

// custom_gradient(forward, vjp): forward takes N tensors and returns one; vjp is called with
// (inputs..., output, grad_output) and returns the N input gradients. The result is a
// callable taking the N tensors.
template <class Forward, class Vjp>
auto custom_gradient(Forward forward, Vjp vjp) {
  return [forward, vjp](const auto&... xs) -> Tensor {
    std::vector<Tensor> inputs{Tensor(xs)...};
    return detail::custom_call(
        inputs, [&] { return forward(Tensor(xs)...); },
        [vjp](const std::vector<Tensor>& in, const Tensor& out, const Tensor& g) {
          return [&]<size_t... I>(std::index_sequence<I...>) {
            return std::vector<Tensor>(vjp(in[I]..., out, g));
          }
          (std::make_index_sequence<sizeof...(xs)>{});
        });
  };
}

}  // namespace kiln
