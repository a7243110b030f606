#pragma once
// when_all: await several children concurrently; resume when every one has finished.
//
//     auto [a, b] = co_await corio::when_all(fetch(1), fetch(2));   // std::tuple
//     std::vector<int> all = co_await corio::when_all(std::move(tasks));  // a range
//
// Contract
// - Every child is started, in argument order, on the awaiting thread; each runs until
//   its first suspension before the next starts.
// - The awaiter resumes after the last child finishes, on the thread that finished it.
// - Results keep argument order. A void child gives std::monostate in the tuple; a range
//   of void children gives void.
// - If children throw, all children are still awaited, then the exception of the first
//   failed child in argument order is rethrown; the others are dropped. when_all does not
//   cancel siblings (that is task_group's job).
// - The children borrow the awaiter's stop token.
// - The returned awaitable owns the children; await it once.

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "detail/awaitable_traits.hpp"
#include "detail/result_slot.hpp"
#include "detail/runner.hpp"
#include "stop.hpp"

namespace corio {
namespace detail {

template <class A>
using slot_value_t = stored_result_t<A>;
template <class A>
using tuple_value_t = std::conditional_t<std::is_void_v<slot_value_t<A>>, std::monostate,
                                         slot_value_t<A>>;

// The join counter starts at children + 1: the extra unit belongs to the awaiter while it
// starts the children, so a child that finishes synchronously can never resume an
// awaiter that has not suspended yet. Whoever brings the counter to zero continues the
// awaiter. acq_rel: each child's release publishes its slot; the final decrement's
// acquire makes every slot visible to the awaiter.
class join_counter {
 public:
  explicit join_counter(std::size_t children) noexcept : remaining_(children + 1) {}

  static std::coroutine_handle<> child_done(void* self, std::size_t) noexcept {
    auto* c = static_cast<join_counter*>(self);
    if (c->remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) return c->awaiter_;
    return {};
  }
  // After starting every child: true if the awaiter must stay suspended.
  bool release_start_unit(std::coroutine_handle<> awaiter) noexcept {
    awaiter_ = awaiter;
    return remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }
  void set_awaiter(std::coroutine_handle<> a) noexcept { awaiter_ = a; }

 private:
  std::atomic<std::size_t> remaining_;
  std::coroutine_handle<> awaiter_;
};

template <class... A>
class when_all_tuple {
 public:
  explicit when_all_tuple(A&&... a) : children_(std::move(a)...), counter_(sizeof...(A)) {}

  bool await_ready() const noexcept { return sizeof...(A) == 0; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> awaiter) {
    const std::stop_token* token = &never_stop;
    if constexpr (std::is_base_of_v<stop_carrier, P>) token = &awaiter.promise().stop_token();
    // The awaiter is recorded before any child can finish (the start unit guarantees it).
    counter_.set_awaiter(awaiter);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (run_into(std::move(std::get<I>(children_)), std::get<I>(slots_))
           .start(&join_counter::child_done, &counter_, I, *token),
       ...);
    }(std::index_sequence_for<A...>{});
    return counter_.release_start_unit(awaiter);
  }
  std::tuple<tuple_value_t<A>...> await_resume() {
    rethrow_first_failure(std::index_sequence_for<A...>{});
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::tuple<tuple_value_t<A>...>{take<I>()...};
    }(std::index_sequence_for<A...>{});
  }

 private:
  template <std::size_t... I>
  void rethrow_first_failure(std::index_sequence<I...>) {
    std::exception_ptr first;
    ((first = first ? first : std::get<I>(slots_).exception()), ...);
    if (first) std::rethrow_exception(first);
  }
  template <std::size_t I>
  decltype(auto) take() {
    auto& slot = std::get<I>(slots_);
    if constexpr (std::is_void_v<slot_value_t<std::tuple_element_t<I, std::tuple<A...>>>>) {
      slot.take();
      return std::monostate{};
    } else {
      return slot.take();
    }
  }

  std::tuple<A...> children_;
  std::tuple<result_slot<slot_value_t<A>>...> slots_;
  join_counter counter_;
};

template <class A>
class when_all_range {
  using T = slot_value_t<A>;

 public:
  explicit when_all_range(std::vector<A> children)
      : children_(std::move(children)), slots_(children_.size()), counter_(children_.size()) {}

  bool await_ready() const noexcept { return children_.empty(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> awaiter) {
    const std::stop_token* token = &never_stop;
    if constexpr (std::is_base_of_v<stop_carrier, P>) token = &awaiter.promise().stop_token();
    counter_.set_awaiter(awaiter);
    for (std::size_t i = 0; i < children_.size(); ++i)
      run_into(std::move(children_[i]), slots_[i]).start(&join_counter::child_done, &counter_, i, *token);
    return counter_.release_start_unit(awaiter);
  }
  auto await_resume() {
    for (auto& s : slots_)
      if (s.has_exception()) std::rethrow_exception(s.exception());
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      std::vector<T> out;
      out.reserve(slots_.size());
      for (auto& s : slots_) out.push_back(s.take());
      return out;
    }
  }

 private:
  std::vector<A> children_;
  std::vector<result_slot<T>> slots_;
  join_counter counter_;
};

}  // namespace detail

template <class... A>
  requires(detail::awaitable<A> && ...)
[[nodiscard]] auto when_all(A&&... children) {
  return detail::when_all_tuple<std::remove_cvref_t<A>...>(
      std::remove_cvref_t<A>(std::forward<A>(children))...);
}

template <class A>
  requires detail::awaitable<A>
[[nodiscard]] auto when_all(std::vector<A> children) {
  return detail::when_all_range<A>(std::move(children));
}

}  // namespace corio
