#pragma once
// thread_event: Python's threading.Event for OS threads, the one threading primitive
// C++20 lacks. The rest of threading's toolkit is in std:: and corio does not wrap it:
//   threading.Lock / RLock      std::mutex / std::recursive_mutex
//   threading.Condition         std::condition_variable (wait(lock, predicate), wait_for)
//   threading.Semaphore         std::counting_semaphore
//   threading.Barrier           std::barrier (arrive_and_wait), std::latch (one-shot)
// corio::event (event.hpp) is the coroutine event (usable from threads too, through
// blocking_wait); this one is lighter when only plain threads wait.
//
// Contract: set() wakes every waiter and keeps the flag set until clear(); wait() returns
// at once while it is set. wait_for(timeout) returns the flag (false: timed out). Every
// member may be called from any thread. The event must outlive its waiters; a waiter
// that returned from wait() may destroy it even while set() is still on its way out.

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace corio {

class thread_event {
 public:
  void set() {
    // Notified under the lock: a waiter cannot return before set() is done with the
    // event, so the waiter may destroy it at once (a common hand-off).
    std::lock_guard lock(mutex_);
    flag_ = true;
    changed_.notify_all();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    flag_ = false;
  }
  [[nodiscard]] bool is_set() const {
    std::lock_guard lock(mutex_);
    return flag_;
  }
  void wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return flag_; });
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return flag_; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool flag_ = false;  // guarded by mutex_
};

}  // namespace corio
