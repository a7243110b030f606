#pragma once
// event: an async manual-reset event for coroutines (asyncio.Event), usable across loops
// and threads.
//
//     corio::event ready;
//     // waiters:  co_await ready.wait();
//     // setter:   ready.set();           // wakes every waiter; later waits pass at once
//
// Contract
// - Thread-safe: set(), reset() and is_set() from any thread; wait() from coroutines on
//   any loops, blocking_wait() from plain threads. A waiter resumes on its own loop
//   (detail/sync_waiter.hpp). (corio::thread_event is the lighter choice when only plain
//   threads wait.) Destroying an event with waiters is a bug.
// - set() wakes every current waiter, in the order they started waiting; they resume at
//   the loop's next iteration even if reset() is called before then (the wake-up is
//   theirs). While set, wait() completes without suspending.
// - Waiting honours the coroutine's stop token: a cancelled wait() throws
//   operation_cancelled. A wait on an event already set never suspends.
// - No allocation per wait.

#include <coroutine>
#include <mutex>

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
    bool await_ready() const noexcept { return e_.is_set(); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, e_.lock_, e_.waiters_, [this](detail::wake_batch&) { return e_.set_; });
    }
    void await_resume() { finish("event wait"); }

   private:
    event& e_;
  };

  // co_await: waits until the event is set.
  wait_awaiter wait() noexcept { return wait_awaiter(*this); }

  // From a plain thread (not a loop's: std::logic_error): blocks it until the event is set.
  void blocking_wait() {
    detail::sync_waiter w;
    detail::block_on("event blocking_wait", lock_, waiters_, w, [this](detail::wake_batch&) { return set_; });
  }

  void set() noexcept {
    detail::with_lock(lock_, [this](detail::wake_batch& wakes) {
      set_ = true;
      while (detail::sync_waiter* w = waiters_.pop_front()) wakes.grant(w);
    });
  }
  void reset() noexcept {
    std::lock_guard guard(lock_);
    set_ = false;
  }
  bool is_set() const noexcept {
    std::lock_guard guard(lock_);
    return set_;
  }

 private:
  mutable detail::spin_lock lock_;  // guards set_ and waiters_
  bool set_;
  detail::wait_list waiters_;
};

}  // namespace corio
