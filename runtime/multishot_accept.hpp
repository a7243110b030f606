#pragma once
// multishot_accept: many connections from one accept request.
//
//     corio::multishot_accept acceptor(listen_fd);
//     for (;;) {
//       int conn = co_await acceptor.next();                       // SOCK_CLOEXEC
//       ...
//     }
//
// One IORING_OP_ACCEPT with IORING_ACCEPT_MULTISHOT (Linux 5.19) posts a CQE per
// connection; the object buffers the fds until next() takes them. Bounded: once
// `max_pending` fds wait untaken, the request is cancelled (the kernel's listen backlog
// then holds further clients) and re-armed when next() drains the buffer. When the kernel
// ends the request on its own (no IORING_CQE_F_MORE) it is re-armed at the next next().
// When the kernel refuses multishot (-EINVAL on the first completion) it falls back to
// one single accept per next(), for good.
//
// Who may touch it: the thread of the loop it first ran on. Destroying it while a request
// is in flight cancels the request; its state lives on until the kernel's final CQE and
// closes any fd the kernel still delivers (design.md: a cancel is a request, only the
// completion frees anything). Destroying it while a coroutine waits in next() is a bug.
//
// The single-shot socket operations (accept, connect, recv, send) are net_ops.hpp;
// tcp_listener::incoming() (stream.hpp) wraps this one to yield streams.

#include <coroutine>
#include <cstddef>
#include <deque>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../coro/detail/trampoline.hpp"
#include "../coro/stop.hpp"
#include "detail/uring_awaiter.hpp"

namespace corio {

struct multishot_options {
  // Accepted fds buffered before the request is paused (see above). At least 1.
  std::size_t max_pending = 64;
  // false: single accepts only, as on a kernel without multishot accept (for tests).
  bool try_multishot = true;
};

namespace detail {

// The state behind a multishot_accept, on the heap so that it can outlive its owner
// until the kernel's final CQE. Loop thread only.
struct accept_state : io_op {
  loop* lp = nullptr;
  int listen_fd = -1;
  multishot_options options;
  bool armed = false;        // a request is in flight
  bool pausing = false;      // we cancelled it because the buffer is full
  bool orphaned = false;     // the owner is gone: close what arrives, free at the end
  bool any_accepted = false; // the kernel has delivered at least one fd (so it can multishot)
  int error = 0;             // an errno to hand to the next waiter
  std::deque<int> ready;
  std::coroutine_handle<> waiter;

  accept_state(int fd, multishot_options o) noexcept;
  void arm();
  // Arms or pauses the request to match the buffer and the waiter.
  void adjust();
  static void on_complete(io_op* self, int res, unsigned flags) noexcept;
};

}  // namespace detail

class multishot_accept {
 public:
  explicit multishot_accept(int listen_fd, multishot_options options = {});
  multishot_accept(multishot_accept&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  multishot_accept& operator=(multishot_accept&& o) noexcept;
  multishot_accept(const multishot_accept&) = delete;
  multishot_accept& operator=(const multishot_accept&) = delete;
  ~multishot_accept();

  class next_awaiter;
  // The next accepted fd, owned by the caller (close-on-exec). Throws std::system_error
  // "accept fd N: ..." when the kernel reports an error (the request is re-armed at the
  // following next()), operation_cancelled on a stop request (ambient token or
  // options.token). Deadlines are not supported here: wrap it in with_timeout instead
  // (std::invalid_argument if options.deadline is set).
  next_awaiter next(op_options options = {});

  // Whether the kernel is delivering many connections per request (false after the
  // fallback to single accepts).
  bool is_multishot() const noexcept { return state_ && state_->options.try_multishot; }
  // Accepted fds waiting for next().
  std::size_t pending() const noexcept { return state_ ? state_->ready.size() : 0; }

 private:
  void release() noexcept;
  detail::accept_state* state_;
};

class [[nodiscard]] multishot_accept::next_awaiter {
 public:
  next_awaiter(detail::accept_state* state, op_options options) noexcept : state_(state), options_(options) {}
  next_awaiter(next_awaiter&& o) noexcept : state_(o.state_), options_(o.options_) {}
  next_awaiter(const next_awaiter&) = delete;
  next_awaiter& operator=(const next_awaiter&) = delete;

  bool await_ready() const noexcept { return !state_->ready.empty(); }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (options_.token) {
      token_ = options_.token;
    } else if constexpr (std::is_base_of_v<detail::stop_carrier, P>) {
      token_ = &h.promise().stop_token();
    }
    if (token_->stop_requested() || state_->error != 0) return false;
    state_->waiter = h;
    try {
      state_->adjust();
    } catch (...) {
      state_->waiter = {};
      throw;
    }
    if (token_->stop_possible()) cancel_on_stop_.emplace(*token_, canceller{state_});
    return true;
  }

  int await_resume();

 private:
  struct canceller {
    detail::accept_state* state;
    void operator()() const noexcept {
      try {
        state->lp->cancel_from_any_thread(state);
      } catch (...) {
        // Out of SQEs or memory: the accept completes on its own.
      }
    }
  };

  detail::accept_state* state_;
  op_options options_;
  const std::stop_token* token_ = &detail::never_stop;
  std::optional<std::stop_callback<canceller>> cancel_on_stop_;
};

}  // namespace corio
