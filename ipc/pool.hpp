#pragma once
// corio::pool — Python's multiprocessing.Pool (fork start method): N worker processes that
// run calls fn(args...) sent from the parent and send back their values or exceptions.
//
//     int square(int x) { return x * x; }
//
//     corio::pool p(4);                               // forks 4 workers
//     auto f = p.submit(square, 7);                   // Python: apply_async
//     int v = f.get();                                // 49
//     std::vector<int> all = p.map(square, std::vector<int>{1, 2, 3});   // {1, 4, 9}
//     for (int x : p.imap_unordered(square, items)) ...                 // completion order
//     p.close();                                      // no more submits
//     p.join();                                       // every task done, workers exited
//
// What fn may be: see ipc/remote_call.hpp (a function pointer, a captureless lambda, or a
// trivially copyable callable capturing plain values; args and results travel through
// corio::codec). fn may be a coroutine returning task<R> for submit (it runs to completion
// on a corio::loop inside the worker); map and imap_unordered refuse coroutines at compile
// time (a chunk is a plain loop over its items).
//
// The model
// - Workers are fork()ed by the pool's collector thread (below) with parent_death_signal =
//   SIGKILL, so no worker outlives its parent. PR_SET_PDEATHSIG follows the *thread* that
//   forked, not the process: the collector is the pool's own thread and lives exactly as
//   long as the pool, so a pool built on a short-lived std::thread keeps its workers
//   after that thread ends (they die with the pool or with the whole parent).
// - Tasks go into one shared task ring in shared memory; an idle worker takes the oldest
//   task, one at a time, under a process-shared robust mutex (a worker killed while holding
//   it cannot wedge the others: the next locker repairs the state). A long task therefore
//   never holds up the tasks behind it: any free worker takes them.
// - Before running a task, the worker records its id in its own slot in shared memory; its
//   reply goes into its own result ring. A collector thread in the parent, running its own
//   corio::loop, drains the result rings (sleeping on an event_count when idle) and watches
//   each worker's pidfd (process::async_join). Callers blocked in get() also drain the
//   rings themselves when they can, so a busy pool completes futures without a thread hop.
// - Worker death: when a worker dies (SIGKILL, a crash, an exit inside fn), the collector
//   first takes every reply it published, then fails the task recorded in its slot with
//   corio::worker_lost ("pool worker 1234 died (killed by signal 9: Killed) while running
//   this task"), and forks a replacement. Every other task still runs. Nothing hangs.
//   With pool_options::retries = N the task is queued again instead (any worker takes
//   it), up to N times, before it fails; map then returns every result.
//
// Lifecycle
// - close(): no more submits (submit/map/imap_unordered then throw std::logic_error).
// - join(): after close() (std::logic_error otherwise): waits until every submitted task
//   has completed and every worker has exited.
// - terminate(): kills the workers now (SIGKILL). Replies already published are still
//   delivered; every other pending future fails with corio::pool_terminated.
// - Destructor: like Python's `with Pool() as p:` (whose __exit__ calls terminate()): a pool
//   not yet joined is terminated. Call close() + join() first to let the tasks finish.
//   Futures may outlive the pool; theirs then fail with pool_terminated.
//
// Errors
// - An exception escaping fn: get() throws corio::remote_error ("std::invalid_argument:
//   bad x": type name and message, see remote_call.hpp).
// - corio::worker_lost: the worker running the task died. corio::pool_terminated: the
//   pool was terminated (or destroyed) before the task completed.
// - A request larger than half the task ring (pool_options::task_ring_bytes) throws
//   std::length_error from submit; a reply larger than half a result ring comes back as a
//   remote_error of type std::length_error. Args the codec refuses throw encode_error from
//   submit, in the caller.
//
// Thread-safety: submit/map/imap_unordered/close/join/terminate may be called from any
// thread (join and terminate from one thread at a time). A pool_future is one caller's
// handle: get() it once, from one thread (like std::future).

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../coro/generator.hpp"
#include "../coro/task.hpp"
#include "detail/pool_state.hpp"
#include "remote_call.hpp"

namespace corio {

struct pool_options {
  // Bytes of the shared task ring; the largest request is half of it.
  std::size_t task_ring_bytes = std::size_t{1} << 20;
  // Bytes of each worker's result ring; the largest reply is half of it.
  std::size_t result_ring_bytes = std::size_t{1} << 20;
  // Polls before an idle worker (or the collector) sleeps on the futex.
  unsigned spin = 2000;
  // Opt-in: a task whose worker died while running it is queued again (any worker takes
  // it) up to this many times before it fails with worker_lost. Only for tasks that are
  // safe to run twice. Costs a copy of each request, kept until its task completes.
  unsigned retries = 0;
};

// The future of a submitted call. Move-only; get() once.
template <class R>
class pool_future {
 public:
  pool_future() = default;

  // Blocks until the task completes; returns its value or rethrows remote_error,
  // worker_lost or pool_terminated. std::logic_error when called twice.
  R get() {
    require_valid("get");
    if (!state_->ready()) detail::pool_wait(*core_, *state_, nullptr);
    return state_->take();
  }
  // True once the task completed (get() will not block).
  [[nodiscard]] bool ready() const noexcept { return state_ && state_->ready(); }
  // Waits up to `timeout`; true when the task completed.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    require_valid("wait_for");
    if (state_->ready()) return true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::ceil<std::chrono::nanoseconds>(timeout);
    return detail::pool_wait(*core_, *state_, &deadline);
  }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  // Inside a corio loop: `R v = co_await fut;` suspends the coroutine (not the thread) in
  // a wait of the awaiting loop's ring. It honours the ambient stop token: under
  // with_timeout / when_any / a task_group the await ends promptly with the cancellation
  // error (timed_out, operation_cancelled) while the task keeps running; its reply is
  // kept in the future (get() still returns it) or dropped with the last reference. A loop
  // destroyed during the await cancels it; the pool never touches the awaiting loop. The
  // future must outlive the await.
  detail::pool_future_awaiter<R> operator co_await() {
    require_valid("co_await");
    return detail::pool_future_awaiter<R>{state_.get(), {}};
  }
  [[nodiscard]] task<R> async_get() { co_return co_await *this; }

