#pragma once
// Futex waits: a coroutine sleeps on a 32-bit futex word while its loop runs the others
// (futex_wait); below, for ipc/event_count, the same shared-futex wait from a plain thread
// and the wake that ends both.
//
//     std::uint32_t seen = load(word);
//     ...                                   // re-check the condition, then:
//     bool woken = co_await corio::futex_wait(&word, seen, corio::within(1s));
//
// Contract: returns true once the word no longer holds `expected` or a FUTEX_WAKE on it
// arrived (possibly spuriously: callers re-check their condition, as with futex(2));
// false when options.deadline passed first. Throws operation_cancelled on a stop request
// (options.token, else the awaiting coroutine's ambient token). The futex is shared (no
// FUTEX_PRIVATE_FLAG): the word may live in memory mapped by several processes, and a
// FUTEX_WAKE from any of them wakes the wait. ipc/event_count.hpp builds on it.
//
// Where it sleeps:
// - IORING_OP_FUTEX_WAIT in the loop's ring (Linux 6.7+, kernel_feature::futex_wait):
//   a request like any other, cancelled in the kernel by a stop or by ~loop.
// - Before 6.7 (Debian 12's 6.1) or with the feature disabled: the loop's one futex
//   thread (detail/futex_thread.hpp) sleeps for every such wait of the loop at once
//   (futex_waitv, 5.16+) and posts each wake-up to the loop. The thread is the loop's:
//   ~loop cancels the waits still pending and joins it.
//
// Who may call it: a coroutine running on a loop (std::logic_error otherwise); the
// blocking wait and the wake below, any thread. The word must stay mapped until the wait
// returns.

#include <chrono>
#include <cstdint>
#include <optional>

#include "../coro/task.hpp"
#include "detail/uring_awaiter.hpp"

namespace corio {

[[nodiscard]] task<bool> futex_wait(std::uint32_t* address, std::uint32_t expected, op_options options = {});

namespace detail {
// The same wait blocking the calling thread (FUTEX_WAIT_BITSET, an absolute
// CLOCK_MONOTONIC deadline: steady_clock is CLOCK_MONOTONIC on Linux). Returns false only
// when the deadline passed; EAGAIN (the word had changed) and EINTR count as wake-ups.
bool futex_wait_blocking(std::uint32_t* address, std::uint32_t expected,
                         std::optional<std::chrono::steady_clock::time_point> deadline);
// Wakes every waiter on the shared futex word, in any process and either kind of wait.
void futex_wake_all(std::uint32_t* address) noexcept;

// Tests only: waits take the futex thread, as on kernels before 6.7.
void force_futex_thread(bool on) noexcept;
}  // namespace detail

}  // namespace corio
