#pragma once
// semaphore: an async counting semaphore for coroutines (asyncio.Semaphore, tokio's
// Semaphore), usable across loops and threads.
//
//     corio::semaphore slots(4);           // at most four downloads at a time
//     co_await slots.acquire();
//     co_await download(url);
//     slots.release();
//
// Contract
// - Thread-safe: acquire and release from coroutines on any loops and from plain threads
//   (blocking_acquire, try_acquire, release); a waiter resumes on its own loop
//   (detail/sync_waiter.hpp). Destroying a semaphore with waiters is a bug.
// - Fairness: strict FIFO. release() gives its unit directly to the oldest waiter, so the
//   count is positive only while nobody waits, and try_acquire() never jumps the queue.
// - Waiting honours the coroutine's stop token: a cancelled acquire() throws
//   operation_cancelled and takes no unit. An acquire() that finds a unit never suspends
//   and ignores the token. A unit handed over before the cancellation arrived is kept.
// - No allocation per wait.

#include <coroutine>
#include <cstddef>
#include <mutex>
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
      return suspend_on(h, s_.lock_, s_.waiters_, [this](detail::wake_batch&) { return s_.take(); });
    }
    void await_resume() { finish("semaphore acquire"); }

   private:
    semaphore& s_;
  };

  // co_await: takes one unit, waiting while there is none.
  acquire_awaiter acquire() noexcept { return acquire_awaiter(*this); }

  // From a plain thread (not a loop's: std::logic_error): blocks it until it has a unit.
  void blocking_acquire() {
    detail::sync_waiter w;
    detail::block_on("semaphore blocking_acquire", lock_, waiters_, w, [this](detail::wake_batch&) { return take(); });
  }

  bool try_acquire() noexcept {
    std::lock_guard guard(lock_);
    return take();
  }

  // Returns `n` units (n >= 0), from any thread: each goes to the oldest waiter, or back
  // to the count.
  void release(std::ptrdiff_t n = 1) noexcept {
    detail::with_lock(lock_, [&](detail::wake_batch& wakes) {
      for (; n > 0; --n) {
        if (detail::sync_waiter* w = waiters_.pop_front())
          wakes.grant(w);
        else
          ++count_;
      }
    });
  }

  // Snapshots: from another thread, stale as soon as they return.
  // Units available now.
  std::ptrdiff_t available() const noexcept {
    std::lock_guard guard(lock_);
    return count_;
  }
  // True when some coroutine or thread waits.
  bool has_waiters() const noexcept {
    std::lock_guard guard(lock_);
    return !waiters_.empty();
  }

 private:
  bool take() noexcept {  // under lock_
    if (count_ == 0) return false;
    --count_;
    return true;
  }

  mutable detail::spin_lock lock_;  // guards count_ and waiters_
  std::ptrdiff_t count_;
  detail::wait_list waiters_;
};

}  // namespace corio
