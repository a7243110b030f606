#pragma once
// epoll_backend (internal): the loop's ring, emulated in user space on epoll (backend.hpp),
// for systems that refuse io_uring (Docker's default seccomp profile,
// kernel.io_uring_disabled) or when CORIO_BACKEND=epoll asks for it.
//
// The model: SQEs are handed out from this backend's own array. submit() interprets each
// one in order and completes it, now or later, with the (res, flags) io_uring would post:
// - Sockets, pipes, eventfds, signalfds, pidfds: the non-blocking form of the call
//   (MSG_DONTWAIT, RWF_NOWAIT, a listener put into O_NONBLOCK for accept, connect on a
//   socket made non-blocking for the call); on EAGAIN the request waits on the fd's
//   readiness and is retried when epoll reports it. A corio stream socket's fd is
//   registered once, edge-triggered for input and output, and stays so while
//   fd_lifetime.hpp says the same socket owns the number: no epoll_ctl per wait. Every
//   other fd is registered EPOLLONESHOT, re-armed while requests wait, so a closed and
//   reused fd number is found out (EPOLL_CTL_MOD fails with ENOENT: it is added again).
//   Edge-triggered is safe here because every request tries its call before it waits: an
//   edge missed while nobody waited leaves the data for that first try, and an edge that
//   comes after a try's EAGAIN is reported at the next epoll wait. Several requests may wait on one fd, each for
//   its own events (a reader and a writer on one socket); each readiness report retries
//   the waiters it concerns in the order they came.
// - Files epoll refuses (regular files: EPERM) whose data is not cached (RWF_NOWAIT says
//   EAGAIN), and the path operations (openat, statx, unlinkat, fsync): the blocking call
//   on one of two file worker threads, started at the first such request, as io_uring's
//   io-wq would; the completion comes back through an eventfd in the epoll set. Such a
//   request cannot be cancelled once handed over (io_uring's -EALREADY case): it ends with
//   its real result, and a linked timeout with -ECANCELED. close and shutdown run at once
//   on the loop's thread (they do not block).
// - IORING_OP_TIMEOUT: a heap of deadlines; the earliest bounds epoll_pwait2's timeout.
//   An expiring timeout completes with -ETIME, a cancelled one with -ECANCELED.
// - IOSQE_IO_LINK followed by IORING_OP_LINK_TIMEOUT: the timeout is a deadline on the
//   linked request. If it fires first the request completes with -ECANCELED and the
//   timeout with -ETIME; if the request completes first, the timeout with -ECANCELED.
//   Other links are not emulated (corio makes none): the SQEs run independently.
// - IORING_OP_ASYNC_CANCEL by user_data, or with IORING_ASYNC_CANCEL_FD / _ALL / _ANY:
//   a waiting request completes with -ECANCELED; the cancel's own result is 0 (or the
//   count with _ALL / _ANY), -ENOENT when nothing waited (a request that could complete at
//   submit never waits: it is never found). Unknown flags: -EINVAL, as an old kernel says.
// - Multishot accept (IORING_ACCEPT_MULTISHOT): each connection completes with
//   IORING_CQE_F_MORE; the request keeps waiting until cancelled or an error ends it
//   (its final completion has no F_MORE).
// - Not emulated, answered -EINVAL like a kernel without them: MSG_RING and FUTEX_WAIT
//   (on this backend loop_features reports them absent, so corio wakes other loops through
//   their eventfd and waits on futexes on the loop's futex thread), and any other opcode.
//
// Who may touch it: the owning loop's thread only. Requests still waiting when it is
// destroyed are dropped without a completion (~loop cancels and drains them first).

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend.hpp"
#include "file_workers.hpp"

namespace corio::detail {

class epoll_backend final : public backend {
 public:
  explicit epoll_backend(unsigned entries);
  ~epoll_backend() override;
  epoll_backend(const epoll_backend&) = delete;
  epoll_backend& operator=(const epoll_backend&) = delete;

  io_uring_sqe* get_sqe(unsigned needed) override;
  void submit(bool wait_for_one) override;
  unsigned reap(completion* out, unsigned max) override;
  bool work_pending() override;
  backend_kind kind() const noexcept override { return backend_kind::epoll; }
  int ring_fd() const noexcept override { return -1; }
  io_uring* native_ring() noexcept override { return nullptr; }

