#pragma once
// What runtime/subprocess and ipc/process share about a child they started: a pidfd to wait
// on, and the Python-style exit code of a wait status.

#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kernel_features.hpp"

namespace corio::detail {

// A pidfd for `pid` (always close-on-exec), or -1 when the kernel has none (pidfd_open is
// Linux 5.3+: ENOSYS before) or `disabled` (the tests' switch that forces the fallback);
// callers then poll with waitpid(WNOHANG) and a growing sleep.
inline int open_pidfd(pid_t pid, bool disabled) noexcept {
  if (disabled || kernel_feature_disabled_noexcept(kernel_feature::pidfd)) return -1;
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : static_cast<int>(fd);
}

// The exit status, or -N when signal N ended the child (Python's returncode / exitcode).
inline int decode_wait_status(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return status;  // not reached: waitpid without WUNTRACED reports only terminations
}

}  // namespace corio::detail
