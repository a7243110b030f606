#pragma once
// runner: the small coroutine the combinators (sync_wait, when_all, when_any, task_group)
// wrap around each child. It awaits the child, records the outcome in a result_slot, then
// destroys its own frame and calls the owner's completion hook.
//
// Order at the end matters: the frame (and the child task it may own) is destroyed
// *before* the hook runs, because the hook may wake a thread that then frees the slot's
// owner and returns to user code; no destructor of the child may run after that.

#include <coroutine>
#include <exception>
#include <stop_token>
#include <utility>

#include "frame_allocator.hpp"
#include "result_slot.hpp"
#include "trampoline.hpp"
#include "../stop.hpp"

namespace corio::detail {

// Called once per child, after its frame is gone. Returns the coroutine to continue with,
// or a null handle when there is none.
using completion_hook = std::coroutine_handle<> (*)(void* owner, std::size_t index) noexcept;

class [[nodiscard]] runner {
 public:
  struct promise_type : recycled_frame, stop_carrier {
    runner get_return_object() noexcept {
      return runner{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        const completion_hook hook = self.promise().hook;
        void* const owner = self.promise().owner;
        const std::size_t index = self.promise().index;
        self.destroy();
        const std::coroutine_handle<> next = hook(owner, index);
        return next ? transfer_to(next) : std::noop_coroutine();
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    // The body catches everything into its slot; reaching here is a corio bug.
    void unhandled_exception() noexcept { std::terminate(); }

    completion_hook hook = nullptr;
    void* owner = nullptr;
    std::size_t index = 0;
  };

  runner(runner&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  runner(const runner&) = delete;
  ~runner() {
    if (handle_) handle_.destroy();
  }

  // Runs the child until its first suspension. From here on the frame owns itself.
  void start(completion_hook hook, void* owner, std::size_t index,
             const std::stop_token& token) noexcept {
    auto& p = handle_.promise();
    p.hook = hook;
    p.owner = owner;
    p.index = index;
    p.set_stop_token(token);
    detail::resume(std::exchange(handle_, {}));
  }

 private:
  explicit runner(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

// Awaits `a` and stores its value or exception in `slot`. The frame keeps only a
// reference: the caller owns the awaitable and keeps it alive until the hook runs.
template <class T, class A>
runner run_into(A&& a, result_slot<T>& slot) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::forward<A>(a);
      slot.set_value();
    } else {
      slot.set_value(co_await std::forward<A>(a));
    }
  } catch (...) {
    slot.set_exception(std::current_exception());
  }
}

}  // namespace corio::detail
