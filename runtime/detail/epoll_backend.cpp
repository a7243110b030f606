#include "epoll_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>

#include "../errors.hpp"
#include "fd_lifetime.hpp"
#include "file_workers.hpp"

namespace corio::detail {
namespace {

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The deadline of a TIMEOUT or LINK_TIMEOUT SQE (CLOCK_MONOTONIC, relative or
// IORING_TIMEOUT_ABS); false for a clock this emulation does not offer.
bool deadline_of(const io_uring_sqe& sqe, std::int64_t& deadline) noexcept {
  if (sqe.timeout_flags & ~IORING_TIMEOUT_ABS) return false;
  const auto* ts = reinterpret_cast<const __kernel_timespec*>(static_cast<std::uintptr_t>(sqe.addr));
  const std::int64_t ns = std::int64_t{ts->tv_sec} * 1'000'000'000 + ts->tv_nsec;
  deadline = (sqe.timeout_flags & IORING_TIMEOUT_ABS) ? ns : monotonic_ns() + ns;
  return true;
}

// What a waiting request of this opcode waits for on its fd.
std::uint32_t events_for(const io_uring_sqe& sqe) noexcept {
  switch (sqe.opcode) {
    case IORING_OP_POLL_ADD: return sqe.poll32_events;
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
    case IORING_OP_SEND:
    case IORING_OP_SENDMSG:
    case IORING_OP_CONNECT: return EPOLLOUT;
    default: return EPOLLIN | EPOLLRDHUP;
  }
}

int result(long r) noexcept { return r >= 0 ? static_cast<int>(r) : -errno; }

void* pointer(std::uint64_t v) noexcept { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(v)); }

bool runs_blocking(std::uint8_t opcode) noexcept {
  switch (opcode) {
    case IORING_OP_OPENAT:
    case IORING_OP_STATX:
    case IORING_OP_UNLINKAT:
    case IORING_OP_FSYNC:
    case IORING_OP_CLOSE:
    case IORING_OP_SHUTDOWN: return true;
    default: return false;
  }
}

// accept(2) on a blocking listener would block the loop: the listener is made
// non-blocking (once; io_uring's own accept is indifferent to the flag).
void make_nonblocking(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// Connections a multishot accept takes per readiness report before it lets the other
// waiters run; the (level-triggered) re-arm reports the rest.
constexpr int accepts_per_turn = 64;

bool offloads(std::uint8_t opcode) noexcept {
  return opcode == IORING_OP_OPENAT || opcode == IORING_OP_STATX || opcode == IORING_OP_UNLINKAT ||
         opcode == IORING_OP_FSYNC;
}

}  // namespace

epoll_backend::epoll_backend(unsigned entries) : sq_(entries), events_(256) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw_errno(errno, "epoll_create1 for the loop's epoll backend");
  offload_done_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = offload_done_fd_;
  if (offload_done_fd_ < 0 || ::epoll_ctl(epfd_, EPOLL_CTL_ADD, offload_done_fd_, &ev) < 0) {
    const int e = errno;
    if (offload_done_fd_ >= 0) ::close(offload_done_fd_);
    ::close(epfd_);
    throw_errno(e, "eventfd for the epoll backend's file workers");
  }
  cq_.reserve(std::size_t{entries} * 2);
}

epoll_backend::~epoll_backend() {
  workers_.reset();  // joins
  for (auto& [user_data, r] : waiting_) delete r;
  for (request* r : free_) delete r;
  ::close(offload_done_fd_);
  ::close(epfd_);
}

void epoll_backend::offload(const io_uring_sqe& sqe, const request* link_of) {
  if (!workers_) workers_ = std::make_unique<file_workers>(offload_done_fd_);
  workers_->push(sqe, link_of != nullptr ? link_of->link_user_data : 0, link_of != nullptr && link_of->has_link);
  ++offloaded_;
}

void epoll_backend::take_offloaded() {
  std::uint64_t count;
  [[maybe_unused]] const ssize_t n = ::read(offload_done_fd_, &count, sizeof count);
  if (workers_) offloaded_ -= workers_->take(cq_);
}

io_uring_sqe* epoll_backend::get_sqe(unsigned needed) {
  if (queued_ + needed > sq_.size()) submit(false);
  io_uring_sqe* sqe = &sq_[queued_++];
  std::memset(sqe, 0, sizeof *sqe);
  return sqe;
}

void epoll_backend::submit(bool wait_for_one) {
  // Interpreting an SQE posts completions and never takes an SQE: the array is stable.
  for (unsigned i = 0; i < queued_; ++i) {
    const io_uring_sqe& sqe = sq_[i];
    const io_uring_sqe* link = nullptr;
    if ((sqe.flags & IOSQE_IO_LINK) && i + 1 < queued_ && sq_[i + 1].opcode == IORING_OP_LINK_TIMEOUT)
      link = &sq_[++i];
    start(sqe, link);
  }
  queued_ = 0;
  if (wait_for_one) {
    while (cq_head_ == cq_.size())
      if (!collect(-1)) break;  // interrupted by a signal, as io_uring_enter would be
  } else {
    collect(0);  // returns at once when nothing waits
  }
}

unsigned epoll_backend::reap(completion* out, unsigned max) {
  const std::size_t n = std::min<std::size_t>(max, cq_.size() - cq_head_);
  std::copy_n(cq_.begin() + static_cast<std::ptrdiff_t>(cq_head_), n, out);
  cq_head_ += n;
  if (cq_head_ == cq_.size()) {
    cq_.clear();
    cq_head_ = 0;
  }
  return static_cast<unsigned>(n);
}

bool epoll_backend::work_pending() {
  if (cq_head_ == cq_.size()) collect(0);
  return cq_head_ < cq_.size();
}

void epoll_backend::start(const io_uring_sqe& sqe, const io_uring_sqe* link) {
  // Completed at once: its linked timeout (if any) is cancelled, as io_uring reports it.
  auto done_now = [&](int res, unsigned flags = 0) {
    post(sqe.user_data, res, flags);
    if (link != nullptr) post(link->user_data, -ECANCELED);
  };
  std::int64_t link_deadline = 0;
  if (link != nullptr && !deadline_of(*link, link_deadline)) {
    post(sqe.user_data, -ECANCELED);
    post(link->user_data, -EINVAL);
    return;
  }
  switch (sqe.opcode) {
    case IORING_OP_NOP: return done_now(0);
    case IORING_OP_ASYNC_CANCEL: return done_now(cancel(sqe));
    case IORING_OP_LINK_TIMEOUT: return post(sqe.user_data, -EINVAL);  // not after a linked request
    case IORING_OP_TIMEOUT: {
      request& r = acquire(sqe);
      if (!deadline_of(sqe, r.own_deadline_ns)) {
        release(r);
        return done_now(-EINVAL);
      }
      r.has_own_deadline = true;
      if (link != nullptr) set_link(r, *link, link_deadline);
      return add_deadline(r);
    }
    default: break;
  }
  if (runs_blocking(sqe.opcode)) {
    if (sqe.opcode == IORING_OP_CLOSE) {
      // A closed fd leaves the epoll set; a later fd with its number starts afresh.
      const auto it = fds_.find(sqe.fd);
      if (it != fds_.end() && it->second.head == nullptr) fds_.erase(it);
    }
    if (offloads(sqe.opcode)) {
      request link_only;
      if (link != nullptr) set_link(link_only, *link, link_deadline);
      return offload(sqe, link != nullptr ? &link_only : nullptr);
    }
    return done_now(run_blocking(sqe));
  }
  // The common case completes here, without a request record; an opcode attempt() does
  // not know completes here too, with -EINVAL.
  request attempt_now;
  attempt_now.sqe = sqe;
  const int res = attempt(attempt_now);
  if (res != -EAGAIN) return done_now(res);
  request& r = acquire(attempt_now.sqe);
  r.plain_when_ready = attempt_now.plain_when_ready;
  r.connecting = attempt_now.connecting;
  r.events = events_for(sqe);
  if (link != nullptr) {
    set_link(r, *link, link_deadline);
    add_deadline(r);
  }
  wait_on_fd(r);
}

int epoll_backend::attempt(request& r) {
  const io_uring_sqe& sqe = r.sqe;
  const int fd = sqe.fd;
  void* const addr = pointer(sqe.addr);
  switch (sqe.opcode) {
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV: {
      io_uring_sqe call = sqe;  // the same read or write, made non-blocking
      if (!r.plain_when_ready) call.rw_flags |= RWF_NOWAIT;
      const int res = run_blocking(call);
      if (res == -ESPIPE && sqe.off != static_cast<std::uint64_t>(-1)) {
        // io_uring ignores the offset of a file that has none (a pipe, an eventfd): so
        // does the emulation, for this try and the next.
        r.sqe.off = static_cast<std::uint64_t>(-1);
        return attempt(r);
      }
      if (res == -EOPNOTSUPP && !r.plain_when_ready) {
        // This file has no non-blocking form (FMODE_NOWAIT): the plain call once epoll
        // says it is ready, or at once if epoll refuses the fd (wait_on_fd).
        r.plain_when_ready = true;
        return -EAGAIN;
      }
      return res;
    }
    case IORING_OP_RECV: return result(::recv(fd, addr, sqe.len, static_cast<int>(sqe.msg_flags) | MSG_DONTWAIT));
    case IORING_OP_SEND: return result(::send(fd, addr, sqe.len, static_cast<int>(sqe.msg_flags) | MSG_DONTWAIT));
    case IORING_OP_SENDMSG:
      return result(::sendmsg(fd, static_cast<const msghdr*>(addr), static_cast<int>(sqe.msg_flags) | MSG_DONTWAIT));
    case IORING_OP_RECVMSG:
      return result(::recvmsg(fd, static_cast<msghdr*>(addr), static_cast<int>(sqe.msg_flags) | MSG_DONTWAIT));
    case IORING_OP_POLL_ADD: {
      pollfd p{fd, static_cast<short>(sqe.poll32_events), 0};
      const int n = ::poll(&p, 1, 0);
      if (n < 0) return -errno;
      if (p.revents & POLLNVAL) return -EBADF;
      return n == 0 ? -EAGAIN : p.revents;
    }
    case IORING_OP_CONNECT: {
      if (r.connecting) {
        int error = 0;
        socklen_t len = sizeof error;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) return -errno;
        return -error;
      }
      // Non-blocking for this call only: the socket's own mode is the caller's.
      const int flags = ::fcntl(fd, F_GETFL);
      if (flags < 0) return -errno;
      if (!(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
      const int res = result(::connect(fd, static_cast<const sockaddr*>(addr), static_cast<socklen_t>(sqe.off)));
      if (!(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags);
      if (res == -EINPROGRESS) {
        r.connecting = true;  // its end shows as EPOLLOUT, its result in SO_ERROR
        return -EAGAIN;
      }
      return res;  // -EAGAIN (a full Unix listener's backlog): connect again when writable
    }
    case IORING_OP_ACCEPT: {
      make_nonblocking(fd);
      auto* peer = static_cast<sockaddr*>(addr);
      auto* peer_len = static_cast<socklen_t*>(pointer(sqe.addr2));
      const int flags = static_cast<int>(sqe.accept_flags);
      if (!(sqe.ioprio & IORING_ACCEPT_MULTISHOT)) return result(::accept4(fd, peer, peer_len, flags));
      for (int i = 0; i < accepts_per_turn; ++i) {
        const int res = result(::accept4(fd, peer, peer_len, flags));
        if (res < 0) return res;  // -EAGAIN keeps it waiting; an error ends it
        post(sqe.user_data, res, IORING_CQE_F_MORE);
      }
      return -EAGAIN;
    }
    default: return -EINVAL;  // not emulated: MSG_RING, FUTEX_WAIT, ...
  }
}

void epoll_backend::wait_on_fd(request& r) {
  const int fd = r.sqe.fd;
  fd_waiters& w = fds_[fd];
  r.prev = w.tail;
  r.next = nullptr;
  (w.tail != nullptr ? w.tail->next : w.head) = &r;
  w.tail = &r;
  ++fd_waiting_;
  int error = 0;
  if (const std::uint32_t generation = fd_lifetime::generation(fd); generation & 1) {
    if (w.for_good == generation) return;  // the same socket, still registered
    error = register_for_good(fd, w, generation);
  } else {
    if (w.for_good != 0) w.for_good = w.armed = 0;  // that socket is gone: ONESHOT from here
    if ((w.armed & r.events) == r.events) return;
    error = arm(fd, w);
  }
  if (error == 0) return;
  if (error == EPERM) {
    // A regular file (RWF_NOWAIT found its data not cached) or another fd epoll cannot
    // watch, which is always ready: the blocking call, on a file worker.
    detach_from_fd(r);
    switch (r.sqe.opcode) {
      case IORING_OP_READ:
      case IORING_OP_READV:
      case IORING_OP_WRITE:
      case IORING_OP_WRITEV: {
        offload(r.sqe, &r);  // the worker posts its completion and its linked timeout's
        r.events = 0;
        return release(r);
      }
      default:
        r.events = 0;
        r.plain_when_ready = true;
        return finish(r, attempt(r), -ECANCELED);
    }
  }
  finish(r, -error, -ECANCELED);
}

int epoll_backend::arm(int fd, fd_waiters& w) {
  std::uint32_t want = 0;
  for (request* r = w.head; r != nullptr; r = r->next) want |= r->events;
  const int error = control(fd, w, want | EPOLLONESHOT);
  w.armed = error == 0 ? want : 0;
  return error;
}

int epoll_backend::register_for_good(int fd, fd_waiters& w, std::uint32_t generation) {
  const int error = control(fd, w, EPOLLIN | EPOLLOUT | EPOLLET);
  w.for_good = error == 0 ? generation : 0;
  w.armed = 0;
  return error;
}

int epoll_backend::control(int fd, fd_waiters& w, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  // The fd may have been closed (and its number reused) since it was registered: epoll
  // forgot it then, and MOD says ENOENT. ADD on a number epoll still knows says EEXIST.
  int op = w.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  for (int tries = 0; tries < 2; ++tries) {
    if (::epoll_ctl(epfd_, op, fd, &ev) == 0) {
      w.registered = true;
      return 0;
    }
    if (errno == ENOENT && op == EPOLL_CTL_MOD) {
      op = EPOLL_CTL_ADD;
    } else if (errno == EEXIST && op == EPOLL_CTL_ADD) {
      op = EPOLL_CTL_MOD;
    } else {
      break;
    }
  }
  w.registered = false;
  return errno;
}

void epoll_backend::retry_waiters(int fd, std::uint32_t revents) {
  const auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  fd_waiters& w = it->second;
  const bool for_good = w.for_good != 0;  // edge-triggered: it stays armed
  if (!for_good) w.armed = 0;  // EPOLLONESHOT: reported once, disarmed until the next MOD
  for (request* r = w.head; r != nullptr;) {
    request* const next = r->next;
    if (revents & (r->events | EPOLLERR | EPOLLHUP)) {
      const int res = attempt(*r);
      if (res != -EAGAIN) finish(*r, res, -ECANCELED);
    }
    r = next;
  }
  if (w.head != nullptr && !for_good) {
    if (const int error = arm(fd, w); error != 0) {
      // Cannot watch it any more (closed under us): the waiters fail as the call would.
      while (w.head != nullptr) finish(*w.head, -error, -ECANCELED);
    }
  }
}

int epoll_backend::cancel(const io_uring_sqe& sqe) {
  const unsigned flags = sqe.cancel_flags;
  if (flags & ~(IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ANY)) return -EINVAL;
  std::vector<request*> found;
  if (flags & (IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_FD)) {
    for (auto& [user_data, r] : waiting_)
      if ((flags & IORING_ASYNC_CANCEL_ANY) || r->sqe.fd == sqe.fd) found.push_back(r);
  } else {
    const auto [first, last] = waiting_.equal_range(sqe.addr);
    for (auto it = first; it != last; ++it) found.push_back(it->second);
  }
  // As the kernel counts: with ALL or ANY the answer is how many were cancelled, 0 for
  // none; a cancel of one request that is not there is -ENOENT.
  const bool all = (flags & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY)) != 0;
  if (found.empty()) return all ? 0 : -ENOENT;
  if (!all) found.erase(found.begin() + 1, found.end());  // not resize(1): GCC 12 -O3 warns on its growth path
  for (request* r : found) finish(*r, -ECANCELED, -ECANCELED);
  return all ? static_cast<int>(found.size()) : 0;
}

void epoll_backend::finish(request& r, int res, int link_res) {
  if (r.events != 0) detach_from_fd(r);
  post(r.sqe.user_data, res);
  if (r.has_link) post(r.link_user_data, link_res);
  release(r);
}

void epoll_backend::detach_from_fd(request& r) {
  fd_waiters& w = fds_[r.sqe.fd];
  (r.prev != nullptr ? r.prev->next : w.head) = r.next;
  (r.next != nullptr ? r.next->prev : w.tail) = r.prev;
  r.prev = r.next = nullptr;
  --fd_waiting_;
  // Nobody waits: forget the armed state, so that the next waiter arms again (with MOD,
  // which finds out whether the fd was closed and its number reused meanwhile).
  if (w.head == nullptr) w.armed = 0;
}

epoll_backend::request& epoll_backend::acquire(const io_uring_sqe& sqe) {
  request* r;
  if (free_.empty()) {
    r = new request;
  } else {
    r = free_.back();
    free_.pop_back();
    const std::uint32_t generation = r->generation;
    *r = request{};
    r->generation = generation;
  }
  r->sqe = sqe;
  waiting_.emplace(sqe.user_data, r);
  return *r;
}

void epoll_backend::release(request& r) {
  const auto [first, last] = waiting_.equal_range(r.sqe.user_data);
  for (auto it = first; it != last; ++it) {
    if (it->second == &r) {
      waiting_.erase(it);
      break;
    }
  }
  if (r.has_own_deadline || r.has_link) --timed_;
  ++r.generation;  // its heap entry, if any, is now stale
  free_.push_back(&r);
}

void epoll_backend::set_link(request& r, const io_uring_sqe& link, std::int64_t deadline) {
  r.has_link = true;
  r.link_user_data = link.user_data;
  r.link_deadline_ns = deadline;
}

void epoll_backend::add_deadline(request& r) {
  std::int64_t at = r.has_own_deadline ? r.own_deadline_ns : r.link_deadline_ns;
  if (r.has_own_deadline && r.has_link) at = std::min(at, r.link_deadline_ns);
  ++timed_;
  // Requests that end before their deadline leave stale entries: rebuild the heap when
  // they outnumber the live ones, so a stream of short waits with long deadlines does not
  // grow it without bound.
  if (timers_.size() > 64 && timers_.size() > 2 * timed_) {
    std::erase_if(timers_, [](const timer_entry& e) { return e.generation != e.r->generation; });
    std::make_heap(timers_.begin(), timers_.end(), later);
  }
  timers_.push_back({at, &r, r.generation});
  std::push_heap(timers_.begin(), timers_.end(), later);
}

void epoll_backend::expire_timers() {
  if (timers_.empty()) return;
  const std::int64_t now = monotonic_ns();
  while (!timers_.empty() && timers_.front().deadline_ns <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), later);
    const timer_entry e = timers_.back();
    timers_.pop_back();
    if (e.generation != e.r->generation) continue;  // ended before its deadline
    request& r = *e.r;
    const bool link_fired = r.has_link && r.link_deadline_ns <= now &&
                            (!r.has_own_deadline || r.link_deadline_ns <= r.own_deadline_ns);
    if (link_fired)
      finish(r, -ECANCELED, -ETIME);
    else
      finish(r, -ETIME, -ECANCELED);
  }
}

