#pragma once
// sync_wait(awaitable [, stop_token]): runs a task (or any awaitable) from ordinary code
// and blocks the calling thread until it finishes; returns its value or rethrows.
//
//     int v = corio::sync_wait(compute());
//
// The awaitable starts on the calling thread. If it suspends, whichever thread completes
// it (a runtime shard, a thread pool) wakes the caller through a mutex and condition
// variable; nothing spins. The token becomes the root of the ambient stop token
// (stop.hpp), so `sync_wait(t, source.get_token())` lets another thread cancel t.
//
// Never call sync_wait on a thread whose event loop must run for the task to finish: it
// would wait for itself.

#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <utility>

#include "detail/awaitable_traits.hpp"
#include "detail/result_slot.hpp"
#include "detail/runner.hpp"

namespace corio {

template <class A>
  requires detail::awaitable<A>
detail::stored_result_t<A> sync_wait(A&& a, std::stop_token token = {}) {
  using T = detail::stored_result_t<A>;
  struct waiter {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    static std::coroutine_handle<> finish(void* self, std::size_t) noexcept {
      auto* w = static_cast<waiter*>(self);
      // Notify under the lock: the sync_wait frame (and so this waiter) cannot be left
      // until the lock is released, so the notify never touches a dead object.
      std::lock_guard lock(w->m);
      w->done = true;
      w->cv.notify_one();
      return {};
    }
  } w;
  detail::result_slot<T> slot;
  detail::run_into(std::forward<A>(a), slot).start(&waiter::finish, &w, 0, token);
  {
    std::unique_lock lock(w.m);
    w.cv.wait(lock, [&] { return w.done; });
  }
  return slot.take();
}

}  // namespace corio
