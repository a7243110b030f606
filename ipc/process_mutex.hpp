#pragma once
// corio::process_mutex — a lock shared by processes (Python's multiprocessing.Lock) that
// survives the death of its holder.
//
//     corio::process_mutex m;                    // its own small shm_region
//     pid_t child = fork();                      // the child inherits it
//     auto r = m.lock();                         // blocks the thread
//     if (r.owner_died()) repair_shared_data();  // the last holder died holding it
//     ...
//     m.unlock();
//     auto r2 = co_await m.async_lock();         // inside a corio loop: sleeps in the loop
//
// The dead-owner guarantee (what Python lacks): a process or thread that dies holding the
// lock (SIGKILL, a crash) does not wedge the others. A waiter checks the holder's
// liveness 10 ms after it starts waiting and every 100 ms after that
// (detail/process_owner.hpp: by thread id and start time, so a reused pid is not taken for
// the dead holder); the first waiter to see the holder dead takes the lock over and gets
// lock_result::owner_died, like a robust pthread mutex's EOWNERDEAD. The state the lock
// protected may be half-updated, so the mutex is flagged inconsistent: consistent() stays
// false, for this and every later holder, until one of them repairs the data and calls
// mark_consistent(). Locking and unlocking work normally meanwhile.
//
// Ownership: the owner is the calling *thread* (its tid and start time), like std::mutex:
// unlock() from any other thread or process throws std::logic_error and leaves the lock
// held; lock() by the holder itself throws std::logic_error instead of deadlocking (use
// process_recursive_mutex to re-enter). A coroutine that locks must unlock on the same
// thread, which a corio loop guarantees (a coroutine stays on its loop's thread).
//
// Shared layout (process_mutex_state, 24 bytes, zero = unlocked and consistent)
// - owner: 0 when free, else the holder's owner token (bits 0..62) plus bit 63, "someone
//   may sleep": a waiter sets it (CAS) before sleeping; the unlock that clears the word
//   and sees the bit makes the wake-up call. So an uncontended lock + unlock is two
//   CAS instructions on one line and no system call.
// - inconsistent: 1 from an owner-died takeover until mark_consistent().
// - wake: the event_count waiters sleep on.
// Why no wake-up is lost: a waiter's CAS that sets the bit and the holder's unlocking CAS
// are read-modify-writes of one word, so one is ordered before the other. If the waiter's
// is first, the unlock sees the bit and calls notify_all; the waiter announced itself in
// the event_count (prepare_wait) before re-reading the word, and sleeps only if the word
// still holds the value it marked — the event_count protocol then guarantees that a
// notify_all after that re-read wakes it. If the unlock is first, the waiter's CAS fails
// (the word changed) and it retries without sleeping.
// Memory ordering: the acquiring CAS is acquire, the unlocking CAS is release: everything
// the previous holder wrote is visible to the next one. A takeover from a dead holder is
// acquire too, but what the dead process wrote last may be torn: hence the flag.
//
// Fairness: none (like Python's Lock and futex mutexes): an unlock wakes every sleeper and
// the first to retry wins; a running thread may barge ahead of the sleepers.
//
// Thread-safety: every member may be called from any thread of any process mapping the
// state. A process_mutex is a handle (a pointer, and a shared reference to its own region
// if it made one) and is copied freely.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "../coro/task.hpp"
#include "detail/process_owner.hpp"
#include "detail/shared_block.hpp"
#include "event_count.hpp"
#include "shm_region.hpp"

namespace corio {

// Lives in shared memory, zero-initialised. 24 bytes, 8-aligned.
struct process_mutex_state {
  std::uint64_t owner;
  std::uint64_t inconsistent;
  event_count_state wake;
};
static_assert(std::is_trivially_copyable_v<process_mutex_state>);
static_assert(sizeof(process_mutex_state) == 24);

// What an acquisition did. True (explicit bool) when the caller now holds the lock.
class lock_result {
 public:
  enum class status : std::uint8_t {
    acquired,    // the lock is held
    owner_died,  // the lock is held, taken over from a holder that died holding it
    timed_out,   // not held: the deadline passed (try_lock: the lock was busy)
  };
  constexpr lock_result(status s) noexcept : status_(s) {}  // NOLINT: implicit by design

