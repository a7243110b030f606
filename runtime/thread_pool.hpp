#pragma once
// thread_pool: Python's concurrent.futures.ThreadPoolExecutor, and offload for blocking
// calls and CPU-heavy work off the loop (asyncio's run_in_executor).
//
//     {
//       corio::thread_pool pool(4);                          // with ThreadPoolExecutor(4) as pool:
//       corio::thread_future<int> f = pool.submit(crunch, 1);   //   f = pool.submit(crunch, 1)
//       int v = f.get();                                      //   v = f.result()
//       for (int r : pool.map(square, items)) use(r);         //   for r in pool.map(square, items)
//     }                                                       // the destructor waits
//
//     std::string text = co_await corio::offload([] { return slow_library_call(); });
//
// Contract
// - submit(fn, args...) queues fn(args...) (FIFO; arguments decay-copied) at once and
//   returns a thread_future (thread_future.hpp): get() from plain code, co_await inside a
//   loop, cancel() while queued. If fn takes a std::stop_token first, it receives the
//   future's, requested by cancel(). Throws std::logic_error after shutdown(). The future
//   may be dropped (fire and forget, as in Python): the task still runs, its exception
//   is then lost. The pool thread destroys fn and the argument copies once the task ran
//   or was found cancelled, before the result is published (not when the future goes).
// - map(fn, items) submits fn(item) for every item at once and returns a generator that
//   yields the results in input order, blocking on each; a task's exception is rethrown
//   when iteration reaches it (Python's Executor.map). Items are copied into the tasks.
// - offload(fn) returns an awaitable that queues fn when awaited: the coroutine suspends
//   and resumes on its own loop's thread with fn's value or exception. No allocation per
//   call beyond loop::post's queue slot: the job lives in the awaiting frame. fn may take
//   a std::stop_token: it receives the awaiting coroutine's token. Awaiting outside a
//   running loop, or after shutdown(), throws std::logic_error. A started job runs to its
//   end (a thread cannot be interrupted); the coroutine resumes after it.
// - corio::offload(fn) uses a process-wide pool of hardware_concurrency() threads
//   created on first use and joined at exit.
// - shutdown(wait = true, cancel_futures = false): no new tasks. cancel_futures cancels
//   every task still queued (its future's get() throws operation_cancelled, an
//   offload awaiter resumes with operation_cancelled); the others run to their end.
//   wait joins the threads; without it they finish the queue and the destructor joins
//   them. Idempotent; never from a pool thread. The destructor is shutdown(): it waits
//   for every queued task (Python's `with` block).
// - Threads are named "<prefix>_<i>" (thread.hpp: current_thread_name(), top -H):
//   prefix "corio-pool-<n>" by default, "corio-offload" for offload's pool.
// - Idle workers: a worker that finds the queue empty polls it for up to 50 us before it
//   sleeps, so a submit shortly after the last one (the usual case in a loop of
//   submit + get) reaches an awake worker without a futex wake-up; only one worker polls
//   at a time, so an idle pool burns at most one core for 50 us after its last task,
//   then nothing. A submit wakes a sleeping worker only when none is polling. A worker
//   that finishes a task claims the poll before it publishes the result (when no other
//   worker polls), so the next submit of a submit-then-get loop, which the result
//   releases, finds it about to poll instead of waking a second worker (a futex
//   wake-up, and two workers contending for one task).
// - Thread-safety: submit/map/offload from any thread, pool threads included; shutdown()
//   from one thread at a time.
// - The loop that awaits a job must outlive it (it does whenever the awaiting coroutine
//   is awaited to its end: the coroutine is suspended until the job has posted back).

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../coro/detail/result_slot.hpp"
#include "../coro/detail/trampoline.hpp"
#include "../coro/generator.hpp"
#include "../coro/stop.hpp"
#include "errors.hpp"
#include "loop.hpp"
#include "thread_future.hpp"

