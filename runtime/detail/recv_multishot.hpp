#pragma once
// recv_multishot: one socket's multishot receive into a shared buffer_ring, for
// buffered_reader (buffered_stream.hpp, use_provided_buffers).
//
// One IORING_OP_RECV with IORING_RECV_MULTISHOT (Linux 6.0) and IOSQE_BUFFER_SELECT
// stays armed while the connection lives: each arrival is a CQE naming a buffer of the
// ring, queued here until the reader copies it out (copy_out), which recycles the
// buffer at once. So a connection costs one SQE instead of one per receive, and a
// reader that comes back finds the bytes already here (no suspension, no system call).
//
// Re-arming (the request ends whenever the kernel posts a CQE without IORING_CQE_F_MORE):
// - -ENOBUFS (the ring ran dry; other connections hold its buffers): the next wait
//   re-arms when the ring has a free buffer again, else it makes one plain recv into
//   the reader's own free space, so a starved connection still makes progress;
// - any other end (a cancel, a final CQE with data): re-armed at the next wait, never
//   from the completion (a loop draining at its destruction must not see it come back);
// - a reader that does not come back pauses it: once `pause_at()` buffers wait in its
//   queue the request is cancelled (TCP flow control then holds the peer), so one slow
//   or lingering connection cannot take the whole shared ring; the next wait re-arms;
// - end of stream (res 0) and errors are kept: every later wait ends at once with them,
//   after the bytes queued before them;
// - a `direct` wait (a receive straight into the caller's memory: read_some after
//   buffered_reader::set_direct_reads) with nothing queued cancels the multishot request
//   and, once its final CQE is in, makes one plain recv into its space: a big transfer
//   then costs one CQE per recv and no copy, instead of one CQE, one kernel receive and
//   one copy per ring buffer. The next wait that is not direct re-arms the request.
//
// Lifetime (design.md: a cancel is a request, only the completion frees): the state is
// on the heap. release() by the owner cancels whatever is in flight; the state then
// lives on until the final CQEs of its receive and of its timer, recycles what still
// arrives and deletes itself. The buffer_ring is held by shared_ptr until then.
//
// Waits: at most one at a time (the one-reader rule). A wait is cancelled by its stop
// token (the loop polls it while busy and registers a callback before it sleeps, as
// for every op: io_op.hpp) and ends at its deadline through an IORING_OP_TIMEOUT of its
// own; either cancels the receive in flight, and the wait resumes only once that
// receive and the timer reported back.
//
// Who may touch it: the thread of the loop it first armed on.

#include <liburing.h>

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <type_traits>

#include "../../coro/stop.hpp"
#include "buffer_ring.hpp"
#include "uring_awaiter.hpp"

namespace corio::detail {

class multishot_wait;

class recv_multishot : public stop_watched_op {
 public:
  // Counters, for tests and benchmarks.
  struct counters {
    std::size_t multishot_arms = 0;  // multishot requests submitted
    std::size_t plain_receives = 0;  // starved or direct waits served by one plain recv
    std::size_t enobufs = 0;         // requests ended by an empty ring
    std::size_t completions = 0;     // CQEs of the receive
    std::size_t pauses = 0;          // requests cancelled for a full queue
  };
  // Queued buffers at which the request pauses: a sixteenth of the ring, at least 4.
  std::size_t pause_at() const noexcept { return std::max<std::size_t>(4, ring_->count() / 16); }

  // On the heap, owned through release().
  static recv_multishot* make(int fd, std::shared_ptr<buffer_ring> ring) {
    return new recv_multishot(fd, std::move(ring));
  }
  // The owner is done: cancels what is in flight; the state frees itself (see above).
  void release() noexcept;

  // A wait would end at once: bytes queued, end of stream, or an error.
  bool ready() const noexcept { return !chunks_.empty() || at_end_ || error_ != 0; }
  // Copies queued bytes into `out` in arrival order; each emptied buffer goes back to
  // the ring. Returns how many (0: none queued).
  std::size_t copy_out(std::span<std::byte> out) noexcept;
  bool at_end() const noexcept { return at_end_; }
  int error() const noexcept { return error_; }
  int fd() const noexcept { return fd_; }
  const counters& stats() const noexcept { return stats_; }
  // Cancels the receive in flight as if the kernel had ended it (tests: the re-arm).
  void cancel_for_test();

