#pragma once
// loop: one event loop, owned by one thread, on io_uring (or on epoll where io_uring is refused).
//
//     corio::loop lp;
//     int n = lp.run(main_task());      // runs until main_task ends; returns its value
//
// The model (Seastar's, at the scale of one thread): a loop owns one io_uring and the
// coroutines it resumes. Each iteration it runs the work posted to it, then submits every
// queued SQE and waits for completions in one io_uring_enter, then reaps the CQEs in a
// batch and resumes their coroutines. With nothing to do it sleeps in the kernel; it
// spins only if asked to (loop_options::idle_poll), and then only for a bounded time.
//
// The backend (backend.hpp): io_uring unless loop_options::backend or CORIO_BACKEND asks
// for epoll, or io_uring_setup is refused with EPERM / ENOSYS / EINVAL (Docker's default
// seccomp profile, kernel.io_uring_disabled, a kernel without io_uring) and nothing forces
// io_uring. On epoll the same SQEs are interpreted by a user-space emulation of the ring
// (detail/epoll_backend.hpp); backend() says which one runs. A loop forced onto io_uring
// that the kernel refuses throws a std::system_error naming the cause and the fix.
//
// io_uring setup (probed once per loop, see features()): SINGLE_ISSUER | DEFER_TASKRUN
// where the kernel accepts it (6.1+), else SINGLE_ISSUER | COOP_TASKRUN (6.0), else
// COOP_TASKRUN (5.19), else none. CORIO_DISABLE_FEATURES (kernel_features.hpp) removes
// setups from that list as if the kernel refused them; a bad value (of it or of
// CORIO_BACKEND) makes the constructor throw std::invalid_argument naming the valid
// values. SQPOLL is off unless asked for: it made real workloads slower (design.md).
//
// Who may touch it: everything except post() and wake() must be called on the loop's
// thread, the one that calls run(). A loop is destroyed on that thread, after run()
// returned; operations still in flight then are cancelled and drained first: all at once
// with IORING_ASYNC_CANCEL_ANY (5.19+), else one cancel per request, from a table of the
// requests in flight that the loop keeps only on such kernels. Waits on the loop's futex
// thread (futex_ops.hpp) are cancelled too, and the thread is joined.
//
// While run() runs, the ring's fd is registered with the running thread
// (io_uring_register_ring_fd, 5.18: kernel_feature::registered_ring), so each
// io_uring_enter skips the kernel's fd lookup. The registration belongs to that thread,
// which is why it is made by run() and undone when run() returns, never by the
// constructor.

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../coro/detail/result_slot.hpp"
#include "../coro/detail/runner.hpp"
#include "../coro/task.hpp"
#include "backend.hpp"
#include "detail/backend.hpp"
#include "detail/io_op.hpp"

namespace corio {

namespace detail {
class futex_thread;
class buffer_ring;
// For fork() (ipc/process.hpp): in the child, forgets the loop this thread was running,
// so the child may build its own loop and never touches the parent's io_uring, whose
// rings are MAP_SHARED with the parent. Call only in a freshly forked child.
void forget_loop_after_fork() noexcept;
}  // namespace detail

struct loop_options {
  // io_uring, epoll, or automatic: the environment's CORIO_BACKEND decides, and without
  // it io_uring unless the kernel refuses it (backend.hpp).
  backend_kind backend = backend_kind::automatic;
  unsigned entries = 1024;  // submission queue size (power of two); the CQ is twice this
  bool sqpoll = false;      // kernel submission thread: opt-in, see above
  // Idle polling, opt-in: when the loop runs out of work it keeps looking for new work
  // (completions, posts, cross-shard messages) for this long before it sleeps in the
  // kernel. The look is a read of the ring's shared flags, not a system call
  // (IORING_SETUP_TASKRUN_FLAG, 5.19+; without it, an io_uring_enter that never waits).
  // What it buys: a peer that sends to a polling loop does not have to wake a sleeping
  // thread, which costs the SENDER's CPU (a wake-up and an IPI inside its send call):
  // a server whose clients are CPU-bound serves them faster. What it costs: up to this
  // much CPU after every burst of work. The poll yields the CPU (sched_yield) every few
  // microseconds, so a thread waiting for it runs first: on a busy machine the poll takes
  // little from others. Servers poll 50 us by default (server_defaults.hpp); 0, the
  // loop's default, sleeps at once.
  std::chrono::microseconds idle_poll{0};
  // Lets tests force the fallback paths a kernel without these features would take.
  bool try_defer_taskrun = true;
  bool try_single_issuer = true;
  bool try_taskrun_flag = true;  // idle polling then asks the kernel with io_uring_enter
  bool try_cancel_any = true;    // ~loop then cancels request by request
};

// What the kernel granted this loop's ring.
struct loop_features {
  bool single_issuer = false;
  bool defer_taskrun = false;
  bool coop_taskrun = false;
  bool sqpoll = false;
  bool taskrun_flag = false;  // asked for only with idle_poll: pending kernel work shows in sq.kflags
  bool cancel_any = false;    // IORING_ASYNC_CANCEL_ANY: ~loop cancels everything in one request
  bool registered_ring = false;  // run() registers the ring fd with its thread (see above)
  bool futex_wait = false;    // IORING_OP_FUTEX_WAIT: futex_wait sleeps in the ring (futex_ops.hpp)
  bool msg_ring = false;      // IORING_OP_MSG_RING: other loops may wake this one through its ring
};

class loop {
 public:
  explicit loop(loop_options options = {});
  ~loop();
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  // Runs the loop until `main` finishes, then returns its value or rethrows its exception.
  // `main` borrows `token` as its stop token (stop.hpp). Throws std::logic_error if this
  // thread is already running a loop, or another thread is running this one.
  template <class T>
  T run(task<T> main, std::stop_token token = {});

