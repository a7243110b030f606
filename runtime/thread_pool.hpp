#pragma once
// thread_pool and offload: blocking calls and CPU-heavy work off the loop (Python's
// ThreadPoolExecutor, asyncio's run_in_executor).
//
//     std::string text = co_await corio::offload([] { return slow_library_call(); });
//
//     corio::thread_pool pool(4);
//     int n = co_await pool.submit([] { return crunch(); });
//
// Contract
// - submit(fn) / offload(fn) return an awaitable. Awaiting it queues fn (FIFO) for a pool
//   thread; the awaiting coroutine suspends, and resumes on its own loop's thread (through
//   loop::post) with fn's value, or fn's exception rethrown. The loop keeps running other
//   coroutines meanwhile. No allocation per call beyond loop::post's queue slot: the job
//   lives in the awaiting frame.
// - Awaiting outside a running loop throws std::logic_error, as does awaiting a submit()
//   of a pool that was shut down.
// - fn may take a std::stop_token: it receives the awaiting coroutine's token, so it can
//   give up early. The wait itself is not cancellable: a job that started runs to its end
//   (a thread cannot be interrupted), and the coroutine resumes after it.
// - offload() uses a process-wide pool of hardware_concurrency() threads created on first
//   use and joined at exit.
// - Thread-safety: submit() may be called, and its awaitable awaited, from any loop
//   thread. shutdown() (and the destructor) lets the pool finish every queued job, then
//   joins its threads; call it from one thread, never from a pool thread.
// - The loop that awaits a job must outlive it (it does whenever the awaiting coroutine
//   is awaited to its end: the coroutine is suspended until the job has posted back).

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../coro/detail/result_slot.hpp"
#include "../coro/detail/trampoline.hpp"
#include "../coro/stop.hpp"
#include "loop.hpp"

namespace corio {

class thread_pool;

namespace detail {

// One queued job, linked intrusively into the pool's FIFO.
struct pool_job {
  pool_job* next = nullptr;
  void (*run)(pool_job* self) noexcept = nullptr;
};

template <class F>
using offload_result_t =
    typename std::conditional_t<std::is_invocable_v<F&, std::stop_token>,
                                std::invoke_result<F&, std::stop_token>, std::invoke_result<F&>>::type;

}  // namespace detail

template <class F>
class [[nodiscard]] offload_awaiter;

class thread_pool {
 public:
  // Starts `threads` threads (at least one); by default one per hardware thread.
  explicit thread_pool(std::size_t threads = default_size());
  // shutdown().
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  // An awaitable that runs fn() (or fn(stop_token)) on a pool thread; see the contract.
  template <class F>
  offload_awaiter<std::decay_t<F>> submit(F&& fn) {
    return offload_awaiter<std::decay_t<F>>(*this, std::forward<F>(fn));
  }

  // Stops accepting jobs, finishes the queued ones, joins the threads. Idempotent; must
  // not be called from a pool thread.
  void shutdown();

  std::size_t size() const noexcept { return threads_.size(); }
  static std::size_t default_size() noexcept {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : n;
  }

  // For awaiters: queues `job`. Throws std::logic_error after shutdown().
  void enqueue(detail::pool_job* job);

 private:
  void work();

  std::mutex mutex_;
  std::condition_variable ready_;
  detail::pool_job* head_ = nullptr;  // guarded by mutex_
  detail::pool_job* tail_ = nullptr;
  bool stopping_ = false;
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
  static void run_job(detail::pool_job* job) noexcept {
    auto* self = static_cast<offload_awaiter*>(job);
    try {
      if constexpr (std::is_void_v<result_type>) {
        self->invoke();
        self->result_.set_value();
      } else {
        self->result_.set_value(self->invoke());
      }
    } catch (...) {
      self->result_.set_exception(std::current_exception());
    }
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
  return default_thread_pool().submit(std::forward<F>(fn));
}

}  // namespace corio
