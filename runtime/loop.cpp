#include "loop.hpp"

#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "detail/backend.hpp"
#include "detail/buffer_ring.hpp"
#include "detail/cpu_relax.hpp"
#include "detail/futex_thread.hpp"
#include "errors.hpp"

namespace corio {

thread_local loop* loop::current_ = nullptr;

void detail::forget_loop_after_fork() noexcept {
  if (loop::current_ != nullptr) loop::current_->running_.store(false, std::memory_order_relaxed);
  loop::current_ = nullptr;
}

namespace {

void print_unhandled(std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "corio: a spawned task ended with an exception: %s\n", ex.what());
  } catch (...) {
    std::fprintf(stderr, "corio: a spawned task ended with an exception of unknown type\n");
  }
}

}  // namespace

loop::loop(loop_options options) : idle_poll_(options.idle_poll), unhandled_(&print_unhandled) {
  if (idle_poll_.count() < 0)
    throw std::invalid_argument("corio::loop: idle_poll must not be negative, got " +
                                std::to_string(idle_poll_.count()) + " us");
  backend_ = detail::make_backend(options, features_);  // first: throws on a bad CORIO_DISABLE_FEATURES
  // Blocking on purpose: io_uring answers a read of an O_NONBLOCK eventfd with -EAGAIN
  // at once instead of waiting for a write.
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int e = errno;
    backend_.reset();
    detail::throw_errno(e, "eventfd for the loop's wake-up");
  }
  wake_op_.owner = this;
  wake_op_.complete = [](detail::io_op* op, int, unsigned) noexcept {
    // The wake-up read landed: the next iteration drains the remote queue and re-arms.
    static_cast<wake_op*>(op)->owner->wake_armed_ = false;
  };
}

loop::~loop() {
  // Cancel whatever is still in flight and wait for every final CQE, so the kernel never
  // writes into memory that is about to be freed. The coroutines waiting on those ops
  // resume with operation_cancelled and unwind.
  const bool bound = current_ == nullptr;
  if (bound) current_ = this;
  closing_ = true;
  try {
    // Repeated, because a coroutine unwinding from a cancellation may start another op.
    while (in_flight_ > 0 || (futex_thread_ && futex_thread_->outstanding() > 0)) {
      cancel_everything();
      run_once(nullptr);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corio::loop: draining in-flight operations failed: %s\n", e.what());
  }
  futex_thread_.reset();  // joins: it posts nothing more, every wait has finished
  // No request uses it any more; readers that outlive the loop may still hold it.
  if (receive_buffers_) receive_buffers_->forget_loop();
  receive_buffers_.reset();
  if (bound) current_ = nullptr;
  backend_.reset();
  ::close(wake_fd_);
}

void loop::cancel_everything() {
  if (futex_thread_) futex_thread_->cancel_all();  // their resumptions are posted
  if (features_.cancel_any) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, 0);
  } else {
    for (const auto& [op, requests] : tracked_) cancel(op);
  }
  // Its CQE ends the drain's wait even when no cancel was needed (only futex-thread waits
  // in flight, whose resumptions are posts).
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, 0);
}

detail::futex_thread& loop::futex_thread() {
  if (!futex_thread_) futex_thread_ = std::make_unique<detail::futex_thread>(*this);
  return *futex_thread_;
}

loop& loop::this_loop() {
  if (current_ == nullptr)
    throw std::logic_error("corio: no event loop runs on this thread (call from inside loop::run)");
  return *current_;
}

void loop::bind_to_this_thread() {
  if (current_ != nullptr && current_ != this)
    throw std::logic_error("corio::loop::run: this thread already runs another loop");
  if (current_ == this) throw std::logic_error("corio::loop::run: the loop is already running");
  if (running_.exchange(true, std::memory_order_acquire))
    throw std::logic_error(
        "corio::loop::run: another thread is running this loop (a loop belongs to one thread; "
        "reach it from others with post() or submit_to)");
  current_ = this;
  // A refusal (the thread's table of registered rings is full) only costs the fd lookup.
  if (features_.registered_ring) ring_fd_registered_ = io_uring_register_ring_fd(native_ring()) == 1;
}

void loop::unbind_from_this_thread() noexcept {
  current_ = nullptr;
  running_.store(false, std::memory_order_release);
  // Registered by this thread in bind_to_this_thread; liburing then enters by fd again.
  if (ring_fd_registered_) io_uring_unregister_ring_fd(native_ring());
  ring_fd_registered_ = false;
}

