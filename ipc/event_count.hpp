#pragma once
// corio::event_count — sleeping and waking across processes, for structures in shared
// memory (queues, rings, pools). The waiter never misses a wake-up, and the waker makes no
// system call when nobody sleeps.
//
//     // consumer                                   // producer
//     ev.wait_until([&] { return !ring.empty(); }); ring.try_push(msg);
//                                                   ev.notify_all();
//
// The protocol (announce, re-check, sleep)
// - prepare_wait() announces the waiter (waiters + 1) and returns the current epoch;
//   the waiter then re-checks its condition: if it now holds, cancel_wait(); otherwise
//   wait(key) sleeps until the epoch moves past key. wait_until / async_wait_until run that
//   loop for you; use them unless you batch several conditions.
// - notify_all() is called after the producer published its data. It reads the state; only
//   when a waiter is announced does it bump the epoch and wake the sleepers (one futex wake
//   syscall, or none). The hot path of a producer with nobody asleep is one fence and one
//   load of a line that stays shared in both caches.
//
// Why no wake-up is lost (memory ordering): the waiter does RMW(word) then loads the data;
// the producer stores the data then loads the word. Both sides separate their two steps
// with a seq_cst fence, so in any execution at least one of them sees the other: either
// the waiter's re-check sees the data (and it does not sleep), or the producer sees the
// announced waiter and bumps the epoch — and the kernel's futex compares the epoch with the
// key atomically with going to sleep, so a bump that lands before the sleep makes the sleep
// return at once (EAGAIN).
//
// Shared layout: one 64-bit word, event_count_state::word; the low 32 bits count announced
// waiters, the high 32 bits are the epoch, which is the futex word (futexes are 32 bits).
// It is a plain integer accessed through std::atomic_ref (see detail/shared_atomic.hpp for
// why not std::atomic). The futex is a shared one (no FUTEX_PRIVATE_FLAG): the kernel keys
// it by the physical page, so every process that maps the memory meets at the same futex.
//
// Where the sleep happens
// - wait(): the calling thread blocks in futex(FUTEX_WAIT_BITSET), CLOCK_MONOTONIC deadline
//   (detail::futex_wait_blocking, runtime/futex_ops.hpp).
// - async_wait(): inside a corio loop, corio::futex_wait (runtime/futex_ops.hpp): an
//   IORING_OP_FUTEX_WAIT request in the loop's ring (Linux 6.7+), so the loop keeps running
//   its other coroutines and sleeps in the kernel when all are idle. On older kernels (and
//   with CORIO_DISABLE_FEATURES=futex_wait) the loop's one futex thread sleeps for all of
//   the loop's waits and posts each wake-up to it; ~loop cancels the waits and joins it.
//   Cancellation (the ambient stop token) cancels the request in the kernel, or takes the
//   wait off the futex thread's list.
//
// Spurious wake-ups: wait() may return true without a notify (a signal); callers
// re-check, as wait_until does.
//
// Failure modes, stated: a process that dies between prepare_wait and the end of its wait
// leaves the waiter count one too high forever. Nothing breaks; notify_all then makes a
// futex_wake syscall every time (slower, still correct). The epoch wraps after 2^32 notifies;
// a sleeper would miss a wake-up only if exactly 2^32 notifies happened between its
// prepare_wait and its futex call.
//
// Thread-safety: every member may be called from any thread of any process mapping the
// state. An event_count is a view (a pointer) and is copied freely.

#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "../coro/task.hpp"

namespace corio {

// Lives in shared memory, zero-initialised (a fresh shm_region is). 8 bytes, 8-aligned.
struct event_count_state {
  std::uint64_t word;
};
static_assert(std::is_trivially_copyable_v<event_count_state>);

class event_count {
 public:
  using key = std::uint32_t;
  using deadline_type = std::optional<std::chrono::steady_clock::time_point>;

  explicit event_count(event_count_state& state) noexcept : state_(&state) {}

  // Announces a waiter; any notify_all() that starts after this returns wakes it.
  [[nodiscard]] key prepare_wait() noexcept;
  // Withdraws the announcement: the condition turned true after prepare_wait.
  void cancel_wait() noexcept;
  // Blocks the thread until a notify_all() since prepare_wait() returned k (true), or the
  // deadline (false). Withdraws the announcement either way.
  bool wait(key k, deadline_type deadline = {});
  // The same inside a running corio loop (see "Where the sleep happens"). Throws
  // operation_cancelled when the ambient stop token is stopped; std::logic_error outside a
  // loop.
  [[nodiscard]] task<bool> async_wait(key k, deadline_type deadline = {});

  // Wakes every announced waiter; no syscall when there is none.
  void notify_all() noexcept;

  // Returns true once ready() is true, false if the deadline passed first.
  template <class Ready>
  bool wait_until(Ready ready, deadline_type deadline = {});
  template <class Ready>
  [[nodiscard]] task<bool> async_wait_until(Ready ready, deadline_type deadline = {});

 private:
  event_count_state* state_;
};

// ---- implementation -----------------------------------------------------------------------

template <class Ready>
bool event_count::wait_until(Ready ready, deadline_type deadline) {
  while (!ready()) {
    const key k = prepare_wait();
    if (ready()) {
      cancel_wait();
      return true;
    }
    if (!wait(k, deadline)) return ready();
  }
  return true;
}

template <class Ready>
task<bool> event_count::async_wait_until(Ready ready, deadline_type deadline) {
  while (!ready()) {
    const key k = prepare_wait();
    if (ready()) {
      cancel_wait();
      co_return true;
    }
    if (!co_await async_wait(k, deadline)) co_return ready();
  }
  co_return true;
}

}  // namespace corio