  // Starts `t` now, detached: it runs until its first suspension before spawn returns,
  // then finishes on this loop. Its frame is the only allocation. An exception escaping it
  // goes to the unhandled-exception handler (by default printed to stderr); spawned tasks
  // borrow the loop's stop token, requested by request_stop(). On the loop's thread, or
  // before run() on any: while another thread runs the loop, spawn throws std::logic_error
  // (post() is the thread-safe way in).
  void spawn(task<void> t);
  // Detached tasks not finished yet.
  std::size_t spawned() const noexcept { return spawned_; }

  using unhandled_handler = void (*)(std::exception_ptr) noexcept;
  void set_unhandled_exception_handler(unhandled_handler h) noexcept { unhandled_ = h; }

  // Asks spawned tasks (and anything borrowing stop_token()) to stop.
  void request_stop() noexcept { stop_source_.request_stop(); }
  const std::stop_token& stop_token() const noexcept { return stop_token_; }

  // Thread-safe: runs `fn` on the loop's thread at its next iteration, waking it if it
  // sleeps. Posting to a loop that is being destroyed is a bug.
  void post(std::function<void()> fn);
  // Thread-safe: interrupts the loop's sleep without giving it work.
  void wake() noexcept;
  // Thread-safe: true while the loop is (about to be) asleep in io_uring_enter. A
  // producer that publishes work through its own channel (a cross-shard queue) and then
  // sees sleeping() must wake the loop; see the Dekker comment on sleeping_.
  bool sleeping() const noexcept { return sleeping_.load(std::memory_order_seq_cst); }

  // Registers `hook(context)`, called on the loop's thread at the start of every
  // iteration and once more after the loop announced its sleep, before it sleeps. It
  // returns true if it found work (the loop then does not sleep). For channels that feed
  // the loop without post(): the runtime's cross-shard queues. Hooks are never removed;
  // they must stay valid for the loop's life.
  using drain_hook = bool (*)(void* context);
  void add_drain_hook(drain_hook hook, void* context) { drain_hooks_.push_back({hook, context}); }

  // The loop running on this thread, or nullptr.
  static loop* current() noexcept { return current_; }
  // The loop running on this thread; throws std::logic_error when there is none.
  static loop& this_loop();

  // What the kernel granted this loop's ring (on epoll all false but cancel_any, which the
  // emulation provides); kernel_features() (kernel_features.hpp) lists every feature
  // corio probes, for the whole process.
  const loop_features& features() const noexcept { return features_; }
  // The backend this loop chose (never `automatic`).
  backend_kind backend() const noexcept { return backend_->kind(); }
  // The io_uring's fd, -1 on the epoll backend.
  int ring_fd() const noexcept { return backend_->ring_fd(); }

  // --- For operation awaiters (runtime/ internals) -------------------------------------
  // A free SQE. When the SQ is full, the queued SQEs are submitted first. `needed` SQEs
  // are guaranteed contiguous in one submission (for linked requests).
  io_uring_sqe* get_sqe(unsigned needed = 1) { return backend_->get_sqe(needed); }
  // Called once per request whose CQE will be delivered to an io_op, right after prep.
  // Without CANCEL_ANY it records the op in a table; running out of memory for that
  // table terminates (the prepared SQE could not be taken back safely).
  void track(io_uring_sqe* sqe, detail::io_op* op) noexcept;
  // Asks the kernel to cancel `op` (loop thread only). The op still completes, with
  // -ECANCELED or its real result if it won the race.
  void cancel(detail::io_op* op);
  // Thread-safe cancel: from the loop's thread it is cancel(); from another thread it is
  // queued and submitted by the loop. forget_cancel must then be called on the loop thread
  // when the op has completed, before its memory is reused.
  void cancel_from_any_thread(detail::io_op* op);
  void forget_cancel(detail::io_op* op) noexcept;
  // True while ~loop drains: a completion must not re-arm its request.
  bool closing() const noexcept { return closing_; }
  // Requests in flight (SQEs tracked whose final CQE has not arrived).
  std::size_t in_flight() const noexcept { return in_flight_; }
  // Watches op->token for as long as the op is in flight (see stop_watched_op): cancels
  // the op when a stop is requested. unwatch_stop must be called on the loop thread once
  // the op completed, before its memory is reused.
  void watch_stop(detail::stop_watched_op* op) noexcept;
  void unwatch_stop(detail::stop_watched_op* op) noexcept;
  // How many ops the loop polls the tokens of at most, each iteration. Beyond that an op
  // gets its stop callback at once, as before a sleep: a server with thousands of idle
  // receives in flight must not pay a walk over all of them per iteration.
  static constexpr std::size_t max_polled_ops = 64;
  // Ops whose tokens the loop polls now (<= max_polled_ops).
  std::size_t polled_ops() const noexcept { return watched_count_; }
  // The loop's futex thread (futex_ops.hpp), started at the first call. Loop thread only.
  detail::futex_thread& futex_thread();
  // The liburing ring, for operations that register resources with it (buffer_ring.hpp);
  // nullptr on the epoll backend.
  io_uring* native_ring() noexcept { return backend_->native_ring(); }
  // The loop's shared ring of provided receive buffers (buffer_ring.hpp), set up at the
  // first call; nullptr when the kernel lacks provided buffer rings or refuses one, and
  // on the epoll backend. It is
  // freed by ~loop after the drain, so no request still uses it. Loop thread only.
  const std::shared_ptr<detail::buffer_ring>& receive_buffers();

