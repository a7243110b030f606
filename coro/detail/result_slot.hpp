#pragma once
// result_slot<T>: the value or the exception of one finished child coroutine, as kept by
// sync_wait and the combinators. T may be void or an lvalue reference.

#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

namespace corio::detail {

template <class T>
class result_slot {
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate,
                                    std::conditional_t<std::is_lvalue_reference_v<T>,
                                                       std::remove_reference_t<T>*, T>>;

 public:
  template <class... U>
  void set_value(U&&... v) {
    if constexpr (std::is_lvalue_reference_v<T>)
      state_.template emplace<1>(std::addressof(v)...);
    else
      state_.template emplace<1>(std::forward<U>(v)...);
  }
  void set_exception(std::exception_ptr e) noexcept { state_.template emplace<2>(std::move(e)); }

  bool has_exception() const noexcept { return state_.index() == 2; }
  std::exception_ptr exception() const noexcept {
    return has_exception() ? std::get<2>(state_) : nullptr;
  }

  // Rethrows a stored exception; otherwise yields the value (moved out).
  T take() {
    if (state_.index() == 2) std::rethrow_exception(std::get<2>(state_));
    if constexpr (std::is_void_v<T>)
      return;
    else if constexpr (std::is_lvalue_reference_v<T>)
      return *std::get<1>(state_);
    else
      return std::move(std::get<1>(state_));
  }

 private:
  std::variant<std::monostate, stored, std::exception_ptr> state_;
};

}  // namespace corio::detail
