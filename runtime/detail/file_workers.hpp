#pragma once
// file_workers (internal): the epoll backend's threads for blocking file work, its
// stand-in for io_uring's io-wq (epoll_backend.hpp). A read of a regular file whose data
// is not cached, openat, statx, unlinkat, fsync: each is one job, run as its blocking
// system call on one of two threads, so the loop's thread never waits for a disk or a
// FIFO's open(2).
//
// Protocol: the loop pushes jobs (push); a worker pops one, runs it unlocked, then, under
// the mutex, appends the job's completion (and its linked timeout's, -ECANCELED) to the
// finished list and writes the eventfd `done_fd`, which the epoll backend keeps in its
// epoll set; the loop then takes the finished list (take). A job handed over is never
// cancelled (io_uring's -EALREADY case): it ends with its real result.
//
// Who may touch it: push and take on the owning loop's thread; the workers are its own.
// Destroyed by ~epoll_backend, after ~loop drained every request (so no job is left):
// the destructor stops and joins the threads.

#include <liburing.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "backend.hpp"

namespace corio::detail {

// The blocking system call an SQE stands for (read, write, readv, writev without
// RWF_NOWAIT; openat, statx, unlinkat, fsync, close, shutdown): its result as io_uring
// reports it (a negated errno on failure); -EINVAL for any other opcode.
int run_blocking(const io_uring_sqe& sqe) noexcept;

class file_workers {
 public:
  explicit file_workers(int done_fd);
  ~file_workers();
  file_workers(const file_workers&) = delete;
  file_workers& operator=(const file_workers&) = delete;

  // Queues `sqe` (copied); `link_user_data` is its linked timeout's, if has_link.
  void push(const io_uring_sqe& sqe, std::uint64_t link_user_data, bool has_link);
  // Appends the completions of the jobs finished so far to `out`; returns how many jobs.
  std::size_t take(std::vector<completion>& out);

 private:
  // liburing's io_uring_sqe ends in a zero-size array (cmd[0]), which -Wpedantic refuses
  // as a member; copying it whole is well defined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
  struct job {
    io_uring_sqe sqe;
    std::uint64_t link_user_data;
    bool has_link;
  };
#pragma GCC diagnostic pop
  void work();

  const int done_fd_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<job> jobs_;            // under mutex_
  std::vector<completion> done_;    // under mutex_
  std::size_t finished_ = 0;        // under mutex_: jobs whose completions are in done_
  bool stop_ = false;               // under mutex_
  std::vector<std::thread> threads_;
};

}  // namespace corio::detail
