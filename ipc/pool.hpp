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
//     for (int x : p.imap(square, std::views::iota(0))) ...             // input order, lazy
//     for (int x : p.imap_unordered(square, items)) ...                 // completion order
//     int s = p.apply(square, 3);                                       // blocking: 9
//     p.close();                                      // no more submits
//     p.join();                                       // every task done, workers exited
//
// What fn may be: see ipc/remote_call.hpp (a function pointer, a captureless lambda, or a
// trivially copyable callable capturing plain values; args and results travel through
// corio::codec). fn may be a coroutine returning task<R> for submit (it runs to completion
// on a corio::loop inside the worker); map, starmap, map_async, imap and imap_unordered
// refuse coroutines at compile time (a chunk is a plain loop over its items).
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
// - close(): no more submits (submit, map and the rest then throw std::logic_error).
// - join(): after close() (std::logic_error otherwise): waits until every submitted task
//   has completed and every worker has exited.
// - terminate(): kills the workers now (SIGKILL). Replies already published are still
//   delivered; every other pending future fails with corio::pool_terminated.
// - Destructor: like Python's `with Pool() as p:` (whose __exit__ calls terminate()): a pool
//   not yet joined is terminated. Call close() + join() first to let the tasks finish.
//   Futures may outlive the pool; theirs then fail with pool_terminated.
//
// Initializer, retirement, callbacks
// - pool_options::initializer runs once in each worker as it starts; with
//   max_tasks_per_child = N a worker exits after N tasks (replying to the last first, so
//   nothing is in flight on it) and the collector forks a fresh one into its slot.
// - Callbacks (apply_async / map_async with corio::callbacks) run on the collector thread
//   before their future turns ready (detail/pool_state.hpp).
//
// Errors
// - An exception escaping fn: get() throws corio::remote_error ("std::invalid_argument:
//   bad x": type name and message, see remote_call.hpp), or the exception's own type when
//   it was given to register_remote_exception<E>().
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
#include <deque>
#include <functional>
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
  // Python's initializer(*initargs): runs once in each worker process as it starts
  // (replacements included), before its first task. Unlike a task's fn it may be any
  // callable, capturing anything: the worker gets it as a copy made by fork. Bind initargs
  // with bind_initializer(fn, args...). If it throws, that worker exits and is not
  // replaced; when no worker is left, pending tasks and later submits fail with
  // worker_lost carrying the initializer's error.
  std::function<void()> initializer = {};
  // Python's maxtasksperchild: a worker exits after this many tasks (one chunk of map /
  // imap counts as one task) and a fresh worker (initializer included) takes its slot.
  // 0 = never.
  unsigned max_tasks_per_child = 0;
};

