#pragma once
// corio::executor — the sharded multi-process executor: N worker processes, each running
// its own corio::loop (pinned to its own core), each connected to the parent by a pair of
// shared-memory rings. Calls are routed by key: the same key always reaches the same
// worker, so per-key state kept in a worker needs no locks (Seastar's shards, as
// processes).
//
//     corio::executor ex({.workers = 4});
//     int pid = co_await ex.submit(user_id, [] { return int(getpid()); });
//     std::string s = co_await ex.submit("k", [](std::string a) -> corio::task<std::string> {
//       co_await corio::sleep_for(10ms);
//       co_return a + "!";
//     }, std::string("hi"));
//     std::vector<int> pids = co_await ex.broadcast([] { return int(getpid()); });
//     co_await ex.shutdown();
//
// What fn may be: see ipc/remote_call.hpp (a function pointer, captureless lambda or
// trivially copyable callable; args and results travel through corio::codec; fn may be a
// coroutine returning task<R>). Workers are fork()ed by the constructor, so fn must be
// code loaded before that.
//
// The model
// - The constructor forks the workers (process, parent_death_signal = SIGKILL), from a
//   thread the executor owns that lives as long as it does (detail/fork_thread.hpp):
//   PR_SET_PDEATHSIG follows the *thread* that forked, not the process, so workers forked
//   by the caller's thread would be SIGKILLed when that thread ends. An executor built on
//   a short-lived std::thread therefore keeps its workers; they die with the executor
//   or with the whole parent process (SIGKILLed or crashed parents leave no orphan). Each
//   worker maps one shm_region holding four event_count words and two spsc_rings
//   (requests parent -> worker, replies worker -> parent); see executor.cpp for the layout.
// - Routing: an integral key k goes to worker (unsigned)k % size(); a string-like key to
//   std::hash<std::string_view> % size(); any other key to std::hash<Key>{}(key) % size().
//   worker_of(key) tells which. The mapping is fixed for the executor's life.
// - Concurrency in a worker: every request is spawned as its own task on the worker's
//   loop; a coroutine fn that suspends (a sleep, I/O) lets the worker run other requests.
//   Replies are written as calls finish (out of order) and matched by a request id.
// - Batching: requests written during one pass of the parent's loop are published to the
//   ring with one release store and one wake-up check; the worker does the same with its
//   replies. A wake-up costs a system call only when the peer sleeps (event_count); before
//   sleeping, each side polls its ring for `spin`.
// - Backpressure: a full request ring makes submit wait (an io_uring futex wait, not a
//   busy loop) until the worker drains it; nothing is dropped.
//
// Who may touch it: the parent uses an executor from the one corio::loop thread that
// first submits to it (submit, broadcast, shutdown; std::logic_error from another loop or
// outside any loop). A background reader per worker (replies) and a watcher per worker
// (its exit, via pidfd) run on that loop from the first use on.
//
// Errors
// - The call's exception comes back as corio::remote_error ("type: message").
// - corio::worker_lost: the worker died (killed, crashed, exited) while it held the call;
//   every pending call of that worker fails with it, within one loop iteration of the
//   death, naming the worker index, pid and signal (unless executor_options::retries
//   sends it again, below).
//
// Worker death and replacement
// - A dead worker is replaced at once under the same index (forked by the executor's
//   own thread, the parent's loop blocked for that fork), so a long-running server never
//   loses a shard: keys keep routing to that index, worker_pid(index) names the new
//   process. What the dead worker held in memory (per-key state) is gone; the calls it
//   held fail with worker_lost, or with retries = N run again on the replacement, up to
//   N times per call (only for calls safe to run twice: the dead one may have run part).
//   Requests it had not read and calls waiting for room in its ring go to the
//   replacement. Not replaced: a worker that ends after shutdown()'s exit request, one
//   killed by the destructor, or when the fork fails (the error then says so; later
//   calls routed there fail at once with worker_lost; the other workers keep working).
// - std::length_error: a request larger than max_message_bytes (thrown by submit, in the
//   caller, before anything is sent); a reply that is too large comes back as a
//   remote_error of type std::length_error.
// - std::logic_error: submit or broadcast after shutdown() began.
//
// Shutdown and destruction
// - co_await shutdown(): stops accepting calls, waits for every pending call to finish,
//   asks the workers to exit (a message after the last request), and waits until each is
//   reaped. Call it once.
// - The destructor without a completed shutdown() does not drain: it kills the workers
//   with SIGKILL. Calls still pending then fail with worker_lost, delivered by the
//   watchers on the parent's loop (which must run again for that); when no watcher runs
//   (never used in a loop, or the loop is gone) the destructor reaps the workers itself.

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "../coro/task.hpp"
#include "../coro/when_all.hpp"
#include "remote_call.hpp"

