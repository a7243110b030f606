#pragma once
// backend (internal): what a corio::loop needs from the kernel, behind one interface.
//
// The loop and every operation speak io_uring: an operation takes an SQE from the loop,
// fills it with liburing's io_uring_prep_* helpers and tracks it; the loop submits, waits
// and turns each completion (user_data, res, flags) back into its io_op (io_op.hpp). A
// backend is what stands behind those SQEs:
// - uring_backend: the kernel's io_uring, as is.
// - epoll_backend: a user-space emulation of the ring for kernels or sandboxes that refuse
//   io_uring. It hands out SQEs from its own array and, at submit, interprets each one
//   with readiness (epoll) and non-blocking system calls, completing it with the res and
//   flags io_uring would give. The operations do not know which backend runs them.
//
// The interface is the handful of ring actions the loop performs; each is one virtual
// call, so io_uring's hot path costs one indirect call more per SQE than a loop that owned
// its ring directly (bench/bench_runtime BM_loop_nop measures it).
//
// Who may touch it: the owning loop's thread only, like the loop. Destroyed by ~loop after
// the loop drained every request in flight.

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "../backend.hpp"

namespace corio {
struct loop_options;
struct loop_features;
}  // namespace corio

namespace corio::detail {

// A completion, copied out of the ring before dispatch.
struct completion {
  std::uint64_t user_data;
  int res;
  unsigned flags;
};

class backend {
 public:
  virtual ~backend() = default;

  // A free SQE; `needed` SQEs are guaranteed contiguous in one submission (linked
  // requests). When the queue is full, what is queued is submitted first.
  virtual io_uring_sqe* get_sqe(unsigned needed) = 0;
  // Submits every queued SQE; with wait_for_one, sleeps until at least one completion is
  // ready (returns early on EINTR). Without it, also collects what completed meanwhile.
  virtual void submit(bool wait_for_one) = 0;
  // Copies up to `max` ready completions to `out` and consumes them; returns how many.
  virtual unsigned reap(completion* out, unsigned max) = 0;
  // Idle polling (loop_options::idle_poll): true when completions are ready or will be
  // after the next submit(false). Must not sleep.
  virtual bool work_pending() = 0;

  virtual backend_kind kind() const noexcept = 0;
  // The io_uring's fd (for MSG_RING from other loops), or -1.
  virtual int ring_fd() const noexcept = 0;
  // The liburing ring, for resources registered with it (buffer rings, the ring fd), or
  // nullptr where there is no kernel ring.
  virtual io_uring* native_ring() noexcept = 0;
};

// Builds the backend `options` and CORIO_BACKEND ask for (backend.hpp) and fills
// `granted` with what it got. Throws like loop's constructor (loop.hpp).
std::unique_ptr<backend> make_backend(const loop_options& options, loop_features& granted);

}  // namespace corio::detail
