#pragma once
// futex_thread: the one helper thread a loop uses to wait on futexes when its kernel has
// no IORING_OP_FUTEX_WAIT (before Linux 6.7, e.g. Debian 12's 6.1), or when the
// futex_wait feature is disabled (kernel_features.hpp).
//
// Ownership and lifetime: a loop creates its futex_thread at its first fallback wait and
// destroys it in ~loop, after every wait has finished, so the thread never outlives the
// loop it posts to (a detached thread per wait used to: heap-use-after-free in
// loop::post). One thread per loop however many waits are pending: waits are entries in a
// list, and the thread sleeps on all their words at once with futex_waitv (Linux 5.16),
// one entry per distinct word. Without futex_waitv (or beyond its 127 free slots) it
// sleeps on its control word with a 1 ms timeout and re-reads the words: no wake-up is
// lost, some arrive up to a millisecond late.
//
// The protocol: a wait is finished by exactly one party, whichever removes its entry from
// `pending_` under `mutex_`: the thread (the word changed, it was woken, the deadline
// passed), a stop callback on any thread (cancel), or the loop in its destructor
// (cancel_all). That party stores the result and posts the waiter's resumption to the
// loop, both still under the mutex, so ~loop's drain never finds a wait that is neither
// listed nor posted. The waiter's entry lives in its suspended frame, which resumes only
// through that post: nobody touches an entry after it left the list.
//
// Who may touch it: add() and cancel_all() on the loop's thread; cancel() from any thread.

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace corio {
class loop;
}

namespace corio::detail {

struct futex_wait_entry {
  std::uint32_t* address = nullptr;
  std::uint32_t expected = 0;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::coroutine_handle<> waiter;
  int result = 0;  // 0: woken or the word changed; -ETIMEDOUT; -ECANCELED
};

class futex_thread {
 public:
  explicit futex_thread(loop& lp);
  ~futex_thread();  // stops and joins the thread; no wait may be pending
  futex_thread(const futex_thread&) = delete;
  futex_thread& operator=(const futex_thread&) = delete;

  // Lists `e` (its waiter suspended): it finishes through a post to the loop. Loop thread.
  void add(futex_wait_entry* e);
  // Finishes `e` with -ECANCELED if it is still listed. Any thread.
  void cancel(futex_wait_entry* e) noexcept;
  // Finishes every listed wait with -ECANCELED (~loop). Loop thread.
  void cancel_all() noexcept;
  // Waits added whose resumption has not run yet. Loop thread.
  std::size_t outstanding() const noexcept { return outstanding_; }

 private:
  void run() noexcept;
  // Under mutex_: removes pending_[i], sets its result, posts its resumption.
  void finish(std::size_t i, int result) noexcept;
  // Under mutex_: moves the control word on and wakes the thread.
  void nudge() noexcept;

  loop& loop_;
  std::mutex mutex_;
  std::vector<futex_wait_entry*> pending_;
  std::uint32_t control_ = 0;  // futex word of the thread's own sleep; changed under mutex_
  bool stopping_ = false;
  std::size_t outstanding_ = 0;
  std::thread thread_;
};

}  // namespace corio::detail
