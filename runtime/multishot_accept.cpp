#include "multishot_accept.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

#include "errors.hpp"
#include "kernel_features.hpp"
#include "loop.hpp"

namespace corio {
namespace detail {

accept_state::accept_state(int fd, multishot_options o) noexcept : listen_fd(fd), options(o) {
  complete = &accept_state::on_complete;
  // Disabled, as on a kernel before 5.19: single accepts from the start (a real old kernel
  // is found out by its -EINVAL, see on_complete).
  if (kernel_feature_disabled_noexcept(kernel_feature::multishot_accept)) options.try_multishot = false;
  if (options.max_pending == 0) options.max_pending = 1;
}

void accept_state::arm() {
  if (!lp) lp = &loop::this_loop();
  io_uring_sqe* sqe = lp->get_sqe();
  if (options.try_multishot)
    io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  else
    io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  lp->track(sqe, this);
  armed = true;
}

void accept_state::adjust() {
  if (orphaned) return;
  if (!armed) {
    if (error != 0) return;  // the next waiter sees the error first
    const bool want = options.try_multishot ? ready.size() < options.max_pending : (waiter && ready.empty());
    if (want) arm();
  } else if (options.try_multishot && !pausing && ready.size() >= options.max_pending) {
    // Backpressure: stop taking connections off the backlog until next() drains some.
    pausing = true;
    lp->cancel(this);
  }
}

void accept_state::on_complete(io_op* self, int res, unsigned flags) noexcept {
  auto* s = static_cast<accept_state*>(self);
  const bool final = (flags & IORING_CQE_F_MORE) == 0;
  const bool was_pausing = s->pausing;
  if (final) {
    s->armed = false;
    s->pausing = false;
  }
  if (s->orphaned) {
    if (res >= 0) ::close(res);
    if (final) delete s;
    return;
  }
  if (res >= 0) {
    s->ready.push_back(res);
    s->any_accepted = true;
  } else if (res == -ECANCELED) {
    if (!was_pausing) {
      // A stop request of the waiter, or the loop draining at its destruction: never
      // re-armed from here (that would undo the drain); the next next() re-arms.
      if (auto w = std::exchange(s->waiter, {})) {
        s->error = ECANCELED;
        resume(w);
      }
      return;
    }
  } else if (res == -EINVAL && s->options.try_multishot && !s->any_accepted && final) {
    // A kernel older than 5.19 rejects IORING_ACCEPT_MULTISHOT: single accepts from now on.
    s->options.try_multishot = false;
  } else {
    s->error = -res;
  }
  if (s->waiter && (!s->ready.empty() || s->error != 0)) {
    // Last use of s: the resumed coroutine may destroy the owner.
    resume(std::exchange(s->waiter, {}));
    return;
  }
  try {
    s->adjust();
  } catch (...) {
    // No SQE for the re-arm (get_sqe failed): the next next() re-arms.
  }
}

}  // namespace detail

multishot_accept::multishot_accept(int listen_fd, multishot_options options)
    : state_(new detail::accept_state(listen_fd, options)) {}

multishot_accept& multishot_accept::operator=(multishot_accept&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::exchange(o.state_, nullptr);
  }
  return *this;
}

multishot_accept::~multishot_accept() { release(); }

void multishot_accept::release() noexcept {
  if (!state_) return;
  auto* s = std::exchange(state_, nullptr);
  for (int fd : s->ready) ::close(fd);
  s->ready.clear();
  if (!s->armed) {
    delete s;
    return;
  }
  // The kernel still holds the request: the state frees itself at the final CQE.
  s->orphaned = true;
  try {
    s->lp->cancel(s);
  } catch (...) {
    // No SQE: the request ends when the listener closes or the loop drains.
  }
}

multishot_accept::next_awaiter multishot_accept::next(op_options options) {
  if (!state_) throw std::logic_error("multishot_accept::next on a moved-from object");
  if (options.deadline)
    throw std::invalid_argument("multishot_accept::next: deadlines are not supported; use with_timeout");
  if (state_->waiter) throw std::logic_error("multishot_accept::next: another coroutine is already waiting");
  return next_awaiter(state_, options);
}

int multishot_accept::next_awaiter::await_resume() {
  if (cancel_on_stop_) {
    cancel_on_stop_.reset();
    state_->lp->forget_cancel(state_);
  }
  state_->waiter = {};
  if (!state_->ready.empty()) {
    const int fd = state_->ready.front();
    state_->ready.pop_front();
    state_->adjust();
    return fd;
  }
  const std::string what = "accept fd " + std::to_string(state_->listen_fd);
  if (const int e = std::exchange(state_->error, 0)) detail::throw_errno(e, what);
  throw operation_cancelled(what);
}

}  // namespace corio
