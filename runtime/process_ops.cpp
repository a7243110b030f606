#include "process_ops.hpp"

#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "errors.hpp"
#include "file_ops.hpp"
#include "timer.hpp"

namespace corio::detail {

std::chrono::milliseconds exit_wait::take_nap() noexcept {
  const auto nap = nap_;
  nap_ = std::min(nap_ * 2, max_nap_);
  return nap;
}

task<void> exit_wait::next(int pidfd, op_options options) {
  if (pidfd >= 0)
    co_await corio::poll(pidfd, POLLIN, options);  // readable once the child exits
  else
    co_await sleep_for(take_nap(), options);
}

void exit_wait::block(int pidfd, pid_t pid, std::chrono::nanoseconds limit) {
  if (pidfd >= 0) {
    pollfd p{.fd = pidfd, .events = POLLIN, .revents = 0};
    const auto ts = to_kernel_timespec(limit);
    const timespec until{.tv_sec = ts.tv_sec, .tv_nsec = ts.tv_nsec};
    if (::ppoll(&p, 1, &until, nullptr) < 0 && errno != EINTR)
      throw_errno(errno, "poll pidfd of process " + std::to_string(pid));
  } else {
    const std::chrono::nanoseconds nap = std::min<std::chrono::nanoseconds>(take_nap(), limit);
    timespec ts{.tv_sec = 0, .tv_nsec = nap.count()};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace corio::detail
