#pragma once
// Process waits: how a parent waits for a child it started to end, and what it needs for
// that (the child's pidfd, the meaning of its wait status). The building blocks that
// subprocess::child (subprocess.hpp) and corio::process (ipc/process.hpp) share; a
// program uses those, not this.
//
//     detail::exit_wait waits;
//     while (!try_reap()) co_await waits.next(pidfd, options);   // try_reap: waitpid(WNOHANG)
//
// Contract: a wait returns when the child MAY have ended; the caller then reaps with
// waitpid(WNOHANG) and waits again if it has not. The pidfd is passed to every wait
// because reaping closes it (and the caller's copy becomes -1).
//
// How it waits:
// - With a pidfd (pidfd_open, Linux 5.3+; open_pidfd below): the pidfd turns readable
//   (POLLIN) when the child exits. In a loop that is one poll request (file_ops.hpp's
//   poll) on whichever backend the loop runs, on a plain thread a ppoll(2).
// - Without one (an older kernel, kernel_feature::pidfd disabled, or a test's switch): a
//   nap that doubles from 1 ms up to `max_nap` (50 ms unless told), so a long wait costs
//   few wake-ups and a short one little latency.
//
// Who may touch it: one exit_wait belongs to one waiting coroutine or thread (it holds the
// nap length).

#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "../coro/task.hpp"
#include "detail/uring_awaiter.hpp"
#include "kernel_features.hpp"

namespace corio::detail {

// A pidfd for `pid` (always close-on-exec), or -1 when the kernel has none (pidfd_open is
// Linux 5.3+: ENOSYS before) or `disabled` (the tests' switch that forces the fallback);
// the waits below then nap between waitpid(WNOHANG) checks.
inline int open_pidfd(pid_t pid, bool disabled) noexcept {
  if (disabled || kernel_feature_disabled_noexcept(kernel_feature::pidfd)) return -1;
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : static_cast<int>(fd);
}

// Sends `sig` to the child: through its pidfd when it has one, else kill(2), which is as
// safe until the child is reaped (its pid cannot name another process before). 0, or -1
// with errno set (ESRCH: it ended already).
inline long signal_child(pid_t pid, int pidfd, int sig) noexcept {
  return pidfd >= 0 ? ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) : ::kill(pid, sig);
}

// The exit status, or -N when signal N ended the child (Python's returncode / exitcode).
inline int decode_wait_status(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return status;  // not reached: waitpid without WUNTRACED reports only terminations
}

class exit_wait {
 public:
  explicit exit_wait(std::chrono::milliseconds max_nap = std::chrono::milliseconds(50)) noexcept
      : max_nap_(max_nap) {}

  // Inside a loop: one wait. `pidfd` is the child's pidfd or -1. A stop request
  // (options.token, else the ambient token) throws operation_cancelled, options.deadline
  // passing throws timed_out; the child keeps running either way.
  [[nodiscard]] task<void> next(int pidfd, op_options options = {});

  // On a plain thread: one wait of at most `limit` (it returns at the limit, never throws
  // for it). Throws std::system_error "poll pidfd of process <pid>" when ppoll fails.
  void block(int pidfd, pid_t pid, std::chrono::nanoseconds limit);

 private:
  // The current nap, and the next one doubled up to max_nap_.
  std::chrono::milliseconds take_nap() noexcept;

  std::chrono::milliseconds nap_{1};
  std::chrono::milliseconds max_nap_;
};

}  // namespace corio::detail
