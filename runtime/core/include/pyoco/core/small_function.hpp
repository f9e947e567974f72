// A move-only std::function with room for a small capture inline. The
// engine makes a few callbacks per task (the body's, its completion's, the
// strand's handler), each capturing a pointer or two: std::function keeps
// only 16 bytes inline and allocates for the rest, once per task each.
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace pyoco::core {

template <class Signature, std::size_t Capacity = 48>
class SmallFunction;

template <class R, class... Args, std::size_t Capacity>
class SmallFunction<R(Args...), Capacity> {
 public:
  SmallFunction() noexcept = default;
  SmallFunction(std::nullptr_t) noexcept {}  // NOLINT: as std::function
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, SmallFunction> &&
                                              std::is_invocable_r_v<R, std::decay_t<F>&, Args...>>>
  SmallFunction(F&& f) {  // NOLINT: as std::function
    using D = std::decay_t<F>;
    if constexpr (std::is_pointer_v<D> || std::is_member_pointer_v<D>) {
      if (f == nullptr) return;  // a null function pointer makes an empty one, as std::function
    }
    if constexpr (fits_inline<D>()) {
      ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
    } else {
      ::new (static_cast<void*>(storage_)) D*(new D(std::forward<F>(f)));
    }
    ops_ = ops_for<D>();
  }
  SmallFunction(SmallFunction&& other) noexcept { take(other); }
  SmallFunction& operator=(SmallFunction&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  SmallFunction& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  SmallFunction(const SmallFunction&) = delete;
  SmallFunction& operator=(const SmallFunction&) = delete;
  ~SmallFunction() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  R operator()(Args... args) {
    if (ops_ == nullptr) throw std::bad_function_call();
    return ops_->call(storage_, std::forward<Args>(args)...);
  }

 private:
  struct Ops {
    R (*call)(void* self, Args&&... args);
    void (*move)(void* from, void* to) noexcept;  // into `to`, leaving `from` destroyed
    void (*destroy)(void* self) noexcept;
  };

  template <class D>
  static constexpr bool fits_inline() {
    return sizeof(D) <= Capacity && alignof(D) <= alignof(std::max_align_t) &&
           std::is_nothrow_move_constructible_v<D>;
  }

  template <class D>
  static const Ops* ops_for() {
    if constexpr (fits_inline<D>()) {
      static constexpr Ops ops{[](void* self, Args&&... args) -> R {
                                 return (*static_cast<D*>(self))(std::forward<Args>(args)...);
                               },
                               [](void* from, void* to) noexcept {
                                 ::new (to) D(std::move(*static_cast<D*>(from)));
                                 static_cast<D*>(from)->~D();
                               },
                               [](void* self) noexcept { static_cast<D*>(self)->~D(); }};
      return &ops;
    } else {
      static constexpr Ops ops{
          [](void* self, Args&&... args) -> R {
            return (**static_cast<D**>(self))(std::forward<Args>(args)...);
          },
          [](void* from, void* to) noexcept { ::new (to) D*(*static_cast<D**>(from)); },
          [](void* self) noexcept { delete *static_cast<D**>(self); }};
      return &ops;
    }
  }

  void take(SmallFunction& other) noexcept {
    if (other.ops_ == nullptr) return;
    other.ops_->move(other.storage_, storage_);
    ops_ = other.ops_;
    other.ops_ = nullptr;
  }
  void reset() noexcept {
    if (ops_ == nullptr) return;
    const Ops* ops = ops_;
    ops_ = nullptr;
    ops->destroy(storage_);
  }

  alignas(std::max_align_t) unsigned char storage_[Capacity];
  const Ops* ops_ = nullptr;
};

}  // namespace pyoco::core
