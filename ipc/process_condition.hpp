#pragma once
// corio::process_condition — a condition variable shared by processes, used with a
// process_mutex (Python's multiprocessing.Condition).
//
//     corio::process_condition cv;              // with a lock of its own
//     // consumer                               // producer
//     cv.lock();                                cv.lock();
//     cv.wait_for([&] { return box->full; });   box->full = true;
//     take(box);                                cv.notify();
//     cv.unlock();                              cv.unlock();
//
// wait() must be called holding the lock: it releases it, sleeps until notified (or the
// deadline), and holds the lock again when it returns (even on timeout). notify(n) wakes
// up to n waiters, notify_all() all of them; both must be called holding the lock.
// Calls without the lock throw std::logic_error (Python: RuntimeError). wait_for(pred)
// waits until pred() is true (checked under the lock), returning pred()'s last value.
// Like every condition variable, a waiter may wake without a notify: prefer wait_for.
// The lock is a process_mutex, not Python's default RLock: a wait must release it fully,
// which a re-entered lock cannot do safely.
//
// Exactly n: notify(n) hands out min(n, waiters not yet notified) wake-up tokens; each
// waiter that wakes must take a token to return (a waiter that finds none sleeps again),
// so notify(1) with three waiters lets exactly one of them return. A token is not tied to
// one waiter: a waiter that arrived after the notify may take it (the older one then
// waits for the next notify), as POSIX condition variables allow.
//
// Shared layout (process_condition_state): `counts` = waiters << 32 | tokens, changed by
// CAS only; `wake`, the event_count sleepers sleep on; `lock`, the mutex a condition made
// without one uses. A waiter registers (waiters + 1) and announces itself in the
// event_count before it unlocks, so a notify made by the next holder of the lock cannot
// be missed (the event_count's Dekker pair: announce then re-check counts; add tokens then
// notify_all). A waiter that times out leaves (waiters - 1) and takes a token if every
// remaining waiter already has one (it was notified: the wait then reports true).
// A process that dies in wait() leaves `waiters` one too high: a later notify may then
// hand a token to nobody, and a later waiter returns at once (a spurious wake-up).
//
// Thread-safety: any thread of any process mapping the state; a handle, copied freely.

#include <chrono>
#include <cstdint>
#include <optional>

#include "../coro/task.hpp"
#include "detail/shared_block.hpp"
#include "event_count.hpp"
#include "process_mutex.hpp"
#include "shm_region.hpp"

namespace corio {

struct process_condition_state {
  std::uint64_t counts;
  event_count_state wake;
  process_mutex_state lock;
};
static_assert(std::is_trivially_copyable_v<process_condition_state>);

class process_condition {
 public:
  using clock = std::chrono::steady_clock;
  using deadline_type = std::optional<clock::time_point>;

  // A new condition with a lock of its own, in a shm_region of its own.
  process_condition();
  // A new condition (own region) that uses `lock` (a handle to another shared mutex).
  explicit process_condition(process_mutex lock);
  // Views of a state the caller placed in shared memory: with its own lock field, or `lock`.
  explicit process_condition(process_condition_state& state) noexcept;
  process_condition(process_condition_state& state, process_mutex lock) noexcept;
  explicit process_condition(shm_region received);

  // The associated lock (Python's acquire/release and get_lock).
  lock_result lock() { return lock_.lock(); }
  void unlock() { lock_.unlock(); }
  [[nodiscard]] process_mutex& get_lock() noexcept { return lock_; }

  // Holding the lock: true when notified, false when the deadline passed. Holds the lock
  // again on return either way.
  bool wait(deadline_type deadline = {});
  template <class Predicate>
  bool wait_for(Predicate pred, deadline_type deadline = {});
  // The same inside a running corio loop (the lock is re-taken with async_lock). A stop
  // request throws operation_cancelled *without* the lock held.
  [[nodiscard]] task<bool> async_wait(deadline_type deadline = {});
  template <class Predicate>
  [[nodiscard]] task<bool> async_wait_for(Predicate pred, deadline_type deadline = {});

  // Holding the lock: wakes up to n waiters / every waiter.
  void notify(std::uint32_t n = 1);
  void notify_all();

  [[nodiscard]] const shm_region& region() const { return block_.region("process_condition"); }

 private:
  // The three steps of a wait: register and unlock; take a token; leave on a timeout.
  event_count::key enter(const char* what);
  bool took_token(event_count& ev) noexcept;
  bool leave_on_timeout() noexcept;
  void leave_on_cancel() noexcept;

  detail::shared_block<process_condition_state> block_;
  process_mutex lock_;
};

// ---- implementation -----------------------------------------------------------------------

template <class Predicate>
bool process_condition::wait_for(Predicate pred, deadline_type deadline) {
  while (!pred()) {
    if (!wait(deadline)) return pred();
  }
  return true;
}

template <class Predicate>
task<bool> process_condition::async_wait_for(Predicate pred, deadline_type deadline) {
  // The awaited result is named before it is tested: GCC 12 miscompiles
  // `if (!co_await x) co_return y;` as the only statement of this loop (the coroutine
  // never starts its body).
  while (!pred()) {
    const bool woken = co_await async_wait(deadline);
    if (!woken) co_return pred();
  }
  co_return true;
}

}  // namespace corio
