#pragma once
// thread_future<R>: the result of thread_pool::submit (Python's concurrent.futures.Future
// for a ThreadPoolExecutor), and as_completed() over a set of them.
//
//     corio::thread_pool pool(4);
//     corio::thread_future<int> f = pool.submit(crunch, 42);   // queued at once
//     int v = f.get();                       // blocks this thread (Python: f.result())
//     int w = co_await pool.submit(crunch, 7);   // inside a loop: suspends the coroutine
//
// Contract
// - Move-only. get() once: it blocks until the task finished, then returns its value or
//   rethrows its exception; operation_cancelled (runtime/errors.hpp) when the task was
//   cancelled before it started; std::logic_error when called a second time.
// - wait() / wait_for(timeout) block without consuming the result; wait_for returns
//   ready(). ready() (Python's done()) is true once finished or cancelled.
// - get() and wait() poll for up to 50 us before they sleep (a task of a few
//   microseconds then costs no futex sleep or wake-up on either side; thread_pool.hpp,
//   "Idle workers"); a longer task costs the waiter those 50 us of CPU, then a sleep.
// - cancel() (Python's cancel()): true when the task had not started, which then never
//   runs (cancelled() is true, waiters wake, get() throws operation_cancelled). False
//   when it is running or finished; a running task whose function takes a
//   std::stop_token sees stop requested, so it may give up early (Python cannot do this).
// - add_done_callback(fn): fn() runs once the future is ready (finished or cancelled), on
//   the thread that made it ready, or at once on the caller's thread when it already is.
//   An exception escaping fn is printed to stderr and dropped (Python logs it too).
//   Waiters (get, wait, co_await) may wake before the callbacks have run, as in Python.
// - co_await inside a running corio loop suspends the coroutine, not the thread; it
//   resumes on its own loop (through loop::post). Outside a loop it throws
//   std::logic_error, as does awaiting one future from two coroutines. The awaiting loop
//   must outlive the wait (it does while the coroutine is awaited to its end).
// - Every member may be called from any thread, but get() and co_await consume the
//   result: one consumer.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "../coro/detail/result_slot.hpp"
#include "../coro/generator.hpp"
#include "loop.hpp"

namespace corio {

namespace detail {

// What the future and the job running its task share. Phases only move forward:
// pending -> running -> finished, or pending -> cancelled.
class future_state_base {
 public:
  enum class phase : unsigned char { pending, running, finished, cancelled };

  // On a pool thread: true when the task may run (pending -> running).
  bool try_start();
  // After the task stored its value or exception: running -> finished.
  void finish();
  // pending -> cancelled; see thread_future::cancel.
  bool cancel();

  [[nodiscard]] phase current() const noexcept {
    // Acquire: pairs with finish()'s store (seq_cst, so release too); a reader seeing
    // finished also sees the result the task stored before it.
    return phase_.load(std::memory_order_acquire);
  }
  [[nodiscard]] bool ready() const noexcept {
    const phase p = current();
    return p == phase::finished || p == phase::cancelled;
  }
  void wait();
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  void add_done_callback(std::function<void()> fn);
  // Registers a coroutine to resume on `lp` when ready; false when already ready.
  bool suspend(std::coroutine_handle<> h, loop& lp);
  [[nodiscard]] std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  // Gives the task a stop source of its own (an allocation, so only for a task whose
  // function takes a std::stop_token; the others get a token that never stops). Before
  // the task is queued.
  void enable_stop() { stop_ = std::stop_source(); }

  // Consumes the result once; throws for a cancelled task or a second call.
  void begin_take(const char* what);

 private:
  // With `lock` held and the final phase stored: (unlocked) wakes waiters, runs
  // callbacks, resumes the awaiting coroutine.
  void notify(std::unique_lock<std::mutex>& lock);
  // Under mutex_, before a listener (a sleeping wait, a callback, an awaiting coroutine)
  // checks ready() and registers: see listening_.
  void listen() noexcept { listening_.store(true, std::memory_order_seq_cst); }

