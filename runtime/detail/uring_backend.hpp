#pragma once
// uring_backend (internal): the loop's io_uring (backend.hpp). Setup, in order of
// preference, as loop.hpp describes: SINGLE_ISSUER | DEFER_TASKRUN, SINGLE_ISSUER |
// COOP_TASKRUN, SINGLE_ISSUER, COOP_TASKRUN, plain (SQPOLL only when asked for), each
// minus what CORIO_DISABLE_FEATURES turns off.
//
// Who may touch it: the owning loop's thread. The ring is closed by the destructor.

#include <liburing.h>

#include <memory>

#include "backend.hpp"

namespace corio::detail {

class uring_backend final : public backend {
 public:
  // Sets up the ring and fills `granted`; on failure returns nullptr with the errno of the
  // last setup tried in `error` (EPERM / ENOSYS: io_uring refused; EINVAL: no setup known).
  static std::unique_ptr<uring_backend> create(const loop_options& options, loop_features& granted, int& error);
  ~uring_backend() override;

  io_uring_sqe* get_sqe(unsigned needed) override;
  void submit(bool wait_for_one) override;
  unsigned reap(completion* out, unsigned max) override;
  bool work_pending() override;
  backend_kind kind() const noexcept override { return backend_kind::io_uring; }
  int ring_fd() const noexcept override { return ring_.ring_fd; }
  io_uring* native_ring() noexcept override { return &ring_; }

 private:
  uring_backend() = default;
  io_uring ring_{};
  bool defer_taskrun_ = false;
  bool taskrun_flag_ = false;
};

// Throws the std::system_error for a refused io_uring_setup, naming the cause and the fix.
[[noreturn]] void throw_uring_setup_error(int error);

}  // namespace corio::detail
