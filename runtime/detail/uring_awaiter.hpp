#pragma once
// uring_awaiter: the one awaitable every single-shot io_uring operation is built from.
//
//     co_await uring_awaiter{prep, describe, options}
//
// `prep(sqe)` fills the SQE; `describe()` builds the error message ("read fd 7"), called
// only on failure. A Prep type with a `static constexpr int success_error` treats that
// negated errno as success (0). The result is the CQE's non-negative res, or an exception from
// detail::throw_errno (operation_cancelled, timed_out, std::system_error).
//
// Cancellation and deadlines (the same for every op):
// - The stop token is op_options::token if given, else the awaiting coroutine's ambient
//   token (stop.hpp). A token already stopped fails the op before it is submitted. A stop
//   requested while in flight sends IORING_OP_ASYNC_CANCEL: the loop polls the token
//   while busy and registers a std::stop_callback only before it sleeps (see
//   stop_watched_op), and the callback cancels from any thread (loop::cancel_from_any_thread); the op then completes with -ECANCELED, or with its real
//   result if it won the race, which is then returned: no completed work is lost.
// - A deadline adds an IORING_OP_LINK_TIMEOUT linked to the op. When it fires the op
//   completes with -ECANCELED and the awaiter throws timed_out (told apart from a stop
//   request by the token's state).
// - Lifetime: the awaiter lives in the suspended frame until the op's final CQE, so the
//   SQE's buffers, the timespec of the linked timeout and the io_op stay valid however
//   the op ends.

#include <liburing.h>

#include <chrono>
#include <coroutine>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../../coro/detail/trampoline.hpp"
#include "../../coro/stop.hpp"
#include "../errors.hpp"
#include "../loop.hpp"
#include "io_op.hpp"

namespace corio {

// Per-operation options, accepted by every awaitable operation:
//
//     co_await corio::read(fd, buf, corio::at_current_position, {.token = &my_token});
//     co_await corio::read(fd, buf, corio::at_current_position, corio::within(2s));
//
// Trivially destructible on purpose: GCC 12 destroys an aggregate temporary with a
// non-trivial member twice when it is built inside a co_await expression (a double
// release of a std::stop_token's state, seen under ASan). So the token is borrowed by
// pointer; it must outlive the operation, which any named token does.
struct op_options {
  // Overrides the ambient stop token of the awaiting coroutine.
  const std::stop_token* token = nullptr;
  // Fails the operation with timed_out when it has not completed by then.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};
static_assert(std::is_trivially_destructible_v<op_options>);

inline op_options within(std::chrono::steady_clock::duration d) {
  return {.token = nullptr, .deadline = std::chrono::steady_clock::now() + d};
}

namespace detail {

inline __kernel_timespec to_kernel_timespec(std::chrono::nanoseconds d) noexcept {
  if (d.count() < 0) d = std::chrono::nanoseconds{0};
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
  return {.tv_sec = secs.count(), .tv_nsec = (d - secs).count()};
}

struct op_completion : stop_watched_op {
  int res = 0;
  unsigned flags = 0;
  std::coroutine_handle<> waiter;
  void* owner = nullptr;  // the uring_awaiter, for register_callback

  op_completion() noexcept {
    complete = [](io_op* self, int res, unsigned flags) noexcept {
      auto* c = static_cast<op_completion*>(self);
      c->res = res;
      c->flags = flags;
      detail::resume(c->waiter);
    };
  }
};

template <class Prep, class Describe>
class [[nodiscard]] uring_awaiter {
 public:
  uring_awaiter(Prep prep, Describe describe, op_options options = {})
      : prep_(std::move(prep)), describe_(std::move(describe)), options_(std::move(options)) {}
  // Movable until awaited (combinators such as when_any store their children); the
  // in-flight state is never moved.
  uring_awaiter(uring_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<Prep> &&
                                            std::is_nothrow_move_constructible_v<Describe>)
      : prep_(std::move(o.prep_)), describe_(std::move(o.describe_)), options_(std::move(o.options_)) {}
  uring_awaiter(const uring_awaiter&) = delete;
  uring_awaiter& operator=(const uring_awaiter&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> waiter) {
    loop_ = &loop::this_loop();
    if (options_.token) {
      token_ = options_.token;
    } else if constexpr (std::is_base_of_v<stop_carrier, P>) {
      token_ = &waiter.promise().stop_token();
    }
    if (token_->stop_requested()) {
      done_.res = -ECANCELED;
      return false;
    }
    io_uring_sqe* sqe = loop_->get_sqe(options_.deadline ? 2 : 1);
    prep_(sqe);
    loop_->track(sqe, &done_);
    if (options_.deadline) {
      io_uring_sqe_set_flags(sqe, sqe->flags | IOSQE_IO_LINK);
      timeout_ = to_kernel_timespec(*options_.deadline - std::chrono::steady_clock::now());
      io_uring_sqe* t = loop_->get_sqe();
      io_uring_prep_link_timeout(t, &timeout_, 0);
      io_uring_sqe_set_data64(t, 0);
    }
    done_.waiter = waiter;
    if (token_->stop_possible()) {
      done_.token = token_;
      done_.owner = this;
      done_.register_callback = [](stop_watched_op* op) {
        auto* self = static_cast<uring_awaiter*>(static_cast<op_completion*>(op)->owner);
        self->cancel_on_stop_.emplace(*self->token_, canceller{self});
      };
      loop_->watch_stop(&done_);
    }
    return true;
  }

  int await_resume() {
    loop_->unwatch_stop(&done_);
    if (cancel_on_stop_) {
      // Waits for a callback running on another thread, so forget_cancel sees its entry.
      cancel_on_stop_.reset();
      loop_->forget_cancel(&done_);
    }
    // Some requests report their normal end as an error (a timeout expiring is -ETIME).
    if constexpr (requires { Prep::success_error; })
      if (done_.res == -Prep::success_error) return 0;
    if (done_.res < 0) [[unlikely]]
      fail();
    return done_.res;
  }

  // The CQE flags of the completion (IORING_CQE_F_BUFFER and friends).
  unsigned cqe_flags() const noexcept { return done_.flags; }

 private:
  struct canceller {
    uring_awaiter* self;
    void operator()() const noexcept {
      try {
        self->loop_->cancel_from_any_thread(&self->done_);
      } catch (...) {
        // Out of SQEs or memory: the op completes on its own; nothing else is safe here.
      }
    }
  };

  [[noreturn]] void fail() {
    int error = -done_.res;
    if (error == ECANCELED && options_.deadline && !token_->stop_requested()) error = ETIME;
    throw_errno(error, describe_());
  }

  Prep prep_;
  Describe describe_;
  op_options options_;
  loop* loop_ = nullptr;
  const std::stop_token* token_ = &never_stop;
  op_completion done_;
  __kernel_timespec timeout_{};
  std::optional<std::stop_callback<canceller>> cancel_on_stop_;
};

}  // namespace detail
}  // namespace corio