const std::shared_ptr<detail::buffer_ring>& loop::receive_buffers() {
  if (!receive_buffers_tried_) {
    receive_buffers_tried_ = true;
    receive_buffers_ = detail::buffer_ring::create_for(*this);
  }
  return receive_buffers_;
}

void loop::spawn(task<void> t) {
  if (current_ != this && running_.load(std::memory_order_relaxed))
    throw std::logic_error(
        "corio::loop::spawn: called from a thread that is not running this loop while another one runs it "
        "(use post() from other threads)");
  ++spawned_;
  start_detached(
      std::move(t),
      [](void* self, std::exception_ptr e) noexcept { static_cast<loop*>(self)->on_spawned_exit(std::move(e)); },
      this, stop_token_);
}

void loop::on_spawned_exit(std::exception_ptr e) noexcept {
  --spawned_;
  if (e) unhandled_(std::move(e));
}

void loop::track(io_uring_sqe* sqe, detail::io_op* op) noexcept {
  io_uring_sqe_set_data64(sqe, detail::to_user_data(op));
  ++in_flight_;
  if (!features_.cancel_any) [[unlikely]]
    ++tracked_[op];  // bad_alloc here terminates (noexcept): see loop.hpp
}

void loop::cancel(detail::io_op* op) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, detail::to_user_data(op), 0);
  io_uring_sqe_set_data64(sqe, 0);
}

void loop::cancel_from_any_thread(detail::io_op* op) {
  if (current_ == this) {
    cancel(op);
    return;
  }
  // Published and woken under the lock: see post().
  std::lock_guard lock(remote_.mutex);
  remote_.cancels.push_back(op);
  remote_pending_.store(true, std::memory_order_seq_cst);
  wake();
}

