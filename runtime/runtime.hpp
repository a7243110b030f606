#pragma once
// runtime: N event loops on N threads, one per core, share-nothing (Seastar's model).
//
//     corio::runtime rt;                                   // shards = cores, pinned
//     int v = rt.run([]() -> corio::task<int> {            // main task, on shard 0
//       co_return co_await corio::submit_to(1, [] { return 41 + 1; });
//     }());
//
// The model: each shard is one thread running one corio::loop (one io_uring). Data lives
// on one shard and is touched only there; another shard asks for work by message:
// `co_await submit_to(shard, fn)` runs `fn` on that shard's loop and resumes the caller,
// on the caller's own shard, with the result or the exception. Nothing is shared but the
// messages.
//
// Contract
// - run(main) runs `main` on shard 0, which is the calling thread; shards 1..N-1 get their
//   own threads. With `pin`, shard k is pinned to the k-th CPU this process may use
//   (modulo their number); a refused pin is not fatal (the shard then floats), and the
//   calling thread's affinity is restored when run() returns.
// - submit_to(shard, fn): fn is called with no arguments on the target shard and may
//   return a value, void, or a task<U> (then awaited there; it may suspend, sleep, do I/O,
//   submit further). The result is moved back; an exception escaping fn is rethrown by the
//   co_await, type and message intact. fn is moved into the awaiting frame and destroyed on
//   the target shard once it has run. Remote work carries no stop token: once handed over
//   it runs to completion (pass a std::stop_token in the capture to make it cancellable).
//   A bad shard index throws std::out_of_range; a call outside a running runtime throws
//   std::logic_error. submit_to(this_shard(), fn) is fine: fn runs at the next iteration.
//   GCC 12: a lambda whose captures have non-trivial destructors, written inside the
//   co_await expression, is destroyed twice (a compiler bug); name it first and move it in.
// - Deadlock rule: a shard never blocks waiting for a reply, it suspends the coroutine, so
//   nested submit_to chains (0 -> 1 -> 0) are fine. What must not form a cycle is
//   *blocking*: fn must not block its thread (a mutex held across shards, a sync_wait)
//   waiting for something only another fn can finish.
// - Shutdown: when `main` ends (or after stop()), every shard's loop is asked to stop
//   (loop::request_stop: spawned tasks are cancelled), then run() waits until no
//   submit_to is in flight anywhere and no shard has a spawned task left, joins the
//   threads, and returns main's value or rethrows its exception. Cross-shard work in
//   flight is never dropped.
// - stop() is thread-safe: it asks `main` to stop (its stop token) and every shard's
//   spawned tasks too; in-flight submit_to work still finishes.
//
// Who may touch what: a runtime object is used from the thread that constructed it (run)
// and destroyed after run() returned; stop() may be called from any thread, or from a
// shard. The loops belong to their shards (loop::this_loop() on a shard is that shard's
// loop). See docs/shards.md for the wake-up protocol and the full-queue policy.

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../coro/detail/result_slot.hpp"
#include "../coro/detail/trampoline.hpp"
#include "../coro/stop.hpp"
#include "../coro/task.hpp"
#include "loop.hpp"

namespace corio {

struct runtime_options {
  unsigned shards = 0;  // 0: one per CPU this process may run on
  bool pin = true;      // pin shard k to a CPU (failure is not fatal)
  // Slots of each cross-shard queue (one queue per ordered pair of shards); a full queue
  // spills into the sender's overflow list, nothing is dropped.
  unsigned queue_capacity = 1024;
  // Wake idle shards with IORING_OP_MSG_RING when the kernel has it (5.18+); false forces
  // the eventfd fallback (for tests).
  bool use_msg_ring = true;
  loop_options loop = {};  // options of every shard's loop
};
static_assert(std::is_trivially_destructible_v<runtime_options>);

class runtime;

namespace detail {

// A cross-shard message: a pointer to it travels through the queues. The sender owns the
// memory (the awaiting frame); `deliver` runs on the receiving shard. The same message
// goes out as a request and comes back as the reply, with `deliver` switched in between.
struct shard_message {
  void (*deliver)(shard_message* self) noexcept = nullptr;
  shard_message* next = nullptr;  // the sender's overflow list (runtime.cpp)
};

struct runtime_state;  // runtime.cpp

// The shard this thread runs, set for the life of its loop.
struct shard_context {
  runtime_state* state = nullptr;
  unsigned index = 0;
  unsigned count = 0;
};
inline thread_local shard_context current_shard{};

// Throws std::logic_error outside a runtime, std::out_of_range for a bad index.
void check_submit_target(unsigned target, const char* what);
// On the caller's shard: counts the request in flight and sends it to `target`.
void send_request(unsigned target, shard_message* m) noexcept;
// On the target shard: sends the reply back to `origin`.
void send_reply(unsigned origin, shard_message* m) noexcept;
// On the caller's shard, when the reply arrived, before the caller resumes.
void request_done() noexcept;

template <class R>
struct task_result {
  using type = void;
  static constexpr bool is_task = false;
};
template <class U>
struct task_result<task<U>> {
  using type = U;
  static constexpr bool is_task = true;
};

template <class Fn>
using submit_result_t =
    std::conditional_t<task_result<std::invoke_result_t<Fn&>>::is_task,
                       typename task_result<std::invoke_result_t<Fn&>>::type, std::invoke_result_t<Fn&>>;

template <class Fn>
class submit_awaiter;

template <class Fn>
task<void> run_remote_task(submit_awaiter<Fn>* op);

// The awaitable of submit_to. It lives in the caller's suspended frame until the reply
// arrives, so the target may write the result into it directly.
template <class Fn>
class [[nodiscard]] submit_awaiter : private shard_message {
 public:
  using result_type = submit_result_t<Fn>;

