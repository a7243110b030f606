#pragma once
// task_group: structured concurrency. Children spawned into a group run concurrently; the
// owner awaits them all with `co_await group.wait()`; the first child to fail asks the
// rest to stop.
//
//     corio::task_group g;
//     for (auto& url : urls) g.spawn(fetch(url));              // task<void>
//     g.spawn([&](std::stop_token st) -> corio::task<> { ... });  // lambda kept alive
//     co_await g.wait();   // every child finished; rethrows the first failure
//
// Contract
// - spawn() starts the child at once on the calling thread; it runs until its first
//   suspension. Children borrow the group's stop token (stop.hpp).
// - The first child to throw has its exception kept and stop requested on the group's
//   token; later failures are dropped. wait() resumes when every child has finished, then
//   rethrows the kept exception. A stop request on the waiter's token is forwarded to the
//   group while it waits.
// - wait() may be awaited again after more spawns; the group is reusable once drained
//   (after a failure its token stays stopped, so new children see the stop at once).
// - spawn() and children finishing are thread-safe (children may finish on any thread);
//   wait() has a single awaiter at a time.
// - Destroying a group that still has running children is a bug (the children may use
//   the scope's locals): like std::thread, it calls std::terminate after printing why.

#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "detail/result_slot.hpp"
#include "detail/runner.hpp"
#include "stop.hpp"
#include "task.hpp"

namespace corio {

class task_group {
 public:
  task_group() = default;
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  ~task_group() {
    if (running_ != 0) {
      std::fprintf(stderr,
                   "corio::task_group destroyed with %zu children still running; "
                   "co_await wait() before leaving the scope\n",
                   running_);
      std::terminate();
    }
  }

  void spawn(task<void> child) {
    add_child();
    owned_run(std::move(child), this).start(&task_group::child_done, this, 0, token_);
  }
  // Spawns `make()` or `make(token)`, where token is the group's stop token. The callable
  // is moved into the child's frame and lives until the child finishes, so a lambda
  // coroutine's captures stay valid: prefer this form to spawn(lambda()).
  template <class F>
    requires std::is_invocable_r_v<task<void>, std::decay_t<F>&, std::stop_token> ||
             std::is_invocable_r_v<task<void>, std::decay_t<F>&>
  void spawn(F&& make) {
    add_child();
    owned_call(std::decay_t<F>(std::forward<F>(make)), this)
        .start(&task_group::child_done, this, 0, token_);
  }

  const std::stop_token& get_stop_token() const noexcept { return token_; }
  void request_stop() noexcept { source_.request_stop(); }
  // Children that have not finished yet.
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return running_;
  }

  [[nodiscard]] auto wait() noexcept { return wait_awaiter{this, std::nullopt}; }

 private:
  struct forwarder {
    task_group* group;
    void operator()() const noexcept { group->request_stop(); }
  };

  struct wait_awaiter {
    task_group* group;
    std::optional<std::stop_callback<forwarder>> forward;

    bool await_ready() const {
      std::lock_guard lock(group->mutex_);
      return group->running_ == 0;
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> awaiter) {
      if constexpr (std::is_base_of_v<detail::stop_carrier, P>) {
        const std::stop_token& outer = awaiter.promise().stop_token();
        if (outer.stop_possible()) forward.emplace(outer, forwarder{group});
      }
      std::lock_guard lock(group->mutex_);
      if (group->running_ == 0) return false;
      group->waiter_ = awaiter;
      return true;
    }
    void await_resume() {
      forward.reset();
      std::exception_ptr e;
      {
        std::lock_guard lock(group->mutex_);
        e = std::exchange(group->first_error_, nullptr);
      }
      if (e) std::rethrow_exception(e);
    }
  };

  void add_child() {
    std::lock_guard lock(mutex_);
    ++running_;
  }

  // Own the child (or its factory) in the runner frame, so the group stores nothing.
  static detail::runner owned_run(task<void> child, task_group* group) {
    try {
      co_await std::move(child);
    } catch (...) {
      group->record_failure(std::current_exception());
    }
  }
  template <class F>
  static detail::runner owned_call(F make, task_group* group) {
    try {
      if constexpr (std::is_invocable_v<F&, std::stop_token>)
        co_await std::invoke(make, group->token_);
      else
        co_await std::invoke(make);
    } catch (...) {
      group->record_failure(std::current_exception());
    }
  }

  void record_failure(std::exception_ptr e) {
    bool first = false;
    {
      std::lock_guard lock(mutex_);
      if (!first_error_) first_error_ = std::move(e), first = true;
    }
    if (first) request_stop();  // outside the lock: stop callbacks may call back into us
  }

  static std::coroutine_handle<> child_done(void* self, std::size_t) noexcept {
    auto* g = static_cast<task_group*>(self);
    std::lock_guard lock(g->mutex_);
    if (--g->running_ == 0 && g->waiter_) return std::exchange(g->waiter_, nullptr);
    return {};
  }

  mutable std::mutex mutex_;
  std::size_t running_ = 0;              // guarded by mutex_
  std::coroutine_handle<> waiter_;       // guarded by mutex_
  std::exception_ptr first_error_;       // guarded by mutex_
  std::stop_source source_;
  std::stop_token token_ = source_.get_token();
};

}  // namespace corio
