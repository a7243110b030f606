#pragma once
// semaphore: an async counting semaphore for coroutines of one loop (asyncio.Semaphore).
//
//     corio::semaphore slots(4);           // at most four downloads at a time
//     co_await slots.acquire();
//     co_await download(url);
//     slots.release();
//
// Contract
// - Loop-local, not thread-safe: every call is made on the thread of one loop; only stop
//   requests may come from any thread. Destroying a semaphore with waiters is a bug.
// - Fairness: strict FIFO. release() gives its unit directly to the oldest waiter, so the
//   count is positive only while nobody waits, and try_acquire() never jumps the queue.
// - Waiting honours the coroutine's stop token: a cancelled acquire() throws
//   operation_cancelled and takes no unit. An acquire() that finds a unit never suspends
//   and ignores the token. A unit handed over before the cancellation arrived is kept.
// - No allocation per wait.

#include <coroutine>
#include <cstddef>
#include <stdexcept>

#include "detail/sync_waiter.hpp"

namespace corio {

class semaphore {
 public:
  // Throws std::invalid_argument when `initial` is negative.
  explicit semaphore(std::ptrdiff_t initial) : count_(initial) {
    if (initial < 0) throw std::invalid_argument("corio::semaphore: negative initial count");
  }
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  class [[nodiscard]] acquire_awaiter : detail::sync_wait_base {
   public:
    explicit acquire_awaiter(semaphore& s) noexcept : s_(s) {}
    bool await_ready() noexcept { return s_.try_acquire(); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, s_.waiters_);
    }
    void await_resume() { finish("semaphore acquire"); }

   private:
    semaphore& s_;
  };

  // co_await: takes one unit, waiting while there is none.
  acquire_awaiter acquire() noexcept { return acquire_awaiter(*this); }

  bool try_acquire() noexcept {
    if (count_ == 0) return false;
    --count_;
    return true;
  }

  // Returns `n` units (n >= 0): each goes to the oldest waiter, or back to the count.
  void release(std::ptrdiff_t n = 1) noexcept {
    for (; n > 0; --n) {
      if (detail::sync_waiter* w = waiters_.pop_front())
        detail::grant(w);
      else
        ++count_;
    }
  }

  // Units available now.
  std::ptrdiff_t available() const noexcept { return count_; }
  // True when some coroutine waits.
  bool has_waiters() const noexcept { return !waiters_.empty(); }

 private:
  std::ptrdiff_t count_;
  detail::wait_list waiters_;
};

}  // namespace corio