namespace corio {

class thread_pool;

namespace detail {

// One queued job, linked intrusively into the pool's FIFO. run(self, false) runs it;
// run(self, true) tells it that shutdown(cancel_futures) dropped it unrun. Either way it
// is the job's last touch by the pool.
struct pool_job {
  pool_job* next = nullptr;
  void (*run)(pool_job* self, bool cancelled) noexcept = nullptr;
};

template <class F>
using offload_result_t =
    typename std::conditional_t<std::is_invocable_v<F&, std::stop_token>,
                                std::invoke_result<F&, std::stop_token>, std::invoke_result<F&>>::type;

// fn(args...), or fn(token, args...) when fn takes a stop token first.
template <class F, class... Args>
using submit_result_t =
    typename std::conditional_t<std::is_invocable_v<F&, std::stop_token, Args&...>,
                                std::invoke_result<F&, std::stop_token, Args&...>,
                                std::invoke_result<F&, Args&...>>::type;

[[noreturn]] void throw_dropped_by_shutdown();

// Called by a job on a pool thread once its work is done and just before it publishes
// the result (see "Idle workers"): the worker takes the poll token then, so the submit
// that the result provokes finds a worker about to poll rather than one to wake up.
// Does nothing on a thread that is not a pool worker.
void before_publish() noexcept;

// A submitted task and its future's state in one allocation (submit's make_shared; a
// task costs one malloc). The future holds `state` through an aliasing shared_ptr; the
// queue's reference is `queued`, the job's pointer to itself, moved out when the job runs
// or is dropped (so the job lives while queued even if every future was dropped). The
// callable and its arguments go as soon as the task ran or was cancelled, before the
// result is published, not when the last future does: what they hold is released as
// Python's executor releases it.
template <class R, class F, class... Args>
struct future_job final : pool_job {
  static constexpr bool takes_stop = std::is_invocable_v<F&, std::stop_token, Args&...>;

  future_job(F f, std::tuple<Args...> a) : call(std::in_place, std::move(f), std::move(a)) {
    run = &run_job;
    if constexpr (takes_stop) state.enable_stop();
  }

  static void run_job(pool_job* job, bool cancelled) noexcept {
    auto* self = static_cast<future_job*>(job);
    const std::shared_ptr<future_job> keep = std::move(self->queued);  // the queue's reference
    future_state<R>& st = self->state;
    if (cancelled) {
      self->call.reset();
      st.cancel();
      return;
    }
    if (!st.try_start()) {  // cancelled while queued
      self->call.reset();
      return;
    }
    try {
      if constexpr (std::is_void_v<R>) {
        self->invoke(st.stop_token());
        st.result.set_value();
      } else {
        st.result.set_value(self->invoke(st.stop_token()));
      }
    } catch (...) {
      st.result.set_exception(std::current_exception());
    }
    self->call.reset();
    before_publish();
    st.finish();
  }

  decltype(auto) invoke(std::stop_token token) {
    bound_call& c = *call;
    if constexpr (takes_stop)
      return std::apply([&](Args&... a) -> decltype(auto) { return std::invoke(c.fn, std::move(token), a...); }, c.args);
    else
      return std::apply([&](Args&... a) -> decltype(auto) { return std::invoke(c.fn, a...); }, c.args);
  }

  struct bound_call {
    bound_call(F f, std::tuple<Args...> a) : fn(std::move(f)), args(std::move(a)) {}
    F fn;
    std::tuple<Args...> args;
  };

  future_state<R> state;
  std::optional<bound_call> call;
  std::shared_ptr<future_job> queued;
};

}  // namespace detail

template <class F>
class [[nodiscard]] offload_awaiter;

class thread_pool {
 public:
  // Starts `threads` threads (at least one); by default one per hardware thread.
  explicit thread_pool(std::size_t threads = default_size(), std::string thread_name_prefix = {});
  // shutdown(): waits for every queued task.
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  // Queues fn(args...) now; see the contract.
  template <class F, class... Args>
  thread_future<detail::submit_result_t<std::decay_t<F>, std::decay_t<Args>...>> submit(
      F&& fn, Args&&... args) {
    using R = detail::submit_result_t<std::decay_t<F>, std::decay_t<Args>...>;
    using job = detail::future_job<R, std::decay_t<F>, std::decay_t<Args>...>;
    auto owned = std::make_shared<job>(std::forward<F>(fn),
                                       std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...));
    owned->queued = owned;
    try {
      enqueue(owned.get());
    } catch (...) {
      owned->queued.reset();  // never queued: break the self-reference
      throw;
    }
    detail::future_state<R>* state = &owned->state;
    return thread_future<R>(std::shared_ptr<detail::future_state<R>>(std::move(owned), state));
  }