void loop::forget_cancel(detail::io_op* op) noexcept {
  if (!remote_pending_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(remote_.mutex);
  std::erase(remote_.cancels, op);
}

void loop::post(std::function<void()> fn) {
  // wake() stays inside the lock: the loop must take it to run the work, so it cannot
  // run `fn`, finish, and be destroyed (closing wake_fd_) while this thread is still
  // between publishing and waking. (Found by TSan.)
  std::lock_guard lock(remote_.mutex);
  remote_.work.push_back(std::move(fn));
  remote_pending_.store(true, std::memory_order_seq_cst);
  wake();
}

void loop::wake() noexcept {
  // Only a sleeping loop needs the system call; a running one sees remote_pending_ at its
  // next iteration (see the Dekker comment on sleeping_).
  if (sleeping_.load(std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
}

void loop::arm_wakeup() {
  if (wake_armed_ || closing_) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buffer_, sizeof wake_buffer_, 0);
  track(sqe, &wake_op_);
  wake_armed_ = true;
}

void loop::drain_remote() {
  if (!remote_pending_.exchange(false, std::memory_order_seq_cst)) return;
  std::vector<std::function<void()>> work;
  std::vector<detail::io_op*> cancels;
  {
    std::lock_guard lock(remote_.mutex);
    work.swap(remote_.work);
    cancels.swap(remote_.cancels);
  }
  // Every op listed is still in flight: forget_cancel removes an op, on this thread,
  // before its awaiter can be resumed and its memory reused.
  for (detail::io_op* op : cancels) cancel(op);
  for (auto& fn : work) fn();
}

bool loop::run_drain_hooks() {
  bool found = false;
  for (const hook_entry& h : drain_hooks_) found |= h.hook(h.context);
  return found;
}

void loop::watch_stop(detail::stop_watched_op* op) noexcept {
  if (watched_count_ >= max_polled_ops) {
    // Polling it would cost a load per iteration for as long as it stays in flight; a
    // callback costs a few atomics once. May run at once (token already stopped): it
    // cancels on this thread.
    op->register_callback(op);
    return;
  }
  ++watched_count_;
  op->listed = true;
  op->prev = nullptr;
  op->next = watched_;
  if (watched_ != nullptr) watched_->prev = op;
  watched_ = op;
}

void loop::unwatch_stop(detail::stop_watched_op* op) noexcept {
  if (!op->listed) return;
  op->listed = false;
  --watched_count_;
  if (op->prev != nullptr)
    op->prev->next = op->next;
  else
    watched_ = op->next;
  if (op->next != nullptr) op->next->prev = op->prev;
}

bool loop::poll_stop_requests() {
  bool cancelled = false;
  for (detail::stop_watched_op* op = watched_; op != nullptr;) {
    detail::stop_watched_op* const next = op->next;
    if (op->token->stop_requested()) {
      unwatch_stop(op);
      cancel(op);
      cancelled = true;
    }
    op = next;
  }
  return cancelled;
}

void loop::register_stop_callbacks() {
  while (watched_ != nullptr) {
    detail::stop_watched_op* const op = watched_;
    unwatch_stop(op);
    // May run the callback at once (token already stopped): it cancels on this thread.
    op->register_callback(op);
  }
}

void loop::submit(bool wait_for_one) { backend_->submit(wait_for_one); }

void loop::run_once(const bool* finished) {
  drain_remote();
  const bool hooked_work = run_drain_hooks();
  poll_stop_requests();
  // Posted work may have finished what run() waits for: then submit, reap, return.
  bool wait = !hooked_work && (finished == nullptr || !*finished);
  const bool polls = idle_poll_.count() > 0;
  if (wait && (watched_ != nullptr || polls)) {
    // Before sleeping, the listed ops would need their stop callbacks registered. Most
    // are done by now (NOPs, reads of ready data), so first collect what is complete
    // without sleeping; only if nothing is, register and sleep. This costs one extra
    // io_uring_enter per sleep, and only while cancellable ops are in flight. An idle
    // poll starts the same way: the kernel gets what is queued and works while we poll.
    submit(false);
    if (reap() > 0) return;
    if (polls && poll_for_work()) {
      submit(false);  // runs the kernel work poll_for_work saw pending
      reap();
      return;
    }
  }
  if (wait) {
    // Asleep, the loop cannot poll: stop requests from other threads must reach it.
    register_stop_callbacks();
    arm_wakeup();
    sleeping_.store(true, std::memory_order_seq_cst);
    // Re-check after announcing the sleep: work published while we decided to sleep is
    // seen here (posts through remote_pending_, other channels through their hooks).
    if (remote_pending_.load(std::memory_order_seq_cst) || run_drain_hooks()) wait = false;
  }
  submit(wait);
  sleeping_.store(false, std::memory_order_relaxed);
  reap();
}

void loop::untrack(detail::io_op* op) noexcept {
  const auto it = tracked_.find(op);
  if (it != tracked_.end() && --it->second == 0) tracked_.erase(it);
}

bool loop::poll_for_work() {
  using clock = std::chrono::steady_clock;
  const clock::time_point deadline = clock::now() + idle_poll_;
  for (unsigned spins = 1;; ++spins) {
    if (remote_pending_.load(std::memory_order_acquire) || backend_->work_pending()) return true;
    // Hooks drain what they find (the runtime's cross-shard queues): work done is work found.
    if (run_drain_hooks()) return true;
    detail::cpu_relax();
    // The clock read and the walk over the watched ops' stop tokens cost more than the
    // checks above: every 64th turn. A stop from another thread cancels its op here, as
    // it would at the next iteration of a busy loop (registering callbacks is for sleeps).
    if (spins % 64 == 0) {
      if (poll_stop_requests()) return true;  // its cancel request waits to be submitted
      if (clock::now() >= deadline) return false;
      // Polite polling: a thread waiting for this CPU (a client on a small machine, a
      // build) runs now instead of after our time slice. Without it a polling server on a
      // busy machine took CPU its clients needed: kv_server at 0.2-0.6x redis-server
      // under a load average of 15 on 2 cores, against 1.1-1.7x sleeping at once.
      sched_yield();
    }
  }
}

std::size_t loop::reap() {
  std::size_t reaped = 0;
  // Copy a batch out (the backend consumes it) before dispatching: completions resume
  // coroutines, which may submit (and, without DEFER_TASKRUN, make the kernel post) more
  // CQEs while we dispatch.
  constexpr unsigned batch = 256;
  detail::completion done[batch];
  for (;;) {
    const unsigned n = backend_->reap(done, batch);
    if (n == 0) return reaped;
    reaped += n;
    for (unsigned i = 0; i < n; ++i) {
      if (done[i].user_data == 0) continue;
      detail::io_op* op = detail::from_user_data(done[i].user_data);
      if (!(done[i].flags & IORING_CQE_F_MORE)) {
        --in_flight_;
        if (!features_.cancel_any) [[unlikely]]
          untrack(op);
      }
      op->complete(op, done[i].res, done[i].flags);
    }
    if (n < batch) return reaped;
  }
}

}  // namespace corio
