#pragma once
// watch<T>: the latest value, for any number of observers that care only about the newest
// (tokio's watch): a configuration, a status, a count to display.
//
//     corio::watch<int> level(0);
//     auto rx = level.subscribe();
//     level.send(7);                                    // any thread; never waits
//     while (auto v = co_await rx.changed()) show(*v);   // the newest, once per change
//
// Contract
// - A watch always holds a value: the initial one, then the last sent. get() copies it.
// - send(v) replaces it and wakes every waiting receiver; it never waits. An observer
//   slower than the sender skips the values replaced in between: it sees the newest.
//   send() after close() throws channel_closed.
// - A receiver (subscribe(), from any thread) remembers the version it saw last, at first
//   the one current when it subscribed. changed() waits until a newer one exists, then
//   returns a copy of the newest and marks it seen; it returns an empty optional once the
//   watch is closed and the newest seen. blocking_changed() serves a plain thread;
//   try_changed() never waits (empty: nothing new). A receiver's get() copies the
//   current value without marking it.
// - A changed() cancelled through the coroutine's stop token throws operation_cancelled
//   and marks nothing; it resumes on the receiver's loop either way.
// - Thread-safety: send, close, get and subscribe from any thread; one receiver is read by
//   one consumer at a time. The watch outlives its receivers. One spin_lock guards the
//   value, the version and the waiters (race arguments: detail/sync_waiter.hpp).

#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "channel.hpp"
#include "detail/poll_wait.hpp"
#include "detail/sync_waiter.hpp"

namespace corio {

template <class T>
class watch {
 public:
  explicit watch(T initial) : value_(std::move(initial)) {}
  watch(const watch&) = delete;
  watch& operator=(const watch&) = delete;

  class receiver {
   public:
    receiver(receiver&&) noexcept = default;
    receiver& operator=(receiver&&) noexcept = default;

    using changed_awaiter = detail::poll_awaiter<receiver>;
    // co_await: the newest value once it is newer than the last seen; empty once closed.
    changed_awaiter changed() noexcept { return changed_awaiter(*this, "watch changed"); }
    // From a plain thread (not a loop's: std::logic_error).
    std::optional<T> blocking_changed() { return detail::blocking_poll("watch blocking_changed", *this); }
    // The newest value if it was not seen yet.
    std::optional<T> try_changed() { return detail::try_poll(*this); }
    // The current value; marks nothing.
    T get() const { return w_->get(); }

   private:
    friend watch;
    friend detail::poll_access;

    receiver(watch& w, std::uint64_t seen) noexcept : w_(&w), seen_(seen) {}

    // The poll_wait.hpp protocol.
    struct poll_result {
      bool done = false;  // a newer value, or closed with none
      std::optional<T> value;
    };
    detail::spin_lock& lock() const noexcept { return w_->lock_; }
    detail::wait_list& waiters() const noexcept { return w_->receivers_; }
    bool poll(poll_result& r) {  // under the lock
      if (seen_ != w_->version_) {
        r.value = w_->value_;
        seen_ = w_->version_;
      } else if (!w_->closed_) {
        return false;
      }
      r.done = true;
      return true;
    }
    static std::optional<T> result(poll_result& r) { return std::move(r.value); }

    watch* w_;
    std::uint64_t seen_;  // the version of the value it saw last
  };

  // Any thread.
  receiver subscribe() {
    std::lock_guard guard(lock_);
    return receiver(*this, version_);
  }

  // Replaces the value and wakes every waiting receiver. Throws channel_closed after close().
  void send(T value) {
    detail::with_lock(lock_, [&](detail::wake_batch& wakes) {
      if (closed_) throw channel_closed("watch send: the watch is closed");
      value_ = std::move(value);
      ++version_;
      while (detail::sync_waiter* w = receivers_.pop_front()) wakes.grant(w);
    });
  }
  void close() noexcept {
    detail::with_lock(lock_, [this](detail::wake_batch& wakes) {
      closed_ = true;
      while (detail::sync_waiter* w = receivers_.pop_front()) wakes.grant(w);
    });
  }
  T get() const {
    std::lock_guard guard(lock_);
    return value_;
  }

 private:
  mutable detail::spin_lock lock_;  // guards everything below
  T value_;
  std::uint64_t version_ = 0;  // bumped by every send
  bool closed_ = false;
  detail::wait_list receivers_;
};

}  // namespace corio