  [[nodiscard]] constexpr status value() const noexcept { return status_; }
  [[nodiscard]] constexpr bool owner_died() const noexcept { return status_ == status::owner_died; }
  [[nodiscard]] constexpr bool timed_out() const noexcept { return status_ == status::timed_out; }
  constexpr explicit operator bool() const noexcept { return status_ != status::timed_out; }
  friend constexpr bool operator==(lock_result, lock_result) noexcept = default;

 private:
  status status_;
};

class process_mutex {
 public:
  using clock = std::chrono::steady_clock;
  using deadline_type = std::optional<clock::time_point>;

  // A new unlocked mutex in a shm_region of its own (inherited across fork; region()
  // sends it to another process).
  process_mutex();
  // A view of state the caller placed in shared memory (zero-filled = unlocked).
  explicit process_mutex(process_mutex_state& state) noexcept : block_(state) {}
  // Adopts a region another process sent (shm_region::receive): the state at its start.
  explicit process_mutex(shm_region received);

  // Blocks the thread until the lock is held. Never timed_out.
  lock_result lock();
  // One attempt, never blocks: timed_out when another thread holds it (and is alive).
  [[nodiscard]] lock_result try_lock();
  // Blocks until the lock is held or the deadline passes.
  [[nodiscard]] lock_result try_lock_until(clock::time_point deadline);
  template <class Rep, class Period>
  [[nodiscard]] lock_result try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(clock::now() + timeout);
  }
  // Inside a running corio loop: sleeps in the loop (other coroutines run meanwhile) until
  // the lock is held or the deadline passes. Throws operation_cancelled on a stop request.
  [[nodiscard]] task<lock_result> async_lock(deadline_type deadline = {});

  // Releases the lock; wakes the sleepers when there are any. std::logic_error when the
  // calling thread is not the holder.
  void unlock();

  [[nodiscard]] bool held_by_this_thread() const noexcept;
  // False from an owner-died takeover until mark_consistent().
  [[nodiscard]] bool consistent() const noexcept;
  // The holder declares the protected state repaired.
  void mark_consistent() noexcept;

  // The region to send_fd to another process (std::logic_error for a view).
  [[nodiscard]] const shm_region& region() const { return block_.region("process_mutex"); }
  [[nodiscard]] process_mutex_state& state() const noexcept { return block_.state(); }

 private:
  // The uncontended paths, inline: one CAS each (see "Shared layout").
  [[nodiscard]] bool try_take_free() noexcept;
  lock_result acquire(deadline_type deadline);
  void unlock_slow();

  detail::shared_block<process_mutex_state> block_;
};

namespace detail {
// Tests only: when a waiter first asks whether the holder lives, and how often after that
// (defaults 10 ms and 100 ms). A lost-wake-up test sets both to hours, so that a missed
// wake-up shows as a timeout instead of being covered by the periodic liveness check.
void set_owner_check_intervals(std::chrono::milliseconds first, std::chrono::milliseconds every) noexcept;
}  // namespace detail

// ---- implementation -----------------------------------------------------------------------

// Acquire on success: the previous holder's writes (published by its releasing CAS) are
// visible from here on.
inline bool process_mutex::try_take_free() noexcept {
  std::uint64_t expected = 0;
  return std::atomic_ref<std::uint64_t>(state().owner)
      .compare_exchange_strong(expected, detail::this_thread_owner_token(), std::memory_order_acquire,
                               std::memory_order_relaxed);
}

inline lock_result process_mutex::lock() {
  if (try_take_free()) [[likely]]
    return lock_result::status::acquired;
  return acquire(std::nullopt);
}

// Release: publishes the holder's writes. Fails (slow path) when a sleeper set bit 63 or
// the caller is not the holder.
inline void process_mutex::unlock() {
  std::uint64_t expected = detail::this_thread_owner_token();
  if (!std::atomic_ref<std::uint64_t>(state().owner)
           .compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) [[unlikely]]
    unlock_slow();
}

}  // namespace corio