  mutable std::mutex mutex_;
  std::condition_variable ready_cv_;
  // Moved on by the CAS of try_start / cancel, by cancel() under mutex_, and by finish()
  // without it.
  std::atomic<phase> phase_{phase::pending};
  // Set once anyone listens. finish() stores the final phase, then reads this, without
  // mutex_: a task nobody waits on, sleeping or with a callback, finishes without taking
  // the lock (the usual submit-then-get whose get() polls). Dekker pair, seq_cst on both
  // sides: a listener stores it, then reads the phase (under mutex_); so either finish()
  // sees it set and takes mutex_ to notify (after the listener registered, which it does
  // in the same section), or the listener sees the final phase and does not wait.
  std::atomic<bool> listening_{false};
  std::atomic<bool> taken_{false};  // set by the one get() / co_await that consumes
  std::vector<std::function<void()>> callbacks_;
  loop* waiter_loop_ = nullptr;
  std::coroutine_handle<> waiter_;
  std::stop_source stop_{std::nostopstate};
};

template <class R>
class future_state : public future_state_base {
 public:
  detail::result_slot<R> result;
};

// Collects the indices of futures as they become ready, for as_completed.
class ready_sink {
 public:
  void push(std::size_t index);
  std::size_t pop();

 private:
  std::mutex mutex_;
  std::condition_variable nonempty_;
  std::deque<std::size_t> ready_;
};

}  // namespace detail

template <class R>
class thread_future {
 public:
  thread_future() = default;
  explicit thread_future(std::shared_ptr<detail::future_state<R>> state) : state_(std::move(state)) {}

  R get() {
    require_valid("get");
    state_->wait();
    state_->begin_take("get");
    return state_->result.take();
  }
  void wait() {
    require_valid("wait");
    state_->wait();
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    require_valid("wait_for");
    return state_->wait_until(std::chrono::steady_clock::now() +
                              std::chrono::ceil<std::chrono::steady_clock::duration>(timeout));
  }
  [[nodiscard]] bool ready() const noexcept { return state_ && state_->ready(); }
  [[nodiscard]] bool running() const noexcept {
    return state_ && state_->current() == detail::future_state_base::phase::running;
  }
  [[nodiscard]] bool cancelled() const noexcept {
    return state_ && state_->current() == detail::future_state_base::phase::cancelled;
  }
  bool cancel() {
    require_valid("cancel");
    return state_->cancel();
  }
  void add_done_callback(std::function<void()> fn) {
    require_valid("add_done_callback");
    state_->add_done_callback(std::move(fn));
  }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  auto operator co_await() {
    struct awaiter {
      detail::future_state<R>* st;
      bool await_ready() const noexcept { return st->ready(); }
      bool await_suspend(std::coroutine_handle<> h) { return st->suspend(h, loop::this_loop()); }
      R await_resume() {
        st->begin_take("co_await");
        return st->result.take();
      }
    };
    require_valid("co_await");
    return awaiter{state_.get()};
  }

 private:
  void require_valid(const char* what) const {
    if (!state_) throw std::logic_error(std::string("corio::thread_future::") + what + ": no state (moved from)");
  }

  std::shared_ptr<detail::future_state<R>> state_;
};

// Python's concurrent.futures.as_completed: yields a pointer to each future of `futures`
// as it becomes ready (finished or cancelled), each once, blocking between yields.
// `futures` must stay alive and unmoved while the generator is iterated.
template <class R>
generator<thread_future<R>*> as_completed(std::vector<thread_future<R>>& futures) {
  auto sink = std::make_shared<detail::ready_sink>();
  for (std::size_t i = 0; i < futures.size(); ++i) futures[i].add_done_callback([sink, i] { sink->push(i); });
  for (std::size_t n = 0; n < futures.size(); ++n) co_yield &futures[sink->pop()];
}

}  // namespace corio
