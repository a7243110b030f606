#pragma once
// spin_lock: the lock that guards each async primitive's state (sync_waiter.hpp).
//
// Why not std::mutex: the critical sections are a few pointer moves (and one move of a
// channel's value), so a waiter that finds the lock taken should spin briefly rather
// than sleep; and the uncontended cost is one atomic exchange plus one plain release
// store, where a pthread mutex pays two read-modify-writes. Why not a bare spin: on a
// machine with more runnable threads than cores the holder can be preempted inside its
// section, and spinning then burns the very time slice the holder needs; after a bounded
// spin the waiter yields its core.
//
// Meets Lockable (std::lock_guard, std::unique_lock). Never held across user code other
// than a value's move, never across a system call except the futex wake of a blocked
// thread (wake_batch::grant), so a holder is never long inside.

#include <atomic>
#include <thread>

#include "cpu_relax.hpp"

namespace corio::detail {

class spin_lock {
 public:
  spin_lock() = default;
  spin_lock(const spin_lock&) = delete;
  spin_lock& operator=(const spin_lock&) = delete;

  void lock() noexcept {
    // Acquire: pairs with the release in unlock(); the previous holder's writes to the
    // guarded state are visible once the exchange sees the lock free.
    while (locked_.exchange(true, std::memory_order_acquire)) {
      // Wait with plain loads (no cache-line ping-pong), then try again.
      for (unsigned spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < spin_limit)
          cpu_relax();
        else
          std::this_thread::yield();  // the holder may be preempted: let it run
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  // Release: publishes the guarded state to the next holder's acquire.
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  static constexpr unsigned spin_limit = 128;
  std::atomic<bool> locked_{false};
};

}  // namespace corio::detail
