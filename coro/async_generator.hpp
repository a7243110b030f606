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
//   co_yield destroys the frame (locals' destructors run).
// - Destroying it while the body is suspended inside some other co_await (an I/O
//   operation: the consumer's frame was destroyed while it awaited next()) orphans the
//   frame instead, as multishot_accept orphans its request: the operation's completion
//   still finds the frame, the body's stop token is switched to a stopped one (so its next
//   operation fails with operation_cancelled and it unwinds), and the frame frees itself
//   at its next co_yield or at its end, without resuming any consumer. A loop being
//   destroyed cancels the pending operation, so an orphan never outlives its loop.
//   Destroying the generator while another, live coroutine still awaits its next() stays
//   a bug: that coroutine is never resumed.

#include <coroutine>
#include <exception>
#include <optional>
#include <stop_token>
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
      if (self.promise().orphaned_) {
        self.destroy();  // nobody owns the frame or waits for the value
        return std::noop_coroutine();
      }
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

  // Called by the owner's destructor. True when the frame was orphaned (the body is
  // suspended inside an await: the pending operation will resume it), false when the
  // caller must destroy it.
  bool orphan_if_awaiting(std::coroutine_handle<async_generator_promise> self) noexcept {
    if (self.done() || !consumer_) return false;
    orphaned_ = true;
    set_stop_token(stopped_token());
    return true;
  }

  std::coroutine_handle<> consumer_;
  Y* value_ = nullptr;
  std::exception_ptr exception_;
  bool orphaned_ = false;

 private:
  static const std::stop_token& stopped_token() noexcept {
    static const std::stop_token token = [] {
      std::stop_source source;
      source.request_stop();
      return source.get_token();
    }();
    return token;
  }
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
    if (!handle_) return;
    const auto h = std::exchange(handle_, {});
    if (!h.promise().orphan_if_awaiting(h)) h.destroy();
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
