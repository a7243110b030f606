#include "uring_backend.hpp"

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "../errors.hpp"
#include "../kernel_features.hpp"
#include "../loop.hpp"

namespace corio::detail {

void throw_uring_setup_error(int error) {
  std::string what = "io_uring_queue_init";
  if (error == EPERM || error == ENOSYS) {
    what +=
        " (io_uring is refused on this system: check `sysctl kernel.io_uring_disabled` (must be "
        "0, or 1 with this user in the io_uring group) and, in a container, the seccomp profile "
        "(Docker's default blocks io_uring: run with --security-opt seccomp=unconfined or a "
        "profile that allows io_uring_setup, io_uring_enter and io_uring_register); or leave "
        "CORIO_BACKEND unset (or set it to epoll) to run on the epoll backend)";
  } else if (error == ENOMEM) {
    what += " (not enough locked memory for the rings: raise `ulimit -l` or use fewer entries)";
  }
  throw_errno(error, what);
}

std::unique_ptr<uring_backend> uring_backend::create(const loop_options& o, loop_features& granted, int& error) {
  const bool single_issuer = o.try_single_issuer && !kernel_feature_disabled(kernel_feature::single_issuer);
  const bool defer_taskrun = o.try_defer_taskrun && !kernel_feature_disabled(kernel_feature::defer_taskrun);
  const bool coop_taskrun = !kernel_feature_disabled(kernel_feature::coop_taskrun);
  const bool taskrun_flag = o.try_taskrun_flag && !kernel_feature_disabled(kernel_feature::taskrun_flag);
  struct candidate {
    unsigned flags;
    loop_features features;
  };
  std::vector<candidate> candidates;
  if (o.sqpoll) {
    candidates.push_back({IORING_SETUP_SQPOLL, {.sqpoll = true}});
  } else {
    // DEFER_TASKRUN requires SINGLE_ISSUER.
    if (single_issuer && defer_taskrun)
      candidates.push_back({IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                            {.single_issuer = true, .defer_taskrun = true}});
    if (single_issuer && coop_taskrun)
      candidates.push_back({IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
                            {.single_issuer = true, .coop_taskrun = true}});
    if (single_issuer) candidates.push_back({IORING_SETUP_SINGLE_ISSUER, {.single_issuer = true}});
    if (coop_taskrun) candidates.push_back({IORING_SETUP_COOP_TASKRUN, {.coop_taskrun = true}});
  }
  candidates.push_back({0, {}});
  std::unique_ptr<uring_backend> b(new uring_backend);
  int res = -EINVAL;
  for (candidate c : candidates) {
    // Idle polling reads pending kernel work from the SQ ring's flags. TASKRUN_FLAG came
    // with COOP_TASKRUN (5.19) and is refused with SQPOLL and on plain rings.
    if (o.idle_poll.count() > 0 && taskrun_flag && (c.features.defer_taskrun || c.features.coop_taskrun)) {
      c.flags |= IORING_SETUP_TASKRUN_FLAG;
      c.features.taskrun_flag = true;
    }
    io_uring_params p{};
    p.flags = c.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = o.entries * 2;
    res = io_uring_queue_init_params(o.entries, &b->ring_, &p);
    if (res == 0) {
      granted = c.features;
      b->defer_taskrun_ = c.features.defer_taskrun;
      b->taskrun_flag_ = c.features.taskrun_flag;
      return b;
    }
    // EINVAL: this kernel does not know a flag; try the next setup. Anything else is final.
    if (res != -EINVAL) break;
  }
  error = -res;
  return nullptr;
}

uring_backend::~uring_backend() { io_uring_queue_exit(&ring_); }

io_uring_sqe* uring_backend::get_sqe(unsigned needed) {
  if (io_uring_sq_space_left(&ring_) < needed) io_uring_submit(&ring_);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) [[unlikely]] {
    // Still full: the kernel has not consumed the SQ (only possible with SQPOLL). Wait.
    io_uring_sqring_wait(&ring_);
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) throw std::runtime_error("corio::loop: no free SQE after waiting");
  }
  return sqe;
}

void uring_backend::submit(bool wait_for_one) {
  int res;
  if (wait_for_one && io_uring_cq_ready(&ring_) == 0)
    res = io_uring_submit_and_wait(&ring_, 1);
  else if (defer_taskrun_)
    res = io_uring_submit_and_get_events(&ring_);  // DEFER_TASKRUN posts CQEs only on enter
  else
    res = io_uring_submit(&ring_);
  if (res < 0 && res != -EINTR && res != -EAGAIN && res != -EBUSY) [[unlikely]]
    throw_errno(-res, "io_uring_enter");
}

unsigned uring_backend::reap(completion* out, unsigned max) {
  constexpr unsigned batch = 256;
  io_uring_cqe* cqes[batch];
  const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, max < batch ? max : batch);
  for (unsigned i = 0; i < n; ++i) out[i] = {cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
  io_uring_cq_advance(&ring_, n);
  return n;
}

bool uring_backend::work_pending() {
  if (io_uring_cq_ready(&ring_) > 0) return true;
  if (taskrun_flag_) {
    // Set by the kernel when it queues work for this ring that only an io_uring_enter
    // runs (with DEFER_TASKRUN: every completion, before it becomes a CQE).
    return (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0;
  }
  // No flag to read: ask the kernel. GETEVENTS runs its pending work (COOP and
  // DEFER_TASKRUN rings run completions only on entering) without waiting.
  io_uring_get_events(&ring_);
  return io_uring_cq_ready(&ring_) > 0;
}

}  // namespace corio::detail
