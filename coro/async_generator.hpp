#pragma once
// async_generator<Y>: a generator whose body may co_await between yields.
//
//     corio::async_generator<int> ticks(int n) {
//       for (int i = 0; i < n; ++i) {
//         co_await corio::sleep_for(1ms);   // any awaitable
//         co_yield i;
//       }
//     }
//     auto g = ticks(3);
//     while (auto v = co_await g.next()) use(*v);
//
// Contract
// - Lazy: the body starts at the first next().
// - co_await g.next() -> std::optional<Y>: the next value, or empty once the body returns.
//   An exception escaping the body is rethrown by that co_await.
// - One next() at a time: awaiting next() while another is pending throws
//   generator_misuse. Control passes between consumer and body by symmetric transfer.
// - Cancellation: the body borrows the stop token of whoever awaits next() (stop.hpp).
// - The generator object owns the frame; destroying it while the body is suspended at a
//   co_yield destroys the frame (locals' destructors run). Destroying it while the body is
//   suspended inside some other co_await is a bug: the pending operation would resume a
//   freed frame. Await the pending next() first.

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

#include "detail/frame_allocator.hpp"
#include "detail/trampoline.hpp"
#include "generator.hpp"
#include "stop.hpp"

namespace corio {

template <class Y>
class async_generator;

namespace detail {

template <class Y>
class async_generator_promise : public recycled_frame, public stop_carrier {
 public:
  async_generator<Y> get_return_object() noexcept;
  std::suspend_always initial_suspend() const noexcept { return {}; }

  // Both a yield and the end hand control straight back to the consumer.
  struct to_consumer {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<async_generator_promise> self) noexcept {
      return transfer_to(std::exchange(self.promise().consumer_, nullptr));
    }
    void await_resume() const noexcept {}
  };
  to_consumer final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  void return_void() noexcept {}

  to_consumer yield_value(Y&& v) noexcept {
    value_ = std::addressof(v);
    return {};
  }
  struct copy_to_consumer : to_consumer {
    Y copy;
    std::coroutine_handle<> await_suspend(std::coroutine_handle<async_generator_promise> self) noexcept {
      self.promise().value_ = &copy;
      return to_consumer::await_suspend(self);
    }
  };
  copy_to_consumer yield_value(const Y& v) noexcept(std::is_nothrow_copy_constructible_v<Y>) {
    return {{}, v};
  }

  std::coroutine_handle<> consumer_;
  Y* value_ = nullptr;
  std::exception_ptr exception_;
};

}  // namespace detail

template <class Y>
class [[nodiscard]] async_generator {
 public:
  using promise_type = detail::async_generator_promise<Y>;
  using value_type = Y;

  async_generator() noexcept = default;
  async_generator(async_generator&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  async_generator& operator=(async_generator&& o) noexcept {
    if (this != &o) {
      reset();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  ~async_generator() { reset(); }

  // Awaitable producing std::optional<Y>.
  auto next() noexcept { return next_awaiter{handle_}; }

  bool done() const noexcept { return !handle_ || handle_.done(); }

 private:
  friend promise_type;
  explicit async_generator(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  void reset() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }

  struct next_awaiter {
    std::coroutine_handle<promise_type> gen;

    bool await_ready() const {
      if (gen && gen.promise().consumer_)
        throw generator_misuse("corio::async_generator::next: another next() is still pending");
      return !gen || gen.done();
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> consumer) noexcept {
      gen.promise().consumer_ = consumer;
      detail::inherit_stop_token(gen.promise(), consumer);
      return detail::transfer_to(gen);
    }
    std::optional<Y> await_resume() {
      if (!gen) return std::nullopt;
      auto& p = gen.promise();
      if (gen.done()) {
        if (p.exception_) std::rethrow_exception(std::exchange(p.exception_, nullptr));
        return std::nullopt;
      }
      return std::optional<Y>{std::move(*p.value_)};
    }
  };

  std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <class Y>
async_generator<Y> async_generator_promise<Y>::get_return_object() noexcept {
  return async_generator<Y>{std::coroutine_handle<async_generator_promise>::from_promise(*this)};
}
}  // namespace detail

}  // namespace corio
