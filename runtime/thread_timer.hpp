#pragma once
// thread_timer: Python's threading.Timer. A corio::thread that waits `interval`, then
// calls fn(args...) unless cancel() came first.
//
//     corio::thread_timer t(30s, [] { std::puts("hello, world"); });
//     t.start();
//     t.cancel();   // before 30 s: "hello, world" is never printed
//
// Contract: as corio::thread (start once, join, name "Thread-N" or given with
// set_current_thread_name inside fn). cancel() may be called from any thread, any number
// of times, before or after start(); once the function started, cancel() does not stop
// it. The destructor cancels, then joins: a timer going out of scope never fires later.

#include <chrono>
#include <functional>
#include <utility>

#include "thread.hpp"
#include "thread_event.hpp"

namespace corio {

class thread_timer : public thread {
 public:
  template <class Rep, class Period, class F, class... Args>
    requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
  thread_timer(std::chrono::duration<Rep, Period> interval, F&& fn, Args&&... args)
      : interval_(std::chrono::ceil<std::chrono::nanoseconds>(interval)),
        fn_(bind(std::forward<F>(fn), std::forward<Args>(args)...)) {}
  ~thread_timer() override {
    cancel();
    if (joinable()) join();
  }

  // Python's Timer.cancel(): the function will not run if it has not started yet.
  void cancel() { cancelled_.set(); }

 protected:
  void run() override {
    if (!cancelled_.wait_for(interval_)) fn_();
  }

 private:
  std::chrono::nanoseconds interval_;
  std::function<void()> fn_;
  thread_event cancelled_;
};

}  // namespace corio
