#pragma once
// broadcast<T>: every value to every subscriber, bounded, and a sender that never waits
// (tokio's broadcast). For fan-out of events, prices, configuration changes.
//
//     corio::broadcast<std::string> news(64);   // keeps the last 64 values
//     auto sub = news.subscribe();               // sees the values sent from now on
//     news.send("hello");                        // any thread; never waits
//     for (;;) {
//       try {
//         auto v = co_await sub.receive();       // empty once closed and read to the end
//         if (!v) break;
//         use(*v);
//       } catch (const corio::broadcast_lagged& e) {
//         note(e.missed());                      // a slow subscriber skipped the oldest
//       }
//     }
//
// Contract
// - The broadcast keeps the last capacity() values (capacity >= 1, else
//   std::invalid_argument). send() stores a copy of each value there, overwriting the
//   oldest, and wakes every waiting subscriber; it never waits for a slow one. send()
//   after close() throws channel_closed.
// - A subscriber (subscribe(), from any thread) receives, in order, a copy of every value
//   sent after it subscribed. One that fell more than capacity() values behind gets
//   broadcast_lagged from its next receive, with missed() = the number of values it lost;
//   its position then moves to the oldest value kept, so the next receive continues
//   there (as tokio's RecvError::Lagged).
// - close(): no more values; each subscriber still receives what it has not read of the
//   values kept, then an empty optional.
// - co_await receive() resumes on the subscriber's loop; blocking_receive() serves a
//   plain thread, try_receive() never waits (empty optional: nothing new). A receive
//   cancelled through the coroutine's stop token throws operation_cancelled and does not
//   move the subscriber's position.
// - Thread-safety: send, close and subscribe from any thread. One subscriber is read by
//   one consumer at a time (each consumer subscribes). The broadcast outlives its
//   subscribers. The race arguments are those of detail/sync_waiter.hpp: one spin_lock
//   guards the ring, the sequence numbers and the waiters.
// - Cost: a send copies nothing per subscriber; each receive copies the value out under
//   the lock. No allocation after construction.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "channel.hpp"
#include "detail/poll_wait.hpp"
#include "detail/sync_waiter.hpp"

namespace corio {

// A subscriber's receive after it fell behind by more than the broadcast keeps.
class broadcast_lagged : public std::runtime_error {
 public:
  explicit broadcast_lagged(std::uint64_t missed)
      : std::runtime_error("broadcast receive: lagged behind, " + std::to_string(missed) + " values lost"),
        missed_(missed) {}
  std::uint64_t missed() const noexcept { return missed_; }

 private:
  std::uint64_t missed_;
};

template <class T>
class broadcast {
 public:
  explicit broadcast(std::size_t capacity) : ring_(checked(capacity)) {}
  broadcast(const broadcast&) = delete;
  broadcast& operator=(const broadcast&) = delete;

  // Stores a copy for every subscriber and wakes the waiting ones. Throws channel_closed
  // after close().
  void send(T value) {
    detail::with_lock(lock_, [&](detail::wake_batch& wakes) {
      if (closed_) throw channel_closed("broadcast send: the broadcast is closed");
      ring_[sent_ % ring_.size()] = std::move(value);
      ++sent_;
      while (detail::sync_waiter* w = receivers_.pop_front()) wakes.grant(w);
    });
  }
  void close() noexcept {
    detail::with_lock(lock_, [this](detail::wake_batch& wakes) {
      closed_ = true;
      while (detail::sync_waiter* w = receivers_.pop_front()) wakes.grant(w);
    });
  }
  std::size_t capacity() const noexcept { return ring_.size(); }

  class subscriber {
   public:
    subscriber(subscriber&& o) noexcept = default;
    subscriber& operator=(subscriber&& o) noexcept = default;

    using receive_awaiter = detail::poll_awaiter<subscriber>;
    // co_await: the next value; empty once closed and read; throws broadcast_lagged.
    receive_awaiter receive() noexcept { return receive_awaiter(*this, "broadcast receive"); }
    // From a plain thread (not a loop's: std::logic_error).
    std::optional<T> blocking_receive() { return detail::blocking_poll("broadcast blocking_receive", *this); }
    // The next value if there is one now; empty otherwise (also when closed and read).
    std::optional<T> try_receive() { return detail::try_poll(*this); }

   private:
    friend broadcast;
    friend detail::poll_access;

    subscriber(broadcast& b, std::uint64_t next) noexcept : b_(&b), next_(next) {}

    // The poll_wait.hpp protocol.
    struct poll_result {
      bool done = false;  // a value, the end, or a lag: the receive completes
      std::optional<T> value;
      std::uint64_t missed = 0;
    };
    detail::spin_lock& lock() const noexcept { return b_->lock_; }
    detail::wait_list& waiters() const noexcept { return b_->receivers_; }
    bool poll(poll_result& r) {  // under the lock
      const broadcast& b = *b_;
      const std::uint64_t oldest = b.sent_ > b.ring_.size() ? b.sent_ - b.ring_.size() : 0;
      if (next_ < oldest) {
        r.missed = oldest - next_;
        next_ = oldest;
      } else if (next_ < b.sent_) {
        r.value = *b.ring_[next_ % b.ring_.size()];
        ++next_;
      } else if (!b.closed_) {
        return false;
      }
      r.done = true;
      return true;
    }
    static std::optional<T> result(poll_result& r) {
      if (r.missed != 0) throw broadcast_lagged(r.missed);
      return std::move(r.value);
    }

    broadcast* b_;
    std::uint64_t next_;  // the sequence number of the next value to read
  };

  // Any thread. The subscriber sees the values sent from now on.
  subscriber subscribe() {
    std::lock_guard guard(lock_);
    return subscriber(*this, sent_);
  }

 private:
  static std::size_t checked(std::size_t capacity) {
    if (capacity == 0) throw std::invalid_argument("corio::broadcast: capacity must be at least 1");
    return capacity;
  }

  mutable detail::spin_lock lock_;  // guards everything below
  std::vector<std::optional<T>> ring_;  // value number n at ring_[n % size]
  std::uint64_t sent_ = 0;          // values sent so far: the next one's number
  bool closed_ = false;
  detail::wait_list receivers_;
};

}  // namespace corio
