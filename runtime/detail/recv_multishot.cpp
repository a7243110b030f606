#include "recv_multishot.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "../../coro/detail/trampoline.hpp"
#include "../errors.hpp"
#include "../kernel_features.hpp"
#include "../loop.hpp"

namespace corio::detail {

recv_multishot::recv_multishot(int fd, std::shared_ptr<buffer_ring> ring) noexcept : fd_(fd), ring_(std::move(ring)) {
  complete = &recv_multishot::on_complete;
  timer_.complete = &recv_multishot::on_timer;
  timer_.owner = this;
}

void recv_multishot::release() noexcept {
  for (const chunk& c : chunks_) ring_->recycle(c.id);
  chunks_.clear();
  if (can_free()) {
    delete this;
    return;
  }
  orphaned_ = true;
  try {
    if (in_flight_ != request::none) lp_->cancel(this);
    if (timer_armed_) lp_->cancel(&timer_);
  } catch (...) {
    // No SQE: the requests end when the socket closes or the loop drains.
  }
}

std::size_t recv_multishot::copy_out(std::span<std::byte> out) noexcept {
  std::size_t copied = 0;
  while (!chunks_.empty() && copied < out.size()) {
    const chunk c = chunks_.front();
    const std::byte* bytes = ring_->bytes(c.id) + front_offset_;
    const std::size_t n = std::min<std::size_t>(c.length - front_offset_, out.size() - copied);
    std::memcpy(out.data() + copied, bytes, n);
    copied += n;
    front_offset_ += n;
    if (front_offset_ == c.length) {
      chunks_.pop_front();
      front_offset_ = 0;
      ring_->recycle(c.id);  // after the last read of its bytes
    }
  }
  return copied;
}

void recv_multishot::cancel_for_test() {
  if (in_flight_ != request::none) lp_->cancel(this);
}

void recv_multishot::arm_multishot() {
  io_uring_sqe* sqe = lp_->get_sqe();
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = ring_->group();
  lp_->track(sqe, this);
  in_flight_ = request::multishot;
  ++stats_.multishot_arms;
}

void recv_multishot::arm_plain() {
  io_uring_sqe* sqe = lp_->get_sqe();
  io_uring_prep_recv(sqe, fd_, wait_space_.data(), wait_space_.size(), 0);
  lp_->track(sqe, this);
  in_flight_ = request::plain;
  ++stats_.plain_receives;
}

void recv_multishot::arm_for_waiter() {
  // An empty ring would end a multishot request at once with -ENOBUFS: then one plain
  // receive into the reader's own space instead (see the header). So does a direct wait.
  if (ring_->available() > 0 && !wait_direct_)
    arm_multishot();
  else
    arm_plain();
}

void recv_multishot::start_wait(std::coroutine_handle<> h, std::span<std::byte> space, bool direct,
                                const std::stop_token* token,
                                std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (lp_ == nullptr) lp_ = &loop::this_loop();
  wait_space_ = space;
  wait_direct_ = direct;
  wait_token_ = token;
  plain_result_ = -1;
  signalled_ = cancelled_ = timed_out_ = timer_cancel_sent_ = false;
  if (in_flight_ == request::none) {
    arm_for_waiter();
  } else if (direct && in_flight_ == request::multishot && !pause_sent_) {
    // Its final CQE re-arms for this wait, with a plain recv (on_complete).
    try {
      lp_->cancel(this);
      pause_sent_ = true;
    } catch (...) {
      // No SQE: the multishot request serves this wait.
    }
  }
  if (deadline) {
    timeout_ = to_kernel_timespec(*deadline - std::chrono::steady_clock::now());
    // Throwing here leaves the receive armed, as between waits; nothing waits.
    io_uring_sqe* sqe = lp_->get_sqe();
    io_uring_prep_timeout(sqe, &timeout_, 0, 0);
    lp_->track(sqe, &timer_);
    timer_armed_ = true;
  }
  waiter_ = h;
}

void recv_multishot::finish() noexcept {
  if (!waiter_ || !signalled_) return;
  if (timer_armed_) {
    if (!timer_cancel_sent_) {
      timer_cancel_sent_ = true;
      try {
        lp_->cancel(&timer_);
      } catch (...) {
        // No SQE: the timer fires at its deadline and resumes the wait then.
      }
    }
    return;  // on_timer resumes
  }
  // Last use of this: the resumed coroutine may release the state.
  resume(std::exchange(waiter_, {}));
}

void recv_multishot::on_complete(io_op* self, int res, unsigned flags) noexcept {
  auto* s = static_cast<recv_multishot*>(self);
  const bool final = (flags & IORING_CQE_F_MORE) == 0;
  const request kind = s->in_flight_;
  if (final) {
    s->in_flight_ = request::none;
    s->pause_sent_ = false;
  }
  ++s->stats_.completions;
  if (kind == request::plain) {
    if (s->orphaned_) {
      if (s->can_free()) delete s;
      return;
    }
    if (res >= 0) {
      s->plain_result_ = res;
      if (res == 0) s->at_end_ = true;
    } else if (res == -ECANCELED) {
      s->cancelled_ = true;
    } else {
      s->error_ = -res;
    }
    s->signalled_ = true;
    s->finish();
    return;
  }
  if (flags & IORING_CQE_F_BUFFER) {
    const auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    s->ring_->take(id);
    if (res > 0 && !s->orphaned_)
      s->chunks_.push_back({id, static_cast<std::uint32_t>(res)});
    else
      s->ring_->recycle(id);
  }
  if (s->orphaned_) {
    if (s->can_free()) delete s;
    return;
  }
  if (!final && !s->pause_sent_ && !s->waiter_ && s->chunks_.size() >= s->pause_at()) {
    // Nobody reads: stop taking the shared ring's buffers (see the header).
    try {
      s->lp_->cancel(s);
      s->pause_sent_ = true;
      ++s->stats_.pauses;
    } catch (...) {
      // No SQE: the ring's -ENOBUFS ends the request instead.
    }
  }
  if (res == 0) {
    s->at_end_ = true;
  } else if (res == -ENOBUFS) {
    ++s->stats_.enobufs;
  } else if (res == -ECANCELED) {
    // For this wait only if its stop, its deadline or the loop's drain asked for it: a
    // cancel sent for an earlier wait (its deadline raced with bytes) or by a test ends
    // the request like any other end, and it is re-armed (below, or at the next wait).
    if (s->waiter_ && (s->timed_out_ || s->wait_token_->stop_requested() || s->lp_->closing()))
      s->cancelled_ = true;
  } else if (res < 0) {
    s->error_ = -res;
  }
  if (!s->waiter_ || s->signalled_) return;
  if (s->ready() || s->cancelled_) {
    s->signalled_ = true;
  } else if (s->in_flight_ == request::none && !s->timed_out_) {
    // Ended without news for the waiter (-ENOBUFS, or a final CQE the kernel chose):
    // re-arm for it now.
    try {
      s->arm_for_waiter();
    } catch (...) {
      s->error_ = EBUSY;  // no SQE to receive with: fail the wait rather than hang it
      s->signalled_ = true;
    }
  }
  s->finish();
}

void recv_multishot::on_timer(io_op* self, int res, unsigned) noexcept {
  recv_multishot* s = static_cast<timer_op*>(self)->owner;
  s->timer_armed_ = false;
  if (s->orphaned_) {
    if (s->can_free()) delete s;
    return;
  }
  if (res == -ETIME && s->waiter_ && !s->signalled_) {
    // The deadline passed: end the receive; its completion signals the wait.
    s->timed_out_ = true;
    if (s->in_flight_ != request::none) {
      try {
        s->lp_->cancel(s);
        return;
      } catch (...) {
        // No SQE: give up the wait now; the receive stays armed for the next one.
      }
    }
    s->signalled_ = true;
  }
  s->finish();
}

// --- multishot_wait ---------------------------------------------------------------------

void multishot_wait::canceller::operator()() const noexcept {
  try {
    self->state_->owner_loop()->cancel_from_any_thread(self->state_);
  } catch (...) {
    // Out of SQEs or memory: the receive ends on its own.
  }
}

bool multishot_wait::suspend(std::coroutine_handle<> h) {
  if (token_->stop_requested()) {
    stopped_early_ = true;
    return false;
  }
  state_->start_wait(h, space_, direct_, token_, options_.deadline);
  if (token_->stop_possible()) {
    state_->token = token_;
    state_->wait_ = this;
    state_->register_callback = [](stop_watched_op* op) {
      multishot_wait* w = static_cast<recv_multishot*>(op)->wait_;
      w->cancel_on_stop_.emplace(*w->token_, canceller{w});
    };
    state_->owner_loop()->watch_stop(state_);
  }
  return true;
}

void multishot_wait::await_resume() {
  loop* lp = state_->owner_loop();
  if (lp != nullptr) lp->unwatch_stop(state_);
  state_->wait_ = nullptr;
  if (cancel_on_stop_) {
    cancel_on_stop_.reset();
    lp->forget_cancel(state_);
  }
  // Bytes that arrived win over a stop or a deadline that raced with them.
  if (stopped_early_ || (!state_->has_result() && state_->wait_cancelled() && !state_->wait_timed_out()))
    throw_errno(ECANCELED, "recv fd " + std::to_string(state_->fd()));
  if (!state_->has_result() && state_->wait_timed_out())
    throw_errno(ETIME, "recv fd " + std::to_string(state_->fd()));
}

}  // namespace corio::detail