 private:
  friend class pool;
  pool_future(detail::state_ptr<detail::pool_state<R>> st, std::shared_ptr<detail::pool_core> core)
      : state_(std::move(st)), core_(std::move(core)) {}
  void require_valid(const char* what) const {
    if (!state_) throw std::logic_error(std::string("corio::pool_future::") + what + ": no state (moved from)");
  }

  detail::state_ptr<detail::pool_state<R>> state_;
  std::shared_ptr<detail::pool_core> core_;
};

class pool {
 public:
  explicit pool(std::size_t workers = std::thread::hardware_concurrency(), pool_options options = {});
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  // Sends fn(args...) to the next free worker. Throws std::logic_error after close(),
  // pool_terminated after terminate(), std::length_error / encode_error for a request
  // that cannot travel. Blocks while the task ring is full.
  template <class F, class... Args>
  [[nodiscard]] pool_future<remote_result_t<F, Args...>> submit(F&& fn, Args&&... args) {
    using R = remote_result_t<F, Args...>;
    auto st = detail::make_state<detail::pool_state<R>>();
    // Decayed first: a function named without & must travel as its address, not its code.
    std::decay_t<F> callable(std::forward<F>(fn));
    submit_state(st.get(), [&](std::vector<std::byte>& out) { detail::encode_call(out, callable, args...); });
    return pool_future<R>(std::move(st), core_);
  }
  // Python's name for submit.
  template <class F, class... Args>
  [[nodiscard]] pool_future<remote_result_t<F, Args...>> apply_async(F&& fn, Args&&... args) {
    return submit(std::forward<F>(fn), std::forward<Args>(args)...);
  }

  // fn(item) for every item, results in input order. Items travel in chunks of
  // `chunksize` (one request runs fn on each item of its chunk). The first failed chunk's
  // exception is rethrown (after every chunk completed).
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F fn, const Range& items, std::size_t chunksize = 1) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, T>;
    auto futures = submit_chunks<R, T>(fn, items, chunksize, nullptr);
    std::vector<R> out;
    std::exception_ptr first;
    for (auto& f : futures) {
      try {
        for (auto&& v : f.get()) out.push_back(std::move(v));
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
    return out;
  }

  // fn(item) for every item; returns a corio::generator<R> that yields the results in the
  // order the chunks complete (within a chunk, in input order). Every chunk is submitted before this
  // returns (the items are copied), so the range may die at once. A failed chunk throws
  // its exception out of the generator's next() / iteration.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto imap_unordered(F fn, const Range& items, std::size_t chunksize = 1) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, T>;
    auto sink = std::make_shared<detail::pool_sink>();
    auto futures = submit_chunks<R, T>(fn, items, chunksize, sink);
    return yield_completed<R>(std::move(sink), std::move(futures));
  }

  void close();
  void join();
  void terminate();

  // The pids of the live workers, in slot order (a replaced worker shows its new pid).
  [[nodiscard]] std::vector<pid_t> worker_pids() const;
  [[nodiscard]] std::size_t size() const noexcept;

 private:
  template <class Encode>
  void submit_state(detail::pool_state_base* st, Encode&& encode) {
    detail::pool_submit(*core_, st, &call_encoder<std::remove_reference_t<Encode>>, &encode);
  }
  template <class Encode>
  static void call_encoder(void* ctx, std::vector<std::byte>& out) {
    (*static_cast<Encode*>(ctx))(out);
  }

  template <class R, class T, class F, class Range>
  std::vector<pool_future<std::vector<R>>> submit_chunks(F fn, const Range& items, std::size_t chunksize,
                                                          const std::shared_ptr<detail::pool_sink>& sink) {
    static_assert(!detail::unwrap_task<std::invoke_result_t<F&, T&>>::coroutine,
                  "corio::pool::map / imap_unordered: fn must not be a coroutine (use submit for coroutines)");
    static_assert(!std::is_void_v<R>, "corio::pool::map / imap_unordered: fn must return a value");
    if (chunksize == 0) throw std::invalid_argument("corio::pool::map: chunksize must be at least 1");
    std::vector<pool_future<std::vector<R>>> futures;
    std::vector<T> chunk;
    chunk.reserve(chunksize);
    auto flush = [&] {
      auto st = detail::make_state<detail::pool_state<std::vector<R>>>();
      if (sink) st->attach_sink(sink, futures.size());
      detail::pool_chunk_runner<F, T> runner{fn};
      submit_state(st.get(), [&](std::vector<std::byte>& out) { detail::encode_call(out, runner, chunk); });
      futures.push_back(pool_future<std::vector<R>>(std::move(st), core_));
      chunk.clear();
    };
    for (auto&& item : items) {
      chunk.push_back(item);
      if (chunk.size() == chunksize) flush();
    }
    if (!chunk.empty()) flush();
    return futures;
  }

  template <class R>
  static generator<R> yield_completed(std::shared_ptr<detail::pool_sink> sink,
                                      std::vector<pool_future<std::vector<R>>> futures) {
    for (std::size_t n = 0; n < futures.size(); ++n) {
      const std::size_t index = sink->pop();
      for (auto&& v : futures[index].get()) co_yield static_cast<R>(std::move(v));
    }
  }

  std::shared_ptr<detail::pool_core> core_;
};

}  // namespace corio