  submit_awaiter(unsigned target, Fn fn) : target_(target), fn_(std::in_place, std::move(fn)) {}
  submit_awaiter(submit_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<Fn>)
      : target_(o.target_), fn_(std::move(o.fn_)) {}
  submit_awaiter(const submit_awaiter&) = delete;
  submit_awaiter& operator=(const submit_awaiter&) = delete;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> caller) noexcept {
    caller_ = caller;
    origin_ = current_shard.index;
    deliver = &on_target;
    // From here the target owns the message until it replies: touch nothing after this.
    send_request(target_, this);
  }
  result_type await_resume() { return slot_.take(); }

 private:
  friend task<void> run_remote_task<Fn>(submit_awaiter* op);

  // On the target shard.
  static void on_target(shard_message* m) noexcept {
    auto* self = static_cast<submit_awaiter*>(m);
    if constexpr (task_result<std::invoke_result_t<Fn&>>::is_task) {
      // No stop token: remote work, once handed over, runs to completion (see runtime.hpp).
      start_detached(run_remote_task(self), [](void*, std::exception_ptr) noexcept {}, nullptr, never_stop);
    } else {
      try {
        if constexpr (std::is_void_v<result_type>) {
          std::invoke(*self->fn_);
          self->slot_.set_value();
        } else {
          self->slot_.set_value(std::invoke(*self->fn_));
        }
      } catch (...) {
        self->slot_.set_exception(std::current_exception());
      }
      self->reply();
    }
  }
  // On the target shard: the last touch of the message there.
  void reply() noexcept {
    fn_.reset();
    deliver = &on_origin;
    send_reply(origin_, this);
  }
  // Back on the caller's shard.
  static void on_origin(shard_message* m) noexcept {
    auto* self = static_cast<submit_awaiter*>(m);
    request_done();
    detail::resume(self->caller_);
  }

  unsigned target_;
  unsigned origin_ = 0;
  std::optional<Fn> fn_;
  result_slot<result_type> slot_;
  std::coroutine_handle<> caller_;
};

template <class Fn>
task<void> run_remote_task(submit_awaiter<Fn>* op) {
  try {
    auto t = std::invoke(*op->fn_);
    if constexpr (std::is_void_v<typename submit_awaiter<Fn>::result_type>) {
      co_await std::move(t);
      op->slot_.set_value();
    } else {
      op->slot_.set_value(co_await std::move(t));
    }
  } catch (...) {
    op->slot_.set_exception(std::current_exception());
  }
  op->reply();
}

}  // namespace detail

// Runs `fn` on shard `shard` and returns its result (or rethrows its exception) on the
// calling shard. See the contract above.
template <class Fn>
  requires std::is_invocable_v<std::decay_t<Fn>&>
[[nodiscard]] detail::submit_awaiter<std::decay_t<Fn>> submit_to(unsigned shard, Fn&& fn) {
  detail::check_submit_target(shard, "corio::submit_to");
  return detail::submit_awaiter<std::decay_t<Fn>>(shard, std::forward<Fn>(fn));
}

// The index of the shard this code runs on (0..shard_count()-1); std::logic_error outside
// a running runtime.
unsigned this_shard();
// The number of shards of the running runtime; std::logic_error outside one.
unsigned shard_count();

class runtime {
 public:
  explicit runtime(runtime_options options = {});
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  // Runs `main` on shard 0 (this thread) with the other shards on their threads; returns
  // main's value or rethrows its exception after the shutdown described above. Throws
  // std::logic_error if this thread already runs a loop or a runtime.
  template <class T>
  T run(task<T> main);

  // Thread-safe; see the contract. A no-op when not running.
  void stop() noexcept;

  unsigned shard_count() const noexcept { return shards_; }
  // True when the last run woke idle shards through IORING_OP_MSG_RING (else eventfd).
  bool uses_msg_ring() const noexcept { return used_msg_ring_; }
  // Shards whose pinning the kernel refused in the last run (0 when pin is off).
  unsigned pin_failures() const noexcept { return pin_failures_; }

 private:
  template <class T>
  static task<void> capture(task<T> main, detail::result_slot<T>& slot);
  void run_erased(task<void> main);

  runtime_options options_;
  unsigned shards_;
  bool used_msg_ring_ = false;
  unsigned pin_failures_ = 0;
  std::mutex state_mutex_;  // guards state_ against stop() from other threads
  detail::runtime_state* state_ = nullptr;
};

template <class T>
task<void> runtime::capture(task<T> main, detail::result_slot<T>& slot) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(main);
      slot.set_value();
    } else {
      slot.set_value(co_await std::move(main));
    }
  } catch (...) {
    slot.set_exception(std::current_exception());
  }
}

template <class T>
T runtime::run(task<T> main) {
  detail::result_slot<T> slot;
  run_erased(capture(std::move(main), slot));
  return slot.take();
}

}  // namespace corio
