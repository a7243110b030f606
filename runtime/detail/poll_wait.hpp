#pragma once
// poll_awaiter / blocking_poll: a receive that reads its own result from the primitive's
// state, for broadcast and watch. Their waiters are all woken by each change (a grant
// carries no value), and each then polls, under the lock, what is new FOR IT (its own
// position in a broadcast, the version it saw last of a watch).
//
// The Source (a broadcast subscriber, a watch receiver) provides, privately, with
// `friend detail::poll_access;`:
//   struct poll_result { bool done; ... };
//   spin_lock& lock(); wait_list& waiters();
//   bool poll(poll_result&)            under the lock: true when the receive completes
//   static R result(poll_result&)      the value to return (may throw: a lag)
// A grant is made only by a change that stays (a value sent, the close), so the poll
// after a grant always completes; sync_waiter.hpp has the race arguments.

#include <coroutine>
#include <mutex>

#include "sync_waiter.hpp"

namespace corio::detail {

// The one friend a Source names; the templates below reach its protocol through it.
struct poll_access {
  template <class Source>
  using result_t = typename Source::poll_result;

  template <class Source>
  static bool poll_locked(Source& s, result_t<Source>& r) {
    return s.poll(r);
  }
  template <class Source>
  static bool poll(Source& s, result_t<Source>& r) {
    std::lock_guard guard(s.lock());
    return s.poll(r);
  }
  template <class Source>
  static spin_lock& lock(Source& s) noexcept {
    return s.lock();
  }
  template <class Source>
  static wait_list& waiters(Source& s) noexcept {
    return s.waiters();
  }
  template <class Source>
  static auto result(result_t<Source>& r) {
    return Source::result(r);
  }
};

template <class Source>
class [[nodiscard]] poll_awaiter : sync_wait_base {
 public:
  poll_awaiter(Source& s, const char* what) noexcept : s_(s), what_(what) {}
  bool await_ready() { return poll_access::poll(s_, r_); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    return suspend_on(h, poll_access::lock(s_), poll_access::waiters(s_),
                      [this](wake_batch&) { return poll_access::poll_locked(s_, r_); });
  }
  auto await_resume() {
    finish(what_);
    if (!r_.done) poll_access::poll(s_, r_);  // woken by a change: poll what it brought
    return poll_access::result<Source>(r_);
  }

 private:
  Source& s_;
  const char* what_;
  poll_access::result_t<Source> r_;
};

// The same from a plain thread (std::logic_error on a loop's thread).
template <class Source>
auto blocking_poll(const char* what, Source& s) {
  poll_access::result_t<Source> r;
  sync_waiter w;
  block_on(what, poll_access::lock(s), poll_access::waiters(s), w,
           [&](wake_batch&) { return poll_access::poll_locked(s, r); });
  if (!r.done) poll_access::poll(s, r);
  return poll_access::result<Source>(r);
}

// The same without waiting.
template <class Source>
auto try_poll(Source& s) {
  poll_access::result_t<Source> r;
  poll_access::poll(s, r);
  return poll_access::result<Source>(r);
}

}  // namespace corio::detail