  // fn(item) for every item, results in input order; see the contract.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F fn, const Range& items) {
    using R = detail::submit_result_t<F, std::ranges::range_value_t<Range>>;
    static_assert(!std::is_void_v<R>, "corio::thread_pool::map: fn must return a value (use submit)");
    std::vector<thread_future<R>> futures;
    for (const auto& item : items) futures.push_back(submit(fn, item));
    return yield_in_order(std::move(futures));
  }

  // An awaitable that runs fn() (or fn(stop_token)) on a pool thread; see the contract.
  template <class F>
  offload_awaiter<std::decay_t<F>> offload(F&& fn) {
    return offload_awaiter<std::decay_t<F>>(*this, std::forward<F>(fn));
  }

  // See the contract. Must not be called from a pool thread.
  void shutdown(bool wait = true, bool cancel_futures = false);

  std::size_t size() const noexcept { return threads_.size(); }
  static std::size_t default_size() noexcept {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : n;
  }

  // For awaiters: queues `job`. Throws std::logic_error after shutdown().
  void enqueue(detail::pool_job* job);

 private:
  friend void detail::before_publish() noexcept;

  void work(std::string name);
  // Polls for work (the caller holds spinning_ and mutex_ through `lock`), then gives
  // spinning_ back and re-takes mutex_ for the re-check ("Idle workers").
  void poll_then_release(std::unique_lock<std::mutex>& lock) noexcept;
  template <class R>
  static generator<R> yield_in_order(std::vector<thread_future<R>> futures) {
    for (auto& f : futures) co_yield f.get();
  }

  // Under mutex_: pops the head job, or returns nullptr. Sets wake_more when jobs remain
  // that no awake worker is about to take.
  detail::pool_job* pop_locked(bool& wake_more) noexcept;
  // Under mutex_: moves every job submitted since the last call from incoming_ to the end
  // of the FIFO, oldest first, leaving `leave` in incoming_: nullptr, or closed_mark
  // (thread_pool.cpp) when shutdown closes it to submits in the same exchange.
  void take_incoming_locked(detail::pool_job* leave = nullptr) noexcept;
  // Under mutex_: whether a new job needs a sleeping worker woken (see "Idle workers").
  bool needs_wake_locked() const noexcept;
  // Polls for work for at most idle_spin (thread_pool.cpp). Called without mutex_, by the
  // one worker that set spinning_.
  void spin_for_work() noexcept;

  // Two sides, so that a submitter and the workers share no lock and few cache lines: a
  // submit pushes its job onto incoming_, a lock-free stack, with one CAS (no mutex_);
  // the workers, under mutex_, move the whole stack at once into the FIFO (head_, tail_)
  // and pop from there. A burst of submits thus costs the workers one exchange on
  // incoming_'s line per burst rather than a lock handed back and forth per job.
  //
  // Why no submit is left unserved while a worker sleeps ("Idle workers"): a submit
  // pushes, then reads sleeping_; a worker about to sleep counts itself in sleeping_
  // (under mutex_), then reads incoming_. Both seq_cst (a Dekker pair), so either the
  // submit sees the sleeper and wakes one, or the worker sees the job and does not
  // sleep. The wake-up takes mutex_ before it notifies: a worker that counted itself
  // holds mutex_ until ready_.wait releases it, so the notify cannot fall between its
  // check and its wait. A submit does not wake anyone while spinning_ is set: then the
  // spinner S either sees the job while it polls, or stops polling: it clears spinning_
  // (seq_cst) and only then re-checks incoming_ under mutex_. The submit read spinning_
  // set after its push, so S's clear, and S's re-check, come after that push: S finds
  // the job. A worker that pops a job and leaves others queued passes the wake-up on
  // (pop_locked), since the submits of those may have relied on it while it was the
  // spinner. A worker may also take spinning_ outside mutex_, by CAS, as it finishes a
  // job (before_publish); its next step is the same re-check under mutex_: it gives
  // spinning_ back there if it finds a job (so pop_locked's wake-up decision sees it
  // clear), and polls otherwise.
  //
  // Shutdown against a racing submit: shutdown's last take from incoming_ leaves a mark
  // there (closed_mark) in the same exchange, and a submit's CAS never pushes onto the
  // mark (it throws). So every submit either lands before that take and runs (or is
  // cancelled by cancel_futures), or throws; none is left behind in a closed pool.

  // The submitters' side: one line, written by every submit.
  alignas(64) std::atomic<detail::pool_job*> incoming_{nullptr};  // newest first
  // Written by workers under mutex_ as they sleep and wake, read by every submit.
  alignas(64) std::atomic<std::size_t> sleeping_{0};

  // The workers' side.
  alignas(64) std::mutex mutex_;
  std::condition_variable ready_;
  detail::pool_job* head_ = nullptr;  // the FIFO; guarded by mutex_
  detail::pool_job* tail_ = nullptr;
  bool closed_ = false;  // shutdown: no submit can push any more; guarded by mutex_
  // head_ != nullptr || closed_, for spinners to poll without the lock (they poll
  // incoming_ too). Written under mutex_; relaxed: a spinner that sees it set takes
  // mutex_ before it touches the queue. A line of its own, away from mutex_'s.
  alignas(64) std::atomic<bool> has_work_{false};
  // 1 while a worker spins for work, or has claimed to (at most one does: the cores are
  // few). Read by whoever decides to wake a sleeper; see "Idle workers".
  alignas(64) std::atomic<unsigned> spinning_{0};
  std::vector<std::thread> threads_;
};

