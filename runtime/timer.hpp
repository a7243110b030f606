#pragma once
// Timers: sleep_for, sleep_until, with_timeout. Each sleep is one IORING_OP_TIMEOUT, so
// the kernel's timer wheel orders them; ten thousand concurrent sleepers fire in deadline
// order with no user-space heap. Like every operation, a sleep borrows the awaiting
// coroutine's stop token: a stop request ends it early with operation_cancelled.
//
//     co_await corio::sleep_for(10ms);
//     co_await corio::sleep_until(std::chrono::steady_clock::now() + 1s);
//     int v = co_await corio::with_timeout(fetch(), 500ms);   // timed_out if it is late

#include <chrono>
#include <string>
#include <utility>

#include "../coro/task.hpp"
#include "../coro/when_any.hpp"
#include "detail/uring_awaiter.hpp"

namespace corio {
namespace detail {

// A relative or absolute CLOCK_MONOTONIC timeout (std::chrono::steady_clock is
// CLOCK_MONOTONIC on Linux). The timespec lives in the awaiter, as the kernel reads it
// at submission.
struct timeout_prep {
  static constexpr int success_error = ETIME;  // an expiring timeout completes with -ETIME
  __kernel_timespec ts;
  unsigned flags;
  bool just_yield = false;
  void operator()(io_uring_sqe* sqe) {
    if (just_yield)
      io_uring_prep_nop(sqe);
    else
      io_uring_prep_timeout(sqe, &ts, 0, flags);
  }
};

inline auto describe_sleep() { return [] { return std::string("sleep"); }; }

}  // namespace detail

// A zero or negative duration yields to the loop once (like asyncio.sleep(0)): the
// request is a NOP, which completes on the next reap without arming a kernel timer.
inline auto sleep_for(std::chrono::nanoseconds d, op_options options = {}) {
  return detail::uring_awaiter(detail::timeout_prep{detail::to_kernel_timespec(d), 0, d.count() <= 0},
                               detail::describe_sleep(), std::move(options));
}

inline auto sleep_until(std::chrono::steady_clock::time_point when, op_options options = {}) {
  return detail::uring_awaiter(
      detail::timeout_prep{detail::to_kernel_timespec(when.time_since_epoch()), IORING_TIMEOUT_ABS, false},
      detail::describe_sleep(), std::move(options));
}

// Runs `t`; if it has not finished after `d`, asks it to stop (its stop token), waits for
// it to end, and throws timed_out. Otherwise returns its value (or rethrows its error).
template <class T>
task<T> with_timeout(task<T> t, std::chrono::nanoseconds d) {
  auto r = co_await when_any(std::move(t), sleep_for(d));
  if (r.index() == 1)
    throw timed_out("with_timeout: the task did not finish within " +
                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) +
                    " ms");
  if constexpr (!std::is_void_v<T>) co_return std::move(std::get<0>(r));
}

}  // namespace corio
