#pragma once
// when_any: race several children; the first to finish wins, the rest are asked to stop.
//
//     auto r = co_await corio::when_any(fetch_from(a), fetch_from(b));  // std::variant
//     std::size_t who = r.index();
//     auto [index, value] = co_await corio::when_any(std::move(tasks));  // a range
//
// Contract
// - Children start in argument order on the awaiting thread.
// - The first child to finish (value or exception) wins. when_any then requests stop on
//   the stop token the children borrow, and resumes the awaiter once *every* child has
//   finished: no child outlives the co_await, so children may safely reference the
//   awaiter's locals. A child that ignores its stop token delays the result; corio's I/O
//   operations observe the token and finish promptly.
// - The result is the winner's: a std::variant indexed by argument position (void ->
//   std::monostate), or when_any_result{index, value} for a range. If the winner threw,
//   the co_await rethrows that exception. Losers' values and exceptions are dropped.
// - A stop request on the awaiter's own token is forwarded to the children.
// - An empty range throws std::invalid_argument (there would be no winner).

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <limits>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "detail/awaitable_traits.hpp"
#include "detail/result_slot.hpp"
#include "detail/runner.hpp"
#include "stop.hpp"

namespace corio {

template <class T>
struct when_any_result {
  std::size_t index;
  T value;
};
template <>
struct when_any_result<void> {
  std::size_t index;
};

namespace detail {

// Shared by the children of one when_any: who won, the stop source they borrow, and the
// join counter (children + 1 start unit, as in when_all).
class race_state {
 public:
  static constexpr std::size_t no_winner = std::numeric_limits<std::size_t>::max();

  explicit race_state(std::size_t children) : remaining_(children + 1) {}

  const std::stop_token& children_token() const noexcept { return token_; }

  // Links the awaiter's token to the children's before any child starts.
  template <class P>
  void begin(std::coroutine_handle<P> awaiter) {
    awaiter_ = awaiter;
    if constexpr (std::is_base_of_v<stop_carrier, P>) {
      const std::stop_token& outer = awaiter.promise().stop_token();
      if (outer.stop_possible()) forward_.emplace(outer, forwarder{&source_});
    }
  }

  static std::coroutine_handle<> child_done(void* self, std::size_t index) noexcept {
    auto* s = static_cast<race_state*>(self);
    std::size_t expected = no_winner;
    // Exactly one child wins the CAS; relaxed is enough for the index itself because the
    // awaiter reads it only after the acq_rel join below.
    if (s->winner_.compare_exchange_strong(expected, index, std::memory_order_relaxed))
      s->source_.request_stop();
    if (s->remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) return s->awaiter_;
    return {};
  }
  bool release_start_unit() noexcept {
    return remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }
  std::size_t winner() const noexcept { return winner_.load(std::memory_order_relaxed); }

 private:
  struct forwarder {
    std::stop_source* target;
    void operator()() const noexcept { target->request_stop(); }
  };
  std::stop_source source_;
  std::stop_token token_ = source_.get_token();
  std::optional<std::stop_callback<forwarder>> forward_;
  std::atomic<std::size_t> winner_{no_winner};
  std::atomic<std::size_t> remaining_;
  std::coroutine_handle<> awaiter_;
};

template <class... A>
class when_any_tuple {
  using variant_type = std::variant<std::conditional_t<std::is_void_v<stored_result_t<A>>,
                                                       std::monostate, stored_result_t<A>>...>;

 public:
  explicit when_any_tuple(A&&... a) : children_(std::move(a)...), race_(sizeof...(A)) {}

  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> awaiter) {
    race_.begin(awaiter);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (run_into(std::move(std::get<I>(children_)), std::get<I>(slots_))
           .start(&race_state::child_done, &race_, I, race_.children_token()),
       ...);
    }(std::index_sequence_for<A...>{});
    return race_.release_start_unit();
  }
  variant_type await_resume() {
    std::optional<variant_type> out;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((race_.winner() == I ? emplace_winner<I>(out) : void()), ...);
    }(std::index_sequence_for<A...>{});
    return std::move(*out);
  }

 private:
  template <std::size_t I>
  void emplace_winner(std::optional<variant_type>& out) {
    auto& slot = std::get<I>(slots_);
    if constexpr (std::is_void_v<stored_result_t<std::tuple_element_t<I, std::tuple<A...>>>>) {
      slot.take();
      out.emplace(std::in_place_index<I>);
    } else {
      out.emplace(std::in_place_index<I>, slot.take());
    }
  }

  std::tuple<A...> children_;
  std::tuple<result_slot<stored_result_t<A>>...> slots_;
  race_state race_;
};

template <class A>
class when_any_range {
  using T = stored_result_t<A>;

 public:
  explicit when_any_range(std::vector<A> children)
      : children_(std::move(children)), slots_(children_.size()), race_(children_.size()) {
    if (children_.empty())
      throw std::invalid_argument("corio::when_any: no children to race (empty range)");
  }

  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> awaiter) {
    race_.begin(awaiter);
    for (std::size_t i = 0; i < children_.size(); ++i)
      run_into(std::move(children_[i]), slots_[i])
          .start(&race_state::child_done, &race_, i, race_.children_token());
    return race_.release_start_unit();
  }
  when_any_result<T> await_resume() {
    const std::size_t w = race_.winner();
    if constexpr (std::is_void_v<T>) {
      slots_[w].take();
      return {w};
    } else {
      return {w, slots_[w].take()};
    }
  }

 private:
  std::vector<A> children_;
  std::vector<result_slot<T>> slots_;
  race_state race_;
};

}  // namespace detail

template <class... A>
  requires(sizeof...(A) > 0 && (detail::awaitable<A> && ...))
[[nodiscard]] auto when_any(A&&... children) {
  return detail::when_any_tuple<std::remove_cvref_t<A>...>(
      std::remove_cvref_t<A>(std::forward<A>(children))...);
}

template <class A>
  requires detail::awaitable<A>
[[nodiscard]] auto when_any(std::vector<A> children) {
  return detail::when_any_range<A>(std::move(children));
}

}  // namespace corio