// The process-wide pool offload() uses (created on first call).
thread_pool& default_thread_pool();

template <class F>
class [[nodiscard]] offload_awaiter : detail::pool_job {
 public:
  using result_type = detail::offload_result_t<F>;

  offload_awaiter(thread_pool& pool, F fn) : pool_(&pool), fn_(std::move(fn)) { run = &run_job; }
  // Movable until awaited (so combinators can hold it); a queued job is never moved.
  offload_awaiter(offload_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
      : pool_(o.pool_), fn_(std::move(o.fn_)) {
    run = &run_job;
  }
  offload_awaiter& operator=(offload_awaiter&&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    loop_ = loop::current();
    if (loop_ == nullptr)
      throw std::logic_error(
          "corio::offload: awaited outside a running loop (call it from a coroutine run by corio::loop)");
    if constexpr (std::is_base_of_v<detail::stop_carrier, P>) token_ = h.promise().stop_token();
    waiter_ = h;
    pool_->enqueue(this);
  }

  result_type await_resume() { return result_.take(); }

 private:
  // On a pool thread. Everything written here happens-before the resume: loop::post
  // publishes under the loop's queue mutex, which the loop takes to run the closure.
  static void run_job(detail::pool_job* job, bool cancelled) noexcept {
    auto* self = static_cast<offload_awaiter*>(job);
    try {
      if (cancelled) detail::throw_dropped_by_shutdown();
      if constexpr (std::is_void_v<result_type>) {
        self->invoke();
        self->result_.set_value();
      } else {
        self->result_.set_value(self->invoke());
      }
    } catch (...) {
      self->result_.set_exception(std::current_exception());
    }
    if (!cancelled) detail::before_publish();
    // After post() this thread touches neither the awaiter nor the loop: the closure may
    // resume the coroutine, finish it and destroy the loop as soon as post() releases the
    // loop's queue lock (post() wakes the loop before that, see loop::post).
    self->loop_->post([self] { detail::resume(self->waiter_); });
  }

  decltype(auto) invoke() {
    if constexpr (std::is_invocable_v<F&, std::stop_token>)
      return fn_(token_);
    else
      return fn_();
  }

  thread_pool* pool_;
  F fn_;
  loop* loop_ = nullptr;
  std::coroutine_handle<> waiter_;
  std::stop_token token_;
  detail::result_slot<result_type> result_;
};

// co_await offload(fn): runs fn on the default pool; see the contract.
template <class F>
auto offload(F&& fn) {
  return default_thread_pool().offload(std::forward<F>(fn));
}

}  // namespace corio
