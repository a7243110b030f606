#pragma once
// test_event: a one-shot event for tests of coro/ (which has no loop). Coroutines that
// await it suspend until set() is called, from this thread or another; set() resumes
// them through corio's trampoline, in the order they began waiting.
#include <corio/coro/detail/trampoline.hpp>

#include <coroutine>
#include <mutex>
#include <vector>

namespace corio_test {

class test_event {
 public:
  struct awaiter {
    test_event* ev;
    bool await_ready() {
      std::lock_guard lock(ev->m_);
      return ev->set_;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      std::lock_guard lock(ev->m_);
      if (ev->set_) return false;
      ev->waiters_.push_back(h);
      return true;
    }
    void await_resume() const noexcept {}
  };
  awaiter operator co_await() noexcept { return {this}; }

  void set() {
    std::vector<std::coroutine_handle<>> ready;
    {
      std::lock_guard lock(m_);
      set_ = true;
      ready.swap(waiters_);
    }
    for (auto h : ready) corio::detail::resume(h);
  }
  std::size_t waiting() {
    std::lock_guard lock(m_);
    return waiters_.size();
  }

 private:
  std::mutex m_;
  bool set_ = false;
  std::vector<std::coroutine_handle<>> waiters_;
};

}  // namespace corio_test