// initializer(initargs...) as a pool_options::initializer; the args are copied.
template <class F, class... Args>
std::function<void()> bind_initializer(F fn, Args... initargs) {
  return [fn = std::move(fn), ... initargs = std::move(initargs)]() mutable { std::invoke(fn, initargs...); };
}

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
    requires(!detail::is_callbacks_v<std::decay_t<F>>)
  [[nodiscard]] pool_future<remote_result_t<F, Args...>> submit(F&& fn, Args&&... args) {
    return submit_then<remote_result_t<F, Args...>>({}, std::forward<F>(fn), std::forward<Args>(args)...);
  }
  // Python's name for submit.
  template <class F, class... Args>
    requires(!detail::is_callbacks_v<std::decay_t<F>>)
  [[nodiscard]] pool_future<remote_result_t<F, Args...>> apply_async(F&& fn, Args&&... args) {
    return submit(std::forward<F>(fn), std::forward<Args>(args)...);
  }
  // Python's apply_async(fn, args, callback=, error_callback=):
  //   p.apply_async(corio::callbacks(on_value, on_error), fn, args...)
  // The callbacks run on the pool's collector thread (for tasks that terminate() or a
  // failed join() ends: on the thread calling it), one at a time, before the future turns
  // ready. They should be quick: while one runs, no other callback runs and worker deaths
  // wait. An exception escaping a callback becomes the future's error. A callback may
  // submit; it must not wait on a future that itself has callbacks.
  template <class OnValue, class OnError, class F, class... Args>
  [[nodiscard]] pool_future<remote_result_t<F, Args...>> apply_async(callbacks<OnValue, OnError> cb, F&& fn,
                                                                     Args&&... args) {
    using R = remote_result_t<F, Args...>;
    return submit_then<R>(detail::callback_continuation<R>(std::move(cb)), std::forward<F>(fn),
                          std::forward<Args>(args)...);
  }
  // Python's apply: submit and wait for the value (rethrows as get() does).
  template <class F, class... Args>
  remote_result_t<F, Args...> apply(F&& fn, Args&&... args) {
    return submit(std::forward<F>(fn), std::forward<Args>(args)...).get();
  }

  // fn(item) for every item, results in input order. Items travel in chunks of
  // `chunksize` (one request runs fn on each item of its chunk). The first failed chunk's
  // exception is rethrown (after every chunk completed).
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F fn, const Range& items, std::size_t chunksize = 1) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, T>;
    check_chunked<R, T, F>(chunksize);
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

  // Python's starmap: fn(args...) for every tuple (or pair) of args, results in input order.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto starmap(F fn, const Range& items, std::size_t chunksize = 1) {
    return map(detail::star_runner<F>{fn}, items, chunksize);
  }

  // Python's map_async: map without waiting; the future's get() returns the vector (or
  // rethrows the first failed chunk's exception). With callbacks (see apply_async), on_value
  // gets the whole vector once, on_error the exception once. The items are copied before
  // this returns.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map_async(F fn, const Range& items, std::size_t chunksize = 1) {
    return map_async(callbacks(no_callback{}), fn, items, chunksize);
  }
  template <class OnValue, class OnError, class F, std::ranges::input_range Range>
  [[nodiscard]] auto map_async(callbacks<OnValue, OnError> cb, F fn, const Range& items, std::size_t chunksize = 1) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, T>;
    check_chunked<R, T, F>(chunksize);
    std::vector<std::vector<T>> chunks(1);
    for (auto&& item : items) {
      if (chunks.back().size() == chunksize) chunks.emplace_back();
      chunks.back().push_back(item);
    }
    if (chunks.back().empty()) chunks.pop_back();
    auto outer = detail::make_state<detail::pool_state<std::vector<R>>>();
    outer->set_continuation(detail::callback_continuation<std::vector<R>>(std::move(cb)));
    auto join = std::make_shared<detail::map_join<R>>(detail::share_state(outer), chunks.size());
    if (chunks.empty()) join->finish();
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      detail::pool_continuation<std::vector<R>> gather = [join, i](auto& value, auto& error) {
        join->chunk_done(i, value, error);
      };
      (void)submit_chunk<R, T>(core_, fn, chunks[i], nullptr, 0, std::move(gather));
    }
    return pool_future<std::vector<R>>(std::move(outer), core_);
  }

  // Python's imap: fn(item) for every item; a corio::generator<R> that yields the results
  // in input order, each as soon as it and those before it are done. Lazy: the range is
  // read as the generator advances, and at most `in_flight` chunks (default: 32 per worker)
  // are submitted and not yet yielded, so an endless range (a generator, an unbounded
  // iota) runs in bounded memory and stopping the iteration stops the submitting (the
  // chunks in flight still run). The range must outlive the iteration unless passed as an
  // rvalue (then the generator owns it). A failed chunk throws out of the iteration.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto imap(F fn, Range&& items, std::size_t chunksize = 1, std::size_t in_flight = 0) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, T>;
    check_chunked<R, T, F>(chunksize);
    if (in_flight == 0) in_flight = 32 * size();  // measured: 8 per worker halves chunksize-1 throughput
    return imap_ordered<R, T>(core_, fn, std::views::all(std::forward<Range>(items)), chunksize, in_flight);
  }

  // fn(item) for every item; returns a corio::generator<R> that yields the results in the
  // order the chunks complete (within a chunk, in input order). Every chunk is submitted before this
  // returns (the items are copied), so the range may die at once. A failed chunk throws
  // its exception out of the generator's next() / iteration.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto imap_unordered(F fn, const Range& items, std::size_t chunksize = 1) {
    using T = std::ranges::range_value_t<Range>;
    using R = detail::map_result_t<F, T>;
    check_chunked<R, T, F>(chunksize);
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
  template <class R, class F, class... Args>
  pool_future<R> submit_then(detail::pool_continuation<R> then, F&& fn, Args&&... args) {
    auto st = detail::make_state<detail::pool_state<R>>();
    if (then) st->set_continuation(std::move(then));
    // Decayed first: a function named without & must travel as its address, not its code.
    std::decay_t<F> callable(std::forward<F>(fn));
    submit_state(*core_, st.get(), [&](std::vector<std::byte>& out) { detail::encode_call(out, callable, args...); });
    return pool_future<R>(std::move(st), core_);
  }

  template <class Encode>
  static void submit_state(detail::pool_core& core, detail::pool_state_base* st, Encode&& encode) {
    detail::pool_submit(core, st, &call_encoder<std::remove_reference_t<Encode>>, &encode);
  }
  template <class Encode>
  static void call_encoder(void* ctx, std::vector<std::byte>& out) {
    (*static_cast<Encode*>(ctx))(out);
  }

  template <class R, class T, class F>
  static void check_chunked(std::size_t chunksize) {
    static_assert(!detail::unwrap_task<std::invoke_result_t<F&, T&>>::coroutine,
                  "corio::pool::map / imap / imap_unordered: fn must not be a coroutine (use submit for coroutines)");
    static_assert(!std::is_void_v<R>, "corio::pool::map / imap / imap_unordered: fn must return a value");
    if (chunksize == 0) throw std::invalid_argument("corio::pool::map: chunksize must be at least 1");
  }

  // One request running fn over `chunk`.
  template <class R, class T, class F>
  static pool_future<std::vector<R>> submit_chunk(const std::shared_ptr<detail::pool_core>& core, F fn,
                                                  std::vector<T>& chunk, const std::shared_ptr<detail::pool_sink>& sink,
                                                  std::size_t sink_index = 0,
                                                  detail::pool_continuation<std::vector<R>> then = {}) {
    auto st = detail::make_state<detail::pool_state<std::vector<R>>>();
    if (sink) st->attach_sink(sink, sink_index);
    if (then) st->set_continuation(std::move(then));
    detail::pool_chunk_runner<F, T> runner{fn};
    submit_state(*core, st.get(), [&](std::vector<std::byte>& out) { detail::encode_call(out, runner, chunk); });
    return pool_future<std::vector<R>>(std::move(st), core);
  }

  template <class R, class T, class F, class Range>
  std::vector<pool_future<std::vector<R>>> submit_chunks(F fn, const Range& items, std::size_t chunksize,
                                                          const std::shared_ptr<detail::pool_sink>& sink) {
    std::vector<pool_future<std::vector<R>>> futures;
    std::vector<T> chunk;
    chunk.reserve(chunksize);
    auto flush = [&] {
      futures.push_back(submit_chunk<R, T>(core_, fn, chunk, sink, futures.size()));
      chunk.clear();
    };
    for (auto&& item : items) {
      chunk.push_back(item);
      if (chunk.size() == chunksize) flush();
    }
    if (!chunk.empty()) flush();
    return futures;
  }

  // imap: a window of at most `in_flight` chunks, refilled from the range as the oldest is
  // yielded (refilled before yielding, so the workers keep busy while the caller works).
  template <class R, class T, class F, class View>
  static generator<R> imap_ordered(std::shared_ptr<detail::pool_core> core, F fn, View items, std::size_t chunksize,
                                   std::size_t in_flight) {
    std::deque<pool_future<std::vector<R>>> window;
    auto it = std::ranges::begin(items);
    const auto end = std::ranges::end(items);
    std::vector<T> chunk;
    auto refill = [&] {
      while (window.size() < in_flight && it != end) {
        chunk.clear();
        for (; chunk.size() < chunksize && it != end; ++it) chunk.push_back(*it);
        window.push_back(submit_chunk<R, T>(core, fn, chunk, nullptr));
      }
    };
    refill();
    while (!window.empty()) {
      std::vector<R> values = window.front().get();
      window.pop_front();
      refill();
      for (auto& v : values) co_yield static_cast<R>(std::move(v));
    }
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
