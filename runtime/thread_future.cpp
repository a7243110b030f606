#include "thread_future.hpp"

#include <cstdio>
#include <exception>

#include "../coro/detail/trampoline.hpp"
#include "detail/bounded_spin.hpp"
#include "errors.hpp"

namespace corio::detail {

namespace {

// How long get() / wait() poll before they sleep (see the header).
constexpr std::chrono::microseconds result_spin{50};

void run_callback(const std::function<void()>& fn) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corio::thread_future: exception in a done callback: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "corio::thread_future: exception in a done callback (not a std::exception)\n");
  }
}

}  // namespace

bool future_state_base::try_start() {
  // No lock: this CAS and cancel()'s decide between them who moves pending on. Relaxed:
  // the task's inputs were published by the pool's queue lock, and nothing is published
  // with `running`.
  phase expected = phase::pending;
  return phase_.compare_exchange_strong(expected, phase::running, std::memory_order_relaxed);
}

void future_state_base::finish() {
  phase_.store(phase::finished, std::memory_order_seq_cst);
  if (!listening_.load(std::memory_order_seq_cst)) return;  // see listening_
  std::unique_lock lock(mutex_);
  notify(lock);
}

bool future_state_base::cancel() {
  std::unique_lock lock(mutex_);
  phase seen = phase::pending;
  // Against try_start's CAS: a task that started meanwhile is cancelled as a running one.
  // Decided under mutex_, where listeners register: every one registered so far is
  // notified, and a later one sees the final phase.
  if (phase_.compare_exchange_strong(seen, phase::cancelled, std::memory_order_seq_cst)) {
    notify(lock);
    return true;
  }
  switch (seen) {
    case phase::pending:
      return false;  // unreachable: the CAS failed, so the phase had moved on
    case phase::running:
      lock.unlock();
      stop_.request_stop();
      return false;
    case phase::finished:
      return false;
    case phase::cancelled:
      return true;  // Python: cancelling a cancelled future returns True
  }
  return false;
}

void future_state_base::notify(std::unique_lock<std::mutex>& lock) {
  std::vector<std::function<void()>> callbacks = std::move(callbacks_);
  loop* lp = std::exchange(waiter_loop_, nullptr);
  std::coroutine_handle<> h = std::exchange(waiter_, nullptr);
  lock.unlock();
  ready_cv_.notify_all();
  for (const auto& fn : callbacks) run_callback(fn);
  // Last: once posted, the coroutine may resume, drop its future and finish its loop.
  // This thread touches neither afterwards (the job's own reference keeps *this alive).
  if (h) lp->post([h] { detail::resume(h); });
}

void future_state_base::wait() {
  if (detail::spin_until([this] { return ready(); }, result_spin)) return;
  std::unique_lock lock(mutex_);
  listen();
  ready_cv_.wait(lock, [this] { return ready(); });
}

bool future_state_base::wait_until(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  listen();
  return ready_cv_.wait_until(lock, deadline, [this] { return ready(); });
}

void future_state_base::add_done_callback(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    listen();
    if (!ready()) {
      callbacks_.push_back(std::move(fn));
      return;
    }
  }
  run_callback(fn);
}

bool future_state_base::suspend(std::coroutine_handle<> h, loop& lp) {
  std::lock_guard lock(mutex_);
  listen();
  if (ready()) return false;
  if (waiter_) throw std::logic_error("corio::thread_future: awaited by two coroutines at once");
  waiter_ = h;
  waiter_loop_ = &lp;
  return true;
}

void future_state_base::begin_take(const char* what) {
  // Called once ready (final phase), so no lock: the phase no longer changes.
  if (current() == phase::cancelled)
    throw operation_cancelled(std::string("corio::thread_future::") + what +
                              ": the task was cancelled before it started");
  if (taken_.exchange(true, std::memory_order_relaxed))
    throw std::logic_error(std::string("corio::thread_future::") + what + ": the result was already taken");
}

void ready_sink::push(std::size_t index) {
  {
    std::lock_guard lock(mutex_);
    ready_.push_back(index);
  }
  nonempty_.notify_one();
}

std::size_t ready_sink::pop() {
  std::unique_lock lock(mutex_);
  nonempty_.wait(lock, [this] { return !ready_.empty(); });
  const std::size_t index = ready_.front();
  ready_.pop_front();
  return index;
}

}  // namespace corio::detail
