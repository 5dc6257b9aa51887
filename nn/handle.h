#pragma once

// Ref<Base>: a shared handle to a polymorphic object, built implicitly from any value of a
// type derived from Base. It lets Keras-style lists mix kinds:
//   nn::Sequential model({nn::Dense(128, "relu"), nn::Dropout(0.2), nn::Dense(10)});

#include <concepts>
#include <memory>
#include <type_traits>
#include <utility>

namespace kiln::nn {

template <class Base>
class Ref {
 public:
  Ref() = default;
  template <class T>
  requires std::derived_from<std::remove_cvref_t<T>, Base> &&
      (!std::is_same_v<std::remove_cvref_t<T>, Ref>)
          Ref(T&& value)  // NOLINT(google-explicit-constructor)
      : p_(std::make_shared<std::remove_cvref_t<T>>(std::forward<T>(value))) {}
  template <class T>
  requires std::derived_from<T, Base> Ref(std::shared_ptr<T> p)
      : p_(std::move(p)) {}  // NOLINT(google-explicit-constructor)

  Base* operator->() const { return p_.get(); }
  Base& operator*() const { return *p_; }
  Base* get() const { return p_.get(); }
  const std::shared_ptr<Base>& shared() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  std::shared_ptr<Base> p_;
};

}  // namespace kiln::nn
