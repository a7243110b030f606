#pragma once
// The one door for atomics on memory shared between processes (style.md, habit 5).
//
// Structures placed in shared memory stay trivially copyable plain integers; every access
// that another process (or thread) may race with goes through the helpers below, which
// apply std::atomic_ref to the plain integer. Why atomic_ref and not std::atomic members:
// the layout of a plain std::uint64_t is fixed by the ABI on both sides of a fork or an
// SCM_RIGHTS transfer, and the structure stays trivially copyable (static_assert-able).
//
// Lock-freedom is required, not hoped for: a lock-based atomic keeps its lock in the
// address space of one process, so it would not exclude the other process at all.

#include <atomic>
#include <cstdint>

#include "../../runtime/detail/dekker_fence.hpp"

namespace corio::detail {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "shared-memory indices need lock-free 64-bit atomics (a lock is per-process)");
static_assert(std::atomic_ref<std::uint64_t>::required_alignment <= alignof(std::uint64_t),
              "a naturally aligned std::uint64_t must be usable through atomic_ref");

// Reads a value the other side published with store_release: everything it wrote before
// that store is visible after this load.
[[nodiscard]] inline std::uint64_t load_acquire(const std::uint64_t& v) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(v)).load(std::memory_order_acquire);
}

// Publishes v: every write made before this store becomes visible to a load_acquire of it.
inline void store_release(std::uint64_t& target, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(target).store(v, std::memory_order_release);
}

// Reads a value only this side writes (its own index) or that orders nothing: no fence.
[[nodiscard]] inline std::uint64_t load_relaxed(const std::uint64_t& v) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(v)).load(std::memory_order_relaxed);
}

// Writes a value before it is published by a later store_release (initialisation).
inline void store_relaxed(std::uint64_t& target, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(target).store(v, std::memory_order_relaxed);
}

// 32-bit words (per-slot sequence numbers, futex words): the same four helpers, same rules.
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free,
              "shared-memory sequence numbers need lock-free 32-bit atomics (a lock is per-process)");
[[nodiscard]] inline std::uint32_t load_acquire(const std::uint32_t& v) noexcept {
  return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(v)).load(std::memory_order_acquire);
}
inline void store_release(std::uint32_t& target, std::uint32_t v) noexcept {
  std::atomic_ref<std::uint32_t>(target).store(v, std::memory_order_release);
}
[[nodiscard]] inline std::uint32_t load_relaxed(const std::uint32_t& v) noexcept {
  return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(v)).load(std::memory_order_relaxed);
}
inline void store_relaxed(std::uint32_t& target, std::uint32_t v) noexcept {
  std::atomic_ref<std::uint32_t>(target).store(v, std::memory_order_relaxed);
}

// Claims a word (a ring slot) that, on success, hands over data the previous owner
// published with store_release: the acquire pairs with it. Strong: a false return means
// the word was not `expected`, which then holds what it was. No ordering on failure.
[[nodiscard]] inline bool compare_exchange_acquire(std::uint64_t& target, std::uint64_t& expected,
                                                   std::uint64_t desired) noexcept {
  return std::atomic_ref<std::uint64_t>(target).compare_exchange_strong(expected, desired, std::memory_order_acquire,
                                                                        std::memory_order_relaxed);
}

// Claims a shared counter value (a slot position) when no data is published through the
// counter itself: the winner of the exchange is unique, and what it then reads or writes
// is ordered by a separate acquire/release pair (e.g. a slot's sequence number). On
// failure `expected` receives the current value.
[[nodiscard]] inline bool compare_exchange_relaxed(std::uint64_t& target, std::uint64_t& expected,
                                                   std::uint64_t desired) noexcept {
  return std::atomic_ref<std::uint64_t>(target).compare_exchange_weak(expected, desired, std::memory_order_relaxed,
                                                                      std::memory_order_relaxed);
}

// Hands over a counter value together with what the caller wrote before (a task's
// results, joinable_queue::task_done): the release pairs with a load_acquire that reads
// this value or a later one. Weak, like compare_exchange_relaxed; no ordering on failure.
[[nodiscard]] inline bool compare_exchange_release(std::uint64_t& target, std::uint64_t& expected,
                                                   std::uint64_t desired) noexcept {
  return std::atomic_ref<std::uint64_t>(target).compare_exchange_weak(expected, desired, std::memory_order_release,
                                                                      std::memory_order_relaxed);
}

// Read-modify-writes on a shared word (event_count's waiter count and epoch). The order is
// the caller's to argue: seq_cst where the RMW is one half of a Dekker pair, acq_rel where
// it publishes and observes, relaxed where it orders nothing.
inline std::uint64_t fetch_add(std::uint64_t& target, std::uint64_t v, std::memory_order order) noexcept {
  return std::atomic_ref<std::uint64_t>(target).fetch_add(v, order);
}
inline std::uint64_t fetch_sub(std::uint64_t& target, std::uint64_t v, std::memory_order order) noexcept {
  return std::atomic_ref<std::uint64_t>(target).fetch_sub(v, order);
}

// dekker_fence(), the seq_cst fence of a Dekker pair ("store mine, fence, load theirs" on
// both sides), comes with this header from runtime/detail/dekker_fence.hpp.

}  // namespace corio::detail
