#pragma once

// kiln::cond and kiln::while_loop: structured control flow that works eagerly and traced.
// Eagerly they run C++ control flow on the predicate's value (a tape records whatever ran).
// Inside kiln::function they trace each branch (or the loop's condition and body) into a
// region of one cond/while node, capturing the enclosing values they use.

#include <functional>
#include <type_traits>
#include <vector>

#include <kiln/core/tensor.h>

namespace kiln {

namespace detail {
std::vector<Tensor> cond_impl(const Tensor& pred,
                              const std::function<std::vector<Tensor>()>& then_fn,
                              const std::function<std::vector<Tensor>()>& else_fn);
inline std::vector<Tensor> as_list(Tensor t) {
  return {std::move(t)};
}
inline std::vector<Tensor> as_list(std::vector<Tensor> v) {
  return v;
}
}  // namespace detail

// then_fn and else_fn take no arguments and return a Tensor or a std::vector<Tensor> of the
// same dtypes and ranks; pred is a scalar (cast to bool).
template <class Then, class Else>
auto cond(const Tensor& pred, Then then_fn, Else else_fn) {
  using R = std::remove_cvref_t<std::invoke_result_t<Then&>>;
  auto out = detail::cond_impl(
      pred, [&] { return detail::as_list(then_fn()); }, [&] { return detail::as_list(else_fn()); });
  if constexpr (std::is_same_v<R, Tensor>)
    return out.at(0);
  else
    return out;
}

// Runs body_fn while cond_fn(vars) is true; each iteration's vars have the dtypes and shapes
// of loop_vars. Returns the final vars.
std::vector<Tensor> while_loop(
    const std::function<Tensor(const std::vector<Tensor>&)>& cond_fn,
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& body_fn,
    std::vector<Tensor> loop_vars);

}  // namespace kiln
