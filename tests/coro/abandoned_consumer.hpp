#pragma once
// abandoned_consumer: a coroutine frame a test destroys while it is suspended, to destroy
// an async_generator whose body is inside an operation with nobody left waiting (the case
// async_generator.hpp orphans). It starts at once and never resumes its awaiter.
//
//     abandoned_consumer c = first_of(make);   // make() -> async_generator; awaits next()
//     c.handle.destroy();                      // destroys the generator mid-operation
#include <coroutine>
#include <exception>

namespace corio_test {

struct abandoned_consumer {
  struct promise_type {
    abandoned_consumer get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

// Makes a generator with make() in its own frame and awaits its first value there.
template <class Make>
abandoned_consumer first_of(Make& make) {
  auto g = make();
  (void)co_await g.next();
}

}  // namespace corio_test
