#pragma once
// mutex: an async mutual-exclusion lock for coroutines (Python's asyncio.Lock, tokio's
// Mutex), usable across loops and threads.
//
//     corio::mutex m;
//     {
//       auto guard = co_await m.lock();   // suspends, never blocks the thread
//       co_await write_both_files();      // may suspend while holding it
//     }                                   // the guard unlocks
//
// Contract
// - Thread-safe: coroutines on any loops and plain threads (blocking_lock) may contend;
//   a waiter resumes on its own loop (detail/sync_waiter.hpp). Unlike std::mutex it may
//   be held across a suspension and unlocked on another thread. For a few instructions
//   of work between plain threads, std::mutex is cheaper. Destroying a mutex with
//   waiters is a bug.
// - Fairness: strict FIFO. unlock() hands ownership directly to the oldest waiter, which
//   resumes at the loop's next iteration; a coroutine arriving meanwhile finds the mutex
//   locked and queues behind it (no barging, no starvation).
// - Waiting honours the coroutine's stop token: a cancelled lock() throws
//   operation_cancelled and leaves the mutex as it was. An uncontended lock() never
//   suspends and ignores the token. If ownership was handed over before the cancellation
//   arrived, the lock is acquired (a grant always wins).
// - No allocation per wait: the waiter lives in the awaiting frame.

#include <coroutine>
#include <mutex>
#include <utility>

#include "detail/sync_waiter.hpp"

namespace corio {

class mutex;

// Owns a lock on a corio::mutex; unlocks it when destroyed. Movable, like std::unique_lock.
class [[nodiscard]] mutex_guard {
 public:
  mutex_guard() noexcept = default;
  explicit mutex_guard(mutex& m, std::adopt_lock_t) noexcept : m_(&m) {}
  mutex_guard(mutex_guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
  mutex_guard& operator=(mutex_guard&& o) noexcept {
    if (this != &o) {
      reset();
      m_ = std::exchange(o.m_, nullptr);
    }
    return *this;
  }
  ~mutex_guard() { reset(); }

  bool owns_lock() const noexcept { return m_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }
  mutex* get() const noexcept { return m_; }
  // Unlocks early.
  void unlock() noexcept { reset(); }
  // Gives up ownership without unlocking.
  mutex* release() noexcept { return std::exchange(m_, nullptr); }

 private:
  inline void reset() noexcept;
  mutex* m_ = nullptr;
};

class mutex {
 public:
  mutex() = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  class [[nodiscard]] lock_awaiter : detail::sync_wait_base {
   public:
    explicit lock_awaiter(mutex& m) noexcept : m_(m) {}
    bool await_ready() noexcept { return m_.try_lock(); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, m_.lock_, m_.waiters_, [this](detail::wake_batch&) { return m_.take(); });
    }
    mutex_guard await_resume() {
      finish("mutex lock");
      return mutex_guard(m_, std::adopt_lock);
    }

   private:
    mutex& m_;
  };

  // co_await: waits for the mutex and returns a guard that owns it.
  lock_awaiter lock() noexcept { return lock_awaiter(*this); }

  // From a plain thread (not a loop's: std::logic_error): blocks it until it owns the mutex.
  mutex_guard blocking_lock() {
    detail::sync_waiter w;
    detail::block_on("mutex blocking_lock", lock_, waiters_, w, [this](detail::wake_batch&) { return take(); });
    return mutex_guard(*this, std::adopt_lock);
  }

  // Takes the mutex if nobody holds it (never jumps the queue: if it is free, no one waits).
  bool try_lock() noexcept {
    std::lock_guard guard(lock_);
    return take();
  }

  // Must be called by the holder (guards do it), on any thread. Hands the mutex to the
  // oldest waiter.
  void unlock() noexcept {
    detail::with_lock(lock_, [this](detail::wake_batch& wakes) {
      if (detail::sync_waiter* w = waiters_.pop_front())
        wakes.grant(w);  // ownership passes on: locked_ stays true
      else
        locked_ = false;
    });
  }

  // A snapshot: from another thread, stale as soon as it returns.
  bool is_locked() const noexcept {
    std::lock_guard guard(lock_);
    return locked_;
  }

 private:
  bool take() noexcept {  // under lock_
    if (locked_) return false;
    locked_ = true;
    return true;
  }

  mutable detail::spin_lock lock_;  // guards locked_ and waiters_
  bool locked_ = false;
  detail::wait_list waiters_;
};

inline void mutex_guard::reset() noexcept {
  if (m_) std::exchange(m_, nullptr)->unlock();
}

}  // namespace corio
