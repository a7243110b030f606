#pragma once
// task<T>: a lazy, move-only coroutine that produces one T (or an exception) for exactly
// one awaiter.
//
//     corio::task<int> answer() { co_return 42; }
//     corio::task<int> twice() { co_return 2 * co_await answer(); }
//
// Contract
// - Lazy: nothing runs until the task is awaited (or handed to sync_wait / a combinator).
// - Single awaiter: a task may be awaited once; awaiting a moved-from task throws
//   std::logic_error.
// - Symmetric transfer both ways (through detail/trampoline.hpp): starting a child and
//   returning to the parent never nest, so a chain of nested co_await of any depth runs
//   in constant stack, in every build type.
// - An exception escaping the body is stored and rethrown by the co_await in the awaiter.
// - The frame is destroyed by the task object's destructor (or by itself when started
//   detached, see start_detached); frames are recycled through detail::frame_allocator.
// - Cancellation: the task borrows its awaiter's stop token (see stop.hpp).
//
// T may be void or an lvalue reference (task<int&> returns a reference to an object that
// must outlive the co_await).

#include <coroutine>
#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include "detail/frame_allocator.hpp"
#include "detail/trampoline.hpp"
#include "stop.hpp"

namespace corio {

template <class T = void>
class task;

namespace detail {

class task_promise_base : public recycled_frame, public stop_carrier {
 public:
  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) const noexcept {
      auto& p = self.promise();
      if (p.on_detached_exit_) [[unlikely]] {
        // Detached (see start_detached): nobody will read the result, so the frame frees
        // itself and hands any exception to the owner's handler.
        const auto handler = p.on_detached_exit_;
        void* const context = p.detached_context_;
        std::exception_ptr error = p.take_exception();
        self.destroy();
        handler(context, std::move(error));
        return std::noop_coroutine();
      }
      // The awaiter is already suspended; hand control back without growing the stack.
      return detail::transfer_to(p.continuation_);
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }

  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }

  // Called once when a detached task ends, after its frame is gone; `error` is empty when
  // the body returned normally.
  using detached_exit = void (*)(void* context, std::exception_ptr error) noexcept;
  void detach(detached_exit on_exit, void* context) noexcept {
    on_detached_exit_ = on_exit;
    detached_context_ = context;
  }

 private:
  std::coroutine_handle<> continuation_ = std::noop_coroutine();
  detached_exit on_detached_exit_ = nullptr;
  void* detached_context_ = nullptr;
};

template <class T>
class task_promise final : public task_promise_base {
 public:
  task<T> get_return_object() noexcept;
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    result_.template emplace<1>(std::forward<U>(v));
  }

  T& result() & {
    rethrow_if_failed();
    return std::get<1>(result_);
  }
  std::exception_ptr take_exception() noexcept {
    return result_.index() == 2 ? std::move(std::get<2>(result_)) : nullptr;
  }
  T&& result() && {
    rethrow_if_failed();
    return std::move(std::get<1>(result_));
  }

 private:
  void rethrow_if_failed() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
  }
  std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <class T>
class task_promise<T&> final : public task_promise_base {
 public:
  task<T&> get_return_object() noexcept;
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
  void return_value(T& v) noexcept { result_.template emplace<1>(std::addressof(v)); }

  T& result() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
    return *std::get<1>(result_);
  }
  std::exception_ptr take_exception() noexcept {
    return result_.index() == 2 ? std::move(std::get<2>(result_)) : nullptr;
  }

 private:
  std::variant<std::monostate, T*, std::exception_ptr> result_;
};

template <>
class task_promise<void> final : public task_promise_base {
 public:
  task<void> get_return_object() noexcept;
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  void return_void() noexcept {}

  void result() {
    if (exception_) std::rethrow_exception(exception_);
  }
  std::exception_ptr take_exception() noexcept { return std::move(exception_); }

 private:
  std::exception_ptr exception_;
};

}  // namespace detail

template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task() noexcept = default;
  task(task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { destroy(); }

  // True when the task holds a coroutine (it was not moved from or default-constructed).
  bool valid() const noexcept { return static_cast<bool>(handle_); }
  // True once the body has finished (returned or thrown).
  bool done() const noexcept { return !handle_ || handle_.done(); }

  auto operator co_await() & noexcept { return awaiter<false>{handle_}; }
  auto operator co_await() && noexcept { return awaiter<true>{handle_}; }

  // Starts the task with nobody awaiting it (the event loop's spawn). Its frame frees
  // itself at the end and `on_exit(context, error)` runs once; the stop token is the
  // one given, which must outlive the task. The task object is left empty.
  friend void start_detached(task&& t, typename promise_type::detached_exit on_exit,
                             void* context, const std::stop_token& token) {
    auto h = std::exchange(t.handle_, {});
    h.promise().detach(on_exit, context);
    h.promise().set_stop_token(token);
    detail::resume(h);
  }

 private:
  friend promise_type;
  explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}

  void destroy() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }

  template <bool Rvalue>
  struct awaiter {
    std::coroutine_handle<promise_type> handle;

    bool await_ready() const {
      if (!handle) throw std::logic_error("corio::task: co_await on an empty (moved-from) task");
      return handle.done();
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) noexcept {
      handle.promise().set_continuation(awaiting);
      detail::inherit_stop_token(handle.promise(), awaiting);
      return detail::transfer_to(handle);
    }
    decltype(auto) await_resume() {
      if constexpr (std::is_void_v<T>) {
        handle.promise().result();
      } else if constexpr (Rvalue && !std::is_reference_v<T>) {
        return std::move(handle.promise()).result();
      } else {
        return handle.promise().result();
      }
    }
  };

  std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept {
  return task<T&>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<task_promise>::from_promise(*this)};
}
}  // namespace detail

}  // namespace corio