 private:
  // liburing's io_uring_sqe ends in a zero-size array (cmd[0]), which -Wpedantic refuses as
  // a member of another struct; copying it whole is still well defined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
  // A request that could not complete at submit: waits on an fd's readiness, a deadline,
  // or both (a linked timeout). Listed in waiting_ (by user_data, for cancels) until it
  // ends; recycled through free_.
  struct request {
    io_uring_sqe sqe{};             // a copy: its SQ slot is reused at once
    std::uint32_t events = 0;       // what it waits for on sqe.fd; 0: not on an fd (a timer)
    bool plain_when_ready = false;  // the fd refused RWF_NOWAIT: the blocking call once ready
    bool connecting = false;        // a connect in progress: its result is SO_ERROR
    bool has_own_deadline = false;  // an IORING_OP_TIMEOUT
    bool has_link = false;          // a linked IORING_OP_LINK_TIMEOUT
    std::int64_t own_deadline_ns = 0;  // CLOCK_MONOTONIC
    std::int64_t link_deadline_ns = 0;
    std::uint64_t link_user_data = 0;
    std::uint32_t generation = 0;  // bumped at release: its heap entry is then stale
    request* prev = nullptr;       // in its fd's waiter list
    request* next = nullptr;
  };
#pragma GCC diagnostic pop
  struct fd_waiters {
    request* head = nullptr;  // FIFO
    request* tail = nullptr;
    std::uint32_t armed = 0;  // events of the ONESHOT registration, 0 when disarmed
    bool registered = false;  // in the epoll set, as far as this backend knows
    // Odd: registered for good (edge-triggered) while fd_lifetime::generation(fd) is this.
    std::uint32_t for_good = 0;
  };
  struct timer_entry {
    std::int64_t deadline_ns;
    request* r;
    std::uint32_t generation;
  };
  static bool later(const timer_entry& a, const timer_entry& b) noexcept { return a.deadline_ns > b.deadline_ns; }

  void start(const io_uring_sqe& sqe, const io_uring_sqe* link);
  // Tries `r`'s call once: its result, or -EAGAIN to keep waiting; -EINVAL for an
  // opcode this backend does not emulate.
  int attempt(request& r);
  // After -EAGAIN: waits on the fd, or completes at once (blocking) if epoll refuses it.
  void wait_on_fd(request& r);
  // (Re-)arms fd's ONESHOT registration for every waiter's events; 0 or an errno.
  int arm(int fd, fd_waiters& w);
  // Registers a corio socket's fd for good, edge-triggered (see the top); 0 or an errno.
  int register_for_good(int fd, fd_waiters& w, std::uint32_t generation);
  // EPOLL_CTL_ADD or _MOD of fd with `events`, whichever epoll takes (see arm); 0 or an errno.
  int control(int fd, fd_waiters& w, std::uint32_t events);
  void retry_waiters(int fd, std::uint32_t revents);
  // IORING_OP_ASYNC_CANCEL; returns the cancel request's own result.
  int cancel(const io_uring_sqe& sqe);
  // Ends a waiting request with `res` (its linked timeout, if any, with `link_res`).
  void finish(request& r, int res, int link_res);
  void detach_from_fd(request& r);
  request& acquire(const io_uring_sqe& sqe);
  void release(request& r);
  void set_link(request& r, const io_uring_sqe& link, std::int64_t deadline);
  void add_deadline(request& r);
  void expire_timers();
  // Retries what became ready, waiting up to timeout_ns (-1: until something does), and
  // ends expired timers. False when a signal interrupted the wait. With timeout_ns 0 and
  // nothing waiting (no fd, timer or file job) it returns at once, without a system call.
  bool collect(std::int64_t timeout_ns);
  void post(std::uint64_t user_data, int res, unsigned flags = 0) { cq_.push_back({user_data, res, flags}); }

  // The blocking file work (see the top), on file_workers.hpp's threads.
  void offload(const io_uring_sqe& sqe, const request* link_of);
  void take_offloaded();

  int epfd_ = -1;
  int offload_done_fd_ = -1;    // eventfd the workers write; in the epoll set for good
  std::size_t offloaded_ = 0;   // handed to the workers, completion not yet taken
  std::unique_ptr<file_workers> workers_;
  std::vector<io_uring_sqe> sq_;
  unsigned queued_ = 0;
  std::vector<completion> cq_;  // posted, not yet reaped from cq_head_ on
  std::size_t cq_head_ = 0;
  std::unordered_multimap<std::uint64_t, request*> waiting_;
  std::unordered_map<int, fd_waiters> fds_;
  std::size_t fd_waiting_ = 0;       // requests in fd waiter lists
  std::vector<timer_entry> timers_;  // min-heap on deadline_ns, with stale entries
  std::size_t timed_ = 0;            // waiting requests that have a heap entry
  std::vector<request*> free_;
  std::vector<epoll_event> events_;
  bool pwait2_ = true;  // epoll_pwait2 (5.11); else epoll_wait, rounded up to milliseconds
};

}  // namespace corio::detail