  // --- The wait (fill_awaiter in buffered_stream.hpp) --------------------------------
  // Waits until ready() or a plain receive into `space` completed, the token stops or
  // the deadline passes; resumes `h`. `direct`: receive with a plain recv into `space`
  // (see above). Throws (nothing suspended) when no SQE is free.
  void start_wait(std::coroutine_handle<> h, std::span<std::byte> space, bool direct, const std::stop_token* token,
                  std::optional<std::chrono::steady_clock::time_point> deadline);
  // After the resumption: bytes of a plain receive (>= 0), or -1 when there was none.
  int take_plain_result() noexcept { return std::exchange(plain_result_, -1); }
  bool has_result() const noexcept { return ready() || plain_result_ >= 0; }
  bool wait_timed_out() const noexcept { return timed_out_; }
  bool wait_cancelled() const noexcept { return cancelled_; }
  loop* owner_loop() const noexcept { return lp_; }

 private:
  recv_multishot(int fd, std::shared_ptr<buffer_ring> ring) noexcept;
  enum class request : unsigned char { none, multishot, plain };
  struct chunk {
    std::uint16_t id;
    std::uint32_t length;
  };
  struct timer_op : io_op {
    recv_multishot* owner;
  };

  void arm_for_waiter();
  void arm_multishot();
  void arm_plain();
  void finish() noexcept;
  bool can_free() const noexcept { return in_flight_ == request::none && !timer_armed_; }
  static void on_complete(io_op* self, int res, unsigned flags) noexcept;
  static void on_timer(io_op* self, int res, unsigned flags) noexcept;

  loop* lp_ = nullptr;
  int fd_;
  std::shared_ptr<buffer_ring> ring_;
  std::deque<chunk> chunks_;
  std::size_t front_offset_ = 0;  // bytes of chunks_.front() already copied out
  request in_flight_ = request::none;
  bool at_end_ = false;
  int error_ = 0;
  bool orphaned_ = false;
  // The wait in progress.
  friend class multishot_wait;
  multishot_wait* wait_ = nullptr;  // for the stop callback registered before a sleep
  std::coroutine_handle<> waiter_;
  std::span<std::byte> wait_space_;
  bool wait_direct_ = false;
  const std::stop_token* wait_token_ = &never_stop;
  int plain_result_ = -1;
  bool signalled_ = false;  // the wait's outcome is known; resume once the timer is back
  bool cancelled_ = false;  // the receive ended with -ECANCELED during the wait
  bool timed_out_ = false;
  timer_op timer_{};
  bool timer_armed_ = false;
  bool timer_cancel_sent_ = false;
  bool pause_sent_ = false;  // cancelled for a full queue or a direct wait; cleared at the final CQE
  __kernel_timespec timeout_{};
  counters stats_;
};

// Awaits a recv_multishot's wait with the stop-token handling every op has.
class [[nodiscard]] multishot_wait {
 public:
  multishot_wait(recv_multishot* state, std::span<std::byte> space, bool direct, op_options options) noexcept
      : state_(state), space_(space), direct_(direct), options_(options) {}
  multishot_wait(multishot_wait&& o) noexcept
      : state_(o.state_), space_(o.space_), direct_(o.direct_), options_(o.options_) {}
  multishot_wait(const multishot_wait&) = delete;
  multishot_wait& operator=(const multishot_wait&) = delete;

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (options_.token) {
      token_ = options_.token;
    } else if constexpr (std::is_base_of_v<stop_carrier, P>) {
      token_ = &h.promise().stop_token();
    }
    return suspend(h);
  }
  // Throws operation_cancelled / timed_out; otherwise the state holds the outcome.
  void await_resume();

 private:
  struct canceller {
    multishot_wait* self;
    void operator()() const noexcept;
  };
  bool suspend(std::coroutine_handle<> h);

  recv_multishot* state_;
  std::span<std::byte> space_;
  bool direct_;
  op_options options_;
  const std::stop_token* token_ = &never_stop;
  bool stopped_early_ = false;
  std::optional<std::stop_callback<canceller>> cancel_on_stop_;
};

}  // namespace corio::detail
