#pragma once
// Who holds a process lock, and whether that holder is still alive (ipc/process_mutex.hpp).
//
// An owner token names one thread of one process, for as long as it lives, in 63 bits:
//   bits  0..31  the thread id (gettid(); a single-threaded process's tid is its pid)
//   bits 32..62  the low 31 bits of the thread's start time, in clock ticks since boot
//                (field 22 of /proc/<tid>/stat)
//   bit  63      never set in a token: process_mutex keeps its "someone sleeps" flag there
// A token is never 0 (no thread has tid 0), so 0 can mean "free".
//
// Why the start time (pid reuse): a thread id is reused once the kernel's pid counter
// wraps. A dead holder's tid may by now belong to an unrelated live thread; that thread's
// start time differs from the one in the token, so the holder is still seen as dead. Two
// threads would share a token only if the kernel handed out the same tid twice within one
// clock tick (10 ms at USER_HZ 100), which needs pid_max (>= 32,768) thread creations in
// 10 ms: not possible on any machine corio runs on. The 31 bits of ticks wrap after about
// 248 days; a false "alive" needs a tid reused after exactly such a multiple: harmless (the
// waiter keeps waiting, as Python's lock would) and vanishingly rare.
//
// Pid namespaces: tokens are meaningful only between processes that share one pid
// namespace (fork()ed children always do). A process in another namespace (a container)
// that received the memory over a Unix socket would see the holder as dead: do not share
// a process lock across pid namespaces.
//
// Thread-safety: both functions may be called from any thread. this_thread_owner_token()
// reads /proc once per thread and caches the token in a thread_local; a fork() child's
// cache is cleared by a pthread_atfork handler (the child's only thread has a new tid).

#include <cstdint>

namespace corio::detail {

inline constexpr std::uint64_t owner_token_bits = (std::uint64_t{1} << 63) - 1;

// The calling thread's token, cached; 0 until computed (and again in a fork() child).
inline thread_local std::uint64_t cached_owner_token = 0;

// Reads the calling thread's start time and fills cached_owner_token.
[[nodiscard]] std::uint64_t compute_owner_token() noexcept;

// The calling thread's token (see above): one thread-local load after the first call.
[[nodiscard]] inline std::uint64_t this_thread_owner_token() noexcept {
  const std::uint64_t token = cached_owner_token;
  return token != 0 ? token : compute_owner_token();
}

// False once the thread the token names has exited (or is a zombie, or its tid now names a
// thread that started at another time). Reads /proc/<tid>/stat: microseconds, for slow
// paths only. Without a readable /proc it falls back to kill(tid, 0) (no reuse check).
[[nodiscard]] bool owner_alive(std::uint64_t token) noexcept;

}  // namespace corio::detail