namespace corio {

struct executor_options {
  unsigned workers = 0;               // 0: one per CPU this process may run on
  bool pin = true;                    // worker i runs on the i-th allowed CPU (its affinity mask)
  std::size_t ring_bytes = 1 << 18;   // data bytes of each ring (per direction, per worker)
  std::size_t max_message_bytes = 0;  // largest request or reply frame (8-byte id included); 0: ring_bytes / 2 - 4
  // How long a side polls its empty ring before it sleeps in the kernel. Polling saves the
  // futex wake-up (~10 us per round trip here) when the peer answers within that time; it
  // costs a core's time when it does not, and a peer sharing that core cannot run meanwhile.
  std::chrono::nanoseconds spin = std::chrono::microseconds(5);
  // Opt-in: a call whose worker died while holding it is sent again, to the replacement
  // worker of the same shard, up to this many times before it fails with worker_lost.
  // Only for calls that are safe to run twice (the dead worker may have run part of it).
  unsigned retries = 0;
};

namespace detail {

struct executor_state;

// One submitted call, living in the submitter's coroutine frame until its reply (or its
// failure) arrives. deliver() runs on the parent's loop with the reply bytes.
struct executor_pending {
  void (*deliver)(executor_pending* self, std::span<const std::byte> reply) noexcept = nullptr;
  std::coroutine_handle<> waiter;
  std::exception_ptr error;
  bool done = false;
  bool retry = false;     // its worker died holding it: send it again (executor_options::retries)
  unsigned attempts = 0;  // retries made so far
};

template <class R>
struct executor_typed_pending : executor_pending {
  executor_typed_pending() noexcept { deliver = &take; }
  static void take(executor_pending* self, std::span<const std::byte> reply) noexcept {
    auto* p = static_cast<executor_typed_pending*>(self);
    try {
      p->value.emplace(take_reply<R>(reply));
    } catch (...) {
      p->error = std::current_exception();
    }
  }
  R result() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
  std::optional<R> value;
};

template <>
struct executor_typed_pending<void> : executor_pending {
  executor_typed_pending() noexcept { deliver = &take; }
  static void take(executor_pending* self, std::span<const std::byte> reply) noexcept {
    try {
      take_reply<void>(reply);
    } catch (...) {
      self->error = std::current_exception();
    }
  }
  void result() {
    if (error) std::rethrow_exception(error);
  }
};

// Suspends the submitter until its reply was delivered.
struct executor_reply_awaiter {
  executor_pending& p;
  bool await_ready() const noexcept { return p.done; }
  void await_suspend(std::coroutine_handle<> h) noexcept { p.waiter = h; }
  void await_resume() const noexcept {}
};

// The request header: a u64 request id before the remote_call bytes.
inline constexpr std::size_t executor_header_bytes = sizeof(std::uint64_t);

std::size_t executor_size(const executor_state& st) noexcept;
std::size_t executor_max_message(const executor_state& st) noexcept;
// Writes the request (frame, header included) to the worker's ring and registers p.
// false: the ring is full (nothing registered). Throws std::logic_error after shutdown or
// outside the executor's loop, worker_lost for a lost worker.
bool executor_try_start(executor_state& st, std::size_t worker, std::vector<std::byte>& frame, executor_pending& p);
// The slow path: waits for room in the ring, then writes and registers.
[[nodiscard]] task<void> executor_start_when_room(executor_state& st, std::size_t worker,
                                                  std::vector<std::byte>& frame, executor_pending& p);
// Sends a call again after its worker died (p.retry): to the replacement worker, still
// counted as pending (no shutdown check). Throws worker_lost when the shard is lost.
[[nodiscard]] task<void> executor_restart(executor_state& st, std::size_t worker, std::vector<std::byte>& frame,
                                          executor_pending& p);
// Throws std::length_error when a frame exceeds max_message_bytes.
void executor_check_size(const executor_state& st, std::size_t frame_bytes);

template <class R>
[[nodiscard]] task<R> executor_call(std::shared_ptr<executor_state> st, std::size_t worker,
                                    std::vector<std::byte> frame) {
  executor_typed_pending<R> p;
  if (!executor_try_start(*st, worker, frame, p)) co_await executor_start_when_room(*st, worker, frame, p);
  co_await executor_reply_awaiter{p};
  while (p.retry) {
    co_await executor_restart(*st, worker, frame, p);
    co_await executor_reply_awaiter{p};
  }
  co_return p.result();
}

template <class F, class... Args>
std::vector<std::byte> executor_encode(const executor_state& st, F&& fn, Args&&... args) {
  std::vector<std::byte> frame;
  frame.reserve(128);  // most calls fit: one allocation per request
  frame.resize(executor_header_bytes);
  encode_call(frame, std::forward<F>(fn), std::forward<Args>(args)...);
  executor_check_size(st, frame.size());
  return frame;
}

}  // namespace detail

class executor {
 public:
  explicit executor(executor_options options = {});
  executor(executor&&) noexcept = default;
  executor& operator=(executor&&) = delete;
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;
  ~executor();

