#pragma once
// event: an async manual-reset event for coroutines of one loop (asyncio.Event).
//
//     corio::event ready;
//     // waiters:  co_await ready.wait();
//     // setter:   ready.set();           // wakes every waiter; later waits pass at once
//
// Contract
// - Loop-local, not thread-safe: set(), reset(), is_set() and wait() are called on the
//   thread of one loop; only stop requests may come from any thread. To set it from
//   another thread, post the call: `lp.post([&] { ev.set(); })`. Destroying an event
//   with waiters is a bug.
// - set() wakes every current waiter, in the order they started waiting; they resume at
//   the loop's next iteration even if reset() is called before then (the wake-up is
//   theirs). While set, wait() completes without suspending.
// - Waiting honours the coroutine's stop token: a cancelled wait() throws
//   operation_cancelled. A wait on an event already set never suspends.
// - No allocation per wait.

#include <coroutine>

#include "detail/sync_waiter.hpp"

namespace corio {

class event {
 public:
  explicit event(bool initially_set = false) noexcept : set_(initially_set) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  class [[nodiscard]] wait_awaiter : detail::sync_wait_base {
   public:
    explicit wait_awaiter(event& e) noexcept : e_(e) {}
    bool await_ready() const noexcept { return e_.set_; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, e_.waiters_);
    }
    void await_resume() { finish("event wait"); }

   private:
    event& e_;
  };

  // co_await: waits until the event is set.
  wait_awaiter wait() noexcept { return wait_awaiter(*this); }

  void set() noexcept {
    set_ = true;
    while (detail::sync_waiter* w = waiters_.pop_front()) detail::grant(w);
  }
  void reset() noexcept { set_ = false; }
  bool is_set() const noexcept { return set_; }

 private:
  bool set_;
  detail::wait_list waiters_;
};

}  // namespace corio