 private:
  struct remote_queue {
    std::mutex mutex;
    std::vector<std::function<void()>> work;
    std::vector<detail::io_op*> cancels;
  };

  // One iteration: posted work, then submit and wait (unless *finished already), reap.
  void run_once(const bool* finished);
  // Submits queued SQEs; with wait_for_one, sleeps until a completion arrives.
  void submit(bool wait_for_one);
  // Dispatches every available CQE; returns how many there were.
  std::size_t reap();
  // Idle polling (loop_options::idle_poll): true as soon as new work shows up, false when
  // the poll time ran out with none.
  bool poll_for_work();
  void drain_remote();
  void arm_wakeup();
  void bind_to_this_thread();
  void unbind_from_this_thread() noexcept;
  void on_spawned_exit(std::exception_ptr e) noexcept;

  // The read on wake_fd_ that ends the loop's sleep when another thread posts.
  struct wake_op : detail::io_op {
    loop* owner;
  };

  std::unique_ptr<detail::backend> backend_;
  loop_features features_;
  std::chrono::microseconds idle_poll_;
  int wake_fd_ = -1;
  std::uint64_t wake_buffer_ = 0;
  wake_op wake_op_{};
  bool wake_armed_ = false;
  bool closing_ = false;  // the destructor drains: no new wake-up read

  std::size_t in_flight_ = 0;
  // Without CANCEL_ANY: every op in flight, with its count of requests (an op may have
  // several, e.g. a multishot accept re-armed), so ~loop can cancel each one.
  std::unordered_map<detail::io_op*, unsigned> tracked_;
  std::unique_ptr<detail::futex_thread> futex_thread_;
  std::shared_ptr<detail::buffer_ring> receive_buffers_;
  bool receive_buffers_tried_ = false;
  bool ring_fd_registered_ = false;  // by the thread now in run()
  // True while some thread is inside run(): a second thread's run() or spawn() would
  // share the ring unsynchronised, so both refuse with a logic_error naming the fix.
  std::atomic<bool> running_{false};
  // ~loop: queues cancels for everything in flight, plus a NOP so the drain's wait ends.
  void cancel_everything();
  void untrack(detail::io_op* op) noexcept;
  std::size_t spawned_ = 0;
  unhandled_handler unhandled_;
  std::stop_source stop_source_;
  std::stop_token stop_token_ = stop_source_.get_token();

  // The sleeping flag and the remote queue form a Dekker pair with post(): the loop
  // stores sleeping = true and then re-checks the queue; a poster pushes and then loads
  // sleeping. seq_cst on both sides guarantees at least one of them sees the other, so a
  // post is never left unnoticed while the loop sleeps.
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> remote_pending_{false};
  remote_queue remote_;
  struct hook_entry {
    drain_hook hook;
    void* context;
  };
  std::vector<hook_entry> drain_hooks_;
  bool run_drain_hooks();

  // Ops whose stop tokens are polled each iteration; registered with callbacks (and
  // unlisted) when the loop is about to sleep.
  detail::stop_watched_op* watched_ = nullptr;
  std::size_t watched_count_ = 0;
  bool poll_stop_requests();  // true if it cancelled an op
  void register_stop_callbacks();

  static thread_local loop* current_;
  friend void detail::forget_loop_after_fork() noexcept;
};

template <class T>
T loop::run(task<T> main, std::stop_token token) {
  bind_to_this_thread();
  struct unbind {
    loop* self;
    ~unbind() { self->unbind_from_this_thread(); }
  } guard{this};
  detail::result_slot<T> slot;
  bool done = false;
  auto hook = [](void* flag, std::size_t) noexcept -> std::coroutine_handle<> {
    *static_cast<bool*>(flag) = true;
    return {};
  };
  detail::run_into(std::move(main), slot).start(hook, &done, 0, token);
  while (!done) run_once(&done);
  return slot.take();
}

}  // namespace corio
