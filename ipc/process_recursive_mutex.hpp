#pragma once
// corio::process_recursive_mutex — a process_mutex its holder may lock again (Python's
// multiprocessing.RLock): re-entrant per owner, the owner being one thread of one process.
// Each lock() by the holder must be matched by an unlock(); the last one releases it.
//
//     corio::process_recursive_mutex m;
//     m.lock();
//     m.lock();    // the same thread: depth 2, no deadlock
//     m.unlock();
//     m.unlock();  // released
//
// Everything else is process_mutex's (see process_mutex.hpp): the dead-owner takeover
// (owner_died, consistent() / mark_consistent(); the taker starts at depth 1 whatever the
// dead holder's depth was), timeouts, async_lock in a loop, unlock by a non-holder throwing
// std::logic_error.
//
// Shared layout (process_recursive_mutex_state, 32 bytes, zero = unlocked): the mutex, then
// `depth`, which only the holder reads or writes; the mutex's acquire/release hands it from
// one holder to the next.
//
// Thread-safety: as process_mutex; a handle, copied freely.

#include <cstdint>

#include "process_mutex.hpp"

namespace corio {

struct process_recursive_mutex_state {
  process_mutex_state mutex;
  std::uint64_t depth;
};
static_assert(std::is_trivially_copyable_v<process_recursive_mutex_state>);

class process_recursive_mutex {
 public:
  using clock = process_mutex::clock;
  using deadline_type = process_mutex::deadline_type;

  process_recursive_mutex();
  explicit process_recursive_mutex(process_recursive_mutex_state& state) noexcept;
  explicit process_recursive_mutex(shm_region received);

  lock_result lock();
  [[nodiscard]] lock_result try_lock();
  [[nodiscard]] lock_result try_lock_until(clock::time_point deadline);
  template <class Rep, class Period>
  [[nodiscard]] lock_result try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(clock::now() + timeout);
  }
  [[nodiscard]] task<lock_result> async_lock(deadline_type deadline = {});
  void unlock();

  // How many unlock() calls the holder still owes; 0 when this thread does not hold it.
  [[nodiscard]] std::uint64_t depth() const noexcept;
  [[nodiscard]] bool held_by_this_thread() const noexcept { return mutex_.held_by_this_thread(); }
  [[nodiscard]] bool consistent() const noexcept { return mutex_.consistent(); }
  void mark_consistent() noexcept { mutex_.mark_consistent(); }

  [[nodiscard]] const shm_region& region() const { return block_.region("process_recursive_mutex"); }

 private:
  bool reentered() noexcept;
  lock_result entered(lock_result r) noexcept;

  detail::shared_block<process_recursive_mutex_state> block_;
  process_mutex mutex_;
};

}  // namespace corio