bool epoll_backend::collect(std::int64_t timeout_ns) {
  expire_timers();
  if (cq_head_ < cq_.size()) timeout_ns = 0;  // a timer fired: do not sleep
  if (!timers_.empty()) {
    const std::int64_t until = std::max<std::int64_t>(0, timers_.front().deadline_ns - monotonic_ns());
    if (timeout_ns < 0 || until < timeout_ns) timeout_ns = until;
  }
  if (fd_waiting_ == 0 && offloaded_ == 0 && timeout_ns == 0) return true;  // nothing to poll
  int n;
  if (pwait2_) {
    timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
    n = ::epoll_pwait2(epfd_, events_.data(), static_cast<int>(events_.size()), timeout_ns < 0 ? nullptr : &ts,
                       nullptr);
    if (n < 0 && errno == ENOSYS) pwait2_ = false;  // before Linux 5.11
  }
  if (!pwait2_) {
    // Milliseconds, rounded up: a timer never fires early.
    const int ms = timeout_ns < 0 ? -1 : static_cast<int>(std::min<std::int64_t>((timeout_ns + 999'999) / 1'000'000, 1 << 30));
    n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), ms);
  }
  if (n < 0) {
    if (errno == EINTR) return false;
    throw_errno(errno, "epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    if (events_[i].data.fd == offload_done_fd_)
      take_offloaded();
    else
      retry_waiters(events_[i].data.fd, events_[i].events);
  }
  expire_timers();
  return true;
}

}  // namespace corio::detail