  // Runs fn(args...) on the worker chosen by key and returns its result (see the header
  // comment for routing, errors and what fn may be). The call is encoded now, in the
  // caller (encoding errors and std::length_error throw here); it is sent when the
  // returned task is awaited.
  template <class Key, class F, class... Args>
  [[nodiscard]] task<remote_result_t<F, Args...>> submit(const Key& key, F&& fn, Args&&... args) {
    return submit_to(worker_of(key), std::forward<F>(fn), std::forward<Args>(args)...);
  }

  // The same on worker `index` (0 <= index < size(); std::out_of_range otherwise).
  template <class F, class... Args>
  [[nodiscard]] task<remote_result_t<F, Args...>> submit_to(std::size_t index, F&& fn, Args&&... args) {
    using R = remote_result_t<F, Args...>;
    check_index(index);
    return detail::executor_call<R>(state_, index,
                                    detail::executor_encode(*state_, std::forward<F>(fn), std::forward<Args>(args)...));
  }

  // Runs fn(args...) once on every worker; results by worker index (void for a void fn).
  // All calls run concurrently; the first failure (by worker index) is rethrown after
  // every call finished.
  template <class F, class... Args>
  [[nodiscard]] auto broadcast(F&& fn, Args&&... args) {
    using R = remote_result_t<F, Args...>;
    std::vector<std::byte> frame = detail::executor_encode(*state_, std::forward<F>(fn), std::forward<Args>(args)...);
    std::vector<task<R>> calls;
    calls.reserve(size());
    for (std::size_t i = 0; i < size(); ++i) calls.push_back(detail::executor_call<R>(state_, i, frame));
    return gather<R>(std::move(calls));
  }

  // Stops accepting calls, drains the pending ones, lets the workers exit and reaps them.
  [[nodiscard]] task<void> shutdown();

  // Number of workers.
  [[nodiscard]] std::size_t size() const noexcept { return detail::executor_size(*state_); }
  // The worker a key routes to.
  template <class Key>
  [[nodiscard]] std::size_t worker_of(const Key& key) const {
    if constexpr (std::is_integral_v<Key>) {
      return static_cast<std::size_t>(static_cast<std::make_unsigned_t<Key>>(key) % size());
    } else if constexpr (std::is_convertible_v<const Key&, std::string_view>) {
      return std::hash<std::string_view>{}(std::string_view(key)) % size();  // "abc" and std::string("abc") agree
    } else {
      return std::hash<Key>{}(key) % size();
    }
  }
  // The pid of worker `index`.
  [[nodiscard]] pid_t worker_pid(std::size_t index) const;

 private:
  template <class R>
  static auto gather(std::vector<task<R>> calls) -> task<std::conditional_t<std::is_void_v<R>, void, std::vector<R>>> {
    if constexpr (std::is_void_v<R>) {
      co_await when_all(std::move(calls));
    } else {
      co_return co_await when_all(std::move(calls));
    }
  }
  void check_index(std::size_t index) const;

  std::shared_ptr<detail::executor_state> state_;
};

}  // namespace corio
