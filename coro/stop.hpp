#pragma once
// Ambient cancellation: every corio coroutine carries a std::stop_token that flows down
// the await chain.
//
// A task that awaits another task lends it its own token, so cancellation requested at
// the top of a chain (sync_wait(t, token), a task_group, when_any) is visible at the
// bottom without threading a parameter through every call. I/O operations of the
// runtime/ layer read the same token. A coroutine reads its token with
//
//     std::stop_token st = co_await corio::this_coro::stop_token;
//
// The promise stores a pointer, not a copy: the owner of the token (the awaiting parent,
// or a combinator's shared state) outlives every child that borrowed it, because it is
// suspended in a co_await on that child. Copying would cost two atomic operations per
// await on a live stop state.

#include <coroutine>
#include <stop_token>

namespace corio {
namespace detail {

inline const std::stop_token never_stop{};

// Base of every corio promise that can carry a token.
class stop_carrier {
 public:
  const std::stop_token& stop_token() const noexcept { return *stop_; }
  void set_stop_token(const std::stop_token& t) noexcept { stop_ = &t; }

 private:
  const std::stop_token* stop_ = &never_stop;
};

// Lends the parent's token to the child before the child first runs. A parent that is not
// a corio coroutine lends nothing and the child keeps what it was given.
template <class ChildPromise, class ParentPromise>
void inherit_stop_token(ChildPromise& child, std::coroutine_handle<ParentPromise> parent) noexcept {
  if constexpr (std::is_base_of_v<stop_carrier, ParentPromise>) {
    child.set_stop_token(parent.promise().stop_token());
  }
}

struct stop_token_awaiter {
  std::stop_token token;
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    static_assert(std::is_base_of_v<stop_carrier, P>,
                  "co_await this_coro::stop_token needs a corio coroutine (task, async_generator)");
    token = h.promise().stop_token();
    return false;  // never actually suspends
  }
  std::stop_token await_resume() noexcept { return std::move(token); }
};

}  // namespace detail

namespace this_coro {
// `co_await corio::this_coro::stop_token` yields the calling coroutine's token.
struct stop_token_t {
  detail::stop_token_awaiter operator co_await() const noexcept { return {}; }
};
inline constexpr stop_token_t stop_token{};
}  // namespace this_coro

}  // namespace corio
